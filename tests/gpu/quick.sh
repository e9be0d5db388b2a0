#!/usr/bin/env bash
# The short GPU check (about 45 s on an H200 once the machine is up; tests/gpu/run.sh is the full
# one): CUDA ops against their CPU twins, the GPU model tests at np 1-3, greedy generation against
# transformers' ids, and the load benchmark on a generated qwen2.5-7b-shaped bf16 checkpoint.
# Run from the repository root on the device machine, with the bundle carried:
#   bash tests/gpu/bundle.sh build .gpu/bundle.tar.xz      # here (.gpu/ is git-ignored locally)
#   device run: OUT=$OUT bash tests/gpu/quick.sh            # carry [".gpu"]
set -uo pipefail
out=${OUT:-/tmp/tpserve_gpu}; mkdir -p "$out"
exec > >(tee "$out/gpu_log.txt") 2>&1
repo=$(pwd)
bundle=.gpu/bundle.tar.xz
source "$repo/tests/gpu/env.sh"
# Generate the 7B checkpoint in the background from the start (disk-bound).
ckpt=/tmp/tpserve_load_qwen2.5-7b
( python3 tests/bench/make_load_bench_model.py $ckpt --shape qwen2.5-7b --dtype bf16 --files 4 >/tmp/gen_7b.log 2>&1 ) &
gen=$!
step devices; nvidia-smi -L; ldd $bin/tpserve | grep -E "not found"
step "CUDA ops against the CPU twins"
timeout 150 $bin/tpserve_unit_tests --gtest_filter='Cuda*:*ScatterAdd*:*Moe*' --gtest_brief=1 2>&1 | tail -8
for np in 1 2 3; do
  step "GPU model tests np=$np"
  timeout 150 "${mpi[@]}" -np $np $bin/tpserve_mpi_tests --gtest_filter='*Gpu*' --gtest_brief=1 > /tmp/mpi_$np.log 2>&1
  echo "exit $?"; grep -E "FAILED|PASSED|Failure|SKIPPED|tests ran" /tmp/mpi_$np.log | sort | uniq -c | head -20
done
step "generate qwen2_tied TP1 fp16/bf16, TP2 host-staged"
echo "transformers: $(head -1 tests/fixtures/qwen2_tied/reference_greedy.txt)"
for dt in fp16 bf16; do timeout 60 "${mpi[@]}" -np 1 $bin/tpserve generate --model tests/fixtures/qwen2_tied --prompt-ids 1,17,300,42,7 --max-tokens 16 --ignore-eos --device cuda --dtype $dt --no-progress 2>&1 | grep -E "^tokens:|error"; done
timeout 60 "${mpi[@]}" -np 2 $bin/tpserve generate --model tests/fixtures/qwen2_tied --prompt-ids 1,17,300,42,7 --max-tokens 16 --ignore-eos --device cuda --dtype bf16 --allow-shared-gpu --no-progress 2>&1 | grep -E "^tokens:|error"
step "load benchmark (issue 18)"
wait $gen; tail -2 /tmp/gen_7b.log; df -h /tmp | tail -1
for c in $ckpt; do
  [[ -f $c/model.safetensors.index.json ]] || { echo "no checkpoint $c"; continue; }
  cat $c/*.safetensors >/dev/null
  for dt in bf16 fp16; do for th in 8 16; do
    timeout 120 "${mpi[@]}" -np 1 $bin/tpserve bench --load $c --device cuda --dtype $dt --load-threads $th --json "$out/load_$(basename $c)_${dt}_t$th.json" 2>&1 | grep -v "^\[.*info\]"
  done; done
done
step done
