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

d=$(copy llama_gqa)
printf '{"architectures": [' >"$d/config.json"
expect_error "malformed config JSON" "$d/config.json: malformed JSON" 2 --model "$d" "${prompt[@]}"

expect_error "tp not dividing heads" "tensor-parallel size 3 does not divide the 8 query heads" 3 \
  --model "$TPSERVE_FIXTURES/llama_gqa" "${prompt[@]}"

expect_error "tp not dividing chatglm heads" "tensor-parallel size 3 does not divide the 4 query heads" 3 \
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
