"""Reference data for tests/data: PIL-decoded images and torchvision-equivalent transforms.

torchvision is not installed here, so its Resize / CenterCrop semantics on PIL images are
replicated with PIL directly (torchvision calls PIL's Image.resize for PIL inputs):
  Resize(size): short side -> size, long side -> int(size * long / short)
  CenterCrop(size): top = int(round((h - size) / 2.0)), left likewise (Python's round)
Writes <out>/manifest.json plus the files it names; raw pixel files are uint8 HWC RGB.
"""
import argparse
import io
import json
import os
import struct
import zlib

import numpy as np
from PIL import Image

INTERPOLATIONS = {"NEAREST": Image.NEAREST, "BILINEAR": Image.BILINEAR,
                  "BICUBIC": Image.BICUBIC, "LANCZOS": Image.LANCZOS}


def test_image(width, height, seed):
    """Smooth gradients, hard edges and noise, so every filter tap matters."""
    rng = np.random.RandomState(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    base = np.stack([
        127 + 120 * np.sin(x / (3 + seed) + y / 7.0),
        255 * (x / max(width - 1, 1)),
        255 * ((x // 9 + y // 5) % 2),
    ], axis=-1)
    noise = rng.randint(-60, 61, size=(height, width, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def torchvision_resize_size(w, h, size):
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    return (new_short, new_long) if w <= h else (new_long, new_short)


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def raw_png(width, height, bit_depth, color_type, rows_bytes):
    """A PNG written by hand (for layouts PIL cannot save: 16-bit RGB(A), 2-bit grey)."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    raw = b"".join(b"\x00" + r for r in rows_bytes)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(raw)) +
            png_chunk(b"IEND", b""))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    out = args.out
    os.makedirs(out, exist_ok=True)
    manifest = {"transforms": [], "decode": [], "corrupt": []}

    def write(name, data):
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
        return name

    # ---- transforms -----------------------------------------------------------------------
    cases = [  # (width, height, resolution)
        (256, 256, 512),   # the recipe: 256x256 portraits upscaled to 512
        (300, 200, 512),   # landscape upscale
        (200, 333, 512),   # portrait upscale, odd long side
        (700, 500, 256),   # downscale, antialiased
        (1024, 768, 200),  # strong downscale
        (97, 64, 64),      # no resize at all; centre offset 16.5 -> 16 (round half to even)
        (99, 64, 64),      # 17.5 -> 18
        (195, 128, 64),    # downscale to 97x64, offset 16.5
        (64, 300, 96),     # tall
    ]
    for index, (w, h, res) in enumerate(cases):
        pixels = test_image(w, h, index)
        src = Image.fromarray(pixels, "RGB")
        src_name = write(f"transform_src_{index}.png", _png_bytes(src))
        rw, rh = torchvision_resize_size(w, h, res)
        top = int(round((rh - res) / 2.0))
        left = int(round((rw - res) / 2.0))
        for interp_name, interp in INTERPOLATIONS.items():
            resized = src.resize((rw, rh), interp) if (rw, rh) != (w, h) else src.copy()
            resized_name = write(f"transform_{index}_{interp_name}.rgb", np.asarray(resized).tobytes())
            manifest["transforms"].append({
                "source": src_name, "width": w, "height": h, "resolution": res,
                "interpolation": interp_name, "resized": resized_name,
                "resized_width": rw, "resized_height": rh,
                "center_top": top, "center_left": left})

    # ---- decoding -------------------------------------------------------------------------
    def add_decode(name, data, tolerance, note):
        write(name, data)
        expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        manifest["decode"].append({
            "file": name, "expected": write(name + ".rgb", expected.tobytes()),
            "width": expected.shape[1], "height": expected.shape[0],
            "max_abs_tolerance": tolerance, "note": note})

    rgb = Image.fromarray(test_image(131, 77, 42), "RGB")
    rgba_pixels = np.concatenate([test_image(64, 48, 3), np.random.RandomState(5).randint(0, 256, (48, 64, 1),
                                                                                        dtype=np.uint8)], axis=-1)
    rgba_pixels[0, :8, 3] = 0
    rgba = Image.fromarray(rgba_pixels, "RGBA")

    def saved(image, fmt, **kw):
        b = io.BytesIO()
        image.save(b, fmt, **kw)
        return b.getvalue()

    # JPEG: libjpeg-turbo's integer IDCT and fancy upsampling are the same in Debian's 2.1 and
    # PIL's bundled build, so these are expected to match exactly; a small tolerance absorbs SIMD
    # differences between builds.
    add_decode("baseline.jpg", saved(rgb, "JPEG", quality=90), 2, "baseline 4:2:0")
    add_decode("subsampling444.jpg", saved(rgb, "JPEG", quality=95, subsampling=0), 2, "4:4:4")
    add_decode("progressive.jpg", saved(rgb, "JPEG", quality=85, progressive=True), 2, "progressive")
    add_decode("gray.jpg", saved(rgb.convert("L"), "JPEG", quality=90), 2, "grayscale")
    add_decode("cmyk.jpg", saved(rgb.convert("CMYK"), "JPEG", quality=90), 2, "CMYK (Adobe, inverted)")
    # PNG: exact.
    add_decode("rgb.png", _png_bytes(rgb), 0, "RGB 8-bit")
    add_decode("rgba.png", _png_bytes(rgba), 0, "RGBA: alpha dropped")
    add_decode("gray.png", _png_bytes(rgb.convert("L")), 0, "grey 8-bit")
    add_decode("la.png", _png_bytes(rgba.convert("LA")), 0, "grey + alpha")
    add_decode("bilevel.png", _png_bytes(rgb.convert("1")), 0, "1-bit")
    palette = rgb.convert("P", palette=Image.ADAPTIVE, colors=50)
    add_decode("palette.png", saved(palette, "PNG", transparency=3), 0, "palette with tRNS")
    add_decode("palette4.png", saved(rgb.convert("P", palette=Image.ADAPTIVE, colors=16), "PNG", bits=4), 0,
               "4-bit palette")
    gray16 = (np.arange(40 * 30, dtype=np.uint32).reshape(30, 40) * 53 % 65536).astype(np.uint16)
    gray16[0, :4] = [0, 255, 256, 65535]
    add_decode("gray16.png", _png_bytes(Image.fromarray(gray16)), 0, "16-bit grey (PIL clips to 255)")
    rgb16 = (np.random.RandomState(7).randint(0, 65536, (20, 30, 3))).astype(">u2")
    add_decode("rgb16.png", raw_png(30, 20, 16, 2, [r.tobytes() for r in rgb16]), 0, "16-bit RGB")
    rgba16 = (np.random.RandomState(8).randint(0, 65536, (20, 30, 4))).astype(">u2")
    add_decode("rgba16.png", raw_png(30, 20, 16, 6, [r.tobytes() for r in rgba16]), 0, "16-bit RGBA")
    gray2 = np.random.RandomState(9).randint(0, 4, (10, 16)).astype(np.uint8)
    rows2 = [bytes((r[i] << 6) | (r[i + 1] << 4) | (r[i + 2] << 2) | r[i + 3] for i in range(0, 16, 4))
             for r in gray2]
    add_decode("gray2.png", raw_png(16, 10, 2, 0, rows2), 0, "2-bit grey")
    # WebP.
    add_decode("lossless.webp", saved(rgb, "WEBP", lossless=True), 0, "lossless")
    add_decode("lossless_alpha.webp", saved(rgba, "WEBP", lossless=True, exact=True), 0, "lossless with alpha")
    add_decode("lossy.webp", saved(rgb, "WEBP", quality=80), 3, "lossy")
    add_decode("lossy_alpha.webp", saved(rgba, "WEBP", quality=80), 3, "lossy with alpha")

    # ---- corrupt and hostile files ---------------------------------------------------------
    def add_corrupt(name, data, message):
        write(name, data)
        manifest["corrupt"].append({"file": name, "message": message})

    jpeg = saved(rgb, "JPEG", quality=90)
    add_corrupt("truncated.jpg", jpeg[: len(jpeg) // 2], "truncated")
    add_corrupt("truncated_progressive.jpg", saved(rgb, "JPEG", progressive=True)[:600], "truncated")
    png = _png_bytes(rgb)
    add_corrupt("truncated.png", png[: len(png) // 2], "truncated")
    add_corrupt("empty.png", b"", "empty file")
    add_corrupt("random.bin", np.random.RandomState(11).randint(0, 256, 4096, dtype=np.uint8).tobytes(),
                "not a JPEG, PNG or WebP")
    add_corrupt("header_only.jpg", jpeg[:2] + b"\xff\xe0garbage" * 3, "cannot decode JPEG")
    add_corrupt("animation.gif", saved(rgb, "GIF"), "unsupported image format GIF")
    ihdr = struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)
    bomb = (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) +
            png_chunk(b"IDAT", zlib.compress(b"\x00" * 1024)) + png_chunk(b"IEND", b""))
    add_corrupt("bomb.png", bomb, "exceeds the limit of")
    # A JPEG whose SOF0 claims 60000x60000.
    sof = jpeg.index(b"\xff\xc0")
    big = bytearray(jpeg)
    big[sof + 5:sof + 9] = struct.pack(">HH", 60000, 60000)
    add_corrupt("bomb.jpg", bytes(big), "exceeds the limit of")
    webp = saved(rgb, "WEBP", quality=80)
    add_corrupt("truncated.webp", webp[: len(webp) // 2], "truncated")

    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)


def _png_bytes(image):
    b = io.BytesIO()
    image.save(b, "PNG")
    return b.getvalue()


if __name__ == "__main__":
    main()
