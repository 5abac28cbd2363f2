"""References for the LoRA format tests (tests/weights/sd_lora_diffusers_test.cpp):
<out>/pipeline: the sampling fixture's tiny random SD v1 pipeline (diffusers folder);
<out>/pipeline_sd2, <out>/pipeline_xl: its tiny random SD 2.x pipeline (gelu text encoder, linear
projections) and StableDiffusionXLPipeline (two text encoders, text_time);
<out>/lycoris_unet.safetensors, <out>/lycoris_text_encoder.safetensors: LoCon adapters as
lycoris-lora's create_lycoris writes them for the UNet (every Linear and Conv2d, Tucker-decomposed
3x3 convs: lora_mid) and the text encoder, lora_up filled randomly (it starts at zero);
<out>/lycoris_merged.safetensors: the UNet ("unet.<name>") and text encoder ("text_encoder.<name>")
weights after lycoris' own merge_to(MULTIPLIER) of both."""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "sampling"))
from make_sampling_fixture import build_pipeline, build_sd2_pipeline, build_xl_pipeline  # noqa: E402

MULTIPLIER = 0.8


def lycoris_network(module, seed, **kwargs):
    from lycoris import create_lycoris

    torch.manual_seed(seed)
    network = create_lycoris(module, 1.0, algo="locon", **kwargs)
    network.apply_to()
    with torch.no_grad():
        for lora in network.loras:
            lora.lora_up.weight.normal_(0, 0.1)
    return network


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    from safetensors.torch import save_file

    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    build_sd2_pipeline(args.out)
    build_xl_pipeline(args.out)
    pipe = build_pipeline(args.out)
    unet = lycoris_network(pipe.unet, 1, linear_dim=4, linear_alpha=2, conv_dim=2, conv_alpha=1, use_tucker=True)
    text_encoder = lycoris_network(pipe.text_encoder, 2, linear_dim=4, linear_alpha=8)
    unet.save_weights(os.path.join(args.out, "lycoris_unet.safetensors"), torch.float32, None)
    text_encoder.save_weights(os.path.join(args.out, "lycoris_text_encoder.safetensors"), torch.float32, None)
    with torch.no_grad():
        unet.merge_to(MULTIPLIER)
        text_encoder.merge_to(MULTIPLIER)
    merged = {f"unet.{k}": v.contiguous() for k, v in pipe.unet.state_dict().items()}
    merged.update({f"text_encoder.{k}": v.contiguous() for k, v in pipe.text_encoder.state_dict().items()})
    save_file(merged, os.path.join(args.out, "lycoris_merged.safetensors"))
    with open(os.path.join(args.out, "lycoris.json"), "w") as f:
        json.dump({"multiplier": MULTIPLIER, "unet_modules": len(unet.loras),
                   "text_encoder_modules": len(text_encoder.loras)}, f)


if __name__ == "__main__":
    main()
