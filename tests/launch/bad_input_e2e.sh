#!/usr/bin/env bash
# Bad input to `tpserve generate` under mpirun -np 2: one line naming the file/tensor/field, a
# non-zero exit, and no rank left hanging (every run is under a timeout it must beat).
source "$(dirname "$0")/lib.sh"

# expect_error NAME PATTERN NP ARGS...: the run fails (not by timeout) and stderr matches PATTERN.
expect_error() {
  local name=$1 pattern=$2 np=$3
  shift 3
  run "$np" 60 generate "$@"
  expect_refusal "$name" "$pattern"
}

# copy FIXTURE: a scratch copy of a fixture, printed.
copy() {
  local dir=$scratch/$1-$RANDOM
  cp -r "$TPSERVE_FIXTURES/$1" "$dir"
  echo "$dir"
}

# write_safetensors FILE HEADER_JSON DATA_BYTES [HEADER_LENGTH]: a hand-made safetensors file.
write_safetensors() {
  local file=$1 header=$2 data_bytes=$3 length=${4:-${#2}}
  printf "$(printf '%016x' "$length" | sed -E 's/(..)(..)(..)(..)(..)(..)(..)(..)/\\x\8\\x\7\\x\6\\x\5\\x\4\\x\3\\x\2\\x\1/')" >"$file"
  printf '%s' "$header" >>"$file"
  head -c "$data_bytes" /dev/zero >>"$file"
}

prompt=(--prompt-ids 1,2,3 --max-tokens 4)

expect_error "missing model dir" "$scratch/nowhere/config.json" 2 --model "$scratch/nowhere" "${prompt[@]}"

d=$(copy qwen2_tied)
rm "$d/model.safetensors"
expect_error "no weights" "$d.*(model.safetensors|index)" 2 --model "$d" "${prompt[@]}"

d=$(copy qwen2_tied)
truncate -s -100 "$d/model.safetensors"
expect_error "truncated safetensors" "$d/model.safetensors" 2 --model "$d" "${prompt[@]}"

d=$(copy qwen2_tied)
write_safetensors "$d/model.safetensors" \
  '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}' 12
expect_error "overlapping offsets" "$d/model.safetensors.*'b'" 2 --model "$d" "${prompt[@]}"

d=$(copy qwen2_tied)
write_safetensors "$d/model.safetensors" \
  '{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}' 8
expect_error "offsets past the data" "$d/model.safetensors.*'a'" 2 --model "$d" "${prompt[@]}"
d=$(copy qwen2_tied)
write_safetensors "$d/model.safetensors" '{}' 0 1099511627776
expect_error "oversize header" "$d/model.safetensors.*header" 2 --model "$d" "${prompt[@]}"

d=$(copy llama_gqa)
sed -i 's/"intermediate_size": 160/"intermediate_size": 150/' "$d/config.json"
expect_error "wrong tensor shape" "gate_proj.weight' has shape \[160, 64\], expected \[150, 64\]" 2 --model "$d" "${prompt[@]}"

d=$(copy llama_gqa)
sed -i 's/"LlamaForCausalLM"/"GPT2LMHeadModel"/' "$d/config.json"
expect_error "unsupported architecture" "config.json: field 'architectures': 'GPT2LMHeadModel' is not supported" 2 --model "$d" "${prompt[@]}"

d=$(copy llama_gqa)
sed -i 's/"hidden_size": 64,/"hidden_size": "wide",/' "$d/config.json"
expect_error "malformed config field" "config.json: field 'hidden_size': expected an integer" 2 --model "$d" "${prompt[@]}"

# expect_every_rank NAME PATTERN NP ARGS...: as expect_error, and each of the NP ranks logged the
# line itself (every rank reads config.json, so every rank must refuse it, none may crash).
expect_every_rank() {
  local name=$1 pattern=$2 np=$3
  expect_error "$@"
  local rank
  for ((rank = 0; rank < np; rank++)); do
    grep -qE -- "\[rank $rank/$np\] \[error\] .*$pattern" <<<"$err" ||
      fail "$name: rank $rank did not report '$pattern'"
  done
  if grep -qiE "floating point exception|SIGFPE|signal [0-9]|cannot allocate" <<<"$err"; then
    fail "$name: a rank crashed: $(grep -m1 -iE 'floating point|SIGFPE|signal [0-9]|allocate' <<<"$err")"
  fi
}

# Issue 12: 2^40 heads was a SIGFPE on every rank; a 1e12 vocabulary "cpu: cannot allocate".
d=$(copy llama_gqa)
sed -i 's/"num_attention_heads": 8/"num_attention_heads": 1099511627776/' "$d/config.json"
expect_every_rank "2^40 attention heads" \
  "config.json: field 'num_attention_heads': 1099511627776 is out of range" 2 --model "$d" "${prompt[@]}"

d=$(copy llama_gqa)
sed -i 's/"vocab_size": 512/"vocab_size": 1000000000000/' "$d/config.json"
expect_every_rank "1e12 vocabulary" "config.json: field 'vocab_size': 1000000000000 is out of range" 2 \
  --model "$d" "${prompt[@]}"

# Issue 20 / 15: quantization settings tpserve does not read (AWQ GEMV) and unsupported adapter fields are refused by name.
d=$(copy llama_gqa)
sed -i 's/"vocab_size": 512/"vocab_size": 512, "quantization_config": {"quant_method": "awq", "bits": 4, "group_size": 128, "version": "gemv"}/' \
  "$d/config.json"
expect_every_rank "quantized checkpoint" \
  "config.json: field 'quantization_config.version': 'gemv' is not supported \(AWQ's GEMM layout is\)" 2 \
  --model "$d" "${prompt[@]}"

d=$(copy qwen2_tied_lora)
sed -i 's/"layer_replication": null/"layer_replication": [[0, 2], [1, 2]]/' "$d/adapter_config.json"
expect_every_rank "lora layer replication" \
  "adapter_config.json: field 'layer_replication': .* layer replication is not supported" 2 \
  --model "$TPSERVE_FIXTURES/qwen2_tied" --lora "$d" "${prompt[@]}"

d=$(copy qwen2_tied_lora)
sed -i 's/"alora_invocation_tokens": null/"alora_invocation_tokens": [5, 6]/' "$d/adapter_config.json"
expect_error "activated lora" "adapter_config.json: field 'alora_invocation_tokens'" 2 \
  --model "$TPSERVE_FIXTURES/qwen2_tied" --lora "$d" "${prompt[@]}"

d=$(copy qwen2_tied)
printf '{"do_sample": true, "top_p": 0}' >"$d/generation_config.json"
expect_error "bad generation_config.json" "$d/generation_config.json: field 'top_p'" 2 \
  --model "$d" --prompt hi --max-tokens 2

d=$(copy llama_gqa)
printf '{"architectures": [' >"$d/config.json"
expect_error "malformed config JSON" "$d/config.json: malformed JSON" 2 --model "$d" "${prompt[@]}"

# Any N up to the query heads runs (uneven shards, generate_e2e.sh); only more ranks than query
# heads is refused, naming the limit.
expect_error "tp above the heads" "tensor-parallel size 5 exceeds the 4 query heads \(num_attention_heads\).*valid sizes: 1 to 4" 5 \
  --model "$TPSERVE_FIXTURES/chatglm" "${prompt[@]}"

d=$(copy qwen2_moe)
sed -i 's/"moe_intermediate_size": 16/"moe_intermediate_size": 1/' "$d/config.json"
expect_error "tp exceeding the expert width" \
  "tensor-parallel size 2 exceeds the 1 units of moe_intermediate_size" 2 --model "$d" "${prompt[@]}"

d=$(copy qwen2_moe)
sed -i 's/"num_experts_per_tok": 2/"num_experts_per_tok": 9/' "$d/config.json"
expect_error "top-k above the experts" "field 'num_experts_per_tok': 9 exceeds num_experts \(8\)" 2 \
  --model "$d" "${prompt[@]}"

d=$(copy qwen2_moe)
sed -i 's/"moe_intermediate_size": 16/"moe_intermediate_size": 24/' "$d/config.json"
expect_error "wrong expert shape" "mlp.experts.0.gate_proj.weight' has shape \[16, 64\], expected \[24, 64\]" 2 \
  --model "$d" "${prompt[@]}"

d=$(copy internlm2)
sed -i 's/"num_key_value_heads": 2/"num_key_value_heads": 4/' "$d/config.json"
expect_error "wrong fused wqkv shape" "attention.wqkv.weight' has shape \[96, 64\], expected \[128, 64\]" 2 \
  --model "$d" "${prompt[@]}"

d=$(copy qwen2_tied_lora)
sed -i 's/"r": 4/"r": 8/' "$d/adapter_config.json"
expect_error "lora rank not matching" "lora_A.weight' has shape \[4, [0-9]+\], expected \[8, [0-9]+\]" 2 \
  --model "$TPSERVE_FIXTURES/qwen2_tied" --lora "$d" "${prompt[@]}"

expect_error "missing lora dir" "$scratch/no-adapter/adapter_config.json" 2 \
  --model "$TPSERVE_FIXTURES/qwen2_tied" --lora "$scratch/no-adapter" "${prompt[@]}"

expect_error "prompt id outside vocab" "--prompt-ids: token 512 at index 1 is outside the vocabulary \[0, 512\)" 2 \
  --model "$TPSERVE_FIXTURES/llama_gqa" --prompt-ids 1,512 --max-tokens 4

expect_error "prompt beyond context" "exceeds the context length 256" 2 \
  --model "$TPSERVE_FIXTURES/llama_gqa" --prompt-ids 1,2 --max-tokens 255

expect_error "empty text prompt" "--prompt: empty prompt" 2 --model "$TPSERVE_FIXTURES/qwen2_tied" --prompt ""
expect_error "invalid UTF-8 prompt" "invalid UTF-8.*byte offset 2" 2 --model "$TPSERVE_FIXTURES/qwen2_tied" \
  --prompt "$(printf 'ab\xff')"
expect_error "no prompt at all" "--prompt-ids, --prompt or --input is required" 1 --model "$TPSERVE_FIXTURES/qwen2_tied"
d=$(copy qwen2_tied)
printf '{"model": {"type": "BPE", "vocab": {' >"$d/tokenizer.json"
expect_error "malformed tokenizer.json" "$d/tokenizer.json" 2 --model "$d" --prompt "hi"
expect_error "load threads out of range" "--load-threads: Value 999 not in range 0 to 256" 2 \
  --model "$TPSERVE_FIXTURES/llama_gqa" "${prompt[@]}" --load-threads 999

# The SentencePiece module (dlopen'ed apart from gRPC's protobuf) missing: one line naming it.
TPSERVE_SENTENCEPIECE_MODULE=$scratch/missing.so timeout 30 "$TPSERVE_BIN" tokenize \
  --model "$TPSERVE_FIXTURES/tokenizers/mistral_sp" --text hi >"$scratch/out" 2>"$scratch/err"
status=$?
if [[ $status -eq 0 || $status -ge 124 ]]; then
  fail "missing SentencePiece module: exit $status"
elif ! grep -q "cannot load the SentencePiece module $scratch/missing.so" "$scratch/err"; then
  fail "missing SentencePiece module: $(cat "$scratch/err")"
else
  echo "ok: missing SentencePiece module -> $(head -1 "$scratch/err")"
fi

# A rank that hangs: the others' collective watchdog ends the whole job within its timeout.
start=$SECONDS
TPSERVE_FAULT_HANG_RANK=1 expect_error "hung rank" "did not complete within 3 s" 2 \
  --model "$TPSERVE_FIXTURES/llama_gqa" "${prompt[@]}" --collective-timeout 3
((SECONDS - start < 30)) || fail "hung rank: job took $((SECONDS - start)) s to end"

finish
