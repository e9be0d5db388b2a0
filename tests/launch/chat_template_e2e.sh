#!/usr/bin/env bash
# The checkpoint's own chat template end to end: `generate --chat` and `tokenize --chat` render
# tokenizer_config.json's chat_template (here SmolLM2's real one, dropped into a copy of the
# qwen2_tied fixture) instead of a built-in format; --chat-template FILE replaces it; a bad FILE is
# one line naming it, on every command.
source "$(dirname "$0")/lib.sh"

model=$scratch/model
mkdir -p "$model"
cp "$TPSERVE_FIXTURES"/qwen2_tied/{config.json,model.safetensors,tokenizer.json} "$model/"
template=$(cat "$TPSERVE_FIXTURES/chat_templates/smollm2_instruct.jinja")
# tokenizer_config.json with the template as a JSON string (escape \, " and newlines by hand).
escaped=$(printf '%s' "$template" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' | awk 'NR > 1 { printf "\\n" } { printf "%s", $0 }')
printf '{"eos_token": "<|im_end|>", "bos_token": null, "chat_template": "%s"}\n' "$escaped" >"$model/tokenizer_config.json"

# What Python jinja2 renders for one user turn with this template (expected.json, smollm2_instruct).
rendered=$'<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHello, who are you?<|im_end|>\n<|im_start|>assistant\n'
want=$("$TPSERVE_BIN" tokenize --model "$model" --text "$rendered" --no-special)
got=$("$TPSERVE_BIN" tokenize --model "$model" --text "Hello, who are you?" --chat)
[[ -n "$want" && "$got" == "$want" ]] || fail "tokenize --chat: got '$got', want '$want'"
builtin=$("$TPSERVE_BIN" tokenize --model "$TPSERVE_FIXTURES/qwen2_tied" --text "Hello, who are you?" --chat)
[[ "$builtin" != "$got" ]] || fail "the shipped template made no difference to the prompt"

# generate --chat feeds exactly those ids: same prefill length and tokens as --prompt-ids.
count=$(tr ',' '\n' <<<"$want" | wc -l)
run 2 120 generate --model "$model" --prompt "Hello, who are you?" --chat --max-tokens 4 --ignore-eos
by_chat=$(grep '^tokens: ' <<<"$out")
grep -q "^prefill: $count tokens" <<<"$out" || fail "generate --chat prefill is not $count tokens: $out $err"
run 2 120 generate --model "$model" --prompt-ids "$want" --max-tokens 4 --ignore-eos
by_ids=$(grep '^tokens: ' <<<"$out")
[[ -n "$by_chat" && "$by_chat" == "$by_ids" ]] || fail "generate --chat gave '$by_chat', the rendered ids gave '$by_ids'"
echo "ok: the model's own template renders and generates"

# --chat-template FILE wins over the shipped template, on tokenize and generate.
printf '[{{ messages[0].role }}]{{ messages[-1].content }}{%% if add_generation_prompt %%}<|im_start|>{%% endif %%}\n' \
  >"$scratch/mine.jinja"
want=$("$TPSERVE_BIN" tokenize --model "$model" --text "[user]Hi<|im_start|>" --no-special)
got=$("$TPSERVE_BIN" tokenize --model "$model" --text "Hi" --chat --chat-template "$scratch/mine.jinja")
[[ -n "$want" && "$got" == "$want" ]] || fail "tokenize --chat-template: got '$got', want '$want'"
count=$(tr ',' '\n' <<<"$want" | wc -l)
run 1 120 generate --model "$model" --prompt "Hi" --chat --chat-template "$scratch/mine.jinja" --max-tokens 2
grep -q "^prefill: $count tokens" <<<"$out" || fail "generate --chat-template prefill is not $count tokens: $out $err"
echo "ok: --chat-template FILE"

# A bad FILE: one line naming it, non-zero exit, on tokenize, generate and serve.
# (Under mpirun each rank that hit it may say it, but each says it on one line.)
expect_one_line() {
  local what=$1 needle=$2
  if [[ $status -eq 0 || $status -eq 124 || $status -eq 137 ]] || ! grep -qF -- "$needle" <<<"$err"; then
    fail "$what: status $status, stderr: $err"
  else
    echo "ok: $what -> $(grep -F -m1 -- "$needle" <<<"$err")"
  fi
}
missing=$scratch/missing.jinja
err=$("$TPSERVE_BIN" tokenize --model "$model" --text "Hi" --chat --chat-template "$missing" 2>&1 >/dev/null)
status=$?
expect_one_line "tokenize with a missing template" "--chat-template $missing: no such file"
run 2 60 generate --model "$model" --prompt "Hi" --chat --chat-template "$missing" --max-tokens 2
expect_one_line "generate with a missing template" "--chat-template $missing: no such file"
printf 'ok\n{%% for m in messages %%}{{ m.content }\n' >"$scratch/broken.jinja"
run 2 60 generate --model "$model" --prompt "Hi" --chat --chat-template "$scratch/broken.jinja" --max-tokens 2
expect_one_line "generate with a broken template" "$scratch/broken.jinja, line 2: "
run 1 60 serve --model "$model" --port 0 --chat-template "$scratch/broken.jinja"
expect_one_line "serve with a broken template" "$scratch/broken.jinja, line 2: "
# A template's own raise_exception is the message the user sees.
printf "{{ raise_exception('System role not supported') }}" >"$scratch/raises.jinja"
err=$("$TPSERVE_BIN" tokenize --model "$model" --text "Hi" --chat --chat-template "$scratch/raises.jinja" 2>&1 >/dev/null)
status=$?
expect_one_line "a template's raise_exception" "System role not supported"
finish
