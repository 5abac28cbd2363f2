"""Training step time of sdtrain vs a diffusers training step (train_text_to_image.py's step) on
the same networks, shapes and thread count, measured side by side in the same run; prints the
times and the speed-up (diffusers time / sdtrain time; > 1 means sdtrain is faster).

    .venv/bin/python bench/train/bench_train_step.py --bench build/bin/train_step_bench \
        [--config small|sd] [--latent 64] [--batch 1[,8...]] [--iters 3] [--warmup 1] [--threads 2] \
        [--device cuda] [--precision bf16] [--gradient-checkpointing [0,1]] [--cached [0,1]] [--lora RANK]

The step, both sides: VAE encode + posterior sample x scaling factor, CLIP text encoding of a
77-token caption, noise, t ~ U{0, 999}, add_noise, UNet forward, MSE loss, backward, AdamW
(lr 1e-4, betas 0.9/0.999, weight decay 1e-2, eps 1e-8), zero_grad. Both initialise randomly:
weights do not change the time. Pixels (and the token ids) start in host memory, pinned on CUDA,
and are copied to the device each step, as a data loader delivers them.

--precision bf16 runs diffusers as train_text_to_image.py --mixed_precision bf16 does (frozen
autoencoder and text encoder stored in bf16, the UNet's forward under bf16 autocast) and sdtrain as
its trainer does with precision BF16, its frozen encoders stored in bf16 too.
--gradient-checkpointing turns it on for both UNets. --cached skips both encoders in the timed
steps: sdtrain's encoder caches (filled by the warm-up; the batch carries the cached moments and
no pixels, as the data loader delivers it), and on the diffusers side the posterior and text
embeddings computed once before timing (the same work; train_text_to_image.py itself has no
cache), so neither side copies pixels in the timed steps. On a GPU both sides also print their
peak memory (torch.cuda.max_memory_allocated(), from the first warm-up step on).

--lora RANK trains LoRA adapters instead of the UNet, as diffusers' train_text_to_image_lora.py
does: rank RANK, alpha RANK, on the UNet's to_q, to_k, to_v and to_out.0; the frozen UNet stored
in the mixed-precision dtype; AdamW over the adapters only. On the CPU both sides also print their
peak resident set size (the process's, construction included: what the machine must hold).

Lists (--batch 4,8 --cached 0,1 --gradient-checkpointing 0,1) run every combination (cached
outermost, then batch, then gradient checkpointing), each side in one process that builds its
networks once (sdtrain once per cache setting, its caches being part of the model), and end with
a Markdown table of all settings for bench/RESULTS.md.
Each side's result lines are echoed to stderr as they come, so a run cut short keeps them."""
import argparse
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "modules"))


def positive_list(text):
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        values = []
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of integers > 0")
    return values


def switch_list(text):
    parts = text.split(",")
    if any(p not in ("0", "1") for p in parts):
        raise argparse.ArgumentTypeError(f"'{text}' is not a list of 0 and 1")
    return [p == "1" for p in parts]


def settings(args):
    """(cached, batch, gradient_checkpointing) in the order both sides run them."""
    return [(c, b, g) for c in args.cached for b in args.batch for g in args.gradient_checkpointing]


def result_line(batch, cached, checkpointing, ms, peak_mb):
    import resource
    line = f"result batch={batch} cached={int(cached)} gradient_checkpointing={int(checkpointing)} step_ms={ms:.1f}"
    if peak_mb is not None:
        return line + f" peak_memory_mb={peak_mb:.1f}"
    return line + f" peak_rss_mb={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f}"  # KiB on Linux


def run_reference(args):
    """The diffusers side: prints the parameter counts, then one result line per setting."""
    import torch
    from bench_sd_modules import unet_config, vae_config
    from diffusers import AutoencoderKL, UNet2DConditionModel
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
    counts = {name: sum(p.numel() for p in net.parameters())
              for name, net in (("unet", unet), ("vae", vae), ("text_encoder", text_encoder))}
    trained = list(unet.parameters())
    if args.lora > 0:
        # train_text_to_image_lora.py: the UNet frozen and stored in weight_dtype, then the adapters.
        from peft import LoraConfig
        unet.requires_grad_(False)
        unet.to(dtype=weight_dtype)
        unet.add_adapter(LoraConfig(r=args.lora, lora_alpha=args.lora, init_lora_weights="gaussian",
                                    target_modules=["to_k", "to_q", "to_v", "to_out.0"]))
        trained = [p for p in unet.parameters() if p.requires_grad]
        counts["lora"] = sum(p.numel() for p in trained)
    print("parameters " + " ".join(f"{name}={n}" for name, n in counts.items()), flush=True)
    # One set of networks for every setting: diffusers has no cache to configure at construction.
    optimizer = torch.optim.AdamW(trained, lr=1e-4, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8)
    for cached, batch, checkpointing in settings(args):
        if checkpointing:
            unet.enable_gradient_checkpointing()
        else:
            unet.disable_gradient_checkpointing()
        ms, peak_mb = reference_step_ms(args, device, weight_dtype, (unet, vae, text_encoder), optimizer, batch, cached)
        print(result_line(batch, cached, checkpointing, ms, peak_mb), flush=True)


def reference_step_ms(args, device, weight_dtype, networks, optimizer, batch, cached):
    """Mean ms per timed step of one setting, and the peak MiB on CUDA (else None)."""
    import torch
    import torch.nn.functional as F
    from diffusers import DDPMScheduler

    unet, vae, text_encoder = networks
    scheduler = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              num_train_timesteps=1000)
    pixels = torch.rand(batch, 3, args.latent * 8, args.latent * 8) * 2 - 1
    input_ids = torch.randint(0, 49407, (batch, 77))
    if device.type == "cuda":
        pixels, input_ids = pixels.pin_memory(), input_ids.pin_memory()
    if cached:
        with torch.no_grad():
            cached_posterior = vae.encode(pixels.to(device).to(weight_dtype)).latent_dist
            cached_text = text_encoder(input_ids.to(device), return_dict=False)[0]

    def step():
        if cached:
            latents = cached_posterior.sample() * vae.config.scaling_factor
            encoder_hidden_states = cached_text
        else:
            # accelerate's prepared data loader moves each batch to the device.
            latents = vae.encode(pixels.to(device, non_blocking=True).to(weight_dtype)).latent_dist.sample()
            latents = latents * vae.config.scaling_factor
            encoder_hidden_states = text_encoder(input_ids.to(device, non_blocking=True), return_dict=False)[0]
        noise = torch.randn_like(latents)
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (batch,), device=device)
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
    return elapsed * 1000.0 / args.iters, peak_mb


def run_side(name, command):
    """Runs one side, echoing its result lines to stderr as they come; returns (parameters line,
    {(cached, batch, checkpointing): (ms, peak MiB or None)}). Errors show on stderr."""
    results, parameters = {}, None
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, bufsize=1) as process:
        for line in process.stdout:
            line = line.rstrip("\n")
            if line.startswith("parameters "):
                parameters = line
            found = re.match(r"result batch=(\d+) cached=([01]) gradient_checkpointing=([01]) step_ms=(\S+)"
                             r"(?: peak_memory_mb=(\S+))?(?: peak_rss_mb=(\S+))?$", line)
            if found:
                print(f"  [{name}] {line}", file=sys.stderr, flush=True)
                batch, cached, checkpointing, ms, peak, rss = found.groups()
                results[(cached == "1", int(batch), checkpointing == "1")] = \
                    (float(ms), float(peak) if peak is not None else None, float(rss) if rss is not None else None)
    if process.returncode != 0:
        sys.exit(f"the {name} side failed (exit {process.returncode}): {' '.join(command)}")
    if parameters is None:
        sys.exit(f"the {name} side printed no parameter counts")
    return parameters, results


def joined(values):
    return ",".join(str(int(v)) for v in values)


def side_arguments(args):
    return ["--config", args.config, "--latent", str(args.latent), "--batch", joined(args.batch),
            "--iters", str(args.iters), "--warmup", str(args.warmup), "--threads", str(args.threads),
            "--device", args.device, "--precision", args.precision, "--lora", str(args.lora),
            f"--gradient-checkpointing={joined(args.gradient_checkpointing)}", f"--cached={joined(args.cached)}"]


def print_comparison(args, reference, ours):
    rows = []
    for setting in settings(args):
        cached, batch, checkpointing = setting
        (diffusers_ms, diffusers_peak, diffusers_rss), (ours_ms, our_peak, our_rss) = reference[setting], ours[setting]
        print(f"training step, config={args.config} latent={args.latent}x{args.latent} batch={batch} "
              f"threads={args.threads} device={args.device} precision={args.precision} "
              f"gradient_checkpointing={int(checkpointing)} cached={int(cached)}"
              + (f" lora_rank={args.lora}" if args.lora > 0 else ""))
        print(f"  diffusers {diffusers_ms:.1f} ms/step, sdtrain {ours_ms:.1f} ms/step, "
              f"speed-up {diffusers_ms / ours_ms:.2f}x")
        print(f"  images/s: diffusers {batch * 1000.0 / diffusers_ms:.2f}, sdtrain {batch * 1000.0 / ours_ms:.2f}")
        if diffusers_peak is not None and our_peak is not None:
            print(f"  peak memory: diffusers {diffusers_peak / 1024:.2f} GiB, sdtrain {our_peak / 1024:.2f} GiB")
        if diffusers_rss is not None and our_rss is not None:
            print(f"  peak RSS: diffusers {diffusers_rss / 1024:.2f} GiB, sdtrain {our_rss / 1024:.2f} GiB, "
                  f"diffusers / sdtrain {diffusers_rss / our_rss:.2f}")
        peaks = [f"{p / 1024:.2f}" if p is not None else "-" for p in (diffusers_peak, our_peak)]
        rows.append(f"| {batch} | {'yes' if cached else 'no'} | {'yes' if checkpointing else 'no'} | "
                    f"{batch * 1000.0 / diffusers_ms:.2f} | {batch * 1000.0 / ours_ms:.2f} | "
                    f"{diffusers_ms / ours_ms:.2f}x | {peaks[0]} | {peaks[1]} |")
    if len(rows) > 1:
        print("\n| batch | cached latents + text | gradient checkpointing | diffusers img/s | sdtrain img/s | "
              "speed-up | diffusers peak GiB | sdtrain peak GiB |")
        print("|---|---|---|---|---|---|---|---|")
        print("\n".join(rows))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bench", help="path of build/bin/train_step_bench")
    parser.add_argument("--config", default="small", choices=["small", "sd"])
    parser.add_argument("--latent", type=int, default=64)
    parser.add_argument("--batch", type=positive_list, default=[1], help="batch sizes, e.g. 4,8")
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--gradient-checkpointing", type=switch_list, nargs="?", const=[True], default=[False],
                        help="on (no value), or the settings to run, e.g. 0,1")
    parser.add_argument("--cached", type=switch_list, nargs="?", const=[True], default=[False],
                        help="time the steps without the encoders (cached); or the settings to run, e.g. 0,1")
    parser.add_argument("--lora", type=int, default=0, help="LoRA rank (0: train the UNet itself)")
    parser.add_argument("--reference-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.latent <= 0 or args.iters <= 0 or args.warmup < 0 or args.lora < 0:
        parser.error("--latent and --iters must be > 0, --warmup and --lora >= 0")
    if any(args.cached) and args.warmup < 1:
        parser.error("--cached needs --warmup >= 1 (sdtrain's warm-up fills its caches)")
    if args.reference_only:
        run_reference(args)
        return
    if not args.bench:
        parser.error("--bench is required")
    # Each side in its own process, one after the other, so neither holds the other's memory.
    reference_parameters, reference = run_side(
        "diffusers", [sys.executable, os.path.abspath(__file__), "--reference-only"] + side_arguments(args))
    our_parameters, ours = run_side("sdtrain", [args.bench] + side_arguments(args))
    if our_parameters != reference_parameters:
        # A ratio between different networks means nothing (a config default that differs
        # between the two libraries once made this benchmark compare unequal autoencoders).
        sys.exit(f"the two sides built different networks:\n  diffusers {reference_parameters}\n"
                 f"  sdtrain   {our_parameters}")
    missing = [s for s in settings(args) if s not in reference or s not in ours]
    if missing:
        sys.exit(f"settings without a result on both sides (cached, batch, gradient checkpointing): {missing}")
    print_comparison(args, reference, ours)


if __name__ == "__main__":
    main()
