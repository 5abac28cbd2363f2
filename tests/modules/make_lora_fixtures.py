"""Reference fixtures for the LoRA / LoCon adapter parity tests (tests/modules/lora_parity_test.cpp).

A tiny random diffusers UNet2DConditionModel and transformers CLIPTextModel (the configs of
make_module_fixtures.py, other seeds) get peft LoRA adapters on the layers kohya's LoRANetwork
wraps by default (UNet: every Linear and 1x1 Conv2d inside the attention blocks; with LoCon also
every layer of the ResNet blocks, downsamplers and upsamplers, k x k convolutions at their own
rank; text encoder: the Linear layers of self_attn and mlp). The adapters' lora_B (peft
initialises it to zero) and lora_A are filled with seeded random values so that the adapters
change the output. Written with torch.save (plain dicts of tensors, read by torch::pickle_load):
  lora_unet_config.json / lora_clip_config.json   network configs (sdtrain proto field names)
  lora_unet_weights.pt / lora_clip_weights.pt     base weights
  lora_unet_adapters.pt / lora_clip_adapters.pt   adapter weights in kohya's naming
                                                  (<name>.lora_down.weight, .lora_up.weight, .alpha)
  lora_unet_io.pt / lora_clip_io.pt               inputs, outputs, loss
  lora_unet_grads.pt / lora_clip_grads.pt         d loss / d adapter weight, kohya names
"""
import argparse
import json
import os
import re

import torch

RANK, ALPHA = 4, 2.0          # adapter.lora.rank / alpha (scale 0.5)
CONV_RANK, CONV_ALPHA = 2, 4.0  # adapter.lora.conv_rank / conv_alpha (scale 2)


def save(obj, path):
    torch.save({k: (v.detach().contiguous().clone() if torch.is_tensor(v) else v) for k, v in obj.items()}, path)


def kohya_name(prefix, path):
    return prefix + path.replace(".", "_")


def unet_targets(unet):
    """kohya's default UNet targets with conv_dim set: {module path: is k x k conv}."""
    targets = {}
    for name, module in unet.named_modules():
        is_linear = isinstance(module, torch.nn.Linear)
        is_conv = isinstance(module, torch.nn.Conv2d)
        if not (is_linear or is_conv):
            continue
        kxk = is_conv and module.kernel_size != (1, 1)
        if re.search(r"(^|\.)attentions\.\d+\.", name) and not kxk:
            targets[name] = False
        elif re.search(r"(^|\.)(resnets|downsamplers|upsamplers)\.\d+\.", name):
            targets[name] = kxk
    return targets


def add_lora(model, targets, generator):
    """peft LoRA on `targets` ({path: kxk}); returns {path: peft module}."""
    from peft import LoraConfig, inject_adapter_in_model

    kxk = [p for p, k in targets.items() if k]
    config = LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=list(targets), init_lora_weights=True,
                        rank_pattern={re.escape(p) + "$": CONV_RANK for p in kxk},
                        alpha_pattern={re.escape(p) + "$": CONV_ALPHA for p in kxk})
    model = inject_adapter_in_model(config, model)
    layers = {}
    with torch.no_grad():
        for path in targets:
            layer = model.get_submodule(path)
            for part in (layer.lora_A["default"], layer.lora_B["default"]):
                w = part.weight
                w.copy_(torch.randn(w.shape, generator=generator) / w[0].numel() ** 0.5)
            layers[path] = layer
    return model, layers


def adapter_state(prefix, layers, targets):
    state = {}
    for path, layer in layers.items():
        name = kohya_name(prefix, path)
        state[name + ".lora_down.weight"] = layer.lora_A["default"].weight
        state[name + ".lora_up.weight"] = layer.lora_B["default"].weight
        state[name + ".alpha"] = torch.tensor(CONV_ALPHA if targets[path] else ALPHA)
    return state


def adapter_grads(prefix, layers):
    grads = {}
    for path, layer in layers.items():
        name = kohya_name(prefix, path)
        grads[name + ".lora_down.weight"] = layer.lora_A["default"].weight.grad
        grads[name + ".lora_up.weight"] = layer.lora_B["default"].weight.grad
    return grads


def lora_unet(out):
    from diffusers import UNet2DConditionModel

    cfg = dict(sample_size=8, in_channels=4, out_channels=4, block_out_channels=[32, 64], layers_per_block=1,
               cross_attention_dim=32, attention_head_dim=8, norm_num_groups=8,
               down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"],
               up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"])
    torch.manual_seed(10)
    model = UNet2DConditionModel(**cfg)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))
    with open(os.path.join(out, "lora_unet_config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    save(model.state_dict(), os.path.join(out, "lora_unet_weights.pt"))

    targets = unet_targets(model)
    model, layers = add_lora(model, targets, torch.Generator().manual_seed(11))
    model.train()
    for p in model.parameters():
        p.requires_grad_(False)
    for layer in layers.values():
        for part in (layer.lora_A["default"], layer.lora_B["default"]):
            part.weight.requires_grad_(True)
    g = torch.Generator().manual_seed(12)
    sample = torch.randn(2, 4, 8, 8, generator=g)
    timestep = torch.tensor([10, 980], dtype=torch.long)
    context = torch.randn(2, 77, 32, generator=g)
    target = torch.randn(2, 4, 8, 8, generator=g)
    output = model(sample, timestep, context).sample
    loss = torch.nn.functional.mse_loss(output, target)
    loss.backward()
    save(adapter_state("lora_unet_", layers, targets), os.path.join(out, "lora_unet_adapters.pt"))
    save(dict(sample=sample, timestep=timestep, encoder_hidden_states=context, target=target, output=output,
              loss=loss), os.path.join(out, "lora_unet_io.pt"))
    save(adapter_grads("lora_unet_", layers), os.path.join(out, "lora_unet_grads.pt"))


def lora_clip(out):
    from transformers import CLIPTextConfig, CLIPTextModel

    cfg = dict(vocab_size=1000, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
               max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-5, eos_token_id=2)
    torch.manual_seed(14)
    model = CLIPTextModel(CLIPTextConfig(**cfg, bos_token_id=0, pad_token_id=1, attn_implementation="sdpa"))
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))
    with open(os.path.join(out, "lora_clip_config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    # transformers 5 drops the text_model. prefix from state_dict(); the files have it.
    state = {(k if k.startswith("text_model.") else "text_model." + k): v for k, v in model.state_dict().items()}
    save(state, os.path.join(out, "lora_clip_weights.pt"))

    paths = [n for n, m in model.named_modules()
             if isinstance(m, torch.nn.Linear) and re.search(r"encoder\.layers\.\d+\.(self_attn|mlp)\.", n)]
    targets = {p: False for p in paths}
    model, layers = add_lora(model, targets, torch.Generator().manual_seed(15))
    for p in model.parameters():
        p.requires_grad_(False)
    for layer in layers.values():
        for part in (layer.lora_A["default"], layer.lora_B["default"]):
            part.weight.requires_grad_(True)
    g = torch.Generator().manual_seed(16)
    ids = torch.randint(0, 998, (2, 77), generator=g)
    ids[:, 20:] = 999
    weights = torch.randn(2, 77, 32, generator=g)
    hidden = model(input_ids=ids).last_hidden_state
    loss = (hidden * weights).sum()
    loss.backward()
    # Module paths as sdtrain names them: transformers 5 may omit the text_model. prefix.
    prefixed = {(p if p.startswith("text_model.") else "text_model." + p): layer for p, layer in layers.items()}
    prefixed_targets = {p: False for p in prefixed}
    save(adapter_state("lora_te_", prefixed, prefixed_targets), os.path.join(out, "lora_clip_adapters.pt"))
    save(dict(input_ids=ids, output_weights=weights, last_hidden_state=hidden, loss=loss),
         os.path.join(out, "lora_clip_io.pt"))
    save(adapter_grads("lora_te_", prefixed), os.path.join(out, "lora_clip_grads.pt"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(1)
    lora_unet(args.out)
    lora_clip(args.out)


if __name__ == "__main__":
    main()
