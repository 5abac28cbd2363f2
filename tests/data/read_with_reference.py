"""Prints what a reference library reads from a converted dataset, one JSON line per sample:
{"caption", "sha256"} of the image bytes. `webdataset DIR` reads DIR's .tar shards with
webdataset.WebDataset; `parquet DIR` reads DIR's .parquet files with datasets.load_dataset."""
import glob
import hashlib
import json
import os
import sys
import tempfile


def main():
    layout, folder = sys.argv[1], sys.argv[2]
    if layout == "webdataset":
        import webdataset as wds
        shards = sorted(glob.glob(os.path.join(folder, "*.tar")))
        for sample in wds.WebDataset(shards, shardshuffle=False, empty_check=False):
            image = next(sample[e] for e in ("jpg", "png", "webp") if e in sample)
            print(json.dumps({"caption": sample["txt"].decode(), "sha256": hashlib.sha256(image).hexdigest()}))
    else:
        import datasets
        datasets.disable_progress_bars()
        datasets.logging.set_verbosity_error()
        files = sorted(glob.glob(os.path.join(folder, "*.parquet")))
        with tempfile.TemporaryDirectory() as cache:
            loaded = datasets.load_dataset("parquet", data_files=files, split="train", cache_dir=cache)
            assert isinstance(loaded.features["image"], datasets.Image), loaded.features
            loaded = loaded.cast_column("image", datasets.Image(decode=False))
            for row in loaded:
                print(json.dumps({"caption": row["text"], "sha256": hashlib.sha256(row["image"]["bytes"]).hexdigest()}))


if __name__ == "__main__":
    main()
