#!/usr/bin/env python3
"""Encode throughput: tpserve's C++ tokenizer against the Python `tokenizers` library, same corpus, same run.

    python3 tests/bench/tokenizer_bench.py --unit-tests build/tests/tpserve_unit_tests [--shared ../shared]

It writes a full Qwen2.5-style tokenizer.json from ../shared/tokenizers/qwen-v1/qwen.tiktoken (as
make_tokenizer_fixtures.py does, untrimmed), a mixed corpus (Python standard-library sources: English and
code; the fixture corpus: Chinese, Japanese, Korean, Russian, emoji, digits, whitespace runs), then times
  - tokenizers: Tokenizer.encode per document, one thread (the like-for-like figure), and encode_batch
    (Rust threads over all cores),
  - tpserve: Tokenizer::encode per document, one thread (the disabled gtest TokenizerBench.*),
and prints MB/s and the ratios. Best of three rounds each.
"""
import argparse
import os
import random
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "fixtures" / "tokenizers"))
import make_tokenizer_fixtures as fixtures  # noqa: E402


def make_corpus(target_bytes=4 << 20, doc_bytes=4096):
    rng = random.Random(0)
    stdlib = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))
    pieces = [p.read_text(encoding="utf-8", errors="ignore") for p in stdlib[:200]]
    multilingual = [t for t in fixtures.CORPUS if "<|" not in t and "<s>" not in t and "<tool" not in t]
    text_parts, size = [], 0
    while size < target_bytes:
        if rng.random() < 0.6:
            src = rng.choice(pieces)
            start = rng.randrange(max(1, len(src) - doc_bytes))
            part = src[start:start + doc_bytes]
        else:
            part = "\n".join(rng.choice(multilingual) for _ in range(24))
        text_parts.append(part)
        size += len(part.encode("utf-8"))
    return text_parts


def time_best(fn, rounds=3):
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--unit-tests", required=True, help="path to the tpserve_unit_tests binary")
    ap.add_argument("--shared", default=str(HERE.parents[2] / "shared"))
    args = ap.parse_args()
    from tokenizers import Tokenizer
    work = Path(tempfile.mkdtemp(prefix="tok_bench_"))
    model_dir = work / "qwen2"
    model_dir.mkdir()
    tok = fixtures.convert_tiktoken(Path(args.shared) / "tokenizers/qwen-v1/qwen.tiktoken", fixtures.QWEN_PATTERN, [],
                                    ignore_merges=False)
    from tokenizers import AddedToken, normalizers
    tok.normalizer = normalizers.NFC()
    for content, special in fixtures.QWEN25_ADDED:
        tok.add_special_tokens([AddedToken(content, normalized=False, special=True)]) if special else \
            tok.add_tokens([AddedToken(content, normalized=False, special=False)])
    tok.save(str(model_dir / "tokenizer.json"))
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    docs = make_corpus()
    corpus = work / "corpus.txt"
    corpus.write_text("\n\x1e\n".join(docs), encoding="utf-8")
    total = sum(len(d.encode("utf-8")) for d in docs)
    for d in docs:  # warm-up, and equality spot check below
        tok.encode(d, add_special_tokens=False)
    py_single = time_best(lambda: [tok.encode(d, add_special_tokens=False) for d in docs])
    py_batch = time_best(lambda: tok.encode_batch(docs, add_special_tokens=False))
    env = dict(os.environ, TPSERVE_BENCH_TOKENIZER=str(model_dir), TPSERVE_BENCH_CORPUS=str(corpus),
               TPSERVE_BENCH_IDS_OUT=str(work / "cpp_ids.txt"))
    out = subprocess.run([args.unit_tests, "--gtest_also_run_disabled_tests", "--gtest_filter=TokenizerBench.*"],
                         env=env, capture_output=True, text=True, check=True).stdout
    line = next(l for l in out.splitlines() if l.startswith("BENCH"))
    fields = dict(kv.split("=") for kv in line.split()[1:])
    cpp_mbs = float(fields["mb_per_s"])
    cpp_ids = (work / "cpp_ids.txt").read_text().splitlines()
    mismatched = sum(1 for d, line in zip(docs, cpp_ids)
                     if ",".join(map(str, tok.encode(d, add_special_tokens=False).ids)) != line)
    print(f"ids identical to tokenizers on {len(docs) - mismatched} of {len(docs)} documents")
    py_mbs, batch_mbs = total / py_single / 1e6, total / py_batch / 1e6
    print(f"corpus: {len(docs)} documents, {total / 1e6:.2f} MB (stdlib Python sources + multilingual fixture text)")
    print(f"tpserve C++ encode, 1 thread:          {cpp_mbs:8.2f} MB/s  (tokenizer.json load {fields['cpp_load_s']} s)")
    print(f"tokenizers {__import__('tokenizers').__version__} encode, 1 thread:  {py_mbs:8.2f} MB/s")
    print(f"tokenizers encode_batch, all cores:   {batch_mbs:8.2f} MB/s")
    print(f"ratio C++ / tokenizers (1 thread):     {cpp_mbs / py_mbs:8.2f}x")
    print(f"ratio C++ / tokenizers encode_batch:   {cpp_mbs / batch_mbs:8.2f}x")


if __name__ == "__main__":
    main()
