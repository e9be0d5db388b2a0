#include "kernels/cpu/row_pool.h"

#include <cblas.h>
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace tpserve::kernels::cpu {

namespace {

// Pause iterations a worker spins before it sleeps (~0.1-1 ms): longer than the gap between two
// GEMVs of one decode step, short enough that an idle server does not keep a core busy.
constexpr int kSpins = 1 << 14;

// A spin step; every 64th gives the core away, so that on a machine with more runnable threads
// than cores a spinner does not hold the core the thread it waits for needs.
inline void pause_or_yield(int spin) {
  if (spin % 64 == 63) {
    std::this_thread::yield();
  } else {
    _mm_pause();
  }
}

class RowPool {
 public:
  explicit RowPool(int workers) {
    for (int i = 0; i < workers; ++i) threads_.emplace_back([this, i] { work(i + 1); });
  }
  ~RowPool() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
      generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    for (std::thread& thread : threads_) thread.join();
  }
  int workers() const { return static_cast<int>(threads_.size()); }

  // Runs job(0) here and job(1..workers) on the workers.
  void run(const std::function<void(int)>& job) {
    job_ = &job;
    pending_.store(workers(), std::memory_order_relaxed);
    {
      std::lock_guard<std::mutex> lock(mutex_);  // a worker going to sleep sees the new generation
      generation_.fetch_add(1, std::memory_order_release);
    }
    if (sleepers_.load(std::memory_order_acquire) > 0) wake_.notify_all();
    job(0);
    for (int spin = 0; pending_.load(std::memory_order_acquire) != 0; ++spin) pause_or_yield(spin);
  }

 private:
  void work(int index) {
    uint64_t seen = 0;
    while (true) {
      uint64_t now = generation_.load(std::memory_order_acquire);
      for (int spin = 0; now == seen && spin < kSpins; ++spin) {
        pause_or_yield(spin);
        now = generation_.load(std::memory_order_acquire);
      }
      if (now == seen) {
        std::unique_lock<std::mutex> lock(mutex_);
        sleepers_.fetch_add(1, std::memory_order_acq_rel);
        wake_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
        sleepers_.fetch_sub(1, std::memory_order_acq_rel);
        now = generation_.load(std::memory_order_acquire);
      }
      seen = now;
      if (stop_) return;
      (*job_)(index);
      pending_.fetch_sub(1, std::memory_order_acq_rel);
    }
  }

  std::vector<std::thread> threads_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<int> sleepers_{0};
  const std::function<void(int)>* job_ = nullptr;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
};

}  // namespace

int row_threads() { return std::max(1, openblas_get_num_threads()); }

void parallel_rows(int64_t n, int64_t align, const std::function<void(int64_t, int64_t)>& part) {
  const int64_t units = (n + align - 1) / align;
  const int threads = static_cast<int>(std::min<int64_t>(row_threads(), units));
  if (threads <= 1) {
    part(0, n);
    return;
  }
  // One pool per calling thread (each rank's compute thread), rebuilt when the count changes.
  thread_local std::unique_ptr<RowPool> pool;
  if (pool == nullptr || pool->workers() != threads - 1) pool = std::make_unique<RowPool>(threads - 1);
  const int64_t per = (units + threads - 1) / threads;
  pool->run([&](int index) {
    const int64_t begin = std::min(n, index * per * align);
    const int64_t end = std::min(n, (index + 1) * per * align);
    if (begin < end) part(begin, end);
  });
}

}  // namespace tpserve::kernels::cpu
