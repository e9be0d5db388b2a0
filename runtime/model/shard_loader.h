// Reads the dense (float) weight shards of a safetensors checkpoint into backend memory at the
// speed of the page cache: several threads per rank pread the shards' bytes -- whole rows of a
// column block as one read, each row's segment of a row-parallel block as one read -- into
// per-thread host buffers (pinned on CUDA) and hand them to Backend::upload, which converts only
// where the file dtype differs from the compute dtype (on the CPU, a float32 file is read straight
// into the weight, no buffer at all). Pieces of different files are interleaved, so threads read
// several files at once. Nothing else is held: peak host memory is the weights themselves (on the
// CPU) plus threads x load_chunk_bytes() of buffers.
#pragma once

#include <cstdint>
#include <functional>
#include <span>

#include "kernels/ops.h"
#include "runtime/formats/safetensors.h"
#include "runtime/model/weight_plan.h"

namespace tpserve::runtime {

// File bytes one thread reads before handing them on (its buffer size): 8 MiB, or
// TPSERVE_LOAD_CHUNK_MIB (1-256) where the environment sets it -- a tuning knob for the GPU path,
// where a smaller pinned buffer may stay in the host's last-level cache between the read and the
// DMA. Read once; an invalid value raises an error naming the variable.
int64_t load_chunk_bytes();

// TPSERVE_LOAD_CHUNK_MIB's text (nullptr or empty: unset) as bytes; anything but an integer from 1
// to 256 raises kInvalidArgument naming the variable.
int64_t parse_load_chunk_mib(const char* text);

// One dense shard to fill: dst holds weight.numel() elements of the compute dtype; rows past the
// blocks (vocab padding) are zeroed.
struct ShardTarget {
  const WeightShard* weight = nullptr;
  void* dst = nullptr;
};

struct ShardLoadProgress {
  int64_t bytes_done = 0;       // of the targets, in the compute dtype
  int64_t file_bytes_read = 0;  // read from the checkpoint's files
  size_t weights_done = 0;
};

// Threads a load uses when asked for 0: the host's cores, at most 8.
int default_load_threads();

// Fills every target from its blocks (their tensors must be F32/F16/BF16 in safetensors files:
// validate_weights first). `threads` 0 means default_load_threads(). `progress` (optional) is
// called, one call at a time, after each piece. A file that has become shorter than its header
// said, or a read that fails, raises kDataLoss naming the file. Adds the bytes it reads to
// checkpoint.bytes_read().
void load_dense_shards(const Checkpoint& checkpoint, std::span<const ShardTarget> targets,
                       kernels::Backend& backend, int threads,
                       const std::function<void(const ShardLoadProgress&)>& progress = {});

}  // namespace tpserve::runtime
