"""Oracle for original-layout files written by sdtrain: converts FILE (.safetensors or .ckpt) with
diffusers' own single-file conversion functions (convert_ldm_unet_checkpoint,
convert_ldm_vae_checkpoint, convert_ldm_clip_checkpoint) and compares every tensor, bit for bit,
with the components of the diffusers folder REF (loaded by from_pretrained). Also loads FILE with
StableDiffusionPipeline.from_single_file(config=REF). Prints OK and exits 0 when all match."""
import argparse
import sys

import torch


def load_state(path):
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file
        return load_file(path)
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def compare(name, got, want, dtype, offset, errors):
    got_keys, want_keys = set(got), set(want)
    if got_keys != want_keys:
        errors.append(f"{name}: missing {sorted(want_keys - got_keys)[:5]} unexpected {sorted(got_keys - want_keys)[:5]}")
    for key in sorted(got_keys & want_keys):
        g, w = got[key], want[key]
        if dtype is not None and w.is_floating_point():
            w = w.to(dtype)
        if offset and w.is_floating_point():
            w = (w.float() + offset).to(w.dtype)
        if g.dtype != w.dtype or g.shape != w.shape or not torch.equal(g, w):
            errors.append(f"{name}.{key}: got {g.dtype} {tuple(g.shape)} want {w.dtype} {tuple(w.shape)}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--file", help="an original-layout .safetensors or .ckpt to check")
    parser.add_argument("--folder", help="a diffusers folder to check (loaded by StableDiffusionPipeline.from_pretrained)")
    parser.add_argument("--ref", required=True)
    parser.add_argument("--half", action="store_true", help="FILE holds float16 weights")
    parser.add_argument("--use-ema", action="store_true", help="convert with extract_ema=True")
    parser.add_argument("--unet-offset", type=float, default=0.0, help="expected UNet = reference + offset")
    parser.add_argument("--no-pipeline", action="store_true", help="skip from_single_file")
    args = parser.parse_args()
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import (convert_ldm_clip_checkpoint, convert_ldm_unet_checkpoint,
                                                     convert_ldm_vae_checkpoint)
    from transformers import CLIPTextModel

    dtype = torch.float16 if args.half else None
    unet = UNet2DConditionModel.from_pretrained(args.ref, subfolder="unet")
    vae = AutoencoderKL.from_pretrained(args.ref, subfolder="vae")
    text_encoder = CLIPTextModel.from_pretrained(args.ref, subfolder="text_encoder")
    errors = []
    if args.folder:
        pipe = StableDiffusionPipeline.from_pretrained(args.folder, local_files_only=True, torch_dtype=dtype)
        compare("folder.unet", pipe.unet.state_dict(), unet.state_dict(), dtype, args.unet_offset, errors)
        compare("folder.vae", pipe.vae.state_dict(), vae.state_dict(), dtype, 0.0, errors)
        compare("folder.text_encoder", pipe.text_encoder.state_dict(), text_encoder.state_dict(), dtype, 0.0, errors)
        if pipe.tokenizer is None or pipe.tokenizer("abc").input_ids[0] != pipe.tokenizer.bos_token_id:
            errors.append("folder.tokenizer: missing or not working")
        if errors:
            print("\n".join(errors[:40]))
            sys.exit(1)
        print("OK")
        return
    state = load_state(args.file)
    compare("unet", convert_ldm_unet_checkpoint(state, dict(unet.config), extract_ema=args.use_ema),
            unet.state_dict(), dtype, args.unet_offset, errors)
    compare("vae", convert_ldm_vae_checkpoint(state, dict(vae.config)), vae.state_dict(), dtype, 0.0, errors)
    clip = {k.removeprefix("text_model."): v for k, v in convert_ldm_clip_checkpoint(state).items()}
    clip.pop("embeddings.position_ids", None)
    want_clip = {k.removeprefix("text_model."): v for k, v in text_encoder.state_dict().items()}
    compare("text_encoder", clip, want_clip, dtype, 0.0, errors)
    if not args.no_pipeline:
        pipe = StableDiffusionPipeline.from_single_file(args.file, config=args.ref, local_files_only=True,
                                                        safety_checker=None, torch_dtype=dtype)
        compare("pipeline.unet", pipe.unet.state_dict(), unet.state_dict(), dtype, args.unet_offset, errors)
        compare("pipeline.vae", pipe.vae.state_dict(), vae.state_dict(), dtype, 0.0, errors)
        compare("pipeline.text_encoder", pipe.text_encoder.state_dict(), text_encoder.state_dict(), dtype, 0.0, errors)
    if errors:
        print("\n".join(errors[:40]))
        sys.exit(1)
    print("OK")


if __name__ == "__main__":
    main()
