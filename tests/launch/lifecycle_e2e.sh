#!/usr/bin/env bash
# `tpserve serve` start-up refusals and the CLI's own messages: a gRPC or metrics port another
# process listens on (even one that allows SO_REUSEPORT) ends every rank with one line naming the
# flag; --help shows every default; `chat` exits 1 when it cannot connect; `generate --prompt`
# errors name --prompt. Every run is under a timeout it must beat.
source "$(dirname "$0")/lib.sh"

model=$TPSERVE_FIXTURES/qwen2_tied

# A listener that sets SO_REUSEPORT, as another tpserve (gRPC, httplib) does: without our fix both
# would bind. It prints its port and lives until killed.
python3 -c '
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
s.bind(("127.0.0.1", 0)); s.listen(8)
print(s.getsockname()[1], flush=True)
time.sleep(600)' >"$scratch/port" &
listener=$!
for _ in $(seq 100); do [[ -s $scratch/port ]] && break; sleep 0.05; done
busy=$(cat "$scratch/port")

run 2 90 serve --model "$model" --port "$busy"
expect_refusal "serve --port in use" "--port $busy: cannot listen on 127.0.0.1:$busy for gRPC: Address already in use"
[[ $out == *serving* ]] && fail "serve --port in use: printed '$out'"
run 2 90 serve --model "$model" --port 0 --metrics-port "$busy"
expect_refusal "serve --metrics-port in use" "--metrics-port $busy: cannot listen on 127.0.0.1:$busy for metrics: Address already in use"
run 2 90 serve --model "$model" --port 0 --http-port "$busy"
expect_refusal "serve --http-port in use" "--http-port $busy: cannot listen on 127.0.0.1:$busy for HTTP: Address already in use"
kill "$listener"
wait "$listener" 2>/dev/null

# --help shows the defaults users ask about.
# CLI11 prints them as "--port INT:INT in [0 - 65535]=50051".
help=$("$TPSERVE_BIN" serve --help)
before=$failures
for default in "--port .*=50051" "--max-seqs .*=32" "--max-queued .*=256" "--drain-timeout .*=30" \
               "--max-message-mib .*=4" "--step-timeout .*=30" "--host .*=127.0.0.1"; do
  grep -qE -- "$default\b" <<<"$help" || fail "serve --help lacks $default"
done
"$TPSERVE_BIN" chat --help | grep -qE -- "--max-tokens .*=256\b" || fail "chat --help lacks its defaults"
((failures == before)) && echo "ok: --help shows defaults"

# TLS files: one that is not PEM, a key that is not the certificate's, and a certificate alone.
echo "not a certificate" >"$scratch/bad.pem"
run 1 60 serve --model "$model" --port 0 --tls-cert "$scratch/bad.pem" --tls-key "$scratch/bad.pem"
expect_refusal "serve --tls-cert not PEM" "--tls-cert $scratch/bad.pem / --tls-key $scratch/bad.pem: not a PEM certificate and its private key"
for name in one two; do
  openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost -keyout "$scratch/$name.key" \
    -out "$scratch/$name.crt" >/dev/null 2>&1 || fail "openssl could not make a test certificate"
done
run 1 60 serve --model "$model" --port 0 --http-port 0 --tls-cert "$scratch/one.crt" --tls-key "$scratch/two.key"
expect_refusal "serve --tls-key of another certificate" "--tls-cert $scratch/one.crt / --tls-key $scratch/two.key: not a PEM certificate and its private key"
run 1 60 serve --model "$model" --port 0 --tls-cert "$scratch/one.crt"
expect_refusal "serve --tls-cert without --tls-key" "--tls-cert requires --tls-key"

# chat with nobody listening: exit 1 and a line naming --addr.
timeout 30 "$TPSERVE_BIN" chat --addr "127.0.0.1:$busy" --connect-timeout 1 </dev/null \
  >"$scratch/out" 2>"$scratch/err"
status=$?
err=$(cat "$scratch/err")
expect_refusal "chat without a server" "--addr 127.0.0.1:$busy: cannot connect"

# A text prompt whose tokens fall outside the model's (here shrunk) vocabulary blames --prompt.
small=$scratch/small_vocab
cp -r "$model" "$small"
python3 -c '
import json, sys
path = sys.argv[1] + "/config.json"
config = json.load(open(path)); config["vocab_size"] = 5
json.dump(config, open(path, "w"))' "$small"
run 2 60 generate --model "$small" --prompt "Hello world" --max-tokens 2
expect_refusal "generate --prompt out of vocabulary" "^.*--prompt: token [0-9]+ at index [0-9]+ of the tokenized prompt is outside"
grep -q -- "--prompt-ids" <<<"$err" && fail "generate --prompt blames --prompt-ids"

finish
