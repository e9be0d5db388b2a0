#!/usr/bin/env bash
# The GPU checks of quantized weights and the int8 KV cache (issue 15), of uneven shards (issue 19)
# and of loading (issue 18), about 6 minutes on an H200 once the machine is up (quick.sh and run.sh
# are the general ones). Run from the repository root on the device machine, with the bundle carried:
#   bash tests/gpu/bundle.sh build .gpu/bundle.tar.xz      # here (.gpu/ is git-ignored locally)
#   device run: OUT=$OUT bash tests/gpu/quantized.sh        # carry [".gpu"]
# Sections can be picked with SECTIONS="tests gemv model kv serve tp3 load" (default: all).
set -uo pipefail
out=${OUT:-/tmp/tpserve_gpu}; mkdir -p "$out"
exec > >(tee "$out/gpu_log.txt") 2>&1
repo=$(pwd)
bundle=.gpu/bundle.tar.xz
source "$repo/tests/gpu/env.sh"
sections=" ${SECTIONS:-tests gemv model kv serve tp3 load} "
want() { [[ $sections == *" $1 "* ]]; }
quiet() { grep -v "^\[.*info\]"; }
# The load section's 14 GiB checkpoint is written in the background from the start (disk-bound).
ckpt=/tmp/tpserve_load_qwen2.5-7b
if want load; then
  ( python3 tests/bench/make_load_bench_model.py $ckpt --shape qwen2.5-7b --dtype bf16 --files 4 \
      >/tmp/gen_7b.log 2>&1 ) &
  gen=$!
fi
step devices; nvidia-smi -L; nvidia-smi --query-gpu=clocks.sm,clocks.mem,power.limit --format=csv
ldd $bin/tpserve | grep -E "not found"

if want tests; then
  step "CUDA ops against the CPU twins (quantized linear and int8 KV included)"
  timeout 240 $bin/tpserve_unit_tests --gtest_filter='Cuda*:*ScatterAdd*:*Moe*' --gtest_brief=1 2>&1 | tail -30
  # np 2 and 3 share the GPU (host-staged): uneven 9-head and 8-head splits, quantized fixtures.
  for np in 1 2 3; do
    step "GPU model tests np=$np (fixtures incl. GPTQ/AWQ/GGUF and llama_9heads)"
    timeout 240 "${mpi[@]}" -np $np $bin/tpserve_mpi_tests --gtest_filter='*Gpu*' --gtest_brief=1 > /tmp/mpi_$np.log 2>&1
    echo "exit $?"; grep -E "FAILED|PASSED|Failure|SKIPPED|tests ran|Expected|Which|actual" /tmp/mpi_$np.log | sort | uniq -c | head -30
    grep -E "fidelity.*(gptq|awq|gguf|9heads)" /tmp/mpi_$np.log | head -24
  done
  step "generate at TP=5 on one GPU (host-staged): uneven shards of qwen2_tied's 12 heads"
  echo "transformers: $(head -1 tests/fixtures/qwen2_tied/reference_greedy.txt)"
  timeout 90 "${mpi[@]}" -np 5 $bin/tpserve generate --model tests/fixtures/qwen2_tied \
    --prompt-ids 1,17,300,42,7 --max-tokens 16 --ignore-eos --device cuda --dtype fp16 \
    --allow-shared-gpu --no-progress 2>&1 | grep -E "^tokens:|error"
  step "generate a GPTQ fixture on the GPU at TP 1 and 2, int8 KV too"
  echo "transformers: $(head -1 tests/fixtures/gptq_llama_act_order/reference_greedy.txt)"
  ids=$(head -1 tests/fixtures/gptq_llama_act_order/reference_greedy.txt | cut -d' ' -f1)
  for np in 1 2; do for kv in auto int8; do
    timeout 60 "${mpi[@]}" -np $np $bin/tpserve generate --model tests/fixtures/gptq_llama_act_order \
      --prompt-ids "$ids" --max-tokens 16 --ignore-eos --device cuda --dtype bf16 --kv-cache-dtype $kv \
      --allow-shared-gpu --no-progress 2>&1 | grep -E "^tokens:|error" | sed "s/^/np $np kv $kv: /"
  done; done
fi

if want gemv; then
  step "W4A16 / W8A16 GEMM vs cuBLASLt bf16: qwen2.5-7b's layers and qwen2-72b's at TP=8"
  shapes7=4608x3584,3584x3584,37888x3584,3584x18944
  shapes72=1280x8192,8192x1024,7424x8192,8192x3712
  timeout 150 $bin/tpserve bench --device cuda --gemv $shapes7,$shapes72 --gemv-bits 4 \
    --gemv-group 128 --gemv-tokens 1,4,16,64 --iters 50 --json "$out/gemv_int4.json" 2>&1 | quiet
  timeout 100 $bin/tpserve bench --device cuda --gemv $shapes7 --gemv-bits 8 --gemv-group 128 \
    --gemv-tokens 1,16 --iters 50 --json "$out/gemv_int8.json" 2>&1 | quiet
  step "the fused kernel's knobs: blocks per SM targeted (default 4), prefetch off (default on)"
  for knobs in TPSERVE_QUANT_BLOCKS_PER_SM=2 TPSERVE_QUANT_BLOCKS_PER_SM=8 TPSERVE_QUANT_PREFETCH=0 \
               "TPSERVE_QUANT_PREFETCH=0 TPSERVE_QUANT_BLOCKS_PER_SM=8"; do
    echo "$knobs"
    env $knobs timeout 60 $bin/tpserve bench --device cuda \
      --gemv 4608x3584,37888x3584,3584x18944,1280x8192,8192x3712 --gemv-bits 4 --gemv-group 128 \
      --gemv-tokens 1,16 --iters 50 2>&1 | quiet | tail -n +3
  done
fi

if want model; then
  step "qwen2.5-7b decode: bf16 vs GPTQ int4 (group 128), whole model on one GPU"
  for q in none gptq-int4; do
    timeout 150 $bin/tpserve bench --device cuda --dtype bf16 --preset qwen2.5-7b --quant $q \
      --batch 1,16 --context 1024 --iters 20 --prompt-len 512 --json "$out/bench_7b_$q.json" 2>&1 | quiet
  done
  step "qwen2-72b GPTQ int4, the WHOLE model on one GPU (TP=1)"
  timeout 240 $bin/tpserve bench --device cuda --dtype bf16 --preset qwen2-72b --quant gptq-int4 \
    --tp 1 --batch 1,16 --context 1024 --iters 10 --prompt-len 256 --json "$out/bench_72b_int4.json" 2>&1 | quiet
fi

if want kv; then
  step "qwen2.5-7b decode with the int8 KV cache vs bf16 KV (batch 32, context 4096)"
  for kv in auto int8; do
    timeout 120 $bin/tpserve bench --device cuda --dtype bf16 --preset qwen2.5-7b --kv-cache-dtype $kv \
      --batch 1,32 --context 4096 --iters 10 --prompt-len 256 --json "$out/bench_7b_kv_$kv.json" 2>&1 | quiet
  done
fi

if want serve; then
  step "serving at real scale (issue 16): serve --synthetic qwen2.5-7b, bench-serve at 1/8/32/128"
  for q in none gptq-int4; do
    "${mpi[@]}" -np 1 $bin/tpserve serve --synthetic qwen2.5-7b --quant $q --device cuda --port 0 \
      --max-seqs 128 > /tmp/serve_$q.out 2> /tmp/serve_$q.err &
    job=$!
    for _ in $(seq 900); do grep -q '^serving ' /tmp/serve_$q.out && break; kill -0 $job 2>/dev/null || break; sleep 0.2; done
    line=$(grep '^serving ' /tmp/serve_$q.out) || { tail -5 /tmp/serve_$q.err; continue; }
    port=$(sed -n 's/.* on [^:]*:\([0-9]*\) (.*/\1/p' <<<"$line")
    pid=$(sed -E 's/.*pid ([0-9]+)\).*/\1/' <<<"$line")
    for c in 1 8 32 128; do
      echo "--quant $q concurrency $c"
      timeout 90 $bin/tpserve bench-serve --addr 127.0.0.1:$port --requests $((c * 4)) --concurrency $c \
        --prompt-len 512 --output-len 128 --json "$out/serve_${q}_c$c.json" 2>&1 | grep -E "throughput|ttft|itl"
    done
    kill -TERM $pid; wait $job
  done
fi

if want tp3; then
  step "uneven shards (issue 19): qwen2.5-7b at TP=3 (28 heads: 10,9,9), the largest and a smallest shard"
  for r in 0 2; do
    timeout 90 $bin/tpserve bench --device cuda --dtype bf16 --preset qwen2.5-7b --tp 3 --rank $r \
      --batch 1,32 --context 1024 --iters 10 --prompt-len 256 \
      --json "$out/bench_tp3_rank$r.json" 2>&1 | quiet
  done
  timeout 30 $bin/tpserve plan --preset qwen2.5-7b --tp 3 2>&1 | grep -iE "imbalance|rank" | head -6
fi
if want load; then
  # GPU: the load against min(page-cache read, pinned H2D) measured in the same run (goal 0.8).
  # CPU: the same checkpoint into float32 at TP 1/2/4 against the memory copy measured in the same
  # run (goal 0.5) on a machine whose first touches of fresh memory are not a virtual machine's.
  step "load benchmark (issue 18): qwen2.5-7b-shaped bf16, 14.19 GiB in 4 files"
  wait $gen; tail -2 /tmp/gen_7b.log; df -h /tmp | tail -1
  if [[ -f $ckpt/model.safetensors.index.json ]]; then
    cat $ckpt/*.safetensors >/dev/null
    for dt in bf16 fp16; do
      timeout 120 "${mpi[@]}" -np 1 $bin/tpserve bench --load $ckpt --device cuda --dtype $dt \
        --load-threads 8 --json "$out/load_gpu_${dt}.json" 2>&1 | quiet
    done
    # The pinned buffer per thread, smaller (may stay in the last-level cache between the read and
    # the DMA) and larger (fewer DMAs) than the default 8 MiB.
    for mib in 1 2 4 32; do
      TPSERVE_LOAD_CHUNK_MIB=$mib timeout 120 "${mpi[@]}" -x TPSERVE_LOAD_CHUNK_MIB -np 1 $bin/tpserve \
        bench --load $ckpt --device cuda --dtype bf16 --load-threads 8 \
        --json "$out/load_gpu_bf16_chunk$mib.json" 2>&1 | quiet | tail -n +2
    done
    for np in 1 2 4; do
      timeout 150 "${mpi[@]}" -np $np $bin/tpserve bench --load $ckpt --device cpu \
        --load-threads $((16 / np)) --json "$out/load_cpu_np$np.json" 2>&1 | quiet
    done
  else
    echo "no checkpoint $ckpt"
  fi
fi
step done
