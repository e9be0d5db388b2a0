#!/usr/bin/env bash
# `--model FILE.gguf` end to end: the fixture GGUFs (tests/fixtures/gguf: transformers' tiny llama
# and qwen2 checkpoints written as llama.cpp's converter writes them) under mpirun give
# transformers' greedy ids at every rank count; `tokenize` and `plan` take the file too; a broken
# or unsupported file is refused on every rank with one line naming the file and the field, no hang.
source "$(dirname "$0")/lib.sh"
gguf=$TPSERVE_FIXTURES/gguf

check_greedy llama_gqa.gguf "$TPSERVE_FIXTURES/llama_gqa/reference_greedy.txt" "1 2 4" --model "$gguf/llama_gqa.gguf"
check_greedy qwen2_tied.gguf "$TPSERVE_FIXTURES/qwen2_tied/reference_greedy.txt" "1 3" --model "$gguf/qwen2_tied.gguf"
# Q4_0 / Q4_1 / Q8_0 weights kept packed (tests/fixtures/gguf/make_packed_fixtures.py): transformers
# on the file dequantized to float32 (model_mpitest.cc checks every TP 1-4 and the logits).
check_greedy gguf_llama_q4 "$TPSERVE_FIXTURES/gguf_llama_q4/reference_greedy.txt" "1 3" --model "$TPSERVE_FIXTURES/gguf_llama_q4/model.gguf"
check_greedy gguf_qwen2_q8 "$TPSERVE_FIXTURES/gguf_qwen2_q8/reference_greedy.txt" "2 4" --model "$TPSERVE_FIXTURES/gguf_qwen2_q8/model.gguf"

# The chat template and tokenizer from the metadata.
run 1 60 tokenize --model "$gguf/llama_gqa.gguf" --text "Hi" --chat
expected=$(timeout 60 "$TPSERVE_BIN" tokenize --model "$TPSERVE_FIXTURES/llama_gqa" \
  --text $'<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n' --no-special 2>/dev/null)
if [[ $status -eq 0 && "$out" == "$expected" ]]; then echo "ok: tokenize --chat"; else fail "tokenize --chat: '$out' vs '$expected'"; fi

# A SentencePiece-style vocabulary (tokenizer.ggml.model "llama", Mistral's): every text of
# mistral_spm_expected.json through `tokenize --input` gives llama.cpp's ids (BOS added), and
# --decode gives SentencePiece's text back.
python3 - "$gguf/mistral_spm_expected.json" "$scratch/spm.jsonl" "$scratch/spm_ids" <<'PY'
import json, sys
cases = json.load(open(sys.argv[1], encoding="utf-8"))["cases"]
with open(sys.argv[2], "w", encoding="utf-8") as texts, open(sys.argv[3], "w") as ids:
    for case in cases:
        texts.write(json.dumps({"text": case["text"]}) + "\n")
        ids.write(" ".join(map(str, case["ids"])) + "\n")
PY
if timeout 60 "$TPSERVE_BIN" tokenize --model "$gguf/mistral_spm_vocab.gguf" --input "$scratch/spm.jsonl" --quiet \
     >"$scratch/spm_out" 2>"$scratch/spm_err" && cmp -s "$scratch/spm_out" "$scratch/spm_ids"; then
  echo "ok: tokenize a llama (SentencePiece) GGUF vocabulary: llama.cpp's ids for $(wc -l <"$scratch/spm_ids") texts"
else
  fail "tokenize a llama GGUF vocabulary: $(diff "$scratch/spm_out" "$scratch/spm_ids" | head -5) $(tail -2 "$scratch/spm_err")"
fi
run 1 60 tokenize --model "$gguf/mistral_spm_vocab.gguf" --decode 1,22557,28725,1526,28808,2
if [[ $status -eq 0 && "$out" == "Hello, world!" ]]; then echo "ok: decode a llama GGUF vocabulary"; else fail "decode: '$out' $err"; fi

# A tiny random llama with a llama vocabulary: text prompts tokenized by tpserve give llama.cpp's
# greedy continuation of the same file (make_spm_gguf.py), at TP 1 and 2.
while IFS=$'\t' read -r prompt expected; do
  for np in 1 2; do
    run "$np" 120 generate --model "$gguf/tiny_spm_llama.gguf" --prompt "$prompt" --max-tokens 12 --ignore-eos
    expect_tokens "tiny_spm_llama np=$np prompt='$prompt'" "$expected"
  done
done < <(python3 -c '
import json, sys
for case in json.load(open(sys.argv[1], encoding="utf-8"))["tiny_greedy"]:
    print(case["prompt"] + "\t" + ",".join(map(str, case["generated"])))' "$gguf/mistral_spm_expected.json")

timeout 60 "$TPSERVE_BIN" plan --model "$gguf/qwen2_tied.gguf" --tp 1,3 >"$scratch/plan" 2>&1 \
  && grep -q "qwen2_tied.gguf" "$scratch/plan" && echo "ok: plan" || { fail "plan"; tail -3 "$scratch/plan"; }
# The packed file's plan counts its packed bytes, by hand (bf16 plan: 2-byte scales and mins):
# embed 512x128 floats 131072; lm_head Q8_0 65536 codes + 8192; norms 1280; per layer qkv 8-bit
# 32768 + 4096, o 4-bit 8192 + 2048, gate_up 32768 + 8192; down 16384 + 4096 (layer 0, Q4_0) and
# 65536 (layer 1, F16 as floats): 468224 bytes = 457.25 KiB.
packed_plan=$(timeout 60 "$TPSERVE_BIN" plan --model "$TPSERVE_FIXTURES/gguf_llama_q4/model.gguf" --tp 1 2>&1)
if grep -qE "^ +1 +457.25 KiB" <<<"$packed_plan"; then echo "ok: plan of a packed GGUF"; else fail "plan of a packed GGUF: $packed_plan"; fi
# Cut short inside a packed tensor's blocks: refused naming the tensor, on every rank.
size=$(stat -c %s "$TPSERVE_FIXTURES/gguf_llama_q4/model.gguf")
head -c $((size - 1000)) "$TPSERVE_FIXTURES/gguf_llama_q4/model.gguf" >"$scratch/cut_q4.gguf"
run 2 60 generate --model "$scratch/cut_q4.gguf" --prompt-ids 1,2 --max-tokens 2
expect_refusal "truncated packed GGUF" "cut_q4.gguf: tensor '[^']+' \(.*\) runs past the end of the"

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
