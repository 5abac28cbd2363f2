"""Training step time of sdtrain vs a diffusers training step (train_text_to_image.py's step) on
the same networks, shapes and thread count, measured side by side in the same run; prints the
times and the speed-up (diffusers time / sdtrain time; > 1 means sdtrain is faster).

    .venv/bin/python bench/train/bench_train_step.py --bench build/bin/train_step_bench \
        [--config small|sd] [--latent 64] [--batch 1] [--iters 3] [--warmup 1] [--threads 2]

The step, both sides: VAE encode + posterior sample x scaling factor, CLIP text encoding of a
77-token caption, noise, t ~ U{0, 999}, add_noise, UNet forward, MSE loss, backward, AdamW
(lr 1e-4, betas 0.9/0.999, weight decay 1e-2, eps 1e-8), zero_grad. Both initialise randomly:
weights do not change the time."""
import argparse
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "modules"))


def diffusers_step_ms(args):
    import torch
    import torch.nn.functional as F
    from bench_sd_modules import unet_config, vae_config
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    unet = UNet2DConditionModel(**unet_config(args.config)).to(device).train()
    vae = AutoencoderKL(**vae_config(args.config)).to(device)
    # SD v1's text encoder (CLIP ViT-L/14's text tower).
    text_encoder = CLIPTextModel(CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                                num_attention_heads=12, max_position_embeddings=77,
                                                hidden_act="quick_gelu", projection_dim=768)).to(device)
    vae.requires_grad_(False)
    text_encoder.requires_grad_(False)
    scheduler = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              num_train_timesteps=1000)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-4, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8)
    pixels = torch.rand(args.batch, 3, args.latent * 8, args.latent * 8, device=device) * 2 - 1
    input_ids = torch.randint(0, 49407, (args.batch, 77), device=device)

    def step():
        latents = vae.encode(pixels).latent_dist.sample() * vae.config.scaling_factor
        noise = torch.randn_like(latents)
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (args.batch,), device=device)
        noisy = scheduler.add_noise(latents, noise, timesteps)
        encoder_hidden_states = text_encoder(input_ids, return_dict=False)[0]
        prediction = unet(noisy, timesteps, encoder_hidden_states, return_dict=False)[0]
        loss = F.mse_loss(prediction.float(), noise.float(), reduction="mean")
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(args.warmup):
        step()
    start = time.perf_counter()
    for _ in range(args.iters):
        step()
    counts = {name: sum(p.numel() for p in net.parameters())
              for name, net in (("unet", unet), ("vae", vae), ("text_encoder", text_encoder))}
    return (time.perf_counter() - start) * 1000.0 / args.iters, counts


def parameter_line(counts):
    return "parameters " + " ".join(f"{name}={n}" for name, n in counts.items())


def sdtrain_step_ms(args):
    command = [args.bench, "--config", args.config, "--latent", str(args.latent), "--batch", str(args.batch),
               "--iters", str(args.iters), "--warmup", str(args.warmup), "--threads", str(args.threads),
               "--device", args.device]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return float(re.search(r"^step_ms (\S+)", output, re.M).group(1)), re.search(r"^parameters .*$", output, re.M).group(0)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bench", help="path of build/bin/train_step_bench")
    parser.add_argument("--config", default="small", choices=["small", "sd"])
    parser.add_argument("--latent", type=int, default=64)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--reference-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reference_only:
        ms, counts = diffusers_step_ms(args)
        print(f"step_ms {ms:.1f}")
        print(parameter_line(counts))
        return
    if not args.bench:
        parser.error("--bench is required")
    # Each side in its own process, one after the other, so neither holds the other's memory.
    reference = subprocess.run([sys.executable, os.path.abspath(__file__), "--reference-only"] +
                               [a for a in sys.argv[1:] if not a.startswith("--bench") and a != args.bench],
                               check=True, capture_output=True, text=True).stdout
    diffusers_ms = float(re.search(r"^step_ms (\S+)", reference, re.M).group(1))
    reference_parameters = re.search(r"^parameters .*$", reference, re.M).group(0)
    ours_ms, our_parameters = sdtrain_step_ms(args)
    if our_parameters != reference_parameters:
        # A ratio between different networks means nothing (a config default that differs
        # between the two libraries once made this benchmark compare unequal autoencoders).
        sys.exit(f"the two sides built different networks:\n  diffusers {reference_parameters}\n"
                 f"  sdtrain   {our_parameters}")
    print(f"training step, config={args.config} latent={args.latent}x{args.latent} batch={args.batch} "
          f"threads={args.threads} device={args.device}")
    print(f"  diffusers {diffusers_ms:.1f} ms/step, sdtrain {ours_ms:.1f} ms/step, "
          f"speed-up {diffusers_ms / ours_ms:.2f}x")


if __name__ == "__main__":
    main()
