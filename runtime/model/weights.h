// This rank's weights on its backend, loaded shard by shard straight from the Hugging Face
// checkpoint: each canonical weight is read (only its own byte ranges), widened to float32 in a
// host staging buffer the size of that one shard, and uploaded in the compute dtype. Host memory
// during load is bounded by the largest single shard, never the model.
#pragma once

#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "kernels/quantized_device.h"
#include "kernels/quantized_host.h"
#include "runtime/formats/safetensors.h"
#include "runtime/model/device_buffer.h"
#include "runtime/model/linear_weight.h"
#include "runtime/model/lora.h"
#include "runtime/model/weight_plan.h"

namespace tpserve::runtime {

// Checks every source block against the checkpoint before anything is read: the tensor exists,
// is F32/F16/BF16 and has the shape the config implies — or, for a linear weight the checkpoint
// stores quantized, its qweight / qzeros / scales / g_idx do (runtime/model/quantized_load.h).
// Throws a tpserve::Error naming the checkpoint, the tensor and both shapes.
void validate_weights(const Checkpoint& checkpoint, const std::vector<WeightShard>& plan,
                      const QuantConfig& quant = {});

// Strict tensor accounting: the checkpoint's tensors that `accounted` (accounted_tensors of the
// weight plan) does not name, sorted. A tensor no adapter rule reads is a config.json that does not
// match its checkpoint or a family variant the adapter does not know, so unless allow_unused it is
// an error: kInvalidArgument naming the file and the tensors.
std::vector<std::string> check_unused_tensors(const Checkpoint& checkpoint,
                                              const std::set<std::string>& accounted,
                                              bool allow_unused);

struct LoadProgress {
  int64_t bytes_done = 0;   // of this rank's shards, in the compute dtype
  int64_t bytes_total = 0;
  int64_t file_bytes_read = 0;  // read from the checkpoint's files so far
  size_t weights_done = 0;
  size_t weights_total = 0;
};

// Uploads n values of the backend's compute dtype to dst: uniform in [-scale, scale), a function
// of (seed, index) only, generated on the host in chunks of a few MiB.
void upload_synthetic(kernels::Backend& backend, void* dst, int64_t n, float scale, uint64_t seed);

class WeightStore {
 public:
  WeightStore() = default;

  // Validates, then loads every shard of the plan. `progress` (optional) is called after each.
  // With a LoRA adapter, it is validated against the plan too and merged into each staged shard
  // before upload. Linear weights the checkpoint stores quantized (`quant` says how) stay packed:
  // codes, scales and mins are uploaded as kernels/quantized.h lays them out. Float shards of
  // safetensors files without an adapter are read by `load_threads` threads at once straight into
  // their buffers (runtime/model/shard_loader.h; 0: default_load_threads()); the others (GGUF,
  // LoRA-merged, quantized) one at a time through a float32 staging copy.
  void load(const Checkpoint& checkpoint, const std::vector<WeightShard>& plan,
            kernels::Backend& backend,
            const std::function<void(const LoadProgress&)>& progress = {},
            const LoraAdapter* lora = nullptr, const QuantConfig& quant = {},
            int load_threads = 0);

  // Synthetic weights of the plan's shapes, no checkpoint (tpserve bench, memory checks):
  // deterministic in `seed`, uniform in [-0.02, 0.02) (norm weights 1, vocab padding rows 0),
  // generated and uploaded in fixed-size chunks so host memory stays bounded. With `quant`
  // enabled, the linear weights it would quantize are packed instead (kernels/quantized.h): random
  // codes, every group's scale and zero putting the weights in [-0.02, 0.02].
  void load_synthetic(const std::vector<WeightShard>& plan, kernels::Backend& backend,
                      uint64_t seed, const std::function<void(const LoadProgress&)>& progress = {},
                      const QuantConfig& quant = {});

  // The device pointer of a canonical weight, or nullptr when the plan has none by that name.
  const void* find(const std::string& name) const;
  // As find, but a missing weight is a broken invariant.
  const void* get(const std::string& name) const;
  // A linear weight, float or quantized; present() false when the plan has none by that name.
  LinearWeight find_linear(const std::string& name) const;
  LinearWeight get_linear(const std::string& name) const;

  size_t bytes() const { return bytes_; }

 private:
  // Keeps `buffer` as `weight`'s shard and reports the progress.
  void store(const WeightShard& weight, DeviceBuffer buffer, LoadProgress& state,
             const std::function<void(const LoadProgress&)>& progress);
  // Uploads a quantized shard and keeps it under `weight`'s name.
  void store_quantized(const WeightShard& weight, const kernels::QuantizedHostMatrix& host,
                       kernels::Backend& backend, LoadProgress& state,
                       const std::function<void(const LoadProgress&)>& progress);

  std::map<std::string, DeviceBuffer> buffers_;
  std::map<std::string, kernels::DeviceQuantizedMatrix> quantized_;
  size_t bytes_ = 0;
};

}  // namespace tpserve::runtime
