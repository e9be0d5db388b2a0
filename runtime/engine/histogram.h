// A cumulative histogram with fixed bucket bounds, as Prometheus exposes them (each bucket counts
// observations <= its bound). Thread-safe: the engine observes, the metrics endpoint reads.
#pragma once

#include <mutex>
#include <vector>

namespace tpserve::runtime {

class Histogram {
 public:
  struct Snapshot {
    std::vector<double> bounds;
    std::vector<uint64_t> cumulative_counts;  // per bound; the +Inf bucket is `count`
    uint64_t count = 0;
    double sum = 0;
  };

  explicit Histogram(std::vector<double> bounds);

  void observe(double value);
  Snapshot snapshot() const;

  // Latency buckets in seconds, 1 ms to 60 s.
  static std::vector<double> latency_bounds();

 private:
  mutable std::mutex mutex_;
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket (not cumulative)
  uint64_t count_ = 0;
  double sum_ = 0;
};

}  // namespace tpserve::runtime
