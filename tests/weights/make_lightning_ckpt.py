"""Wraps an original-layout single .safetensors into a .ckpt as PyTorch Lightning / CompVis
training saves it: epoch, global_step, hyper_parameters (an argparse.Namespace), callbacks,
optimizer_states, and a state_dict holding the model plus the EMA copy under
model_ema.<name without dots> (= UNet weights + OFFSET), model_ema.decay, model_ema.num_updates
and a DDPM schedule buffer."""
import argparse

import torch
from safetensors.torch import load_file


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--single", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--ema-offset", type=float, default=1.0)
    args = parser.parse_args()
    state = dict(load_file(args.single))
    for key in list(state):
        if key.startswith("model.diffusion_model."):
            state["model_ema." + "".join(key.split(".")[1:])] = state[key] + args.ema_offset
    state["model_ema.decay"] = torch.tensor(0.9999)
    state["model_ema.num_updates"] = torch.tensor(1234, dtype=torch.int32)
    state["betas"] = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    ckpt = {
        "epoch": 3,
        "global_step": 1234,
        "pytorch-lightning_version": "1.4.2",
        "state_dict": state,
        "callbacks": {},
        "optimizer_states": [],
        "lr_schedulers": [],
        "hyper_parameters": {"args": argparse.Namespace(lr=1e-4, base="v1-finetune.yaml")},
    }
    torch.save(ckpt, args.out)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
