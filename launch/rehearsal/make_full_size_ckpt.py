"""Writes a checkpoint with the exact layout of sd-v1-4-full-ema.ckpt, at full size, with random
weights: every key and dtype of the real file's state_dict (model.diffusion_model.*, model_ema.*
with decay and num_updates, first_stage_model.*, cond_stage_model.transformer.*, the DDPM schedule
buffers) and the Lightning extras (epoch, global_step, pytorch-lightning_version, callbacks,
optimizer_states, lr_schedulers, hparams).

The networks are diffusers' / transformers' own classes at SD v1's sizes, random-initialised with
a fixed seed and saved as a diffusers folder; sdtrain's sdconvert turns that into the original
single-file layout (the name table the tests check against diffusers), and this script adds what
the Lightning training file holds beside it. Needs about 9 GB of memory and 13 GB of disk while it
runs (the diffusers folder is removed at the end).

  python make_full_size_ckpt.py --sdconvert build/bin/sdconvert --out models/sd-v1-4-full-ema.ckpt
"""
import argparse
import json
import os
import shutil
import subprocess

import torch


def write_diffusers_folder(folder):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    # SD v1's configs (CompVis/stable-diffusion-v1-4's unet, vae and text_encoder config.json).
    UNet2DConditionModel(
        sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32,
    ).save_pretrained(os.path.join(folder, "unet"))
    AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, sample_size=512,
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    ).save_pretrained(os.path.join(folder, "vae"))
    CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
        max_position_embeddings=77, hidden_act="quick_gelu",
    )).save_pretrained(os.path.join(folder, "text_encoder"))
    with open(os.path.join(folder, "model_index.json"), "w") as f:
        json.dump({"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
                   "vae": ["diffusers", "AutoencoderKL"], "text_encoder": ["transformers", "CLIPTextModel"]}, f)


def ddpm_buffers():
    """LatentDiffusion's registered schedule buffers (linear-in-sqrt betas 0.00085..0.012, 1000 steps),
    float32 as the file stores them."""
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    alphas_cumprod = torch.cumprod(1.0 - betas, 0)
    alphas_cumprod_prev = torch.cat([torch.ones(1, dtype=torch.float64), alphas_cumprod[:-1]])
    posterior_variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
    buffers = {
        "betas": betas, "alphas_cumprod": alphas_cumprod, "alphas_cumprod_prev": alphas_cumprod_prev,
        "sqrt_alphas_cumprod": alphas_cumprod.sqrt(), "sqrt_one_minus_alphas_cumprod": (1 - alphas_cumprod).sqrt(),
        "log_one_minus_alphas_cumprod": (1 - alphas_cumprod).log(),
        "sqrt_recip_alphas_cumprod": (1 / alphas_cumprod).sqrt(),
        "sqrt_recipm1_alphas_cumprod": (1 / alphas_cumprod - 1).sqrt(),
        "posterior_variance": posterior_variance,
        "posterior_log_variance_clipped": posterior_variance.clamp(min=1e-20).log(),
        "posterior_mean_coef1": betas * alphas_cumprod_prev.sqrt() / (1 - alphas_cumprod),
        "posterior_mean_coef2": (1 - alphas_cumprod_prev) * (1 - betas).sqrt() / (1 - alphas_cumprod),
    }
    return {name: value.float() for name, value in buffers.items()}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sdconvert", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    from safetensors.torch import load_file

    work = args.out + ".parts"
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    write_diffusers_folder(os.path.join(work, "diffusers"))
    single = os.path.join(work, "original.safetensors")
    subprocess.run([args.sdconvert, "--input", os.path.join(work, "diffusers"), "--output", single, "--strict"],
                   check=True)
    shutil.rmtree(os.path.join(work, "diffusers"))
    state = dict(load_file(single))
    # The EMA copy as LitEma names it: the UNet's names under model_ema. with the dots removed.
    for key in [k for k in state if k.startswith("model.diffusion_model.")]:
        state["model_ema." + "".join(key.split(".")[1:])] = state[key].clone()
    state["model_ema.decay"] = torch.tensor(0.9999, dtype=torch.float32)
    state["model_ema.num_updates"] = torch.tensor(470000, dtype=torch.int32)
    state["cond_stage_model.transformer.text_model.embeddings.position_ids"] = torch.arange(77).unsqueeze(0)
    state.update(ddpm_buffers())
    ckpt = {
        "epoch": 6,
        "global_step": 470000,
        "pytorch-lightning_version": "1.4.2",
        "state_dict": state,
        "callbacks": {},
        "optimizer_states": [],
        "lr_schedulers": [],
        "hparams": {"base_learning_rate": 1.0e-4, "target": "ldm.models.diffusion.ddpm.LatentDiffusion"},
    }
    torch.save(ckpt, args.out)
    shutil.rmtree(work)
    tensors = [v for v in state.values()]
    print(f"wrote {args.out}: {len(state)} tensors, {sum(t.numel() for t in tensors) / 1e6:.1f} M elements, "
          f"{os.path.getsize(args.out) / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
