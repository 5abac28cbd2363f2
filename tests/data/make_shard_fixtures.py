"""Reference data for the sharded datasets (webdataset, parquet) and `sddata convert`.

Writes under <out>:
  images/          the source images (JPEG, PNG, WebP; sizes of several aspect ratios)
  wds/             three tar shards: one pax (with a member name longer than 100 bytes, a
                   directory entry, a "__meta__" member and an extra ".cls" part), one GNU and one
                   ustar, all written by Python's tarfile
  wds_expected.jsonl      what webdataset.WebDataset yields for them, sample by sample
  parquet/         two Parquet files written by datasets' Dataset.to_parquet (row groups of 5)
  parquet_expected.jsonl  what datasets.load_dataset("parquet", ...) yields for them
  bad/             a shard with .json captions (one without the field), a truncated shard, a shard
                   with a member climbing out ("../"), a gzip-compressed shard named .tar, a Parquet
                   file whose image column is an int64 ("img"), one whose image bytes are not an
                   image, one with a null image
Expected lines: {"key", "caption", "sha256", "bytes"} with key "FILE_NAME:KEY" (tar) or
"FILE_NAME:ROW" (Parquet), as the plugins name their samples.
"""
import argparse
import gzip
import hashlib
import io
import json
import os
import tarfile

import numpy as np
from PIL import Image

SIZES = [(64, 48), (48, 64), (80, 40), (40, 72), (56, 56), (96, 32), (32, 32), (72, 54),
         (50, 70), (60, 60), (88, 44), (44, 66), (64, 64), (70, 35)]
FORMATS = ["JPEG", "PNG", "WEBP"]
EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}


def image_bytes(index, width, height, fmt):
    rng = np.random.RandomState(1000 + index)
    pixels = rng.randint(0, 256, size=(height, width, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format=fmt, **({"quality": 90} if fmt != "PNG" else {}))
    return out.getvalue()


def add_member(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 1700000000
    tar.addfile(info, io.BytesIO(data))


def record(key, caption, data):
    return {"key": key, "caption": caption, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    out = parser.parse_args().out
    for sub in ["images", "wds", "parquet", "bad"]:
        os.makedirs(os.path.join(out, sub), exist_ok=True)

    samples = []  # (name, bytes, caption)
    for i, (w, h) in enumerate(SIZES):
        fmt = FORMATS[i % 3]
        name = f"{i:04d}.{EXTENSIONS[fmt]}"
        data = image_bytes(i, w, h, fmt)
        with open(os.path.join(out, "images", name), "wb") as f:
            f.write(data)
        samples.append((name, data, f"caption {i}: a {w}x{h} {fmt.lower()} image, \u00e9t\u00e9"))
    with open(os.path.join(out, "images", "metadata.jsonl"), "w") as f:
        for name, _, caption in samples:
            f.write(json.dumps({"file_name": name, "text": caption}) + "\n")

    # --- WebDataset shards -----------------------------------------------------------------------
    formats = [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT]
    per_shard = [samples[0:5], samples[5:10], samples[10:14]]
    shard_paths = []
    for s, chunk in enumerate(per_shard):
        path = os.path.join(out, "wds", f"train-{s:05d}.tar")
        shard_paths.append(path)
        with tarfile.open(path, "w", format=formats[s]) as tar:
            if s == 0:
                directory = tarfile.TarInfo("sub")
                directory.type = tarfile.DIRTYPE
                tar.addfile(directory)
                add_member(tar, "__meta__", b"{}")
            for j, (name, data, caption) in enumerate(chunk):
                stem, ext = name.split(".")
                if s == 0 and j == 1:
                    stem = "sub/" + "long_" * 24 + stem  # > 100 bytes: a pax path record
                if s == 1 and j == 2:
                    stem = "sub/" + "gnu_" * 30 + stem  # > 100 bytes: a GNU long name
                add_member(tar, f"{stem}.{ext}", data)
                add_member(tar, f"{stem}.TXT" if (s == 2 and j == 0) else f"{stem}.txt", caption.encode())
                if s == 0:
                    add_member(tar, f"{stem}.cls", str(j).encode())

    # Captions in .json parts (img2dataset's layout): one with the field, one without.
    with tarfile.open(os.path.join(out, "bad", "json_captions.tar"), "w", format=tarfile.PAX_FORMAT) as tar:
        add_member(tar, "a.jpg", samples[0][1])
        add_member(tar, "a.json", json.dumps({"caption": "from json \u00e9", "width": 64}).encode())
        add_member(tar, "b.jpg", samples[3][1])
        add_member(tar, "b.json", b'{"url": "no caption here"}')

    import webdataset as wds
    with open(os.path.join(out, "wds_expected.jsonl"), "w") as f:
        for sample in wds.WebDataset(shard_paths, shardshuffle=False, empty_check=False):
            shard = os.path.basename(sample["__url__"])
            image = next(sample[e] for e in ("jpg", "png", "webp") if e in sample)
            line = record(f"{shard}:{sample['__key__']}", sample["txt"].decode(), image)
            f.write(json.dumps(line) + "\n")

    # --- Parquet, as datasets writes it --------------------------------------------------------------
    import datasets
    features = datasets.Features({"image": datasets.Image(), "text": datasets.Value("string")})
    table = datasets.Dataset.from_dict(
        {"image": [{"bytes": d, "path": n} for n, d, _ in samples], "text": [c for _, _, c in samples]},
        features=features)
    files = []
    for k in range(2):
        path = os.path.join(out, "parquet", f"train-{k:05d}-of-00002.parquet")
        table.shard(num_shards=2, index=k, contiguous=True).to_parquet(path, batch_size=5)
        files.append(path)
    loaded = datasets.load_dataset("parquet", data_files=files, split="train",
                                   cache_dir=os.path.join(out, "hf_cache"))
    loaded = loaded.cast_column("image", datasets.Image(decode=False))
    import pyarrow.parquet as pq
    rows_per_file = [pq.ParquetFile(p).metadata.num_rows for p in files]
    with open(os.path.join(out, "parquet_expected.jsonl"), "w") as f:
        index = 0
        for path, rows in zip(files, rows_per_file):
            for row in range(rows):
                item = loaded[index]
                index += 1
                line = record(f"{os.path.basename(path)}:{row}", item["text"], item["image"]["bytes"])
                f.write(json.dumps(line) + "\n")
    assert index == len(loaded)

    # --- Bad input ---------------------------------------------------------------------------------
    bad = os.path.join(out, "bad")
    with open(shard_paths[0], "rb") as f:
        whole = f.read()
    # Cut inside the third sample's image: two whole samples stay readable.
    with tarfile.open(shard_paths[0]) as tar:
        members = [m for m in tar.getmembers() if m.isreg() and not m.name.startswith("__")]
        third_image = members[6]
    with open(os.path.join(bad, "truncated.tar"), "wb") as f:
        f.write(whole[:third_image.offset_data + third_image.size // 2])
    with tarfile.open(os.path.join(bad, "climb.tar"), "w", format=tarfile.PAX_FORMAT) as tar:
        add_member(tar, "good.jpg", samples[0][1])
        add_member(tar, "good.txt", b"a good sample")
        add_member(tar, "../evil.jpg", samples[3][1])
        add_member(tar, "../evil.txt", b"climbs out")
    with open(os.path.join(bad, "compressed.tar"), "wb") as f:
        f.write(gzip.compress(open(shard_paths[1], "rb").read(), mtime=0))
    import pyarrow as pa
    pq.write_table(pa.table({"img": pa.array([1, 2], pa.int64()), "text": ["a", "b"]}),
                   os.path.join(bad, "wrong_schema.parquet"))
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    pq.write_table(pa.table({"image": pa.array([{"bytes": b"hello, not an image", "path": "x.jpg"},
                                                {"bytes": samples[1][1], "path": samples[1][0]}], image_type),
                             "text": ["not an image", "fine"]}),
                   os.path.join(bad, "not_image.parquet"))
    pq.write_table(pa.table({"image": pa.array([None, {"bytes": samples[2][1], "path": "y"}], image_type),
                             "text": ["null image", "fine"]}),
                   os.path.join(bad, "null_image.parquet"))


if __name__ == "__main__":
    main()
