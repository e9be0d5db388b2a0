#!/usr/bin/env bash
# N-gram speculation on every fixture with a greedy reference (transformers', peft's or the family's
# own code): a batch job of all its reference prompts with --speculative-ngram 4 (16 tokens each,
# EOS ignored, prefill chunked to 5, blocks of 4, so drafts are verified across block boundaries
# and against chunked prompts) must give exactly the reference ids, as plain greedy does. Each
# fixture runs at a TP size it supports other than 1 where one exists (the quantized fixtures'
# valid sizes differ).
source "$(dirname "$0")/lib.sh"

# spec_fixture LABEL REFERENCE NP ARGS...: the batch job under mpirun -np NP with ARGS.
total_drafts=0
spec_fixture() {
  local label=$1 reference=$2 np=$3
  shift 3
  python3 - "$reference" "$scratch/$label.in.jsonl" <<'PY'
import json, sys
with open(sys.argv[2], "w") as f:
    for i, line in enumerate(l for l in open(sys.argv[1]) if l.strip()):
        prompt = [int(t) for t in line.split()[0].split(",")]
        f.write(json.dumps({"id": str(i), "prompt_ids": prompt, "temperature": 0, "max_tokens": 16,
                            "ignore_eos": True}) + "\n")
PY
  run "$np" 180 generate "$@" --input "$scratch/$label.in.jsonl" --output "$scratch/$label.out.jsonl" \
    --no-progress --speculative-ngram 4 --block-size 4 --max-tokens-per-step 5
  if [[ $status -ne 0 ]]; then
    fail "$label np=$np: status $status"
    echo "$err" | tail -5
    return
  fi
  if python3 - "$reference" "$scratch/$label.out.jsonl" <<'PY'; then
import json, sys
refs = [[int(t) for t in l.split()[1].split(",")] for l in open(sys.argv[1]) if l.strip()]
got = {int(r["id"]): r for r in map(json.loads, open(sys.argv[2]))}
bad = [i for i, want in enumerate(refs)
       if "choices" not in got.get(i, {}) or got[i]["choices"][0]["token_ids"] != want]
for i in bad:
    print(f"  prompt {i}: got {got.get(i)}, expected {refs[i]}")
sys.exit(1 if bad else 0)
PY
    local drafts
    drafts=$(sed -n 's/.*; \([0-9]*\) n-gram drafts, \([0-9]*\) accepted;.*/\1 drafts, \2 accepted/p' <<<"$out")
    echo "ok: $label np=$np: reference ids with speculation ($drafts)"
    total_drafts=$((total_drafts + ${drafts%% *}))
  else
    fail "$label np=$np: speculation changed the greedy ids"
  fi
}

fixtures=$TPSERVE_FIXTURES
for name in llama_gqa qwen2_tied llama_bias_f16 qwen_v1 internlm2 chatglm chatglm_bias chatglm_mha \
            llama_dynamic qwen_v1_ntk qwen2_yarn qwen2_moe llama_9heads gptq_qwen2_int8 \
            gptq_llama_act_order awq_llama; do
  spec_fixture "$name" "$fixtures/$name/reference_greedy.txt" 2 --model "$fixtures/$name"
done
spec_fixture llama_9heads_np3 "$fixtures/llama_9heads/reference_greedy.txt" 3 --model "$fixtures/llama_9heads"
spec_fixture qwen2_tied_lora "$fixtures/qwen2_tied_lora/reference_greedy.txt" 2 \
  --model "$fixtures/qwen2_tied" --lora "$fixtures/qwen2_tied_lora"
spec_fixture gguf_llama_q4 "$fixtures/gguf_llama_q4/reference_greedy.txt" 1 --model "$fixtures/gguf_llama_q4/model.gguf"
spec_fixture gguf_qwen2_q8 "$fixtures/gguf_qwen2_q8/reference_greedy.txt" 2 --model "$fixtures/gguf_qwen2_q8/model.gguf"
# Random-weight models repeat themselves often enough that drafts are made (and some accepted).
((total_drafts > 0)) || fail "no n-gram drafts over all fixtures: speculation never ran"
finish
