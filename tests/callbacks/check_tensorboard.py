#!/usr/bin/env python3
"""Reads a run's TensorBoard event files with TensorBoard's own reader (EventAccumulator, which
also verifies the TFRecord CRCs) and checks them against the run's CSV log and sample grids.

    tests/callbacks/check_tensorboard.py --logdir RUN/tensorboard --csv RUN/metrics.csv --grids RUN/images/validation
        [--images N] [--validation-csv RUN/validation_metrics.csv] [--train-grids RUN/images/train]

Checks: the four scalar tags exist; for every CSV row the TensorBoard scalars at that step equal
the CSV values (as float32); exactly N images under validation/samples (default: one per grid
PNG), each decoding to the same pixels as the grid PNG of its step; each grid's tEXt chunks
prompt_0.. (and "parameters") match its sidecar .txt; with --validation-csv, every row
(step,epoch,metric,value) is the TensorBoard scalar `metric` at that step, and every validation
scalar in TensorBoard has its row. Exits 1 naming the first mismatch."""
import argparse
import csv
import io
import pathlib
import re
import sys

import numpy as np
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

TAGS = {"train/loss": "loss", "train/learning_rate": "learning_rate", "train/images_per_s": "images_per_s",
        "train/grad_norm": "grad_norm"}


def fail(message):
    print("check_tensorboard: " + message)
    sys.exit(1)


def check_validation_metrics(accumulator, tags, path):
    rows = list(csv.DictReader(open(path)))
    if not rows:
        fail(f"{path} has no rows")
    logged = {(row["metric"], int(row["step"])): float(row["value"]) for row in rows}
    in_tensorboard = {}
    for tag in tags["scalars"]:
        if tag.startswith("val/"):
            in_tensorboard.update({(tag, event.step): event.value for event in accumulator.Scalars(tag)})
    if sorted(in_tensorboard) != sorted(logged):
        fail(f"validation scalars {sorted(in_tensorboard)} in TensorBoard, {sorted(logged)} in {path}")
    for key, want in logged.items():
        if not np.isclose(np.float32(in_tensorboard[key]), np.float32(want), rtol=1e-6, atol=0):
            fail(f"{key[0]} at step {key[1]}: {in_tensorboard[key]} in TensorBoard, {want} in {path}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--logdir", required=True)
    parser.add_argument("--csv", required=True)
    parser.add_argument("--grids", required=True)
    parser.add_argument("--images", type=int, default=-1)
    parser.add_argument("--validation-csv")
    parser.add_argument("--train-grids")
    args = parser.parse_args()

    files = sorted(pathlib.Path(args.logdir).glob("events.out.tfevents.*"))
    if not files:
        fail(f"no event files in {args.logdir}")
    accumulator = EventAccumulator(args.logdir, size_guidance={"scalars": 0, "images": 0})
    accumulator.Reload()
    tags = accumulator.Tags()
    for tag in TAGS:
        if tag not in tags["scalars"]:
            fail(f"scalar tag {tag} missing; have {tags['scalars']}")

    rows = list(csv.DictReader(open(args.csv)))
    if not rows:
        fail(f"{args.csv} has no rows")
    for tag, column in TAGS.items():
        by_step = {event.step: event.value for event in accumulator.Scalars(tag)}
        csv_steps = [int(row["step"]) for row in rows]
        if sorted(by_step) != csv_steps:
            fail(f"{tag}: steps {sorted(by_step)} differ from the CSV's {csv_steps}")
        for row in rows:
            want = np.float32(float(row[column]))
            got = np.float32(by_step[int(row["step"])])
            if not np.isclose(got, want, rtol=1e-6, atol=0):
                fail(f"{tag} at step {row['step']}: {got} in TensorBoard, {want} in the CSV")

    if args.validation_csv:
        check_validation_metrics(accumulator, tags, args.validation_csv)

    grids = {}
    for path in pathlib.Path(args.grids).glob("samples_gs-*_e-*_b-*.png"):
        step = int(re.match(r"samples_gs-(\d+)_", path.name).group(1))
        png = Image.open(path)
        png.load()
        sidecar = path.with_suffix(".txt").read_text(encoding="utf-8").splitlines()
        stored = [png.text.get(f"prompt_{i}") for i in range(len(sidecar))]
        if stored != sidecar or f"prompt_{len(sidecar)}" in png.text or "parameters" not in png.text:
            fail(f"{path.name}: tEXt prompts {png.text} do not match {path.with_suffix('.txt').name} {sidecar}")
        grids[step] = np.asarray(png.convert("RGB"))
    expected = args.images if args.images >= 0 else len(grids)
    images = accumulator.Images("validation/samples") if "validation/samples" in tags["images"] else []
    if len(images) != expected:
        fail(f"{len(images)} images under validation/samples, expected {expected}")
    for event in images:
        decoded = np.asarray(Image.open(io.BytesIO(event.encoded_image_string)).convert("RGB"))
        if (event.height, event.width) != decoded.shape[:2]:
            fail(f"image at step {event.step}: header says {event.width}x{event.height}, PNG is "
                 f"{decoded.shape[1]}x{decoded.shape[0]}")
        if event.step not in grids:
            fail(f"image at step {event.step} has no grid PNG in {args.grids} (have steps {sorted(grids)})")
        if not np.array_equal(decoded, grids[event.step]):
            fail(f"image at step {event.step} differs from its grid PNG")
    if args.train_grids:
        check_train_grids(accumulator, tags, pathlib.Path(args.train_grids))
    print(f"check_tensorboard: ok ({len(files)} file(s), {len(rows)} logged steps, {len(images)} image(s))")


def check_train_grids(accumulator, tags, folder):
    """Every train-split grid <kind>_gs-<step>_... is the image under train/<kind> at <step>, and each
    train/<kind> image has its grid."""
    on_disk = {}
    for path in folder.glob("*_gs-*_e-*_b-*.png"):
        kind, step = re.match(r"(.+)_gs-(\d+)_", path.name).groups()
        on_disk[(f"train/{kind}", int(step))] = np.asarray(Image.open(path).convert("RGB"))
    if not on_disk:
        fail(f"no train-split grids in {folder}")
    logged = {}
    for tag in tags["images"]:
        if tag.startswith("train/"):
            for event in accumulator.Images(tag):
                logged[(tag, event.step)] = np.asarray(Image.open(io.BytesIO(event.encoded_image_string)).convert("RGB"))
    if sorted(logged) != sorted(on_disk):
        fail(f"train-split images in TensorBoard {sorted(logged)} differ from the grids {sorted(on_disk)}")
    for key, grid in on_disk.items():
        if not np.array_equal(logged[key], grid):
            fail(f"{key[0]} at step {key[1]} differs from its grid PNG")


if __name__ == "__main__":
    main()
