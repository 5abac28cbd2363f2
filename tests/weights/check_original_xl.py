"""Oracle for SDXL weights written by sdtrain. Loads the reference StableDiffusionXLPipeline folder
REF (from_pretrained), then runs every --check:
  file=PATH   an original-layout single file (conditioner.embedders.0/1, label_emb) loaded by
              StableDiffusionXLPipeline.from_single_file(config=REF), diffusers' own conversion;
  folder=PATH a diffusers folder loaded by StableDiffusionXLPipeline.from_pretrained (both
              tokenizers included; the second must pad with "!").
Every component's tensors (unet, vae, text_encoder, text_encoder_2) must equal the reference bit
for bit. Prints OK and exits 0 when all match."""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_original import compare  # noqa: E402

COMPONENTS = ("unet", "vae", "text_encoder", "text_encoder_2")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ref", required=True)
    parser.add_argument("--check", action="append", default=[])
    args = parser.parse_args()
    from diffusers import StableDiffusionXLPipeline

    ref = StableDiffusionXLPipeline.from_pretrained(args.ref, local_files_only=True)
    errors = []
    for spec in args.check:
        kind, path = spec.split("=", 1)
        if kind == "folder":
            pipe = StableDiffusionXLPipeline.from_pretrained(path, local_files_only=True)
            if pipe.tokenizer_2 is None or pipe.tokenizer_2.pad_token != "!":
                errors.append(f"{path}: tokenizer_2 missing or not padding with '!'")
        else:
            pipe = StableDiffusionXLPipeline.from_single_file(path, config=args.ref, local_files_only=True)
        for name in COMPONENTS:
            compare(f"{path}.{name}", getattr(pipe, name).state_dict(), getattr(ref, name).state_dict(), None, 0.0,
                    errors)
    if errors:
        print("\n".join(errors[:40]))
        sys.exit(1)
    print("OK")


if __name__ == "__main__":
    main()
