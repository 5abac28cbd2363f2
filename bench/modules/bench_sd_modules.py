"""diffusers side of bench_sd_modules: times UNet forward+backward and VAE encode with the same
shapes, config and thread count as the C++ program, and prints `name ms` lines and each network's
`name_parameters count` (the C++ side refuses to compare networks of different sizes)."""
import argparse
import time

import torch


def unet_config(kind):
    if kind == "sd":
        return dict(cross_attention_dim=768)  # every other diffusers default is SD v1
    # "small": the SD v1 layout at a quarter of the width (block types, heads, depth unchanged).
    return dict(block_out_channels=(128, 256, 320, 320), cross_attention_dim=768, norm_num_groups=32)


def vae_config(kind):
    # layers_per_block must be given: diffusers' AutoencoderKL defaults to 1, SD v1's VAE (and
    # sdtrain's default) has 2 resnets per encoder block.
    if kind == "sd":
        return dict(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                    up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, norm_num_groups=32,
                    layers_per_block=2, sample_size=512)
    return dict(block_out_channels=(64, 128, 128, 128), down_block_types=("DownEncoderBlock2D",) * 4,
                up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, norm_num_groups=32,
                layers_per_block=2)


def timed(fn, args, sync, part):
    """Mean ms of args.iters calls after args.warmup; with --profile the timed calls also write an
    op-level Chrome trace (PREFIX-diffusers-PART.json), as the C++ side does."""
    for _ in range(args.warmup):
        fn()
    sync()
    prof = None
    if args.profile:
        prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
        prof.__enter__()
    t0 = time.perf_counter()
    for _ in range(args.iters):
        fn()
    sync()
    ms = (time.perf_counter() - t0) * 1000.0 / args.iters
    if prof is not None:
        prof.__exit__(None, None, None)
        prof.export_chrome_trace(f"{args.profile}-diffusers-{part}.json")
    return ms


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="small")
    ap.add_argument("--latent", type=int, default=32)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--only", choices=["unet", "vae"])
    ap.add_argument("--profile", default="")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    from diffusers import AutoencoderKL, UNet2DConditionModel

    dev = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    if args.only != "vae":
        time_unet(args, dev, sync, UNet2DConditionModel)
    if args.only != "unet":
        time_vae(args, dev, sync, AutoencoderKL)


def time_unet(args, dev, sync, UNet2DConditionModel):
    unet = UNet2DConditionModel(**unet_config(args.config)).to(dev).train()
    x = torch.randn(args.batch, 4, args.latent, args.latent, device=dev)
    t = torch.randint(0, 1000, (args.batch,), device=dev)
    ctx = torch.randn(args.batch, 77, 768, device=dev)
    target = torch.randn_like(x)

    def unet_step():
        unet.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(unet(x, t, ctx).sample, target)
        loss.backward()

    print(f"unet_fwd_bwd_ms {timed(unet_step, args, sync, 'unet'):.3f}", flush=True)
    print(f"unet_parameters {sum(p.numel() for p in unet.parameters())}", flush=True)


def time_vae(args, dev, sync, AutoencoderKL):
    vae = AutoencoderKL(**vae_config(args.config)).to(dev).eval()
    images = torch.rand(args.batch, 3, args.latent * 8, args.latent * 8, device=dev) * 2 - 1

    def vae_encode():
        with torch.no_grad():
            vae.encode(images).latent_dist.sample()

    print(f"vae_encode_ms {timed(vae_encode, args, sync, 'vae'):.3f}", flush=True)
    print(f"vae_parameters {sum(p.numel() for p in vae.parameters())}", flush=True)


if __name__ == "__main__":
    main()
