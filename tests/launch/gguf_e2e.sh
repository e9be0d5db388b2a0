#!/usr/bin/env bash
# `--model FILE.gguf` end to end: the fixture GGUFs (tests/fixtures/gguf: transformers' tiny llama
# and qwen2 checkpoints written as llama.cpp's converter writes them) under mpirun give
# transformers' greedy ids at every rank count; `tokenize` and `plan` take the file too; a broken
# or unsupported file is refused on every rank with one line naming the file and the field, no hang.
source "$(dirname "$0")/lib.sh"
gguf=$TPSERVE_FIXTURES/gguf

check_greedy llama_gqa.gguf "$TPSERVE_FIXTURES/llama_gqa/reference_greedy.txt" "1 2 4" --model "$gguf/llama_gqa.gguf"
check_greedy qwen2_tied.gguf "$TPSERVE_FIXTURES/qwen2_tied/reference_greedy.txt" "1 3" --model "$gguf/qwen2_tied.gguf"

# The chat template and tokenizer from the metadata.
run 1 60 tokenize --model "$gguf/llama_gqa.gguf" --text "Hi" --chat
expected=$(timeout 60 "$TPSERVE_BIN" tokenize --model "$TPSERVE_FIXTURES/llama_gqa" \
  --text $'<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n' --no-special 2>/dev/null)
if [[ $status -eq 0 && "$out" == "$expected" ]]; then echo "ok: tokenize --chat"; else fail "tokenize --chat: '$out' vs '$expected'"; fi

timeout 60 "$TPSERVE_BIN" plan --model "$gguf/qwen2_tied.gguf" --tp 1,3 >"$scratch/plan" 2>&1 \
  && grep -q "qwen2_tied.gguf" "$scratch/plan" && echo "ok: plan" || { fail "plan"; tail -3 "$scratch/plan"; }

# Cut short: the last tensor's data runs past the end.
head -c 300000 "$gguf/llama_gqa.gguf" >"$scratch/cut.gguf"
run 2 60 generate --model "$scratch/cut.gguf" --prompt-ids 1,2 --max-tokens 2
expect_refusal "truncated GGUF" "cut.gguf: tensor '[^']+' \(.*\) runs past the end of the"
# Another architecture: general.architecture is the first metadata value ("llama" -> "llamb").
python3 - "$gguf/llama_gqa.gguf" "$scratch/arch.gguf" <<'PY'
import sys
data = bytearray(open(sys.argv[1], "rb").read())
at = data.index(b"general.architecture") + len("general.architecture") + 4 + 8
assert data[at:at + 5] == b"llama"
data[at:at + 5] = b"llamb"
open(sys.argv[2], "wb").write(data)
PY
run 2 60 generate --model "$scratch/arch.gguf" --prompt-ids 1,2 --max-tokens 2
expect_refusal "unsupported architecture" "arch.gguf: metadata 'general.architecture': 'llamb' is not supported \(llama, qwen2 are\)"
finish
