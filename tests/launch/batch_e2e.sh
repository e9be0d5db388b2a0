#!/usr/bin/env bash
# `tpserve generate --input/--output` (batch jobs) under mpirun -np 2: greedy results equal
# transformers' continuations, malformed lines become error records with their line number, and a
# job killed mid-way resumes on re-run with no id missing and none twice. Then the same job at
# -np 5 (uneven shards of qwen2_tied's 12 heads: 3,3,2,2,2), batched 4 at a time, prefill chunked.
source "$(dirname "$0")/lib.sh"
model=$TPSERVE_FIXTURES/qwen2_tied
input=$scratch/prompts.jsonl
output=$scratch/out.jsonl

# 30 greedy requests over the fixture's three reference prompts, then bad lines.
python3 - "$model/reference_greedy.txt" "$input" <<'PY'
import json, sys
refs = [line.split() for line in open(sys.argv[1]) if line.strip()]
with open(sys.argv[2], "w") as f:
    for i in range(30):
        prompt, _ = refs[i % len(refs)]
        f.write(json.dumps({"id": f"r{i}", "prompt_ids": [int(t) for t in prompt.split(",")],
                            "temperature": 0, "max_tokens": 16, "ignore_eos": True}) + "\n")
    f.write(json.dumps({"id": 100, "prompt": "Hello world", "max_tokens": 4, "ignore_eos": True}) + "\n")
    f.write(json.dumps({"id": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4,
                        "ignore_eos": True, "seed": 7}) + "\n")
    f.write('{"id": "broken", "prompt_ids": [1, 2\n')                       # line 33: not JSON
    f.write(json.dumps({"prompt_ids": [1, 2]}) + "\n")                      # line 34: no id
    f.write(json.dumps({"id": "cold", "prompt_ids": [1], "temperature": -1}) + "\n")  # 35: refused
    f.write(json.dumps({"id": "odd", "prompt_ids": [1], "colour": "red"}) + "\n")      # 36: unknown field
    f.write(json.dumps({"id": "r0", "prompt_ids": [1]}) + "\n")             # line 37: duplicate id
    f.write("\n")
    f.write(json.dumps({"id": "vocab", "prompt_ids": [1, 99999]}) + "\n")  # line 39: outside vocab
PY

# check_output EXPECT_COMPLETE: every record well-formed, no id twice; with 1, every id present and
# every greedy result equal to transformers'.
check_output() {
  python3 - "$model/reference_greedy.txt" "$output" "$1" <<'PY'
import json, sys
refs = [line.split() for line in open(sys.argv[1]) if line.strip()]
records = [json.loads(line) for line in open(sys.argv[2])]
complete = sys.argv[3] == "1"
ids = [r["id"] for r in records if r.get("id") is not None]
assert len(ids) == len(set(ids)), f"duplicate ids: {sorted(ids)}"
by_id = {r["id"]: r for r in records if r.get("id") is not None}
for i in range(30):
    r = by_id.get(f"r{i}")
    if r is None:
        assert not complete, f"r{i} missing"
        continue
    expected = [int(t) for t in refs[i % len(refs)][1].split(",")]
    got = r["choices"][0]["token_ids"]
    assert got == expected, f"r{i}: {got} != {expected}"
    assert r["usage"]["completion_tokens"] == 16 and r["choices"][0]["finish_reason"] == "length", r
if complete:
    assert by_id[100]["usage"]["completion_tokens"] == 4, by_id[100]
    assert len(by_id["chat"]["choices"][0]["token_ids"]) == 4, by_id["chat"]
    errors = {r.get("line"): r["error"] for r in records if "error" in r}
    expect = {33: "not valid JSON", 34: "id: missing", 35: "temperature", 36: "unknown field 'colour'",
              37: "repeats line 1", 39: "outside the vocabulary"}
    for line, text in expect.items():
        assert line in errors and text in errors[line], f"line {line}: {errors.get(line)!r} lacks {text!r}"
    assert len(records) == 32 + len(expect), len(records)
print(f"{len(records)} records, {len(set(ids))} ids")
PY
}

# 1. Rank 1 is SIGKILLed after 40 steps: the job fails (mpirun reports the signal: 137, not
# timeout's 124), well within the limit; the output holds only whole records.
start=$SECONDS
TPSERVE_FAULT_EXIT_RANK=1 TPSERVE_FAULT_EXIT_AFTER_STEPS=40 \
  run 2 120 generate --model "$model" --input "$input" --output "$output" --max-seqs 4 --step-timeout 5
if [[ $status -eq 0 || $status -eq 124 ]] || ((SECONDS - start >= 60)); then
  fail "killed job: exit $status after $((SECONDS - start)) s"
fi
grep -q "prompts.jsonl:33: not valid JSON" <<<"$err" || fail "malformed line not reported with its number"
if ! partial=$(check_output 0); then
  fail "killed job: bad output"
else
  echo "ok: killed job left $partial"
fi
# A record cut short by the kill (simulated): dropped, its request runs again.
printf '{"id": "r29", "choi' >>"$output"

# 2. The same command again: resumes, finishes, every id exactly once.
run 2 120 generate --model "$model" --input "$input" --output "$output" --max-seqs 4
if [[ $status -ne 0 ]]; then
  fail "resumed job: exit $status"
  echo "$err" | tail -5
elif ! grep -q "batch: 38 lines" <<<"$out" || ! grep -qE "skipped \(already" <<<"$out"; then
  fail "resumed job: no summary: $out"
elif ! summary=$(check_output 1); then
  fail "resumed job: bad output"
else
  echo "ok: resumed job: $summary; $(grep 'batch: 38' <<<"$out")"
fi

# 3. Nothing left to do: a third run only skips.
run 2 120 generate --model "$model" --input "$input" --output "$output" --no-progress
grep -q "0 completed" <<<"$out" || fail "third run did work: $out"

# 4. Batched serving on uneven shards: TP=5, 4 sequences per step, prompts chunked to 5 tokens.
rm -f "$output"
run 5 180 generate --model "$model" --input "$input" --output "$output" --max-seqs 4 \
  --max-tokens-per-step 5 --block-size 4 --no-progress
if [[ $status -ne 0 ]]; then
  fail "TP=5 job: exit $status"
  echo "$err" | tail -5
elif ! summary=$(check_output 1); then
  fail "TP=5 job: bad output"
else
  echo "ok: TP=5 (uneven) job: $summary"
fi

# Bad input: a missing input file is one line naming it, on every rank, no hang.
run 2 60 generate --model "$model" --input "$scratch/none.jsonl" --output "$output"
if [[ $status -eq 0 ]] || ! grep -q "none.jsonl: no such file" <<<"$err"; then
  fail "missing input: status $status: $err"
else
  echo "ok: missing input -> $(grep -m1 'no such file' <<<"$err")"
fi
# An output file that cannot be written: one line naming it, every rank exits non-zero, no hang.
run 2 60 generate --model "$model" --input "$input" --output "$scratch/no/such/dir/out.jsonl"
if [[ $status -eq 0 || $status -ge 124 ]] || ! grep -q "no/such/dir/out.jsonl: cannot open for appending" <<<"$err"; then
  fail "unwritable output: status $status: $err"
else
  echo "ok: unwritable output -> $(grep -m1 'cannot open' <<<"$err")"
fi
finish
