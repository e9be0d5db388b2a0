#!/usr/bin/env bash
# The arrows between folders (docs/architecture.md), checked on every #include "folder/...": a file
# may include its own folder and the folders its folder depends on, directly or through another.
# A new arrow is a design change: add it here and to docs/architecture.md together.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

declare -A depends=(
  [common]=""
  [kernels]="common"
  [parallel]="common"
  [runtime/config]="common"
  [runtime/formats]="common"
  [runtime/tokenizer]="common"
  [runtime/families]="runtime/config parallel"
  [runtime/model]="runtime/families runtime/formats kernels"
  [runtime/planning]="runtime/model"
  [runtime/engine]="runtime/model runtime/tokenizer"
  [rpc]="runtime/engine"
  [launch]="rpc runtime/planning"
)

# Every folder a folder may include: itself and the closure of its arrows.
allowed() {
  local -A seen=()
  local queue=("$1")
  while ((${#queue[@]})); do
    local folder=${queue[0]}
    queue=("${queue[@]:1}")
    [[ -n ${seen[$folder]:-} ]] && continue
    seen[$folder]=1
    for next in ${depends[$folder]}; do queue+=("$next"); done
  done
  echo "${!seen[@]}"
}

# The folder a path belongs to: the longest key of `depends` that prefixes it.
folder_of() {
  local path=$1 best=""
  for folder in "${!depends[@]}"; do
    if [[ $path == "$folder"/* && ${#folder} -gt ${#best} ]]; then best=$folder; fi
  done
  echo "$best"
}

violations=0
checked=0
while IFS= read -r file; do
  from=$(folder_of "$file")
  [[ -n $from ]] || continue
  ok=" $(allowed "$from") "
  while IFS= read -r included; do
    to=$(folder_of "$included")
    [[ -n $to ]] || continue
    checked=$((checked + 1))
    if [[ $ok != *" $to "* ]]; then
      echo "layering: $file includes $included ($from may not depend on $to)"
      violations=$((violations + 1))
    fi
  done < <(sed -nE 's/^#include "([^"]+)".*/\1/p' "$file")
done < <(git ls-files -- '*.h' '*.cc' '*.cu' '*.cuh' | grep -v '^tests/')

echo "layering: $checked includes checked, $violations across a forbidden arrow"
((checked > 0)) || { echo "layering: no includes found (is this a git checkout?)"; exit 1; }
((violations == 0))
