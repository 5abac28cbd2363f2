"""diffusers' side of the LoRA format tests (tests/weights/sd_lora_diffusers_test.cpp), for SD v1
and SDXL pipelines alike (the pipeline class comes from the folder's model_index.json).

sample: loads an adapter file into the fixture pipeline with pipe.load_lora_weights, fails if
  diffusers, peft or transformers report anything while loading (unmatched keys are reported as
  warnings), and with --expect (SD v1) if a module of the file got no LoRA layer or another scale
  than that kohya file gives (alpha / rank per module), then draws the images the pipeline draws
  with the adapter at --weight and writes them to <out>_<i>.png. Prints "OK".
fuse: loads and fuses each --lora FILE:WEIGHT in turn (set_adapters + fuse_lora + unload) and compares the UNet
  and text encoder(s) weights with those of the diffusers folder --merged (sdconvert --merge-lora),
  failing above an absolute difference of ATOL + RTOL * |weight|, or when a text encoder the
  adapters cover kept its weights. Prints "OK" and the differences.
"""
import argparse
import logging
import os
import sys
import warnings

import numpy as np
import torch

ATOL = 1e-6
RTOL = 1e-6


class Recorder(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(f"{record.name}: {record.getMessage()}")


def load_pipeline(path):
    import diffusers

    pipe = diffusers.DiffusionPipeline.from_pretrained(path)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def load_adapter(pipe, path, name):
    """load_lora_weights, failing on anything reported while loading."""
    recorder = Recorder()
    loggers = [logging.getLogger(n) for n in ("diffusers", "peft", "transformers")]
    for logger in loggers:
        logger.addHandler(recorder)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipe.load_lora_weights(os.path.dirname(os.path.abspath(path)), weight_name=os.path.basename(path),
                               adapter_name=name)
    for logger in loggers:
        logger.removeHandler(recorder)
    reported = recorder.messages + [f"{w.category.__name__}: {w.message}" for w in caught]
    if reported:
        sys.exit(f"{path}: diffusers reported while loading:\n" + "\n".join(reported))


def lora_layers(pipe, name):
    """kohya name -> peft LoRA layer holding adapter `name`, for the UNet and the text encoder."""
    from peft.tuners.lora import LoraLayer

    layers = {}
    te_prefix = "lora_te_" if hasattr(pipe.text_encoder, "text_model") else "lora_te_text_model_"
    for prefix, model in (("lora_unet_", pipe.unet), (te_prefix, pipe.text_encoder)):
        for module_name, module in model.named_modules():
            if isinstance(module, LoraLayer) and name in module.lora_A:
                layers[prefix + module_name.replace(".", "_")] = module
    return layers


def expected_scales(kohya_file):
    from safetensors.torch import load_file

    tensors = load_file(kohya_file)
    scales = {}
    for key, down in tensors.items():
        if key.endswith(".lora_down.weight"):
            module = key[: -len(".lora_down.weight")]
            rank = down.shape[0]
            alpha = tensors[module + ".alpha"].item() if module + ".alpha" in tensors else rank
            scales[module] = alpha / rank
    return scales


def sample(args):
    pipe = load_pipeline(args.pipeline)
    # Not a one-letter name: transformers' peft integration picks an adapter's keys by whether the
    # name occurs in them, and "x" occurs in "text_model", so it reports the base weights missing.
    name = "adapter0"
    load_adapter(pipe, args.lora, name)
    layers = lora_layers(pipe, name)
    if args.expect:
        scales = expected_scales(args.expect)
        if set(layers) != set(scales):
            sys.exit(f"LoRA layers differ from the adapter's modules: missing {sorted(set(scales) - set(layers))[:5]}, "
                     f"extra {sorted(set(layers) - set(scales))[:5]}")
        for module, scale in scales.items():
            if abs(layers[module].scaling[name] - scale) > 1e-12 * abs(scale):
                sys.exit(f"{module}: diffusers' scale {layers[module].scaling[name]}, the file's alpha / rank {scale}")
    pipe.set_adapters([name], [args.weight])
    from PIL import Image

    images = pipe(args.prompt, height=args.size, width=args.size, num_inference_steps=args.steps,
                  guidance_scale=args.scale, num_images_per_prompt=args.n,
                  generator=torch.Generator().manual_seed(args.seed), output_type="np").images
    for i, image in enumerate((images * 255).round().astype(np.uint8)):
        Image.fromarray(image).save(f"{args.out}_{i}.png")
    print(f"OK: {len(layers)} LoRA layers")


def fuse(args):
    from safetensors.torch import load_file

    pipe = load_pipeline(args.pipeline)
    encoders = [name for name in ("text_encoder", "text_encoder_2") if getattr(pipe, name, None) is not None]
    base = {c: {k: v.clone() for k, v in getattr(pipe, c).state_dict().items()} for c in ["unet"] + encoders}
    # One adapter at a time (load, fuse at its weight, unload), in the order given: the order
    # sdconvert merges in, and no second adapter beside the first for transformers to report on.
    for i, spec in enumerate(args.lora):
        path, weight = spec.rsplit(":", 1)
        load_adapter(pipe, path, f"a{i}")
        pipe.set_adapters([f"a{i}"], [float(weight)])
        pipe.fuse_lora(components=["unet"] + encoders, adapter_names=[f"a{i}"])
        pipe.unload_lora_weights()
    worst = 0.0
    changed = {}
    for component in ["unet"] + encoders:
        model = getattr(pipe, component)
        ours = load_file(os.path.join(args.merged, component, "diffusion_pytorch_model.safetensors" if component == "unet"
                                      else "model.safetensors"))
        ours = {k.removeprefix("text_model."): v for k, v in ours.items()}
        for model_key, fused in model.state_dict().items():
            key = model_key.removeprefix("text_model.")
            if key not in ours:
                sys.exit(f"{component}: {key} is not in {args.merged}")
            diff = (ours[key].double() - fused.double()).abs()
            excess = (diff - (ATOL + RTOL * fused.double().abs())).max().item()
            worst = max(worst, diff.max().item())
            if excess > 0:
                sys.exit(f"{component}: {key}: differs from fuse_lora by {diff.max().item():.3g}")
            if not torch.equal(fused, base[component][model_key]):
                changed[component] = changed.get(component, 0) + 1
    for component in ["unet"] + args.expect_changed:
        if component not in changed:
            sys.exit(f"fuse_lora changed no {component} weight")
    print(f"OK: weights changed {changed}, max |sdconvert - fuse_lora| = {worst:.3g}")


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("sample")
    s.add_argument("--pipeline", required=True)
    s.add_argument("--lora", required=True)
    s.add_argument("--expect", help="kohya file whose alpha / rank each module must get (SD v1 names)")
    s.add_argument("--weight", type=float, default=1.0)
    s.add_argument("--prompt", required=True)
    s.add_argument("--steps", type=int, required=True)
    s.add_argument("--scale", type=float, required=True)
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--size", type=int, required=True)
    s.add_argument("--n", type=int, default=1)
    s.add_argument("--out", required=True)
    f = sub.add_parser("fuse")
    f.add_argument("--pipeline", required=True)
    f.add_argument("--lora", action="append", required=True, help="FILE:WEIGHT")
    f.add_argument("--merged", required=True)
    f.add_argument("--expect-changed", action="append", default=[],
                   help="a text encoder (text_encoder, text_encoder_2) the adapters must change")
    args = parser.parse_args()
    torch.set_num_threads(1)
    sample(args) if args.command == "sample" else fuse(args)


if __name__ == "__main__":
    main()
