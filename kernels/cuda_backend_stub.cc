// kernels/cuda_backend.h in builds without CUDA: no devices, and a clear error if one is asked for.
#include "common/error.h"
#include "kernels/cuda_backend.h"

namespace tpserve::kernels {

int cuda_device_count() { return 0; }

std::unique_ptr<Backend> make_cuda_backend(int device, DType dtype) {
  raise(ErrorCode::kUnimplemented,
        "cuda backend (device {}, dtype {}) requested, but tpserve was built without CUDA", device,
        dtype_name(dtype));
}

double cuda_copy_bandwidth_gbps(int device, size_t bytes) {
  raise(ErrorCode::kUnimplemented,
        "cuda copy bandwidth (device {}, {} bytes) requested, but tpserve was built without CUDA",
        device, bytes);
}

double cuda_graph_seconds(Backend& backend, int calls, const std::function<void(int)>&) {
  raise(ErrorCode::kUnimplemented,
        "cuda graph timing ({} calls on {}) requested, but tpserve was built without CUDA", calls,
        backend.name());
}

}  // namespace tpserve::kernels
