#!/usr/bin/env bash
# The int8 KV cache on a GPU, a short run (a few minutes once the machine is up): the CUDA kernels
# against their CPU twins (tests/kernels/cuda_kv_int8_test.cc) with the float kernels they share
# code with (cuda_ops_test.cc), the GPU model with the int8 cache against the CPU one
# (model_gpu_mpitest.cc) at np 1 and 2 (NPS="1": np 1 only), greedy generation, and decode step times int8 vs the
# compute-dtype cache at long contexts. Run from the repository root on the device machine:
#   bash tests/gpu/bundle.sh build-cuda .gpu/bundle.tar.xz     # here (.gpu/ is git-ignored)
#   device run: OUT=$OUT bash tests/gpu/kv_int8.sh             # carry [".gpu"]
set -uo pipefail
out=${OUT:-/tmp/tpserve_gpu}; mkdir -p "$out"
exec > >(tee "$out/gpu_log.txt") 2>&1
repo=$(pwd)
bundle=.gpu/bundle.tar.xz
source "$repo/tests/gpu/env.sh"
# The test binaries read fixtures from the checkout they were built in: link this one there.
fixtures=$(grep -aom1 '/[[:alnum:]/_.-]*/tests/fixtures' "$bin/tpserve_unit_tests")
built_in=${fixtures%/tests/fixtures}
[[ -e $built_in ]] || { mkdir -p "$(dirname "$built_in")" && ln -s "$repo" "$built_in"; }
step devices; nvidia-smi -L
step "CUDA kernels against the CPU twins (int8 KV cache, float attention and RoPE)"
timeout 150 $bin/tpserve_unit_tests --gtest_filter='Cuda*' > "$out/unit.log" 2>&1
echo "exit $?"; grep -E "kv int8|FAILED|PASSED|Failure|Expected|Which|actual|error|skipped" "$out/unit.log" | head -120
for np in ${NPS:-1 2}; do
  step "GPU model tests np=$np"
  timeout 150 "${mpi[@]}" -np $np $bin/tpserve_mpi_tests --gtest_filter='*Gpu*' > "$out/mpi_$np.log" 2>&1
  echo "exit $?"; grep -E "int8 KV|FAILED|PASSED|Failure|Expected|Which|actual|error" "$out/mpi_$np.log" | head -80
done
step "generate qwen2_tied with the int8 KV cache (transformers: $(head -1 tests/fixtures/qwen2_tied/reference_greedy.txt))"
for dt in fp16 bf16; do
  for kv in auto int8; do
    echo "$dt $kv: $(timeout 60 "${mpi[@]}" -np 1 $bin/tpserve generate --model tests/fixtures/qwen2_tied --prompt-ids 1,17,300,42,7 --max-tokens 16 --ignore-eos --device cuda --dtype $dt --kv-cache-dtype $kv --no-progress 2>&1 | grep -E "^tokens:|error")"
  done
done
step "decode step time, int8 against the bf16 cache"
for kv in auto int8; do
  timeout 90 "${mpi[@]}" -np 1 $bin/tpserve bench --preset qwen2.5-7b --layers 4 --device cuda --dtype bf16 --batch 1,16 --context 1024,8192 --kv-cache-dtype $kv 2>&1 | grep -v "info\]"
done
step done
