"""Images/s of decode + the recipe's transforms: sdtrain (data_bench) vs PIL + torch, one thread.

  python bench/data/bench_data.py --bench build/bin/data_bench [--count 100] [--size 256]
      [--loader-bench build/bin/data_loader_bench --workers N]

With --workers, also the whole loaders with N workers each: sdtrain's DataLoader (threads) vs
torch.utils.data.DataLoader (processes) over the same image folder with a metadata.csv, batch 4,
shuffled, the same transforms (what diffusers' train_text_to_image.py feeds its training loop).

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
    # np.array copies the pixels, as torchvision's to_tensor does (and a writable array is what
    # torch.from_numpy wants).
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).float().div(255).mul(2).sub(1).contiguous()


class PilFolder(torch.utils.data.Dataset):
    """Images through the PIL pipeline, seeded per index (each worker draws its own crops/flips):
    `items[i]`, or `open_item(items[i])` when given (a file-like object for bytes), as PIL opens it."""

    def __init__(self, items, open_item=None):
        self.items = items
        self.open_item = open_item

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        item = self.items[index] if self.open_item is None else self.open_item(self.items[index])
        return pil_pipeline(item, 512, random.Random(index))


def timed_rate(loader, epochs):
    """Images/s of a torch DataLoader over `epochs` epochs after a warm-up one, as the C++ side."""
    for _ in loader:
        pass
    start = time.perf_counter()
    images = 0
    for _ in range(epochs):
        for batch in loader:
            images += batch.shape[0]
    return images / (time.perf_counter() - start)


def loader_rate(files, workers, epochs):
    loader = torch.utils.data.DataLoader(PilFolder(files), batch_size=4, shuffle=True, num_workers=workers,
                                         drop_last=True, persistent_workers=workers > 0)
    return timed_rate(loader, epochs)


def write_test_folder(folder, count, size):
    """`count` JPEGs of size x size (test patterns with noise, seeded) and a metadata.csv captioning
    each "a test pattern", in `folder`; returns the image paths in order."""
    rng = np.random.RandomState(0)
    files = []
    for i in range(count):
        y, x = np.mgrid[0:size, 0:size]
        pixels = np.stack([(x * 3 + i) % 256, (y * 5) % 256, (x * y) % 256], -1).astype(np.float64)
        pixels = np.clip(pixels + rng.randint(-20, 21, pixels.shape), 0, 255).astype(np.uint8)
        path = os.path.join(folder, f"{i:05d}.jpg")
        Image.fromarray(pixels).save(path, quality=90)
        files.append(path)
    with open(os.path.join(folder, "metadata.csv"), "w") as metadata:
        metadata.write("file_name,text\n")
        for path in files:
            metadata.write(f"{os.path.basename(path)},a test pattern\n")
    return files


def run_bench(command):
    """Runs a C++ benchmark and returns its "name value" output lines as a dict."""
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return dict(line.split() for line in output.strip().splitlines())


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bench", required=True, help="path of the data_bench executable")
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--loader-bench", help="path of the data_loader_bench executable")
    parser.add_argument("--workers", type=int, default=-1, help="also compare the loaders with this many workers")
    args = parser.parse_args()
    if args.workers >= 0 and not args.loader_bench:
        parser.error("--workers needs --loader-bench")
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        files = write_test_folder(folder, args.count, args.size)
        best = 1e30
        pick = random.Random(0)
        for _ in range(args.passes):
            start = time.perf_counter()
            for path in files:
                pil_pipeline(path, 512, pick)
            best = min(best, time.perf_counter() - start)
        pil_rate = len(files) / best
        values = run_bench([args.bench, folder, str(args.passes)])
        ours = float(values["images_per_s"])
        print(f"decode + transforms of {args.count} {args.size}x{args.size} JPEGs -> 512x512, one thread")
        print(f"  PIL + torch : {pil_rate:8.1f} images/s")
        print(f"  sdtrain     : {ours:8.1f} images/s (decode {float(values['decode_fraction']) * 100:.0f}% of it)")
        print(f"  ratio       : {ours / pil_rate:8.2f}x")
        if args.workers >= 0:
            epochs = args.passes
            torch_rate = loader_rate(files, args.workers, epochs)
            loader_ours = float(run_bench([args.loader_bench, folder, str(args.workers), str(epochs)])["images_per_s"])
            print(f"data loaders, {args.workers} workers each, batch 4, shuffled, {epochs} epochs after a warm-up")
            print(f"  torch DataLoader + PIL : {torch_rate:8.1f} images/s")
            print(f"  sdtrain DataLoader     : {loader_ours:8.1f} images/s")
            print(f"  ratio                  : {loader_ours / torch_rate:8.2f}x")


if __name__ == "__main__":
    main()
