"""Reference files for the weight-format tests, written with the real `safetensors` and `torch`.

Generate:  make_io_fixtures.py --out DIR
Check a file written by sdtrain (exit status 0 when it matches, 1 with a message otherwise):
  make_io_fixtures.py --compare-safetensors WRITTEN REFERENCE.safetensors
  make_io_fixtures.py --compare-ckpt WRITTEN REFERENCE.safetensors [--extras-json '{"global_step": 7}']
  make_io_fixtures.py --compare-ckpt-values WRITTEN ALL_DTYPES.safetensors
"""
import argparse
import collections
import json
import os
import pathlib
import pickle
import struct
import subprocess
import sys
import types
import zipfile

import torch
from safetensors.torch import load_file, save_file
from safetensors import safe_open


def tensors_equal(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a.view(torch.uint8) if a.dtype.itemsize == 1 and a.dtype != torch.bool else a, b.view(torch.uint8) if b.dtype.itemsize == 1 and b.dtype != torch.bool else b)


def all_dtype_tensors():
    g = torch.Generator().manual_seed(1234)
    t = collections.OrderedDict()
    t["f64"] = torch.randn(3, 2, generator=g, dtype=torch.float64)
    t["f32"] = torch.randn(2, 3, 4, generator=g)
    t["f16"] = torch.randn(5, generator=g).half()
    t["bf16"] = torch.randn(2, 2, generator=g).bfloat16()
    t["i64"] = torch.tensor([-(2**40), 0, 2**40 + 3], dtype=torch.int64)
    t["i32"] = torch.tensor([[-7, 8], [2**30, -(2**31)]], dtype=torch.int32)
    t["i16"] = torch.tensor([-300, 300], dtype=torch.int16)
    t["i8"] = torch.tensor([-128, 0, 127], dtype=torch.int8)
    t["u8"] = torch.tensor([0, 1, 255], dtype=torch.uint8)
    t["bool"] = torch.tensor([True, False, True])
    t["u16"] = torch.tensor([0, 65535], dtype=torch.uint16)
    t["u32"] = torch.tensor([7, 2**32 - 1], dtype=torch.uint32)
    t["u64"] = torch.tensor([9, 2**40], dtype=torch.uint64)
    t["f8_e4m3"] = torch.tensor([0.5, -2.0, 448.0]).to(torch.float8_e4m3fn)
    t["f8_e5m2"] = torch.tensor([0.25, -4.0]).to(torch.float8_e5m2)
    t["empty"] = torch.zeros(0, 3)
    t["scalar"] = torch.tensor(3.5)
    return t


def lightning_state_dict():
    g = torch.Generator().manual_seed(42)
    sd = collections.OrderedDict()
    base = torch.randn(6, 4, generator=g)
    sd["model.diffusion_model.w"] = base
    sd["model.diffusion_model.w_t"] = base.t()                # strided view, same storage
    sd["model_ema.diffusion_modelw"] = base[2:5]              # offset view, same storage
    sd["model.half"] = torch.randn(3, 5, generator=g).half()
    sd["model.bf16"] = torch.randn(4, generator=g).bfloat16()
    sd["model.long"] = torch.arange(5, dtype=torch.int64)
    sd["model.bool"] = torch.tensor([True, False])
    sd["model.u8"] = torch.tensor([1, 2, 250], dtype=torch.uint8)
    sd["model.f64"] = torch.randn(2, generator=g, dtype=torch.float64)
    sd["model.scalar"] = torch.tensor(0.125)
    sd["model.empty"] = torch.zeros(0, 2)
    sd["model.param"] = torch.nn.Parameter(torch.randn(2, 2, generator=g))
    return sd


def fake_lightning_module():
    """Registers pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint so pickle can name it
    (the CompVis SD 1.x checkpoints key their `callbacks` dict by that class)."""
    names = ["pytorch_lightning", "pytorch_lightning.callbacks", "pytorch_lightning.callbacks.model_checkpoint"]
    for name in names:
        sys.modules.setdefault(name, types.ModuleType(name))
    mod = sys.modules[names[-1]]

    class ModelCheckpoint:
        pass

    ModelCheckpoint.__module__ = names[-1]
    ModelCheckpoint.__qualname__ = "ModelCheckpoint"
    mod.ModelCheckpoint = ModelCheckpoint
    return ModelCheckpoint


class MyConfig:
    def __init__(self):
        self.lr = 1e-4


def evil(func, *args):
    class Evil:
        def __reduce__(self):
            return (func, args)
    return Evil()


def forge_entry(src, dst, name, size=None, flags=None, method=None):
    """Copies zip `src` to `dst` with entry `name`'s uncompressed size, flag bits or compression
    method changed alike in its local and central headers (libzip checks they agree)."""
    data = bytearray(open(src, "rb").read())
    with zipfile.ZipFile(src) as z:
        local = z.getinfo(name).header_offset
    u16 = lambda at: int.from_bytes(data[at:at + 2], "little")  # noqa: E731
    end = data.rindex(b"PK\x05\x06")  # end of central directory: where the directory starts
    central = int.from_bytes(data[end + 16:end + 20], "little")
    while data[central + 46:central + 46 + u16(central + 28)] != name.encode():
        central += 46 + u16(central + 28) + u16(central + 30) + u16(central + 32)
    for header, flag_at, method_at, size_at in ((local, 6, 8, 22), (central, 8, 10, 24)):
        if flags is not None:
            data[header + flag_at:header + flag_at + 2] = flags.to_bytes(2, "little")
        if method is not None:
            data[header + method_at:header + method_at + 2] = method.to_bytes(2, "little")
        if size is not None:
            data[header + size_at:header + size_at + 4] = size.to_bytes(4, "little")
    open(dst, "wb").write(data)


def write_fixtures(out):
    out.mkdir(parents=True, exist_ok=True)
    # --- safetensors -------------------------------------------------------------------------
    tensors = all_dtype_tensors()
    save_file(tensors, out / "all_dtypes.safetensors", metadata={"format": "pt", "note": "h\u00e9llo \u2713"})
    save_file({"a": torch.arange(4.0)}, out / "one_meta.safetensors", metadata={"format": "pt"})
    save_file({}, out / "no_tensors.safetensors")
    expected = {}
    for name, t in tensors.items():
        expected[name] = {"shape": list(t.shape), "values": t.double().flatten().tolist() if t.numel() else []}
    (out / "all_dtypes.json").write_text(json.dumps(expected))

    # --- Lightning-layout checkpoint ---------------------------------------------------------
    ModelCheckpoint = fake_lightning_module()
    sd = lightning_state_dict()
    ckpt = {
        "epoch": 3,
        "global_step": 1234,
        "pytorch-lightning_version": "1.4.2",
        "state_dict": sd,
        "callbacks": {ModelCheckpoint: {"best_model_score": torch.tensor(0.25), "best_model_path": "/ckpt/last.ckpt",
                                        "monitor": None}},
        "hyper_parameters": {"args": argparse.Namespace(lr=1e-4, root=pathlib.PosixPath("/data/train")),
                             "name": "sd", "betas": (0.9, 0.999), "tags": {"a", "b"}},
        "optimizer_states": [{"state": {0: {"step": torch.tensor(3.0)}}, "param_groups": [{"lr": 0.1, "params": [0]}]}],
        "lr_schedulers": [],
        "blob": b"\x00\x01\xfe\xff",
        "big": 2**40,
        "neg": -5,
        "ratio": 0.75,
    }
    torch.save(ckpt, out / "lightning.ckpt")
    save_file({k: v.detach().clone().contiguous() for k, v in sd.items()}, out / "lightning_state_dict.safetensors")
    torch.save(sd, out / "plain_state_dict.pt")
    # A class defined in the training script itself: not a known data class, refused.
    torch.save({"state_dict": sd, "hyper_parameters": {"config": MyConfig()}}, out / "custom_class.ckpt")

    # --- hostile checkpoints: each would create its marker file if unpickled by Python --------
    small = {"w": torch.ones(2)}
    cases = {
        "evil_os_system": evil(os.system, "touch " + str(out / "marker_os_system")),
        "evil_eval": evil(eval, "open(%r, 'w').close()" % str(out / "marker_eval")),
        "evil_popen": evil(subprocess.Popen, ["touch", str(out / "marker_popen")]),
    }
    for name, obj in cases.items():
        torch.save({"state_dict": small, "payload": obj}, out / (name + ".ckpt"))
    torch.save({"state_dict": {"w": evil(os.system, "touch " + str(out / "marker_in_sd"))}}, out / "evil_in_state_dict.ckpt")
    # Protocol 4 (STACK_GLOBAL, FRAME, MEMOIZE) in a hand-made archive.
    with zipfile.ZipFile(out / "evil_proto4.ckpt", "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"state_dict": {}, "x": evil(os.system, "touch " + str(out / "marker_proto4"))}, protocol=4))
        z.writestr("archive/byteorder", "little")
    # Protocol 0 (text GLOBAL opcode), the classic exploit.
    with zipfile.ZipFile(out / "evil_proto0.ckpt", "w") as z:
        z.writestr("archive/data.pkl", b"cos\nsystem\n(S'touch " + str(out / "marker_proto0").encode() + b"'\ntR.")
    # lightning.ckpt re-zipped with every entry deflated (torch.load reads those too), and forged
    # from it: entries whose headers claim what their bytes cannot hold.
    with zipfile.ZipFile(out / "lightning.ckpt") as src, \
            zipfile.ZipFile(out / "lightning_deflated.ckpt", "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
    storage = "lightning/data/0"
    forge_entry(out / "lightning_deflated.ckpt", out / "forged_deflate_bomb.ckpt", storage, size=4294901762)
    forge_entry(out / "lightning_deflated.ckpt", out / "forged_encrypted.ckpt", storage, flags=1)
    forge_entry(out / "lightning.ckpt", out / "forged_stored_sizes.ckpt", storage, size=1 << 30)
    forge_entry(out / "lightning_deflated.ckpt", out / "forged_bzip2.ckpt", storage, method=12)
    for name in ["evil_os_system", "evil_eval", "evil_popen", "evil_in_state_dict"]:
        with zipfile.ZipFile(out / (name + ".ckpt")) as z:
            pkl = z.read([n for n in z.namelist() if n.endswith("data.pkl")][0])
        assert any(g in pkl for g in (b"posix\nsystem", b"__builtin__\neval", b"commands\nPopen")), name
    print("wrote fixtures to", out)


def compare_safetensors(written, reference):
    got, want = load_file(written), load_file(reference)
    if list(got) != list(want) and sorted(got) != sorted(want):
        sys.exit(f"names differ: {list(got)} vs {list(want)}")
    for k in want:
        if not tensors_equal(got[k], want[k]):
            sys.exit(f"tensor {k} differs: {got[k]} vs {want[k]}")
    with safe_open(written, "pt") as a, safe_open(reference, "pt") as b:
        if (a.metadata() or {}) != (b.metadata() or {}):
            sys.exit(f"metadata differs: {a.metadata()} vs {b.metadata()}")
    print("safetensors match:", len(want), "tensors")


def compare_ckpt(written, reference, extras):
    obj = torch.load(written, weights_only=True)
    want = load_file(reference)
    sd = obj["state_dict"]
    if list(sd) != list(want):
        sys.exit(f"names differ: {list(sd)} vs {list(want)}")
    for k in want:
        if not tensors_equal(sd[k], want[k]):
            sys.exit(f"tensor {k} differs")
    for k, v in extras.items():
        if obj.get(k) != v:
            sys.exit(f"extra {k}: {obj.get(k)!r} != {v!r}")
    # Views that shared a storage when written must share it after loading.
    ptrs = {}
    for k, t in sd.items():
        ptrs.setdefault(t.untyped_storage().data_ptr(), []).append(k)
    print("ckpt matches:", len(want), "tensors;", "storage groups:", sorted(len(v) for v in ptrs.values()))
    shared = obj.get("expect_shared")
    if shared:
        a, b = shared
        if sd[a].untyped_storage().data_ptr() != sd[b].untyped_storage().data_ptr():
            sys.exit(f"{a} and {b} no longer share a storage")


# Dtypes torch.save writes through a legacy storage type (the ones sdtrain's .ckpt writer accepts).
CKPT_WRITABLE = ["f64", "f32", "f16", "bf16", "i64", "i32", "i16", "i8", "u8", "bool", "empty", "scalar"]


def expected_ckpt_values(all_dtypes):
    """What ckpt_test.cpp's WrittenValuesAreReadIdenticallyByTorchLoadWeightsOnly saves; keep in step."""
    return {
        "ints": [0, 255, 256, 65535, 65536, -1, -129, 2**31 - 1, -(2**31), -(2**63), 2**63 - 1],
        "floats": [0.0, -0.0, -2.5e-300, 0.1, 1e300, float("inf")],
        "text": "gr\u00fc\u00dfe \u2713",
        "empty": "",
        "none": None,
        "flags": (True, False),
        "nested": {"list": [1, [2, (3, None)]], 5: "five", 2.5: "two and a half", True: "yes"},
        "tuple": (),
        "tensors": {name: all_dtypes[name] for name in CKPT_WRITABLE},
        "views": {"f64_row": all_dtypes["f64"][1], "f32_t": all_dtypes["f32"].transpose(0, 2)},
    }


def same(got, want, where):
    """Exact equality that also tells apart bool/int/float, tuple/list, and -0.0/0.0."""
    if torch.is_tensor(want):
        if not torch.is_tensor(got) or not tensors_equal(got, want):
            sys.exit(f"{where}: tensor differs: {got!r} vs {want!r}")
        if got.requires_grad:
            sys.exit(f"{where}: loaded with requires_grad")
        return
    if type(got) is not type(want):
        sys.exit(f"{where}: {type(got).__name__} {got!r}, expected {type(want).__name__} {want!r}")
    if isinstance(want, dict):
        if [(type(k), k) for k in got] != [(type(k), k) for k in want]:
            sys.exit(f"{where}: keys {list(got)!r}, expected {list(want)!r} (in this order)")
        for k in want:
            same(got[k], want[k], f"{where}[{k!r}]")
    elif isinstance(want, (list, tuple)):
        if len(got) != len(want):
            sys.exit(f"{where}: {len(got)} items, expected {len(want)}")
        for i, (g, w) in enumerate(zip(got, want)):
            same(g, w, f"{where}[{i}]")
    elif isinstance(want, float):
        if struct.pack("<d", got) != struct.pack("<d", want):
            sys.exit(f"{where}: {got!r}, expected {want!r}")
    elif got != want:
        sys.exit(f"{where}: {got!r}, expected {want!r}")


def compare_ckpt_values(written, all_dtypes_file):
    obj = torch.load(written, weights_only=True)
    want = expected_ckpt_values(load_file(all_dtypes_file))
    same(obj, want, "root")
    views, tensors = obj["views"], obj["tensors"]
    if views["f64_row"].untyped_storage().data_ptr() != tensors["f64"].untyped_storage().data_ptr():
        sys.exit("views['f64_row'] no longer shares tensors['f64']'s storage")
    if views["f32_t"].stride() != want["views"]["f32_t"].stride():
        sys.exit(f"views['f32_t'] has strides {views['f32_t'].stride()}, expected {want['views']['f32_t'].stride()}")
    print("ckpt values match:", len(want), "top-level entries")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out")
    p.add_argument("--compare-safetensors", nargs=2)
    p.add_argument("--compare-ckpt", nargs=2)
    p.add_argument("--compare-ckpt-values", nargs=2)
    p.add_argument("--extras-json", default="{}")
    a = p.parse_args()
    if a.compare_safetensors:
        compare_safetensors(*a.compare_safetensors)
    elif a.compare_ckpt:
        compare_ckpt(*a.compare_ckpt, json.loads(a.extras_json))
    elif a.compare_ckpt_values:
        compare_ckpt_values(*a.compare_ckpt_values)
    else:
        write_fixtures(pathlib.Path(a.out))


if __name__ == "__main__":
    main()
