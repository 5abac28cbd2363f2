"""Reference for DynamicLossScaler: torch.amp.GradScaler on the CPU driven through a sequence of
steps, some with an injected inf/NaN gradient. Records, per step, the scale used, whether the
optimizer step ran (the parameter changed), and the scale and growth tracker after update();
plus GradScaler.unscale_ of a gradient at a scale whose reciprocal is not a power of two."""
import argparse
import os

import torch


def run(init_scale, growth_factor, backoff_factor, growth_interval, bad_steps, steps):
    param = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.SGD([param], lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=init_scale, growth_factor=growth_factor,
                                  backoff_factor=backoff_factor, growth_interval=growth_interval)
    used, stepped, scales, trackers = [], [], [], []
    for step in range(steps):
        optimizer.zero_grad()
        used.append(scaler.get_scale())
        loss = (param * torch.tensor([1.0, 2.0, 3.0])).sum()
        if step in bad_steps:
            loss = loss * (float("inf") if bad_steps[step] == "inf" else float("nan"))
        scaler.scale(loss).backward()
        before = param.detach().clone()
        scaler.step(optimizer)
        scaler.update()
        stepped.append(0.0 if torch.equal(before, param.detach()) else 1.0)
        scales.append(scaler.get_scale())
        trackers.append(float(scaler._get_growth_tracker()))
    return torch.tensor([used, stepped, scales, trackers], dtype=torch.float64)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    # The defaults (65536, x2 every 2000, x0.5) with overflows early and late in a run.
    defaults = run(65536.0, 2.0, 0.5, 2000, {1: "inf", 2: "nan", 2500: "inf"}, 4600)
    # A short interval and non-power-of-two factors: growth, backoff and restarts of the count.
    custom = run(1000.0, 3.0, 0.25, 3, {4: "inf", 5: "inf", 9: "nan"}, 16)
    # unscale_: grads of a scaled loss divided back at scale 3 (1/3 is inexact in float32).
    param = torch.nn.Parameter(torch.zeros(5))
    optimizer = torch.optim.SGD([param], lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=3.0)
    grad = torch.tensor([1.0, -2.5, 1e-3, 7.0, 1e4])
    scaler.scale(torch.zeros(()))  # creates the scale tensor (lazily made on first use)
    param.grad = grad.clone()
    scaler.unscale_(optimizer)
    torch.save({"defaults": defaults, "custom": custom, "grad": grad, "unscaled": param.grad.clone()},
               os.path.join(args.out, "grad_scaler.pt"))


if __name__ == "__main__":
    main()
