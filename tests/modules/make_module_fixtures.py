"""Reference fixtures for the SD v1 module parity tests (tests/modules/).

Builds random-initialised TINY diffusers UNet2DConditionModel / AutoencoderKL and transformers
CLIPTextModel with fixed seeds, runs them, and writes (all with torch.save of plain dicts of
tensors, readable by torch::pickle_load):
  <name>_config.json   the config with sdtrain proto field names (proto/sd_modules.proto)
  <name>_weights.pt    the state dict (diffusers / transformers keys)
  <name>_io.pt         inputs and reference outputs
  unet_grads.pt        d(MSE(unet(x), target))/d(param) for every UNet parameter
With --full: the FULL SD v1 UNet instead (weights are not written: both sides fill every
parameter deterministically from seeded randn, see fill_deterministic) -> full_unet_io.pt, and the
full SDXL base UNet (2.57 B parameters, 10.3 GB in float32) the same way -> full_sdxl_unet_io.pt,
or, when the machine has less memory available than that needs, full_sdxl_unet_skipped.txt
saying so (the C++ test then skips with that reason).
"""
import argparse
import json
import os

import torch


def fill_deterministic(model):
    """Parameter i (in sorted key order) <- randn(shape, seed=1000+i) * scale, where scale is
    1/sqrt(fan_in) for >=2-D weights, 0.1 for biases and 1 + 0.1*randn for norm weights.
    The C++ test does the same with torch::randn and a CPU generator of the same seed."""
    params = dict(model.named_parameters())
    with torch.no_grad():
        for i, name in enumerate(sorted(params)):
            p = params[name]
            g = torch.Generator().manual_seed(1000 + i)
            r = torch.randn(p.shape, generator=g, dtype=torch.float32)
            if p.dim() >= 2:
                fan_in = p[0].numel()
                p.copy_(r / fan_in ** 0.5)
            elif name.endswith(".weight"):  # every 1-D weight is a norm's scale
                p.copy_(1 + 0.1 * r)
            else:
                p.copy_(0.1 * r)


def perturb_vectors(model):
    """Non-trivial norm affine parameters and biases (diffusers and transformers initialise them
    to 1 / 0): every 1-D parameter += 0.1 * randn, drawn from the global generator in order."""
    with torch.no_grad():
        for _, p in model.named_parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))


def save(obj, path):
    torch.save({k: (v.detach().contiguous().clone() if torch.is_tensor(v) else v) for k, v in obj.items()}, path)


def tiny_unet(out):
    from diffusers import UNet2DConditionModel

    cfg = dict(sample_size=8, in_channels=4, out_channels=4, block_out_channels=[32, 64], layers_per_block=2,
               cross_attention_dim=32, attention_head_dim=8, norm_num_groups=8,
               down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"],
               up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"])
    torch.manual_seed(0)
    model = UNet2DConditionModel(**cfg).eval()
    perturb_vectors(model)
    with open(os.path.join(out, "unet_config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    save(model.state_dict(), os.path.join(out, "unet_weights.pt"))

    g = torch.Generator().manual_seed(1)
    sample = torch.randn(2, 4, 8, 8, generator=g)
    timestep = torch.tensor([10, 980], dtype=torch.long)
    context = torch.randn(2, 77, 32, generator=g)
    target = torch.randn(2, 4, 8, 8, generator=g)
    odd_sample = torch.randn(1, 4, 7, 9, generator=g)
    with torch.no_grad():
        output = model(sample, timestep, context).sample
        output_scalar = model(sample, 500, context).sample
        output_float_t = model(sample, torch.tensor([10.5, 980.25]), context).sample
        output_odd = model(odd_sample, torch.tensor([3]), context[:1]).sample
    model.zero_grad()
    loss = torch.nn.functional.mse_loss(model(sample, timestep, context).sample, target)
    loss.backward()
    save(dict(sample=sample, timestep=timestep, encoder_hidden_states=context, target=target,
              output=output, output_scalar=output_scalar, output_float_t=output_float_t,
              odd_sample=odd_sample, output_odd=output_odd, loss=loss),
         os.path.join(out, "unet_io.pt"))
    save({n: p.grad for n, p in model.named_parameters()}, os.path.join(out, "unet_grads.pt"))


def tiny_vae(out):
    from diffusers import AutoencoderKL

    cfg = dict(in_channels=3, out_channels=3, block_out_channels=[32, 64], layers_per_block=2, latent_channels=4,
               norm_num_groups=8, sample_size=16,
               down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2)
    torch.manual_seed(2)
    model = AutoencoderKL(**cfg).eval()
    perturb_vectors(model)
    proto_cfg = {k: v for k, v in cfg.items() if not k.endswith("block_types")}
    with open(os.path.join(out, "vae_config.json"), "w") as f:
        json.dump(proto_cfg, f, indent=1)
    save(model.state_dict(), os.path.join(out, "vae_weights.pt"))

    g = torch.Generator().manual_seed(3)
    images = torch.rand(2, 3, 16, 16, generator=g) * 2 - 1
    latents = torch.randn(2, 4, 8, 8, generator=g)
    with torch.no_grad():
        posterior = model.encode(images).latent_dist
        noise = torch.randn(posterior.mean.shape, generator=g)
        sample = posterior.mean + posterior.std * noise
        # diffusers' own sampling path with a seeded generator (C++ draws with the same seed).
        sample_gen = posterior.sample(generator=torch.Generator().manual_seed(77))
        decoded = model.decode(latents).sample
        # Non-trivial grads through encode+decode.
    save(dict(images=images, mean=posterior.mean, logvar=posterior.logvar, noise=noise, sample=sample,
              sample_gen=sample_gen, latents=latents, decoded=decoded),
         os.path.join(out, "vae_io.pt"))


def tiny_clip(out):
    from transformers import CLIPTextConfig, CLIPTextModel

    cfg = dict(vocab_size=1000, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
               max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-5, eos_token_id=2)
    torch.manual_seed(4)
    model = CLIPTextModel(CLIPTextConfig(**cfg, bos_token_id=0, pad_token_id=1, attn_implementation="sdpa")).eval()
    perturb_vectors(model)
    with open(os.path.join(out, "clip_config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    # The SD v1 text_encoder files (and transformers 4.x) name keys text_model.*; transformers 5
    # drops that prefix from state_dict() and restores it on load, so write the on-disk form.
    state = {(k if k.startswith("text_model.") else "text_model." + k): v for k, v in model.state_dict().items()}
    save(state, os.path.join(out, "clip_weights.pt"))

    g = torch.Generator().manual_seed(5)
    ids = torch.randint(0, 998, (2, 77), generator=g)
    ids[0, 0] = 997  # BOS stand-in
    ids[0, 10:] = 999  # EOS padding, as SD v1's tokenizer pads with EOS
    ids[1, 30:] = 999
    mask = torch.ones(2, 77, dtype=torch.long)
    mask[1, 40:] = 0
    with torch.no_grad():
        res = model(input_ids=ids, output_hidden_states=True)
        masked = model(input_ids=ids, attention_mask=mask)
    save(dict(input_ids=ids, last_hidden_state=res.last_hidden_state, pooled_output=res.pooler_output,
              penultimate=res.hidden_states[-2], attention_mask=mask, masked_last_hidden_state=masked.last_hidden_state),
         os.path.join(out, "clip_io.pt"))


def tiny_unet_family(out, name, cfg, added):
    """A tiny UNet of SD 2.x's or SDXL's shape (per-block heads and depth, linear projections,
    SDXL's text_time embedding when `added`): <name>_config.json (diffusers keys, read by sdtrain's
    config reader), <name>_weights.pt, <name>_io.pt, <name>_grads.pt."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(7)
    model = UNet2DConditionModel(**cfg).eval()
    perturb_vectors(model)
    with open(os.path.join(out, name + "_config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    save(model.state_dict(), os.path.join(out, name + "_weights.pt"))

    g = torch.Generator().manual_seed(8)
    sample = torch.randn(2, 4, 8, 8, generator=g)
    timestep = torch.tensor([10, 980], dtype=torch.long)
    context = torch.randn(2, 77, cfg["cross_attention_dim"], generator=g)
    target = torch.randn(2, 4, 8, 8, generator=g)
    io = dict(sample=sample, timestep=timestep, encoder_hidden_states=context, target=target)
    kwargs = {}
    if added:
        pooled = cfg["projection_class_embeddings_input_dim"] - 6 * cfg["addition_time_embed_dim"]
        io["text_embeds"] = torch.randn(2, pooled, generator=g)
        # original size, crop top-left, target size (SDXL's add_time_ids), per sample
        io["time_ids"] = torch.tensor([[64.0, 64.0, 0.0, 0.0, 64.0, 64.0], [96.0, 80.0, 8.0, 12.0, 64.0, 64.0]])
        kwargs["added_cond_kwargs"] = dict(text_embeds=io["text_embeds"], time_ids=io["time_ids"])
    with torch.no_grad():
        io["output"] = model(sample, timestep, context, **kwargs).sample
    model.zero_grad()
    loss = torch.nn.functional.mse_loss(model(sample, timestep, context, **kwargs).sample, target)
    loss.backward()
    io["loss"] = loss
    save(io, os.path.join(out, name + "_io.pt"))
    save({n: p.grad for n, p in model.named_parameters()}, os.path.join(out, name + "_grads.pt"))


def tiny_sd2_unet(out):
    """SD 2.x's shape: heads per block, linear proj_in/out, upcast_attention (a no-op in fp32)."""
    tiny_unet_family(out, "sd2_unet", dict(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=[32, 64], layers_per_block=1,
        cross_attention_dim=48, attention_head_dim=[2, 4], norm_num_groups=8, use_linear_projection=True,
        upcast_attention=True, down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"],
        up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"]), added=False)


def tiny_sdxl_unet(out):
    """SDXL's shape: no attention in the first block, transformer depth per block, text_time."""
    tiny_unet_family(out, "sdxl_unet", dict(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=[32, 64, 64], layers_per_block=1,
        cross_attention_dim=40, attention_head_dim=[2, 4, 4], transformer_layers_per_block=[1, 2, 3],
        norm_num_groups=8, use_linear_projection=True,
        down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
        addition_embed_type="text_time", addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=24 + 6 * 8), added=True)


def tiny_clip_projection(out):
    """CLIPTextModelWithProjection as SDXL's second encoder (OpenCLIP bigG): gelu, projection."""
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    cfg = dict(vocab_size=1000, hidden_size=32, intermediate_size=48, num_hidden_layers=3, num_attention_heads=4,
               max_position_embeddings=77, hidden_act="gelu", layer_norm_eps=1e-5, eos_token_id=2,
               projection_dim=24)
    torch.manual_seed(9)
    model = CLIPTextModelWithProjection(CLIPTextConfig(**cfg, bos_token_id=0, pad_token_id=1,
                                                       attn_implementation="sdpa")).eval()
    perturb_vectors(model)
    with open(os.path.join(out, "clip_projection_config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    state = {(k if k.startswith(("text_model.", "text_projection.")) else "text_model." + k): v
             for k, v in model.state_dict().items()}
    save(state, os.path.join(out, "clip_projection_weights.pt"))
    g = torch.Generator().manual_seed(10)
    ids = torch.randint(0, 998, (2, 77), generator=g)
    ids[:, 0] = 997
    ids[0, 9] = 999  # EOS, then OpenCLIP's padding with 0
    ids[0, 10:] = 0
    ids[1, 30:] = 999
    with torch.no_grad():
        res = model(input_ids=ids, output_hidden_states=True)
    save(dict(input_ids=ids, last_hidden_state=res.last_hidden_state, penultimate=res.hidden_states[-2],
              text_embeds=res.text_embeds), os.path.join(out, "clip_projection_io.pt"))


def full_unet(out):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    model = UNet2DConditionModel(cross_attention_dim=768).eval()  # every other default is SD v1
    fill_deterministic(model)
    g = torch.Generator().manual_seed(6)
    sample = torch.randn(1, 4, 8, 8, generator=g)
    context = torch.randn(1, 77, 768, generator=g)
    with torch.no_grad():
        output = model(sample, torch.tensor([321]), context).sample
    save(dict(sample=sample, timestep=torch.tensor([321]), encoder_hidden_states=context, output=output,
              num_parameters=torch.tensor(sum(p.numel() for p in model.parameters()))),
         os.path.join(out, "full_unet_io.pt"))


# SDXL base's unet/config.json (stabilityai/stable-diffusion-xl-base-1.0), the values that differ
# from UNet2DConditionModel's defaults.
SDXL_BASE_UNET = dict(
    sample_size=128, block_out_channels=(320, 640, 1280), layers_per_block=2,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    attention_head_dim=(5, 10, 20), transformer_layers_per_block=(1, 2, 10), cross_attention_dim=2048,
    use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=2816)
# The fixture builds the UNet here, then the C++ test builds its own (not at the same time): one
# float32 copy and a margin for the forward and the allocator.
SDXL_NEEDS_GIB = 14


def available_gib():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20
    return 0.0


def full_sdxl_unet(out):
    from diffusers import UNet2DConditionModel

    available = available_gib()
    if available < SDXL_NEEDS_GIB:
        with open(os.path.join(out, "full_sdxl_unet_skipped.txt"), "w") as f:
            f.write(f"the full SDXL UNet needs {SDXL_NEEDS_GIB} GiB of available memory; this machine had "
                    f"{available:.1f} GiB when the fixture ran")
        return
    torch.manual_seed(0)
    model = UNet2DConditionModel(**SDXL_BASE_UNET).eval()
    fill_deterministic(model)
    g = torch.Generator().manual_seed(7)
    sample = torch.randn(1, 4, 8, 8, generator=g)
    context = torch.randn(1, 77, 2048, generator=g)
    text_embeds = torch.randn(1, 1280, generator=g)
    time_ids = torch.tensor([[1024.0, 768.0, 16.0, 32.0, 1024.0, 1024.0]])
    with torch.no_grad():
        output = model(sample, torch.tensor([521]), context,
                       added_cond_kwargs=dict(text_embeds=text_embeds, time_ids=time_ids)).sample
    save(dict(sample=sample, timestep=torch.tensor([521]), encoder_hidden_states=context, text_embeds=text_embeds,
              time_ids=time_ids, output=output,
              num_parameters=torch.tensor(sum(p.numel() for p in model.parameters()))),
         os.path.join(out, "full_sdxl_unet_io.pt"))
    with open(os.path.join(out, "full_sdxl_unet_config.json"), "w") as f:
        json.dump(SDXL_BASE_UNET, f, indent=1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--full", action="store_true", help="the full SD v1 and SDXL UNet fixtures only")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(1)
    if args.full:
        full_unet(args.out)
        full_sdxl_unet(args.out)
    else:
        tiny_unet(args.out)
        tiny_vae(args.out)
        tiny_clip(args.out)
        tiny_sd2_unet(args.out)
        tiny_sdxl_unet(args.out)
        tiny_clip_projection(args.out)


if __name__ == "__main__":
    main()
