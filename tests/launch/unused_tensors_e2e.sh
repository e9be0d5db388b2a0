#!/usr/bin/env bash
# Strict tensor accounting end to end (np 2): a checkpoint tensor that no adapter rule reads stops
# `generate` with one line naming the tensor and its file; --allow-unused-tensors loads anyway with
# one warning line listing it, and the continuation is still transformers' reference.
source "$(dirname "$0")/lib.sh"

# add_extra_shard DIR TENSOR: a third shard file holding TENSOR (F32 [2]), listed in DIR's index.
add_extra_shard() {
  local dir=$1 tensor=$2
  local header="{\"$tensor\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}"
  printf "$(printf '%016x' "${#header}" |
    sed -E 's/(..)(..)(..)(..)(..)(..)(..)(..)/\\x\8\\x\7\\x\6\\x\5\\x\4\\x\3\\x\2\\x\1/')" \
    >"$dir/extra.safetensors"
  printf '%s' "$header" >>"$dir/extra.safetensors"
  head -c 8 /dev/zero >>"$dir/extra.safetensors"
  sed -i "s|\"weight_map\": {|\"weight_map\": {\"$tensor\": \"extra.safetensors\",|" \
    "$dir/model.safetensors.index.json"
}

fixture=$TPSERVE_FIXTURES/llama_gqa
read -r prompt expected <"$fixture/reference_greedy.txt"
args=(--prompt-ids "$prompt" --max-tokens 16 --ignore-eos --block-size 4)

# A tensor of a layer the config does not have (num_hidden_layers 2): refused by name and file.
dir=$scratch/llama_gqa_extra
cp -r "$fixture" "$dir"
add_extra_shard "$dir" model.layers.2.mlp.gate_proj.weight
run 2 60 generate --model "$dir" "${args[@]}"
if [[ $status -eq 0 || $status -eq 124 || $status -eq 137 ]]; then
  fail "extra tensor: status $status (expected a clean failure)"
elif ! grep -q "$dir/extra.safetensors: tensor 'model.layers.2.mlp.gate_proj.weight'" <<<"$err"; then
  fail "extra tensor: stderr does not name the tensor and its file:"
  echo "$err" | head -5
else
  echo "ok: refused -> $(grep -m1 'extra.safetensors' <<<"$err")"
fi

# The same checkpoint with --allow-unused-tensors: loads, warns once, same greedy continuation.
run 2 60 generate --model "$dir" "${args[@]}" --allow-unused-tensors
expect_tokens "--allow-unused-tensors loads" "$expected"
warnings=$(grep -c 'allow-unused-tensors: ignoring 1 checkpoint tensor(s).*model.layers.2.mlp.gate_proj.weight' \
  <<<"$err$out")
[[ $warnings -eq 1 ]] || fail "--allow-unused-tensors: expected one warning line, found $warnings"

# A rotary inv_freq copy, as checkpoints saved before transformers 4.31 carry per layer: the LLaMA
# adapter's rule passes it without the flag (transformers recomputes that buffer from config.json).
dir=$scratch/llama_gqa_inv_freq
cp -r "$fixture" "$dir"
add_extra_shard "$dir" model.layers.1.self_attn.rotary_emb.inv_freq
run 2 60 generate --model "$dir" "${args[@]}"
expect_tokens "a rotary inv_freq passes by the LLaMA adapter's rule" "$expected"
finish
