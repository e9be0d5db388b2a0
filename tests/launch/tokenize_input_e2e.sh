#!/usr/bin/env bash
# `tpserve tokenize --input FILE|-` end to end: every tokenizer kind's reference ids (tokenizers /
# tiktoken / sentencepiece, recorded in tests/fixtures/tokenizers/*/expected.json) through JSONL and
# text lines, both output formats, standard input, chat messages, and each bad-line error.
source "$(dirname "$0")/lib.sh"
fixtures=$TPSERVE_FIXTURES/tokenizers
shared=$(cd "$TPSERVE_FIXTURES/../../.." && pwd)/shared

# tok ARGS...: `tpserve tokenize ARGS`; sets $status, $out, $err.
tok() {
  timeout --kill-after=5 60 "$TPSERVE_BIN" tokenize "$@" >"$scratch/out" 2>"$scratch/err"
  status=$?
  out=$(cat "$scratch/out")
  err=$(cat "$scratch/err")
}

# check_reference LABEL DIR EXPECTED_JSON: the cases of EXPECTED_JSON as JSONL ("text" and "prompt"
# lines, alternating) and, for those without a line break, as text lines; with and without special
# tokens, in both output formats; each output line must be the reference's ids.
check_reference() {
  local label=$1 dir=$2 expected=$3
  python3 - "$expected" "$scratch" <<'PY'
import json, sys
cases = json.load(open(sys.argv[1], encoding="utf-8"))["cases"]
out = sys.argv[2]
with open(f"{out}/cases.jsonl", "w", encoding="utf-8") as f:
    for i, c in enumerate(cases):
        f.write(json.dumps({"id": i, "text" if i % 2 else "prompt": c["text"]}, ensure_ascii=False) + "\n")
plain = [c for c in cases if "\n" not in c["text"] and "\r" not in c["text"]]
with open(f"{out}/cases.txt", "w", encoding="utf-8", newline="") as f:
    f.writelines(c["text"] + "\n" for c in plain)
for name, subset in (("jsonl", cases), ("txt", plain)):
    for key in ("ids", "ids_no_special"):
        with open(f"{out}/{name}.{key}", "w") as f:
            f.writelines(" ".join(map(str, c[key])) + "\n" for c in subset)
PY
  local input key flags
  for input in jsonl txt; do
    for key in ids ids_no_special; do
      flags=()
      [[ $key == ids_no_special ]] && flags=(--no-special)
      tok --model "$dir" --input "$scratch/cases.$input" "${flags[@]}"
      if [[ $status -ne 0 ]] || ! diff -q "$scratch/out" "$scratch/$input.$key" >/dev/null; then
        fail "$label $input $key: status $status, $(diff "$scratch/out" "$scratch/$input.$key" | head -3) $err"
      else
        echo "ok: $label $input $key ($(wc -l <"$scratch/out") lines)"
      fi
    done
  done
  # --output-format json: the same ids as JSON arrays.
  tok --model "$dir" --input "$scratch/cases.jsonl" --output-format json
  python3 -c '
import json, sys
got = [json.loads(l) for l in open(sys.argv[1])]
want = [[int(t) for t in l.split()] for l in open(sys.argv[2])]
sys.exit(0 if got == want else 1)' "$scratch/out" "$scratch/jsonl.ids" || fail "$label --output-format json: $out"
}

for name in tiny_bpe qwen2 llama3 mistral_sp; do
  check_reference "$name" "$fixtures/$name" "$fixtures/$name/expected.json"
done
if [[ -f $shared/tokenizers/qwen-v1/qwen.tiktoken ]]; then
  check_reference qwen_v1 "$shared/tokenizers/qwen-v1" "$fixtures/qwen_v1/expected.json"
else
  echo "skip: qwen_v1 (no $shared/tokenizers/qwen-v1/qwen.tiktoken)"
fi

# Standard input, a blank JSONL line (a blank output line), --bench's report, other fields ignored.
model=$fixtures/qwen2
printf '{"text": "Hello, world!", "id": 3, "meta": {"x": 1}}\n\n{"prompt": "你好"}\n' >"$scratch/in.jsonl"
tok --model "$model" --input - --input-format jsonl --bench 2 <"$scratch/in.jsonl"
[[ $status -eq 0 && "$out" == $'9707 11 1879 0\n\n108386' ]] || fail "stdin jsonl: status $status, out '$out' $err"
grep -q "^bench: 2 texts, 19 bytes, 5 tokens; encode, best of 2 rounds, one thread: .* MB/s" <<<"$err" || fail "--bench report: $err"
printf 'Hello, world!\r\n你好' >"$scratch/crlf.txt"
tok --model "$model" --input - <"$scratch/crlf.txt"
[[ $status -eq 0 && "$out" == $'9707 11 1879 0\n108386' ]] || fail "stdin text with CRLF and no final newline: '$out' $err"
echo "ok: standard input, blank line, --bench"

# Chat: "messages" lines and --chat render the model's chat template, as `--text --chat` does.
chat_model=$TPSERVE_FIXTURES/qwen2_tied
want=$("$TPSERVE_BIN" tokenize --model "$chat_model" --text "Hi there" --chat | tr ',' ' ')
printf '{"messages": [{"role": "user", "content": "Hi there"}]}\n' >"$scratch/chat.jsonl"
tok --model "$chat_model" --input "$scratch/chat.jsonl"
[[ $status -eq 0 && -n "$want" && "$out" == "$want" ]] || fail "messages line: '$out', want '$want' $err"
printf 'Hi there\n' >"$scratch/chat.txt"
tok --model "$chat_model" --input "$scratch/chat.txt" --chat
[[ $status -eq 0 && "$out" == "$want" ]] || fail "text line with --chat: '$out', want '$want' $err"
echo "ok: chat messages and --chat"

# Bad lines: one error naming the file and line, non-zero exit, the lines before it written.
# expect_line_error LABEL NEEDLE INPUT_CONTENT [ARGS...]
expect_line_error() {
  local label=$1 needle=$2 content=$3 file=$scratch/bad.jsonl
  shift 3
  printf '%b' "$content" >"$file"
  tok --model "$model" --input "$file" "$@"
  if [[ $status -eq 0 || $status -ge 124 ]] || ! grep -qF -- "$file:$needle" <<<"$err" ||
    [[ $(wc -l <<<"$err") -ne 1 ]]; then
    fail "$label: status $status, stderr: $err"
  elif [[ "$(head -1 <<<"$out")" != "9707 11 1879 0" ]]; then
    fail "$label: the line before the bad one was not written: '$out'"
  else
    echo "ok: $label -> $err"
  fi
}
good='{"text": "Hello, world!"}\n'
expect_line_error "bad JSON" "2: not valid JSON" "$good{\"text\": \"unterminated\n$good"
expect_line_error "no text field" "2: expected exactly one of text, prompt or messages, got 0" "$good{\"id\": 7}\n"
expect_line_error "two text fields" "2: expected exactly one of text, prompt or messages, got 2" \
  "$good{\"text\": \"a\", \"prompt\": \"b\"}\n"
expect_line_error "text not a string" "2: text: expected a string, got 5" "$good{\"text\": 5}\n"
expect_line_error "not an object" "2: expected a JSON object, got array" "$good[1, 2]\n"
expect_line_error "bad messages" "3: messages[0]: expected {\"role\": \"...\", \"content\": \"...\"}" \
  "$good\n{\"messages\": [{\"role\": \"user\"}]}\n"
expect_line_error "empty messages" "2: messages: expected a non-empty list" "$good{\"messages\": []}\n"
expect_line_error "invalid UTF-8 in JSONL" "2: invalid UTF-8 at byte offset 10" "$good{\"text\": \"\xff\"}\n"
expect_line_error "invalid UTF-8 in a text line" "3: invalid UTF-8 at byte offset 2" \
  "Hello, world!\nfine\nab\xc3\x28cd\n" --input-format text
tok --model "$model" --input "$scratch/missing.txt"
[[ $status -ne 0 && "$err" == *"--input $scratch/missing.txt: cannot open"* ]] || fail "missing input: $status $err"
tok --model "$model" --input "$scratch/bad.jsonl" --input-format csv
[[ $status -ne 0 && "$err" == *"--input-format"* ]] || fail "unknown --input-format: $status $err"
tok --model "$model" --input "$scratch/bad.jsonl" --text hi
[[ $status -ne 0 && "$err" == *"excludes"* ]] || fail "--input with --text: $status $err"
echo "ok: missing file, bad flags"

finish
