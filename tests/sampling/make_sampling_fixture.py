"""Reference images for the sdsample end-to-end test: a random-initialised tiny SD v1 pipeline
(UNet2DConditionModel, AutoencoderKL, CLIPTextModel with CLIP's real 49,408-token vocabulary and
tokenizer) saved by diffusers' save_pretrained into <out>/pipeline, SD 2.x- and SDXL-shaped ones into
<out>/pipeline_sd2 and <out>/pipeline_xl, and for each case in CASES the
images StableDiffusionPipeline draws on the CPU in fp32 with generator=torch.Generator().manual_seed(seed),
written as PNG (diffusers' numpy_to_pil rounding) to <out>/reference/<case>_<i>.png, with
<out>/cases.json describing the cases."""
import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tokenizer"))
from make_tokenizer_reference import write_vocab_files  # noqa: E402

MERGES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "plugins", "models",
                      "stable_diffusion", "tokenizer", "data", "bpe_simple_vocab_16e6.txt.gz")

# sampler: (sdtrain name, diffusers class). Steps differ per case so spacing bugs cannot hide.
CASES = [
    {"name": "ddim", "scheduler": "DDIMScheduler", "prompt": "a red circle on a white background",
     "negative": "", "steps": 10, "scale": 7.5, "seed": 42, "n": 2},
    {"name": "pndm", "scheduler": "PNDMScheduler", "prompt": "a man in armor",
     "negative": "", "steps": 12, "scale": 7.5, "seed": 7, "n": 2},
    {"name": "euler_ancestral", "scheduler": "EulerAncestralDiscreteScheduler",
     "prompt": "a woman in a red dress", "negative": "blurry, low quality", "steps": 10, "scale": 5.0,
     "seed": 3, "n": 2},
    # CFG rescale (guidance_rescale) at a high scale, where it changes the image most.
    {"name": "ddim_guidance_rescale", "sampler": "ddim", "scheduler": "DDIMScheduler",
     "prompt": "a red circle on a white background", "negative": "", "steps": 10, "scale": 12.0,
     "rescale": 0.7, "seed": 42, "n": 2},
    # SD 2.x's shape (pipeline_sd2): v-prediction, OpenCLIP's "!" padding, per-block heads, linear
    # projections, upcast attention, a gelu text encoder.
    {"name": "sd2_ddim_v", "model": "pipeline_sd2", "sampler": "ddim", "scheduler": "DDIMScheduler",
     "prompt": "a portrait of a general, oil painting", "negative": "", "steps": 10, "scale": 7.5,
     "seed": 5, "n": 2},
    {"name": "sd2_euler_v", "model": "pipeline_sd2", "sampler": "euler", "scheduler": "EulerDiscreteScheduler",
     "prompt": "a portrait of a general, oil painting", "negative": "blurry", "steps": 8, "scale": 6.0,
     "rescale": 0.5, "seed": 9, "n": 1},
    # SDXL's shape (pipeline_xl): two text encoders (penultimate states concatenated, the second's
    # pooled projection), the size conditioning, zeros for an empty negative prompt; Euler, as
    # SDXL ships, and DDIM with a negative prompt.
    {"name": "sdxl_euler", "model": "pipeline_xl", "sampler": "euler", "scheduler": "EulerDiscreteScheduler",
     "prompt": "a general on horseback", "negative": "", "steps": 8, "scale": 5.0, "seed": 11, "n": 2},
    {"name": "sdxl_ddim", "model": "pipeline_xl", "sampler": "ddim", "scheduler": "DDIMScheduler",
     "prompt": "a general on horseback", "negative": "blurry, low quality", "steps": 10, "scale": 7.0,
     "rescale": 0.3, "seed": 4, "n": 1},
]
SIZE = 64


def build_pipeline(out):
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=SIZE // 4, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=4, norm_num_groups=16)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=32, intermediate_size=64, num_attention_heads=4, num_hidden_layers=2,
        max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407, pad_token_id=49407))
    return save_pipeline(unet, tiny_vae(), text_encoder, out)


def tiny_vae():
    from diffusers import AutoencoderKL

    # Three blocks: latents are a quarter of the image size (vae_scale_factor 4), not SD's 8.
    return AutoencoderKL(
        block_out_channels=(16, 32, 32), in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3, norm_num_groups=16)


def build_sd2_pipeline(out):
    """SD 2.x's shape: stabilityai/stable-diffusion-2-1's configs scaled down (per-block heads,
    linear projections, upcast_attention, a gelu text encoder padded with "!", DDIM with
    v-prediction)."""
    from diffusers import DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(1)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=SIZE // 4, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=(2, 4), use_linear_projection=True, upcast_attention=True,
        norm_num_groups=16)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=32, intermediate_size=64, num_attention_heads=4, num_hidden_layers=2,
        max_position_embeddings=77, hidden_act="gelu", bos_token_id=0, eos_token_id=2, pad_token_id=1))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1, num_train_timesteps=1000,
                              prediction_type="v_prediction")
    return save_pipeline(unet, tiny_vae(), text_encoder, out, name="pipeline_sd2", pad_token="!",
                         scheduler=scheduler)


def build_xl_pipeline(out):
    """SDXL's shape scaled down: a first block without attention, transformer depth [1, 2],
    small per-block head counts, linear projections, the text_time
    embedding; CLIPTextModel (quick_gelu) and CLIPTextModelWithProjection (gelu) of different
    widths; the second tokenizer pads with "!"; the autoencoder's 0.13025; Euler."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    torch.manual_seed(2)
    time_dim, pooled_dim = 8, 16
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=SIZE // 4, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 2), attention_head_dim=(2, 4), use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=time_dim,
        projection_class_embeddings_input_dim=pooled_dim + 6 * time_dim, cross_attention_dim=32 + 48,
        norm_num_groups=16)
    common = dict(vocab_size=49408, max_position_embeddings=77, num_hidden_layers=3, num_attention_heads=4)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        **common, hidden_size=32, intermediate_size=64, bos_token_id=49406, eos_token_id=49407, pad_token_id=49407))
    text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(
        **common, hidden_size=48, intermediate_size=96, hidden_act="gelu", projection_dim=pooled_dim,
        bos_token_id=0, eos_token_id=2, pad_token_id=1))
    vae = tiny_vae()
    vae.register_to_config(scaling_factor=0.13025)
    tok_dir = os.path.join(out, "tokenizer_src")
    os.makedirs(tok_dir, exist_ok=True)
    write_vocab_files(MERGES, tok_dir)
    vocab, merges = os.path.join(tok_dir, "vocab.json"), os.path.join(tok_dir, "merges.txt")
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       steps_offset=1, timestep_spacing="leading", num_train_timesteps=1000)
    pipe = StableDiffusionXLPipeline(
        vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2,
        tokenizer=CLIPTokenizer(vocab, merges, model_max_length=77),
        tokenizer_2=CLIPTokenizer(vocab, merges, pad_token="!", model_max_length=77), unet=unet, scheduler=scheduler)
    pipe.save_pretrained(os.path.join(out, "pipeline_xl"), safe_serialization=True)
    return pipe


def save_pipeline(unet, vae, text_encoder, out, name="pipeline", pad_token="<|endoftext|>", scheduler=None):
    """A StableDiffusionPipeline of these networks with CLIP's tokenizer (from the repo's merges,
    padding with `pad_token`) and `scheduler` (default SD v1's PNDM), saved by save_pretrained into
    <out>/<name>; returns it."""
    from diffusers import PNDMScheduler, StableDiffusionPipeline
    from transformers import CLIPTokenizer

    tok_dir = os.path.join(out, "tokenizer_src")
    os.makedirs(tok_dir, exist_ok=True)
    write_vocab_files(MERGES, tok_dir)
    tokenizer = CLIPTokenizer(os.path.join(tok_dir, "vocab.json"), os.path.join(tok_dir, "merges.txt"),
                              pad_token=pad_token, model_max_length=77)
    if scheduler is None:
        scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                  skip_prk_steps=True, set_alpha_to_one=False, steps_offset=1,
                                  num_train_timesteps=1000)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(os.path.join(out, name), safe_serialization=True)
    return pipe


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    import diffusers
    from PIL import Image

    torch.set_num_threads(1)
    os.makedirs(os.path.join(args.out, "reference"), exist_ok=True)
    build_pipeline(args.out)
    build_sd2_pipeline(args.out)
    build_xl_pipeline(args.out)
    pipes, base_configs = {}, {}
    for case in CASES:
        model = case.get("model", "pipeline")
        if model not in pipes:
            # Sample from the saved folder, as users do: a pipeline still in memory keeps diffusers'
            # _use_default_values bookkeeping, which from_config honours but the saved file does not carry.
            pipes[model] = diffusers.DiffusionPipeline.from_pretrained(os.path.join(args.out, model))
            pipes[model].set_progress_bar_config(disable=True)
            base_configs[model] = pipes[model].scheduler.config
        pipe = pipes[model]
        pipe.scheduler = getattr(diffusers, case["scheduler"]).from_config(base_configs[model])
        result = pipe(case["prompt"], negative_prompt=case["negative"] or None, height=SIZE, width=SIZE,
                      num_inference_steps=case["steps"], guidance_scale=case["scale"],
                      guidance_rescale=case.get("rescale", 0.0),
                      num_images_per_prompt=case["n"], generator=torch.Generator().manual_seed(case["seed"]),
                      output_type="np")
        images = (result.images * 255).round().astype(np.uint8)
        for i, image in enumerate(images):
            Image.fromarray(image).save(os.path.join(args.out, "reference", f"{case['name']}_{i}.png"))
        # A reference that is flat or saturated would make the comparison meaningless.
        print(f"{case['name']}: mean {images.mean():.1f} std {images.std():.1f} "
              f"saturated {(images == 0).mean() + (images == 255).mean():.3f}", file=sys.stderr)
    with open(os.path.join(args.out, "cases.json"), "w") as f:
        json.dump({"size": SIZE, "cases": CASES}, f, indent=1)


if __name__ == "__main__":
    main()
