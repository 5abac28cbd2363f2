"""Reference fixture for the weights tests: a random-initialised tiny StableDiffusionPipeline
(UNet2DConditionModel, AutoencoderKL, CLIPTextModel, a small byte-level CLIP BPE tokenizer,
PNDMScheduler), saved by diffusers' save_pretrained (safetensors) into <out>/diffusers, and a
tiny StableDiffusionXLPipeline of SDXL's shape (a block without attention, transformer depth
[1, 2], linear projections, the text_time embedding, CLIPTextModel + CLIPTextModelWithProjection
with gelu, the second tokenizer padding with "!", EulerDiscreteScheduler) into <out>/diffusers_xl."""
import argparse
import json
import os

import torch


def byte_vocab():
    # GPT-2 / CLIP byte -> unicode table.
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def write_tokenizer_files(folder):
    os.makedirs(folder, exist_ok=True)
    chars = byte_vocab()
    vocab = chars + [c + "</w>" for c in chars]
    merges = [("a", "b"), ("ab", "c</w>"), ("t", "h"), ("th", "e</w>")]
    vocab += [a + b for a, b in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    with open(os.path.join(folder, "vocab.json"), "w") as f:
        json.dump({tok: i for i, tok in enumerate(vocab)}, f)
    with open(os.path.join(folder, "merges.txt"), "w") as f:
        f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    return folder


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 32, 64), layers_per_block=2, sample_size=16, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8, norm_num_groups=32)
    vae = AutoencoderKL(
        block_out_channels=(32, 64), in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=32)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=1000, hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
        max_position_embeddings=77, bos_token_id=998, eos_token_id=999, pad_token_id=1))
    randomise(unet, vae, text_encoder)
    tok_dir = write_tokenizer_files(os.path.join(args.out, "tokenizer_src"))
    tokenizer = CLIPTokenizer(os.path.join(tok_dir, "vocab.json"), os.path.join(tok_dir, "merges.txt"))
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True,
                              set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(os.path.join(args.out, "diffusers"), safe_serialization=True)
    print("wrote", os.path.join(args.out, "diffusers"))
    save_xl_pipeline(args.out, tok_dir)


def randomise(*models):
    # Random (not default-initialised) values everywhere, so that a swapped name cannot go unseen.
    with torch.no_grad():
        for model in models:
            for p in model.parameters():
                p.copy_(torch.randn_like(p) * 0.05)


def save_xl_pipeline(out, tok_dir):
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    torch.manual_seed(1)
    time_dim, pooled_dim = 8, 16
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=2, sample_size=16, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 2), attention_head_dim=(2, 4), use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=time_dim,
        projection_class_embeddings_input_dim=pooled_dim + 6 * time_dim, cross_attention_dim=32 + 48,
        norm_num_groups=32)
    vae = AutoencoderKL(
        block_out_channels=(32, 64), in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=32,
        scaling_factor=0.13025)
    clip_args = dict(vocab_size=1000, hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                     max_position_embeddings=77, bos_token_id=998, eos_token_id=999, pad_token_id=1)
    text_encoder = CLIPTextModel(CLIPTextConfig(**clip_args))
    # Widths differ (as 768 and 1280 in SDXL): diffusers' from_single_file tells the two encoders
    # apart by their position embeddings' width.
    clip_args.update(hidden_size=48, intermediate_size=53)
    text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**clip_args, hidden_act="gelu", projection_dim=pooled_dim))
    randomise(unet, vae, text_encoder, text_encoder_2)
    vocab, merges = os.path.join(tok_dir, "vocab.json"), os.path.join(tok_dir, "merges.txt")
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       steps_offset=1, timestep_spacing="leading")
    pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2,
                                     tokenizer=CLIPTokenizer(vocab, merges),
                                     tokenizer_2=CLIPTokenizer(vocab, merges, pad_token="!"), unet=unet,
                                     scheduler=scheduler)
    pipe.save_pretrained(os.path.join(out, "diffusers_xl"), safe_serialization=True)
    print("wrote", os.path.join(out, "diffusers_xl"))


if __name__ == "__main__":
    main()
