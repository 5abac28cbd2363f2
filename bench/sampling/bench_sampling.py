"""50-step text-to-image sampling: sdtrain's `sdsample` vs diffusers' StableDiffusionPipeline on the
same machine, same random-initialised model, same prompt, seed, sampler and size, in the same run.

    .venv/bin/python bench/sampling/bench_sampling.py --sdsample build/bin/sdsample [--config small]

Prints each side's sampling wall time (model loading excluded on both sides: sdsample reports its
own sampling time) and the ratio diffusers / sdtrain (> 1: sdtrain is faster). Both sides use the
same number of threads. `--config sd` is the full SD v1 UNet (slow on a CPU: use --steps/--size).
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "sampling"))
import make_sampling_fixture  # noqa: E402  (tokenizer files from the repo's CLIP merges)


def build(kind, out):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    if kind == "sd":
        unet = UNet2DConditionModel(cross_attention_dim=768)
        vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                            up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, layers_per_block=2,
                            sample_size=512)
        clip = CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_attention_heads=12,
                              num_hidden_layers=12, max_position_embeddings=77, hidden_act="quick_gelu",
                              bos_token_id=49406, eos_token_id=49407, pad_token_id=49407)
    else:  # the SD v1 layout at a quarter of the width
        unet = UNet2DConditionModel(block_out_channels=(128, 256, 320, 320), cross_attention_dim=768)
        vae = AutoencoderKL(block_out_channels=(64, 128, 128, 128), down_block_types=("DownEncoderBlock2D",) * 4,
                            up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, layers_per_block=2)
        clip = CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_attention_heads=12,
                              num_hidden_layers=4, max_position_embeddings=77, hidden_act="quick_gelu",
                              bos_token_id=49406, eos_token_id=49407, pad_token_id=49407)
    return make_sampling_fixture.save_pipeline(unet, vae, CLIPTextModel(clip), out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sdsample", required=True)
    ap.add_argument("--config", choices=["small", "sd"], default="small")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--n-samples", type=int, default=1)
    ap.add_argument("--sampler", default="ddim", choices=["ddim", "pndm", "euler_ancestral"])
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    import diffusers

    torch.set_num_threads(args.threads)
    classes = {"ddim": "DDIMScheduler", "pndm": "PNDMScheduler", "euler_ancestral": "EulerAncestralDiscreteScheduler"}
    prompt = "a man in armor"
    with tempfile.TemporaryDirectory() as tmp:
        pipe = build(args.config, tmp)
        pipe.scheduler = getattr(diffusers, classes[args.sampler]).from_config(pipe.scheduler.config)
        pipe.set_progress_bar_config(disable=True)
        t0 = time.perf_counter()
        with torch.no_grad():
            pipe(prompt, height=args.size, width=args.size, num_inference_steps=args.steps, guidance_scale=7.5,
                 num_images_per_prompt=args.n_samples, generator=torch.Generator().manual_seed(42))
        reference_s = time.perf_counter() - t0

        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
        result = subprocess.run(
            [args.sdsample, "--model", os.path.join(tmp, "pipeline"), "--prompt", prompt, "--steps", str(args.steps),
             "--sampler", args.sampler, "--seed", "42", "--H", str(args.size), "--W", str(args.size), "--n-samples",
             str(args.n_samples), "--device", "cpu", "--no-grid", "--outdir", os.path.join(tmp, "out")],
            capture_output=True, text=True, env=env, check=True)
        match = re.search(r"sampled \d+ image\(s\) in ([0-9.e+-]+) s", result.stdout)
        ours_s = float(match.group(1))
    print(f"config {args.config}, {args.size}x{args.size}, {args.steps} {args.sampler} steps, batch {args.n_samples}, "
          f"CFG 7.5, {args.threads} threads")
    print(f"diffusers StableDiffusionPipeline: {reference_s:.2f} s")
    print(f"sdtrain sdsample:                  {ours_s:.2f} s")
    print(f"ratio (diffusers / sdtrain): {reference_s / ours_s:.2f}x")


if __name__ == "__main__":
    main()
