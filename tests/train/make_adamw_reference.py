"""Reference for FlatAdamW: torch.optim.AdamW (PyTorch defaults, weight decay 0.01) over a few
steps with changing learning rates, on parameters of several shapes; once with one group and once
with two param_groups (the second at a tenth of the LR and without weight decay); and once with
the fused kernel (fused=True), which FlatAdamW calls and so matches bit for bit."""
import argparse
import os

import torch

SHAPES = [(4, 3), (5,), (2, 3, 2)]
LRS = [1e-3, 5e-4, 2e-3, 1e-4, 1e-3]


def flat(tensors):
    return torch.cat([t.detach().flatten().clone() for t in tensors])


def record(seed, make_groups, fused=False):
    """Steps AdamW over SHAPES' parameters with LRS (times each group's lr_factor); returns the
    initial flat values, each step's flat gradients and flat values after it."""
    torch.manual_seed(seed)
    params = [torch.nn.Parameter(torch.randn(s)) for s in SHAPES]
    initial = flat(params)
    optimizer = torch.optim.AdamW(make_groups(params), lr=LRS[0], foreach=False, fused=fused or None)
    grads, after = [], []
    for lr in LRS:
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_factor", 1.0)
        step_grads = [torch.randn(s) for s in SHAPES]
        for p, g in zip(params, step_grads):
            p.grad = g
        optimizer.step()
        grads.append(flat(step_grads))
        after.append(flat(params))
    return {"initial": initial, "grads": torch.stack(grads), "after": torch.stack(after),
            "lrs": torch.tensor(LRS, dtype=torch.float64)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.save(record(0, lambda params: params), os.path.join(args.out, "adamw.pt"))
    torch.save(record(0, lambda params: params, fused=True), os.path.join(args.out, "adamw_fused.pt"))
    # Parameter groups, as a model's groups train: the first two parameters at the scheduled LR
    # and the default weight decay, the last at a tenth of it without weight decay.
    groups = record(1, lambda params: [{"params": params[:2]},
                                       {"params": params[2:], "lr_factor": 0.1, "weight_decay": 0.0}])
    groups["first_group"] = torch.tensor(sum(torch.Size(s).numel() for s in SHAPES[:2]))
    torch.save(groups, os.path.join(args.out, "adamw_groups.pt"))


if __name__ == "__main__":
    main()
