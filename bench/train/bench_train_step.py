"""Training step time of sdtrain vs a diffusers training step (train_text_to_image.py's step) on
the same networks, shapes and thread count, measured side by side in the same run; prints the
times and the speed-up (diffusers time / sdtrain time; > 1 means sdtrain is faster).

    .venv/bin/python bench/train/bench_train_step.py --bench build/bin/train_step_bench \
        [--config small|sd] [--latent 64] [--batch 1] [--iters 3] [--warmup 1] [--threads 2] \
        [--device cuda] [--precision bf16] [--gradient-checkpointing] [--cached]

The step, both sides: VAE encode + posterior sample x scaling factor, CLIP text encoding of a
77-token caption, noise, t ~ U{0, 999}, add_noise, UNet forward, MSE loss, backward, AdamW
(lr 1e-4, betas 0.9/0.999, weight decay 1e-2, eps 1e-8), zero_grad. Both initialise randomly:
weights do not change the time.

--precision bf16 runs diffusers as train_text_to_image.py --mixed_precision bf16 does (frozen
autoencoder and text encoder cast to bf16, the UNet's forward under bf16 autocast) and sdtrain as
its trainer does with precision BF16. --gradient-checkpointing turns it on for both UNets.
--cached skips both encoders in the timed steps: sdtrain's encoder caches (filled by the warm-up),
and on the diffusers side the posterior and text embeddings computed once before timing (the same
work; train_text_to_image.py itself has no cache). On a GPU both sides also print their peak
memory (torch.cuda.max_memory_allocated(), from the first warm-up step on)."""
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
    # train_text_to_image.py: the frozen networks in the mixed-precision dtype, the UNet in fp32.
    weight_dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    vae.to(dtype=weight_dtype)
    text_encoder.to(dtype=weight_dtype)
    if args.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    scheduler = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              num_train_timesteps=1000)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-4, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8)
    pixels = torch.rand(args.batch, 3, args.latent * 8, args.latent * 8, device=device) * 2 - 1
    input_ids = torch.randint(0, 49407, (args.batch, 77), device=device)
    if args.cached:
        with torch.no_grad():
            cached_posterior = vae.encode(pixels.to(weight_dtype)).latent_dist
            cached_text = text_encoder(input_ids, return_dict=False)[0]

    def step():
        if args.cached:
            latents = cached_posterior.sample() * vae.config.scaling_factor
            encoder_hidden_states = cached_text
        else:
            latents = vae.encode(pixels.to(weight_dtype)).latent_dist.sample() * vae.config.scaling_factor
            encoder_hidden_states = text_encoder(input_ids, return_dict=False)[0]
        noise = torch.randn_like(latents)
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (args.batch,), device=device)
        noisy = scheduler.add_noise(latents, noise, timesteps)
        # accelerate's mixed precision: the prepared UNet's forward under autocast.
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16"):
            prediction = unet(noisy, timesteps, encoder_hidden_states, return_dict=False)[0]
        loss = F.mse_loss(prediction.float(), noise.float(), reduction="mean")
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if device.type == "cuda":
            torch.cuda.synchronize()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(args.warmup):
        step()
    start = time.perf_counter()
    for _ in range(args.iters):
        step()
    elapsed = time.perf_counter() - start
    peak_mb = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    counts = {name: sum(p.numel() for p in net.parameters())
              for name, net in (("unet", unet), ("vae", vae), ("text_encoder", text_encoder))}
    return elapsed * 1000.0 / args.iters, counts, peak_mb


def parameter_line(counts):
    return "parameters " + " ".join(f"{name}={n}" for name, n in counts.items())


def sdtrain_step_ms(args):
    command = [args.bench, "--config", args.config, "--latent", str(args.latent), "--batch", str(args.batch),
               "--iters", str(args.iters), "--warmup", str(args.warmup), "--threads", str(args.threads),
               "--device", args.device, "--precision", args.precision] + \
              (["--gradient-checkpointing"] if args.gradient_checkpointing else []) + (["--cached"] if args.cached else [])
    output = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True).stdout  # errors show on stderr
    return (float(re.search(r"^step_ms (\S+)", output, re.M).group(1)),
            re.search(r"^parameters .*$", output, re.M).group(0), peak_memory(output))


def peak_memory(output):
    """The "peak_memory_mb X" line of a side's output, or None (CPU)."""
    found = re.search(r"^peak_memory_mb (\S+)", output, re.M)
    return float(found.group(1)) if found else None


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
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--cached", action="store_true", help="time the steps without the encoders (cached)")
    parser.add_argument("--reference-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reference_only:
        ms, counts, peak_mb = diffusers_step_ms(args)
        print(f"step_ms {ms:.1f}")
        print(parameter_line(counts))
        if peak_mb is not None:
            print(f"peak_memory_mb {peak_mb:.1f}")
        return
    if not args.bench:
        parser.error("--bench is required")
    # Each side in its own process, one after the other, so neither holds the other's memory.
    reference = subprocess.run([sys.executable, os.path.abspath(__file__), "--reference-only"] +
                               [a for a in sys.argv[1:] if not a.startswith("--bench") and a != args.bench],
                               check=True, stdout=subprocess.PIPE, text=True).stdout
    diffusers_ms = float(re.search(r"^step_ms (\S+)", reference, re.M).group(1))
    reference_parameters = re.search(r"^parameters .*$", reference, re.M).group(0)
    diffusers_peak = peak_memory(reference)
    ours_ms, our_parameters, our_peak = sdtrain_step_ms(args)
    if our_parameters != reference_parameters:
        # A ratio between different networks means nothing (a config default that differs
        # between the two libraries once made this benchmark compare unequal autoencoders).
        sys.exit(f"the two sides built different networks:\n  diffusers {reference_parameters}\n"
                 f"  sdtrain   {our_parameters}")
    print(f"training step, config={args.config} latent={args.latent}x{args.latent} batch={args.batch} "
          f"threads={args.threads} device={args.device} precision={args.precision} "
          f"gradient_checkpointing={int(args.gradient_checkpointing)} cached={int(args.cached)}")
    print(f"  diffusers {diffusers_ms:.1f} ms/step, sdtrain {ours_ms:.1f} ms/step, "
          f"speed-up {diffusers_ms / ours_ms:.2f}x")
    print(f"  images/s: diffusers {args.batch * 1000.0 / diffusers_ms:.2f}, sdtrain {args.batch * 1000.0 / ours_ms:.2f}")
    if diffusers_peak is not None and our_peak is not None:
        print(f"  peak memory: diffusers {diffusers_peak / 1024:.2f} GiB, sdtrain {our_peak / 1024:.2f} GiB")


if __name__ == "__main__":
    main()
