"""Oracle for weights written by sdtrain. Loads the reference diffusers folder REF once
(from_pretrained), then runs every --check:
  file=PATH[,half][,ema][,offset=X][,nopipe]
      an original-layout .safetensors / .ckpt: converted with diffusers' own single-file functions
      (convert_ldm_unet_checkpoint (extract_ema with `ema`), convert_ldm_vae_checkpoint,
      convert_ldm_clip_checkpoint, or convert_open_clip_checkpoint for SD 2.x's
      cond_stage_model.model.*) and, unless `nopipe`, loaded by
      StableDiffusionPipeline.from_single_file(config=REF);
  folder=PATH[,half][,offset=X]
      a diffusers folder loaded by StableDiffusionPipeline.from_pretrained (tokenizer included).
Every tensor must equal the reference bit for bit (cast to float16 with `half`; the UNet plus X
with offset=X, as an EMA copy made by make_lightning_ckpt.py). Prints OK and exits 0 when all match."""
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
        if offset and w.is_floating_point():
            w = w + offset
        if dtype is not None and w.is_floating_point():
            w = w.to(dtype)
        if g.dtype != w.dtype or g.shape != w.shape or not torch.equal(g, w):
            errors.append(f"{name}.{key}: got {g.dtype} {tuple(g.shape)} want {w.dtype} {tuple(w.shape)}")


def strip(state):
    out = {k.removeprefix("text_model."): v for k, v in state.items()}
    out.pop("embeddings.position_ids", None)
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ref", required=True)
    parser.add_argument("--check", action="append", default=[])
    args = parser.parse_args()
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import (convert_ldm_clip_checkpoint, convert_ldm_unet_checkpoint,
                                                     convert_ldm_vae_checkpoint, convert_open_clip_checkpoint)
    from transformers import CLIPTextModel

    unet = UNet2DConditionModel.from_pretrained(args.ref, subfolder="unet")
    vae = AutoencoderKL.from_pretrained(args.ref, subfolder="vae")
    text_encoder = CLIPTextModel.from_pretrained(args.ref, subfolder="text_encoder")
    ref_unet, ref_vae, ref_te = unet.state_dict(), vae.state_dict(), strip(text_encoder.state_dict())
    errors = []
    for spec in args.check:
        parts = spec.split(",")
        kind, path = parts[0].split("=", 1)
        flags = {p.split("=")[0]: (p.split("=") + [""])[1] for p in parts[1:]}
        dtype = torch.float16 if "half" in flags else None
        offset = float(flags.get("offset") or 0.0)

        def check_pipe(tag, pipe):
            compare(f"{tag}.unet", pipe.unet.state_dict(), ref_unet, dtype, offset, errors)
            compare(f"{tag}.vae", pipe.vae.state_dict(), ref_vae, dtype, 0.0, errors)
            compare(f"{tag}.text_encoder", strip(pipe.text_encoder.state_dict()), ref_te, dtype, 0.0, errors)

        if kind == "folder":
            pipe = StableDiffusionPipeline.from_pretrained(path, local_files_only=True, torch_dtype=dtype)
            check_pipe(path, pipe)
            if pipe.tokenizer is None or pipe.tokenizer("abc").input_ids[0] != pipe.tokenizer.bos_token_id:
                errors.append(f"{path}: tokenizer missing or not working")
            continue
        state = load_state(path)
        compare(f"{path}.unet", convert_ldm_unet_checkpoint(state, dict(unet.config), extract_ema="ema" in flags),
                ref_unet, dtype, offset, errors)
        compare(f"{path}.vae", convert_ldm_vae_checkpoint(state, dict(vae.config)), ref_vae, dtype, 0.0, errors)
        if "cond_stage_model.model.token_embedding.weight" in state:
            converted_te = convert_open_clip_checkpoint(text_encoder, state)
        else:
            converted_te = convert_ldm_clip_checkpoint(state)
        compare(f"{path}.text_encoder", strip(converted_te), ref_te, dtype, 0.0, errors)
        if "nopipe" not in flags:
            check_pipe(path + " (from_single_file)",
                       StableDiffusionPipeline.from_single_file(path, config=args.ref, local_files_only=True,
                                                                safety_checker=None, torch_dtype=dtype))
    if errors:
        print("\n".join(errors[:40]))
        sys.exit(1)
    print("OK")


if __name__ == "__main__":
    main()
