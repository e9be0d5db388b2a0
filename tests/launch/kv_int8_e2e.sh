#!/usr/bin/env bash
# --kv-cache-dtype int8 end to end (the fixtures' fidelity against transformers and the f32 cache:
# tests/runtime/model/kv_int8_mpitest.cc). Over an int8 pool far too small for the batch
# (preemption and recomputation, prefix caching, n-gram speculation) a batch job gives the records
# of a roomy int8 run: a position's codes do not depend on which step wrote them. The pool holds as
# many positions as the codes and scales allow. Bad values of the flag and fp8 are
# refused on every rank, naming the flag. `plan` shows the int8 cache's positions.
source "$(dirname "$0")/lib.sh"

# Preemption, prefix caching and speculation over an int8 pool (as kv_preemption_e2e.sh does over
# a float one): qwen2_tied at np 2, 12 blocks of 4 positions, 8 sequences of up to 12 + 16 tokens.
fixtures=$TPSERVE_FIXTURES
model=$fixtures/qwen2_tied
input=$scratch/prompts.jsonl
python3 - "$model/reference_greedy.txt" "$input" <<'PY'
import json, sys
refs = [line.split() for line in open(sys.argv[1]) if line.strip()]
with open(sys.argv[2], "w") as f:
    for i in range(24):
        prompt, _ = refs[i % len(refs)]
        f.write(json.dumps({"id": f"g{i}", "prompt_ids": [int(t) for t in prompt.split(",")],
                            "temperature": 0, "max_tokens": 16, "ignore_eos": True}) + "\n")
    for i in range(8):
        prompt, _ = refs[i % len(refs)]
        f.write(json.dumps({"id": f"s{i}", "prompt_ids": [int(t) for t in prompt.split(",")],
                            "temperature": 0.9, "top_k": 50, "seed": 100 + i, "max_tokens": 16,
                            "ignore_eos": True}) + "\n")
    f.write(json.dumps({"id": "huge", "prompt_ids": [1, 2, 3, 4], "max_tokens": 60}) + "\n")
PY
# An int8 position per rank: 2 layers x K, V x 1 KV head x (8 one-byte codes + a 4-byte scale)
# = 48 bytes, where f32 takes 128: 12 blocks of 4 positions in 2304 bytes.
tight_mib=$(python3 -c 'print(12 * 4 * 48 / 1048576)')
batch() {
  local name=$1
  shift
  run 2 120 generate --model "$model" --input "$input" --output "$scratch/$name.jsonl" --no-progress \
    --block-size 4 --max-seqs 8 --max-tokens-per-step 16 --kv-cache-dtype int8 "$@"
  echo "$out" >"$scratch/$name.log"
  echo "$err" >"$scratch/$name.err"
  if [[ $status -ne 0 ]]; then
    fail "$name: status $status"
    echo "$err" | tail -5
  fi
}
batch roomy
batch tight --kv-cache-mib "$tight_mib"
batch spec_tight --kv-cache-mib "$tight_mib" --speculative-ngram 3
python3 - "$model/reference_greedy.txt" "$scratch" <<'PY' || fail "int8 pool records differ (above)"
import json, re, sys
refs = [line.split() for line in open(sys.argv[1]) if line.strip()]
scratch = sys.argv[2]
def load(name):
    return {r["id"]: r for r in map(json.loads, open(f"{scratch}/{name}.jsonl"))}
def summary(name):
    text = open(f"{scratch}/{name}.log").read()
    m = re.search(r"batch: (\d+) preemptions; prefix cache served (\d+) of (\d+) prompt tokens; "
                  r"(\d+) n-gram drafts, (\d+) accepted; (\d+) steps", text)
    assert m, f"{name}: no summary line in {text!r}"
    return [int(g) for g in m.groups()]
roomy = load("roomy")
# transformers' ids up to the near tie where one prompt parts (kv_int8_mpitest.cc): the first 10.
for i in range(24):
    expected = [int(t) for t in refs[i % len(refs)][1].split(",")]
    assert roomy[f"g{i}"]["choices"][0]["token_ids"][:10] == expected[:10], f"roomy g{i}"
for name in ["tight", "spec_tight"]:
    records = load(name)
    for key in [f"g{i}" for i in range(24)] + [f"s{i}" for i in range(8)]:
        got = records[key]["choices"][0]["token_ids"]
        want = roomy[key]["choices"][0]["token_ids"]
        assert got == want, f"{name} {key}: {got} != {want}"
    # The 2304-byte pool holds 48 positions only because a position takes 48 bytes, not 128.
    assert "exceeds the KV cache of 48 positions" in records["huge"]["error"], records["huge"]
pre, hit, query, *_ = summary("tight")
assert pre > 0, f"tight: no preemption ({pre})"
assert hit > 0 and query > 0, f"tight: no prefix hit ({hit} of {query})"
drafts = summary("spec_tight")[3]
assert drafts > 0, "spec_tight: no drafts"
print(f"ok: int8 pool of 48 positions: {pre} preemptions, prefix cache {hit}/{query}; "
      f"speculation {drafts} drafts; records equal the roomy run's")
PY

# Refusals: one line naming the flag, a non-zero exit on every rank, no hang.
prompt=(--model "$fixtures/qwen2_tied" --prompt-ids 1,2,3 --max-tokens 4)
every_rank() {
  local name=$1 pattern=$2
  shift 2
  run 2 60 "$@"
  expect_refusal "$name" "$pattern"
  local rank
  for rank in 0 1; do
    grep -qE -- "\[rank $rank/2\] \[error\] .*$pattern" <<<"$err" ||
      fail "$name: rank $rank did not report '$pattern'"
  done
}
every_rank "kv dtype int4" "--kv-cache-dtype int4: expected auto or int8" generate "${prompt[@]}" --kv-cache-dtype int4
every_rank "kv dtype fp8" "--kv-cache-dtype fp8: needs a CUDA GPU of sm_89\+, not implemented yet" \
  generate "${prompt[@]}" --kv-cache-dtype fp8
# One process: plan and bench.
single() {
  local name=$1 pattern=$2
  shift 2
  timeout 60 "$TPSERVE_BIN" "$@" >"$scratch/out" 2>"$scratch/err"
  status=$?
  err=$(cat "$scratch/err")
  expect_refusal "$name" "$pattern"
}
single "plan kv dtype" "--kv-cache-dtype q4: expected auto or int8" plan --preset qwen2.5-7b --kv-cache-dtype q4
single "plan fp8" "--kv-cache-dtype fp8: needs a CUDA GPU" plan --preset qwen2.5-7b --kv-cache-dtype fp8

# plan: an int8 KV position of qwen2.5-7b (28 layers, 4 KV heads of 128) at TP 1 is
# 28 x 2 x 4 x 132 = 29568 bytes against 57344 in bf16: 1.94x the positions in the same memory.
plan_tokens() {
  timeout 60 "$TPSERVE_BIN" plan --preset qwen2.5-7b --tp 1 "$@" | awk '$1 == 1 {print $8 $9, $11}'
}
read -r bf16_per_token bf16_tokens < <(plan_tokens)
read -r int8_per_token int8_tokens < <(plan_tokens --kv-cache-dtype int8)
timeout 60 "$TPSERVE_BIN" plan --preset qwen2.5-7b --kv-cache-dtype int8 | grep -q "KV cache int8" ||
  fail "plan does not name the KV cache dtype"
if [[ "$bf16_per_token" != "56.00KiB" || "$int8_per_token" != "28.88KiB" ]] ||
   ! python3 -c "import sys; r = $int8_tokens / $bf16_tokens; sys.exit(0 if 1.93 < r < 1.95 else 1)"; then
  fail "plan: bf16 $bf16_per_token/position, $bf16_tokens positions; int8 $int8_per_token, $int8_tokens"
else
  echo "ok: plan qwen2.5-7b: bf16 $bf16_tokens positions, int8 $int8_tokens ($int8_per_token each)"
fi

finish
