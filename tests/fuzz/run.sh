#!/usr/bin/env bash
# Builds the libFuzzer harnesses (tests/fuzz/*_fuzz.cc) with clang under AddressSanitizer and
# UndefinedBehaviorSanitizer in build-fuzz/, then runs each target for a bounded time starting from
# its seed corpus (tests/fuzz/corpus/<target>/; new inputs go to build-fuzz/corpus/<target>/, the
# committed seeds are never changed). Exits non-zero when any target crashes, leaks, times out or
# runs out of memory; the input that did it is saved as build-fuzz/artifacts/<target>/crash-*.
#
#   bash tests/fuzz/run.sh                 # CI: 8 s per target, under 2 minutes in all
#   bash tests/fuzz/run.sh 600             # 10 minutes per target
#   bash tests/fuzz/run.sh 600 tiktoken    # one target
#   FUZZ_RUNS=10000000 bash tests/fuzz/run.sh 86400 config_json               # until 10M executions
#   FUZZ_FORK=2 FUZZ_RUNS=10000000 bash tests/fuzz/run.sh 86400 chat_template # the same on 2 cores
# FUZZ_FORK=N runs libFuzzer's fork mode: N worker processes that share one corpus, their executions
# counted together; a crash, hang or out-of-memory in any of them still ends the run and fails.
# FUZZ_TIMEOUT (default 10) is the seconds one input may take before it counts as a hang; raise it
# for a long run at low priority beside other work, where a starved process can stall that long
# (an input reported as a timeout there should be re-run alone: a real hang still hangs).
#
# Reproduce a crash: build-fuzz/tests/fuzz/<target>_fuzz build-fuzz/artifacts/<target>/crash-...
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
seconds=${1:-8}
shift || true
targets=("$@")
((${#targets[@]})) || targets=(tokenizer_json tiktoken safetensors safetensors_index config_json batch_line
                               sampling_params gguf chat_template tokenizer_config)
build=${FUZZ_BUILD_DIR:-$root/build-fuzz}

# The numbers go to libFuzzer, which reads a non-number as 0 (-fork=abc: no fork mode) without a
# word; refuse them here, before anything is built.
positive() {
  [[ $2 =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: $1 must be a positive integer, got '$2'" >&2; exit 2; }
}
positive "the seconds per target" "$seconds"
for knob in FUZZ_FORK FUZZ_RUNS FUZZ_TIMEOUT; do
  [[ -z ${!knob:-} ]] || positive "$knob" "${!knob}"
done

launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
if [[ ! -f $build/build.ninja ]]; then
  cmake -S "$root" -B "$build" -G Ninja -DTPSERVE_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ "${launcher[@]}" >/dev/null
fi
cmake --build "$build" --parallel "${FUZZ_BUILD_JOBS:-$(nproc)}" --target "${targets[@]/%/_fuzz}"

# Maximum input sizes: large enough for every seed, small enough to keep executions fast.
declare -A max_len=([tokenizer_json]=8192 [tiktoken]=4096 [safetensors]=2048 [safetensors_index]=4096
                    [config_json]=2048 [batch_line]=1024 [sampling_params]=1024
                    [gguf]=8192 [chat_template]=8192 [tokenizer_config]=8192)
failed=()
for target in "${targets[@]}"; do
  corpus=$build/corpus/$target
  artifacts=$build/artifacts/$target
  mkdir -p "$corpus" "$artifacts"
  log=$build/fuzz-$target.log
  runs=()
  [[ -n ${FUZZ_RUNS:-} ]] && runs=(-runs="$FUZZ_RUNS")
  fork=()
  [[ -n ${FUZZ_FORK:-} ]] && fork=(-fork="$FUZZ_FORK" -ignore_crashes=0 -ignore_timeouts=0 -ignore_ooms=0)
  # The parsers allocate what a file justifies: 2 GiB is far above any input here; a 10 s input is a hang.
  if ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=0 UBSAN_OPTIONS=print_stacktrace=1 \
     "$build/tests/fuzz/${target}_fuzz" "$corpus" "$root/tests/fuzz/corpus/$target" \
       -max_total_time="$seconds" "${runs[@]}" "${fork[@]}" -max_len="${max_len[$target]:-4096}" -timeout="${FUZZ_TIMEOUT:-10}" \
       -rss_limit_mb=2048 -malloc_limit_mb=2048 -print_final_stats=1 \
       -artifact_prefix="$artifacts/" >"$log" 2>&1; then
    status=ok
  else
    status=FAILED
    failed+=("$target")
  fi
  executions=$(grep -ao 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
  # Fork mode prints no final stats: its last progress line ("#N: cov: ...") has the count.
  [[ -n $executions ]] || executions=$(grep -ao '^#[0-9]*:' "$log" | tail -1 | tr -dc '0-9' || true)
  [[ -n $executions ]] || executions="?"
  echo "fuzz: $target: $status, $executions executions in ${seconds}s max (log $log)"
  if [[ $status == FAILED ]]; then grep -a -m1 -A12 'ERROR\|WARNING\|==ABORTING\|deadly\|runtime error' "$log" || tail -20 "$log"; fi
done
if ((${#failed[@]})); then
  echo "fuzz: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: all ${#targets[@]} targets clean"
