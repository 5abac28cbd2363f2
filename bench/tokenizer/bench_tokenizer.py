#!/usr/bin/env python3
"""ClipTokenizer (C++) throughput vs transformers' CLIPTokenizer (tokenizers, Rust), same corpus,
same machine, same run. The corpus is the test corpus of tests/tokenizer (seeded), repeated.

    python bench/tokenizer/bench_tokenizer.py --bin build/bin/clip_tokenizer_bench
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "tokenizer"))
import make_tokenizer_reference as ref  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", required=True, help="path to clip_tokenizer_bench")
    ap.add_argument("--repeat", type=int, default=4, help="corpus copies (more work per pass)")
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    os.environ.setdefault("RAYON_NUM_THREADS", "1")  # compare single-threaded work
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    texts, _ = ref.make_corpus(2400, 20240229)
    texts = texts * args.repeat
    with tempfile.TemporaryDirectory() as tmp:
        ref.write_vocab_files(os.path.join(HERE, "..", "..", "plugins", "models", "stable_diffusion",
                                           "tokenizer", "data", "bpe_simple_vocab_16e6.txt.gz"), tmp)
        from transformers import CLIPTokenizer
        fast = CLIPTokenizer.from_pretrained(tmp)
        corpus = os.path.join(tmp, "texts.json")
        with open(corpus, "w", encoding="utf-8") as f:
            json.dump(texts, f)

        def run_fast():
            t0 = time.perf_counter()
            fast(texts, padding="max_length", truncation=True, max_length=77, return_tensors="pt")
            return time.perf_counter() - t0

        fast_first = run_fast()
        fast_best = min(run_fast() for _ in range(args.reps))
        out = subprocess.run([args.bin, corpus, str(args.reps)], check=True, capture_output=True, text=True,
                             env=dict(os.environ, OMP_NUM_THREADS="1"))
        cpp = json.loads(out.stdout.strip().splitlines()[-1])
    n = len(texts)
    print(f"corpus: {n} texts; threads: 1 (RAYON_NUM_THREADS={os.environ['RAYON_NUM_THREADS']})")
    print(f"HF CLIPTokenizer (tokenizers {__import__('tokenizers').__version__}): first {fast_first:.3f} s, "
          f"best {fast_best:.3f} s = {n / fast_best:,.0f} texts/s")
    print(f"sdtrain ClipTokenizer:  first {cpp['first_seconds']:.3f} s, best {cpp['seconds']:.3f} s = "
          f"{cpp['texts_per_s']:,.0f} texts/s (vocabulary load {cpp['load_seconds']:.3f} s)")
    print(f"ratio (C++ throughput / HF fast throughput): {fast_best / cpp['seconds']:.2f}x "
          f"(first pass {fast_first / cpp['first_seconds']:.2f}x)")
    print("note: the C++ tokenizer also runs ftfy's text repair, which the HF fast tokenizer skips")


if __name__ == "__main__":
    main()
