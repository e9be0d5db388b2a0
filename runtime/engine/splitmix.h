// splitmix64's output function (Steele, Lea, Flood 2014): a cheap 64-bit mixer whose every output
// bit depends on every input bit. The sampler's RNG and the prefix cache's block hashes use it.
#pragma once

#include <cstdint>

namespace tpserve::runtime {

// splitmix64's state advances by the golden gamma; output = mix64(state).
constexpr uint64_t kSplitmixGamma = 0x9e3779b97f4a7c15ULL;

inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

}  // namespace tpserve::runtime
