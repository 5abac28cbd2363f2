"""Images/s of the sharded loaders: sdtrain's DataLoader over WebDataset shards and Parquet files
against its own image_folder loader and against torch's DataLoader with the webdataset and
datasets libraries, on the same images, with the same worker count, in the same run.

  python bench/data/bench_sharded.py --loader-bench build/bin/data_loader_bench [--count 200]
      [--size 256] [--workers 2] [--epochs 3] [--shard-size 50]

Writes `count` JPEGs of size x size as an image folder (metadata.csv), as WebDataset shards
(webdataset.ShardWriter, `shard-size` samples each) and as Parquet files (datasets'
Dataset.to_parquet), then times, with `workers` workers each, batch 4, shuffled, the recipe's
transforms (bench_data.pil_pipeline: short side to 512 bicubic, random 512 crop, flip, [-1, 1]):
  torch + PIL over the folder          (diffusers' train_text_to_image.py with an imagefolder)
  torch + webdataset over the shards   (WebDataset(...).shuffle(1000), split by worker)
  torch + datasets over the Parquet    (load_dataset("parquet"), which first converts the files
                                        into its Arrow cache: not timed)
  sdtrain over each of the three.
"""
import argparse
import io
import os
import random
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_data import PilFolder, pil_pipeline, run_bench, timed_rate, write_test_folder  # noqa: E402


def pil_from_bytes(data, rng):
    return pil_pipeline(io.BytesIO(data), 512, rng)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--loader-bench", required=True, help="path of the data_loader_bench executable")
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--shard-size", type=int, default=50)
    args = parser.parse_args()
    torch.set_num_threads(1)
    import datasets
    import webdataset as wds

    with tempfile.TemporaryDirectory() as root:
        folder, shards, parquet = (os.path.join(root, name) for name in ("folder", "wds", "parquet"))
        for path in (folder, shards, parquet):
            os.makedirs(path)
        files = write_test_folder(folder, args.count, args.size)
        blobs = [open(path, "rb").read() for path in files]
        with wds.ShardWriter(os.path.join(shards, "train-%05d.tar"), maxcount=args.shard_size, verbose=0) as sink:
            for i, blob in enumerate(blobs):
                sink.write({"__key__": f"{i:05d}", "jpg": blob, "txt": "a test pattern"})
        shard_files = sorted(os.path.join(shards, name) for name in os.listdir(shards))
        features = datasets.Features({"image": datasets.Image(), "text": datasets.Value("string")})
        table = datasets.Dataset.from_dict({"image": [{"bytes": b, "path": None} for b in blobs],
                                            "text": ["a test pattern"] * len(blobs)}, features=features)
        for k in range(0, len(blobs), args.shard_size):
            part = table.select(range(k, min(k + args.shard_size, len(blobs))))
            part.to_parquet(os.path.join(parquet, f"train-{k // args.shard_size:05d}.parquet"))
        loaded = datasets.load_dataset("parquet", data_dir=parquet, split="train", cache_dir=os.path.join(root, "hf"))
        loaded = loaded.cast_column("image", datasets.Image(decode=False))

        def loader(dataset, shuffle):
            return torch.utils.data.DataLoader(dataset, batch_size=4, shuffle=shuffle, num_workers=args.workers,
                                               drop_last=True, persistent_workers=args.workers > 0)

        pipeline = (wds.WebDataset(shard_files, shardshuffle=len(shard_files), nodesplitter=None,
                                   workersplitter=wds.split_by_worker, empty_check=False)
                    .shuffle(1000).map(lambda s: pil_from_bytes(s["jpg"], random.Random(s["__key__"]))))
        torch_rates = {
            "image_folder": timed_rate(loader(PilFolder(files), True), args.epochs),
            "webdataset": timed_rate(loader(pipeline, False), args.epochs),
            "parquet": timed_rate(loader(PilFolder(range(len(loaded)),
                                                   lambda i: io.BytesIO(loaded[i]["image"]["bytes"])), True),
                                  args.epochs),
        }
        ours = {name: float(run_bench([args.loader_bench, path, str(args.workers), str(args.epochs)])["images_per_s"])
                for name, path in (("image_folder", folder), ("webdataset", shards), ("parquet", parquet))}
        print(f"{args.count} JPEGs of {args.size} px -> 512, batch 4, shuffled, {args.workers} workers each, "
              f"{args.epochs} epochs after a warm-up; {len(shard_files)} shards / Parquet files of {args.shard_size}")
        print(f"  {'layout':13s} {'torch (ref)':>12s} {'sdtrain':>10s} {'ratio':>7s} {'vs folder':>10s}")
        for name in ("image_folder", "webdataset", "parquet"):
            print(f"  {name:13s} {torch_rates[name]:10.1f}/s {ours[name]:8.1f}/s {ours[name] / torch_rates[name]:6.2f}x"
                  f" {ours[name] / ours['image_folder']:9.2f}x")


if __name__ == "__main__":
    main()
