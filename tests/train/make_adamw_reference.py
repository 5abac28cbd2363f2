"""Reference for FlatAdamW: torch.optim.AdamW (PyTorch defaults, weight decay 0.01) over a few
steps with changing learning rates, on parameters of several shapes."""
import argparse
import os

import torch


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(0)
    shapes = [(4, 3), (5,), (2, 3, 2)]
    params = [torch.nn.Parameter(torch.randn(s)) for s in shapes]
    initial = torch.cat([p.detach().flatten().clone() for p in params])
    optimizer = torch.optim.AdamW(params, lr=1e-3, foreach=False)
    lrs = [1e-3, 5e-4, 2e-3, 1e-4, 1e-3]
    grads, after = [], []
    for lr in lrs:
        for group in optimizer.param_groups:
            group["lr"] = lr
        step_grads = [torch.randn(s) for s in shapes]
        for p, g in zip(params, step_grads):
            p.grad = g
        optimizer.step()
        grads.append(torch.cat([g.flatten() for g in step_grads]))
        after.append(torch.cat([p.detach().flatten().clone() for p in params]))
    torch.save({"initial": initial, "grads": torch.stack(grads), "after": torch.stack(after),
                "lrs": torch.tensor(lrs, dtype=torch.float64)}, os.path.join(args.out, "adamw.pt"))

    # Parameter groups: the first two parameters at the scheduled LR and the default weight decay,
    # the last at a tenth of it without weight decay (param_groups, as a model's groups train).
    torch.manual_seed(1)
    params = [torch.nn.Parameter(torch.randn(s)) for s in shapes]
    initial = torch.cat([p.detach().flatten().clone() for p in params])
    optimizer = torch.optim.AdamW([{"params": params[:2]},
                                   {"params": params[2:], "lr_factor": 0.1, "weight_decay": 0.0}],
                                  lr=1e-3, foreach=False)
    grads, after = [], []
    for lr in lrs:
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_factor", 1.0)
        step_grads = [torch.randn(s) for s in shapes]
        for p, g in zip(params, step_grads):
            p.grad = g
        optimizer.step()
        grads.append(torch.cat([g.flatten() for g in step_grads]))
        after.append(torch.cat([p.detach().flatten().clone() for p in params]))
    first_group = sum(p.numel() for p in params[:2])
    torch.save({"initial": initial, "grads": torch.stack(grads), "after": torch.stack(after),
                "lrs": torch.tensor(lrs, dtype=torch.float64), "first_group": torch.tensor(first_group)},
               os.path.join(args.out, "adamw_groups.pt"))


if __name__ == "__main__":
    main()
