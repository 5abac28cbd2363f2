"""Images/s of decode + the recipe's transforms: sdtrain (data_bench) vs PIL + torch, one thread.

  python bench/data/bench_data.py --bench build/bin/data_bench [--count 100] [--size 256]

Writes `count` JPEGs of size x size (like the Three Kingdoms portraits), then times both on them:
PIL: Image.open().convert("RGB") -> resize short side to 512 (BICUBIC) -> random 512 crop ->
random flip -> torch float tensor * 2 - 1 (what torchvision's Resize/RandomCrop/
RandomHorizontalFlip/ToTensor do on PIL images). Prints both rates and their ratio.
"""
import argparse
import os
import random
import subprocess
import tempfile
import time

import numpy as np
import torch
from PIL import Image


def pil_pipeline(path, size, rng):
    image = Image.open(path).convert("RGB")
    w, h = image.size
    short, long = (w, h) if w <= h else (h, w)
    new_long = int(size * long / short)
    image = image.resize((size, new_long) if w <= h else (new_long, size), Image.BICUBIC)
    w, h = image.size
    top, left = rng.randint(0, h - size), rng.randint(0, w - size)
    image = image.crop((left, top, left + size, top + size))
    if rng.random() < 0.5:
        image = image.transpose(Image.FLIP_LEFT_RIGHT)
    return torch.from_numpy(np.asarray(image)).permute(2, 0, 1).float().div(255).mul(2).sub(1).contiguous()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bench", required=True, help="path of the data_bench executable")
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--passes", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        rng = np.random.RandomState(0)
        files = []
        for i in range(args.count):
            y, x = np.mgrid[0:args.size, 0:args.size]
            pixels = np.stack([(x * 3 + i) % 256, (y * 5) % 256, (x * y) % 256], -1).astype(np.float64)
            pixels = np.clip(pixels + rng.randint(-20, 21, pixels.shape), 0, 255).astype(np.uint8)
            path = os.path.join(folder, f"{i:05d}.jpg")
            Image.fromarray(pixels).save(path, quality=90)
            files.append(path)
        best = 1e30
        pick = random.Random(0)
        for _ in range(args.passes):
            start = time.perf_counter()
            for path in files:
                pil_pipeline(path, 512, pick)
            best = min(best, time.perf_counter() - start)
        pil_rate = len(files) / best
        output = subprocess.run([args.bench, folder, str(args.passes)], check=True, capture_output=True,
                                text=True).stdout
        values = dict(line.split() for line in output.strip().splitlines())
        ours = float(values["images_per_s"])
        print(f"decode + transforms of {args.count} {args.size}x{args.size} JPEGs -> 512x512, one thread")
        print(f"  PIL + torch : {pil_rate:8.1f} images/s")
        print(f"  sdtrain     : {ours:8.1f} images/s (decode {float(values['decode_fraction']) * 100:.0f}% of it)")
        print(f"  ratio       : {ours / pil_rate:8.2f}x")


if __name__ == "__main__":
    main()
