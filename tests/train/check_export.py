"""Checks a final_export folder with diffusers itself: it loads as a StableDiffusionPipeline
(which runs a two-step generation) and as a UNet2DConditionModel, and the UNet's weights equal
the given safetensors file (the final checkpoint's EMA weights) exactly, every tensor, no tensor
more or less; --differs names a file (the trained weights) the UNet must NOT equal.
Exit 0 when all holds, 1 with the reasons otherwise."""
import argparse
import sys

import torch
from safetensors.torch import load_file


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("folder")
    parser.add_argument("--equals", required=True)
    parser.add_argument("--differs", required=True)
    args = parser.parse_args()
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel

    errors = []
    pipe = StableDiffusionPipeline.from_pretrained(args.folder, safety_checker=None, requires_safety_checker=False)
    size = pipe.vae.config.sample_size
    images = pipe("a red square", num_inference_steps=2, height=size, width=size, output_type="np",
                  generator=torch.Generator().manual_seed(0)).images
    if images.shape != (1, size, size, 3):
        errors.append(f"pipeline output shape {images.shape}")
    unet = UNet2DConditionModel.from_pretrained(args.folder, subfolder="unet")
    state = unet.state_dict()
    want = load_file(args.equals)
    if set(state) != set(want):
        errors.append(f"UNet keys differ: only exported {sorted(set(state) - set(want))[:5]}, "
                      f"only expected {sorted(set(want) - set(state))[:5]}")
    for name in sorted(set(state) & set(want)):
        if not torch.equal(state[name], want[name]):
            errors.append(f"{name}: max diff {(state[name] - want[name]).abs().max().item()}")
    for name, value in pipe.unet.state_dict().items():
        if not torch.equal(value, state[name]):
            errors.append(f"pipeline unet {name} differs from the UNet2DConditionModel load")
    trained = load_file(args.differs)
    if all(torch.equal(state[n], trained[n]) for n in trained if n in state):
        errors.append(f"the exported UNet equals {args.differs} too: the test cannot tell EMA from trained weights")
    if errors:
        print("\n".join(errors))
        return 1
    print(f"ok: {len(state)} UNet tensors equal {args.equals}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
