#!/usr/bin/env bash
# `tpserve generate` under mpirun at N that divide the fixture's heads (uneven_e2e.sh: N that do
# not): the printed ids must equal transformers' greedy continuation.
source "$(dirname "$0")/lib.sh"

check_fixture llama_gqa 1 2 4
check_fixture qwen2_tied 1 3 4
check_fixture llama_bias_f16 2 3
# Family adapters (re-packed transformers references, make_family_fixtures.py); N=4 replicates the
# KV heads of internlm2 (2 KV heads) and chatglm (2 multi-query groups).
check_fixture qwen_v1 1 2 4
check_fixture internlm2 1 2 4
check_fixture chatglm 1 2 4
# Past the trained length (16): dynamic NTK (LLaMA "dynamic", factor 3: up to 48 positions) and
# Qwen v1's use_dynamic_ntk + use_logn_attn, prefilled in chunks of 5 (a prompt token must still
# see the whole prompt's length).
check_fixture llama_dynamic 1 2 4
check_fixture qwen_v1_ntk 1 2 4

# A PEFT LoRA adapter merged at load (--lora): peft's own greedy continuation on qwen2_tied.
lora=$TPSERVE_FIXTURES/qwen2_tied_lora
check_greedy "qwen2_tied+lora" "$lora/reference_greedy.txt" "1 3 4" --model "$TPSERVE_FIXTURES/qwen2_tied" --lora "$lora"

# The report carries the timings a user looks at.
run 2 120 generate --model "$TPSERVE_FIXTURES/qwen2_tied" --prompt-ids 1,2,3 --max-tokens 4
for line in '^load: ' '^prefill: 3 tokens' '^decode: 3 steps'; do
  grep -q "$line" <<<"$out" || fail "report lacks '$line': $out"
done
# Stopping at an end-of-sequence token: qwen2_tied's eos is 2; without --ignore-eos the run must
# stop at the first 2 it emits (if any) and never print one after it.
run 2 120 generate --model "$TPSERVE_FIXTURES/qwen2_tied" --prompt-ids 1,2,3 --max-tokens 64
tokens=$(grep '^tokens: ' <<<"$out" | cut -d' ' -f2)
[[ ",$tokens," =~ ,2,. ]] && fail "tokens continue past eos: $tokens"
# A text prompt goes through the model's tokenizer: same ids as `tpserve tokenize`, same tokens.
qwen=$TPSERVE_FIXTURES/qwen2_tied
ids=$("$TPSERVE_BIN" tokenize --model "$qwen" --text "Hello, world")
run 2 120 generate --model "$qwen" --prompt-ids "$ids" --max-tokens 6 --ignore-eos
by_ids=$(grep '^tokens: ' <<<"$out")
run 2 120 generate --model "$qwen" --prompt "Hello, world" --max-tokens 6 --ignore-eos
by_text=$(grep '^tokens: ' <<<"$out")
[[ -n "$by_ids" && "$by_ids" == "$by_text" ]] || fail "--prompt gave '$by_text', --prompt-ids gave '$by_ids'"
grep -q '^text: ' <<<"$out" || fail "no text line for a text prompt: $out"
run 2 120 generate --model "$qwen" --prompt "Hello" --chat --system "Be brief." --max-tokens 4
[[ $status -eq 0 ]] && grep -q '^prefill: ' <<<"$out" || fail "--chat run failed: $err"
finish
