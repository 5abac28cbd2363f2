"""Reference data for the noise scheduler tests, from diffusers' schedulers.

For every case (scheduler class x timestep spacing x step count, plus option variants) it records
the timesteps after set_timesteps, init_noise_sigma, every scale_model_input and step output of a
full sampling loop driven by a fake deterministic model, and add_noise outputs. Stochastic
samplers get generator=torch.Generator().manual_seed(seed); the C++ test uses a CPU generator
with the same seed. Files: <out>/<case>.pt (a dict of plain values and tensors, read in C++ with
torch::pickle_load), <out>/index.pt (the list of case names) and <out>/training.pt (betas,
alphas_cumprod, velocity, SNR weights, offset noise, CFG).
"""
import argparse
import math
import os

import torch
from diffusers import (DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler,
                       EulerAncestralDiscreteScheduler, EulerDiscreteScheduler, PNDMScheduler)
from diffusers.training_utils import compute_snr

# SD v1.4's scheduler/scheduler_config.json (the plugins' option defaults).
SD14 = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
            prediction_type="epsilon", steps_offset=1)
CLASSES = {
    "ddpm": (DDPMScheduler, dict(clip_sample=False)),
    "ddim": (DDIMScheduler, dict(clip_sample=False, set_alpha_to_one=False)),
    "pndm": (PNDMScheduler, dict(skip_prk_steps=True, set_alpha_to_one=False)),
    "euler": (EulerDiscreteScheduler, dict()),
    "euler_ancestral": (EulerAncestralDiscreteScheduler, dict()),
    "dpmpp_2m": (DPMSolverMultistepScheduler, dict(algorithm_type="dpmsolver++", solver_order=2)),
}
STOCHASTIC = {"ddpm", "euler_ancestral"}
SHAPE = (2, 4, 8, 8)


def pbtxt(schedule, extra):
    """The options message in protobuf text format for the C++ side."""
    fields = []
    for key, value in schedule.items():
        if isinstance(value, bool):
            value = str(value).lower()
        elif isinstance(value, str):
            value = value.upper()
        fields.append(f"{key}: {value}")
    text = "schedule { " + " ".join(fields) + " }" if fields else ""
    for key, value in extra.items():
        if isinstance(value, bool):
            value = str(value).lower()
        elif isinstance(value, str):
            value = value.upper()
        text += f" {key}: {value}"
    return text.strip()


def fake_model(sample, t, fixed):
    return 0.1 * sample + (0.05 * math.sin(float(t))) * fixed


def run_case(plugin, steps, spacing, schedule_overrides, option_overrides, step_kwargs, seed):
    cls, class_defaults = CLASSES[plugin]
    config = dict(SD14, **class_defaults, timestep_spacing=spacing)
    config.update(schedule_overrides)
    config.update(option_overrides)
    sched = cls(**config)
    gen = torch.Generator().manual_seed(1234 + steps)
    init = torch.randn(SHAPE, generator=gen)
    fixed = torch.randn(SHAPE, generator=gen)
    sched.set_timesteps(steps)
    timesteps = sched.timesteps.clone()
    init_noise_sigma = float(sched.init_noise_sigma)
    noise_gen = torch.Generator().manual_seed(seed) if seed >= 0 else None
    latents = init * sched.init_noise_sigma
    scaled, prev = [], []
    for t in timesteps:
        model_in = sched.scale_model_input(latents, t)
        out = fake_model(model_in, t, fixed)
        kwargs = dict(step_kwargs)
        if noise_gen is not None:
            kwargs["generator"] = noise_gen
        latents = sched.step(out, t, latents, **kwargs).prev_sample
        scaled.append(model_in)
        prev.append(latents)
    # add_noise: any training timestep for the DDPM family, schedule timesteps for sigma samplers.
    if plugin in ("ddpm", "ddim", "pndm"):
        noise_t = torch.tensor([0, 1, 500, 999], dtype=torch.int64)
    else:
        n = len(timesteps)
        noise_t = timesteps[[0, n // 2, n - 1, 1 if n > 1 else 0]]
    x = torch.randn((4, 4, 8, 8), generator=gen)
    noise = torch.randn((4, 4, 8, 8), generator=gen)
    noisy = sched.add_noise(x, noise, noise_t)
    schedule_fields = {"timestep_spacing": spacing}
    schedule_fields.update(schedule_overrides)
    option_text = pbtxt(schedule_fields, {**option_overrides, **step_kwargs})
    return {
        "plugin": plugin, "options": option_text, "steps": steps, "seed": seed,
        "timesteps": timesteps, "init_noise_sigma": init_noise_sigma, "init": init, "fixed": fixed,
        "scaled": torch.stack(scaled), "prev": torch.stack(prev),
        "add_noise_t": noise_t, "add_noise_x": x, "add_noise_noise": noise, "add_noise_out": noisy,
    }


def cases():
    for plugin in CLASSES:
        for spacing in ("leading", "trailing", "linspace"):
            for steps in (10, 25, 50):
                seed = 7 if plugin in STOCHASTIC else -1
                yield f"{plugin}_{spacing}_{steps}", (plugin, steps, spacing, {}, {}, {}, seed)
    for spacing in ("leading", "trailing"):
        yield f"ddim_eta1_{spacing}_25", ("ddim", 25, spacing, {}, {}, {"eta": 1.0}, 11)
    yield "ddim_eta05_clip_v_linear_10", ("ddim", 10, "leading", {"prediction_type": "v_prediction",
                                          "beta_schedule": "linear"}, {"clip_sample": True}, {"eta": 0.5}, 3)
    yield "ddim_alpha_one_sample_20", ("ddim", 20, "trailing", {"prediction_type": "sample"},
                                       {"set_alpha_to_one": True}, {}, -1)
    yield "ddpm_v_clip_cos_20", ("ddpm", 20, "leading", {"prediction_type": "v_prediction",
                                 "beta_schedule": "squaredcos_cap_v2"}, {"clip_sample": True}, {}, 5)
    yield "ddpm_large_linear_10", ("ddpm", 10, "trailing", {"beta_schedule": "linear"},
                                   {"variance_type": "fixed_large"}, {}, 9)
    yield "ddpm_small_log_10", ("ddpm", 10, "linspace", {}, {"variance_type": "fixed_small_log"}, {}, 9)
    for steps in (10, 25):
        yield f"pndm_prk_{steps}", ("pndm", steps, "leading", {}, {"skip_prk_steps": False}, {}, -1)
    yield "pndm_v_trailing_20", ("pndm", 20, "trailing", {"prediction_type": "v_prediction"}, {}, {}, -1)
    yield "euler_v_leading_20", ("euler", 20, "leading", {"prediction_type": "v_prediction"}, {}, {}, -1)
    yield "euler_karras_linspace_20", ("euler", 20, "linspace", {}, {"use_karras_sigmas": True}, {}, -1)
    yield "euler_ancestral_v_trailing_15", ("euler_ancestral", 15, "trailing",
                                            {"prediction_type": "v_prediction"}, {}, {}, 21)
    for steps in (10, 25):
        yield f"dpmpp_2m_karras_{steps}", ("dpmpp_2m", steps, "linspace", {}, {"use_karras_sigmas": True}, {}, -1)
    yield "dpmpp_3m_heun_20", ("dpmpp_2m", 20, "leading", {}, {"solver_order": 3, "solver_type": "heun"}, {}, -1)
    yield "dpmpp_1_trailing_12", ("dpmpp_2m", 12, "trailing", {}, {"solver_order": 1}, {}, -1)
    yield "dpmpp_2m_v_nolof_10", ("dpmpp_2m", 10, "linspace", {"prediction_type": "v_prediction"},
                                  {"lower_order_final": False}, {}, -1)
    yield "dpmpp_3m_cos_16", ("dpmpp_2m", 16, "trailing", {"beta_schedule": "squaredcos_cap_v2"},
                              {"solver_order": 3}, {}, -1)
    # Zero terminal SNR (rescale_betas_zero_snr) with v-prediction and trailing spacing, as the
    # paper pairs them; the sigma samplers floor the last alpha-bar at 2^-24.
    zero_snr = {"prediction_type": "v_prediction", "rescale_betas_zero_snr": True}
    yield "ddpm_zero_snr_trailing_20", ("ddpm", 20, "trailing", zero_snr, {}, {}, 13)
    yield "ddim_zero_snr_trailing_25", ("ddim", 25, "trailing", zero_snr, {}, {}, -1)
    yield "ddim_zero_snr_linspace_10", ("ddim", 10, "linspace", zero_snr, {}, {}, -1)
    yield "euler_zero_snr_trailing_20", ("euler", 20, "trailing", zero_snr, {}, {}, -1)
    yield "euler_ancestral_zero_snr_trailing_15", ("euler_ancestral", 15, "trailing", zero_snr, {}, {}, 19)
    yield "dpmpp_2m_zero_snr_trailing_12", ("dpmpp_2m", 12, "trailing", zero_snr, {}, {}, -1)
    yield "ddpm_zero_snr_cos_eps_10", ("ddpm", 10, "leading", {"beta_schedule": "squaredcos_cap_v2",
                                       "rescale_betas_zero_snr": True}, {}, {}, 23)


def training_reference():
    out = {}
    timesteps = torch.tensor([0, 1, 10, 250, 500, 999], dtype=torch.int64)
    for schedule in ("scaled_linear", "linear", "squaredcos_cap_v2"):
        sched = DDPMScheduler(**dict(SD14, beta_schedule=schedule))
        out[f"betas_{schedule}"] = sched.betas
        out[f"alphas_cumprod_{schedule}"] = sched.alphas_cumprod
    sched = DDPMScheduler(**SD14)
    gen = torch.Generator().manual_seed(99)
    x = torch.randn((6, 4, 8, 8), generator=gen)
    noise = torch.randn((6, 4, 8, 8), generator=gen)
    out["x"], out["noise"], out["timesteps"] = x, noise, timesteps
    out["velocity"] = sched.get_velocity(x, noise, timesteps)
    out["noisy"] = sched.add_noise(x, noise, timesteps)
    snr = compute_snr(sched, timesteps)
    out["snr"] = snr
    for gamma in (1.0, 5.0):
        # diffusers' examples/text_to_image/train_text_to_image.py.
        weights = torch.stack([snr, gamma * torch.ones_like(timesteps)], dim=1).min(dim=1)[0]
        out[f"min_snr_{int(gamma)}_epsilon"] = weights / snr
        out[f"min_snr_{int(gamma)}_v_prediction"] = weights / (snr + 1)
    # Offset noise: noise = randn_like(latents); noise += offset * randn((B, C, 1, 1)), one generator.
    gen = torch.Generator().manual_seed(5)
    noise = torch.randn((3, 4, 8, 8), generator=gen)
    noise += 0.1 * torch.randn((3, 4, 1, 1), generator=gen)
    out["offset_noise_0.1_seed5"] = noise
    # Classifier-free guidance as StableDiffusionPipeline: uncond first.
    batched = torch.randn((4, 4, 8, 8), generator=gen)
    uncond, cond = batched.chunk(2)
    out["cfg_input"] = batched
    out["cfg_7.5"] = uncond + 7.5 * (cond - uncond)
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(1)
    names = []
    for name, spec in cases():
        torch.save(run_case(*spec), os.path.join(args.out, f"{name}.pt"))
        names.append(name)
    torch.save(names, os.path.join(args.out, "index.pt"))
    torch.save(training_reference(), os.path.join(args.out, "training.pt"))
    print(f"wrote {len(names)} scheduler cases to {args.out}")


if __name__ == "__main__":
    main()
