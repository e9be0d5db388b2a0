#!/usr/bin/env bash
# N-gram (prompt-lookup) speculation on a load whose replies copy the prompt: SmolLM2-135M-Instruct
# (a real model; float32, so decode reads every weight once per step as on a GPU) asked to repeat
# or copy paragraphs and a snippet of code, greedy, one sequence at a time. Runs the same batch job
# with --speculative-ngram 0 and each K, checks that every reply is the same, and prints generated
# tokens/s, the speed-up, drafts accepted and steps. Not a test: only the equality is checked.
#
#   tests/bench/ngram_bench.sh [--tpserve BIN] [--python TORCH_VENV_PYTHON] [--k "2 4 8"]
#                              [--max-seqs N] [--out DIR]
# The float32 model is made once under --out by tests/bench/smollm2_to_hf.py (torch, transformers
# and gguf in --python's environment) from launch/fetch_smollm2.sh's GGUF.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
tpserve=$root/build-cpu/launch/tpserve
python=/work/venvs/torch/bin/python
ks="2 4 8"
max_seqs=1
out=${TMPDIR:-/tmp}/tpserve-ngram-bench
while (($#)); do
  case $1 in
    --tpserve) tpserve=$2; shift 2 ;;
    --python) python=$2; shift 2 ;;
    --k) ks=$2; shift 2 ;;
    --max-seqs) max_seqs=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
mkdir -p "$out"
model=$out/smollm2_f32
if [[ ! -f $model/model.safetensors ]]; then
  "$python" "$root/tests/bench/smollm2_to_hf.py" "$(bash "$root/launch/fetch_smollm2.sh")" "$model" >/dev/null 2>&1
fi

python3 - "$out/prompts.jsonl" <<'PY'
import json, sys
texts = [
    "Paris is the capital and largest city of France. It is located on the Seine river, in the north "
    "of the country. The city has been a major centre of finance, diplomacy, commerce, fashion and "
    "science for centuries.",
    "The mitochondrion is an organelle found in the cells of most eukaryotes. Mitochondria use "
    "aerobic respiration to generate adenosine triphosphate, which is used throughout the cell as a "
    "source of chemical energy.",
    "The Great Wall of China is a series of fortifications that were built across the historical "
    "northern borders of ancient Chinese states. Several walls were built from as early as the 7th "
    "century BC.",
    "def add(a, b):\n    return a + b\n\ndef mul(a, b):\n    return a * b\n\nprint(add(2, 3), mul(4, 5))",
]
asks = ["Repeat the following text exactly, word for word:\n\n", "Copy this text:\n\n"]
with open(sys.argv[1], "w") as f:
    for i, text in enumerate(texts):
        for j, ask in enumerate(asks):
            f.write(json.dumps({"id": f"t{i}a{j}", "messages": [{"role": "user", "content": ask + text}],
                                "max_tokens": 96, "temperature": 0}) + "\n")
PY

echo "tpserve $(git -C "$root" rev-parse --short HEAD); $(nproc) cores: $(lscpu | sed -n 's/^Model name: *//p');" \
     "SmolLM2-135M-Instruct f32, greedy, --max-seqs $max_seqs, OPENBLAS_NUM_THREADS=1"
echo "| --speculative-ngram | generated tok/s | speed-up | drafts accepted | steps | replies |"
echo "| --- | --- | --- | --- | --- | --- |"
base_rate=
for k in 0 $ks; do
  rm -f "$out/k$k.jsonl"
  OPENBLAS_NUM_THREADS=1 "$tpserve" generate --model "$model" --input "$out/prompts.jsonl" \
    --output "$out/k$k.jsonl" --no-progress --max-seqs "$max_seqs" --speculative-ngram "$k" \
    >"$out/k$k.log" 2>&1
  rate=$(sed -n 's/.*(\([0-9.]*\) generated tokens\/s)$/\1/p' "$out/k$k.log")
  read -r drafts accepted steps < <(sed -n 's/.* \([0-9]*\) n-gram drafts, \([0-9]*\) accepted; \([0-9]*\) steps$/\1 \2 \3/p' "$out/k$k.log")
  [[ -n $base_rate ]] || base_rate=$rate
  same="-"
  if ((k > 0)); then
    same=$(python3 - "$out/k0.jsonl" "$out/k$k.jsonl" <<'PY'
import json, sys
load = lambda p: {r["id"]: r["choices"][0]["token_ids"] for r in map(json.loads, open(p))}
a, b = load(sys.argv[1]), load(sys.argv[2])
print("identical" if a == b else "DIFFERENT: " + ", ".join(k for k in a if a[k] != b.get(k)))
PY
)
  fi
  echo "| $k | $rate | $(python3 -c "print(f'{$rate / $base_rate:.2f}x')") | $accepted of $drafts | $steps | $same |"
done
