// transformers' reference outputs for a fixture (tests/fixtures/<name>/reference.json, written by
// make_fixtures.py).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "runtime/model/step.h"

namespace tpserve::testing {

struct ReferenceCase {
  std::vector<int32_t> prompt_ids;
  std::vector<std::vector<float>> logits;  // [prompt position][vocab]
  std::vector<int32_t> greedy;
};

inline std::vector<ReferenceCase> load_reference(const std::filesystem::path& dir) {
  std::ifstream stream(dir / "reference.json");
  const nlohmann::json root = nlohmann::json::parse(stream);
  std::vector<ReferenceCase> cases;
  for (const auto& item : root.at("cases")) {
    ReferenceCase c;
    c.prompt_ids = item.at("prompt_ids").get<std::vector<int32_t>>();
    c.logits = item.at("logits").get<std::vector<std::vector<float>>>();
    c.greedy = item.at("greedy").get<std::vector<int32_t>>();
    cases.push_back(std::move(c));
  }
  return cases;
}

// One prefill step of `prompt` as sequence 0, logits wanted at every position, its KV blocks taken
// from the top of a pool of `num_kv_blocks` downwards (reverse order: positions must be found
// through the block table, not assumed contiguous).
inline runtime::StepInput prompt_step(const std::vector<int32_t>& prompt, int32_t num_kv_blocks,
                                      int32_t block_size) {
  runtime::StepInput step;
  const auto blocks = static_cast<int32_t>((prompt.size() + block_size - 1) / block_size);
  for (int32_t b = 0; b < blocks; ++b) step.block_tables.push_back(num_kv_blocks - 1 - b);
  step.max_blocks_per_seq = blocks;
  step.seq_prompt_len = {static_cast<int32_t>(prompt.size())};
  for (size_t i = 0; i < prompt.size(); ++i) {
    step.token_ids.push_back(prompt[i]);
    step.token_seq.push_back(0);
    step.token_pos.push_back(static_cast<int32_t>(i));
    step.logit_rows.push_back(static_cast<int32_t>(i));
  }
  return step;
}

// max |logits[row][v] - reference[row][v]| over every row; logits is [rows, vocab] row-major.
inline float max_abs_diff(const std::vector<float>& logits,
                          const std::vector<std::vector<float>>& reference, size_t vocab) {
  float worst = 0;
  for (size_t row = 0; row < reference.size(); ++row) {
    for (size_t v = 0; v < vocab; ++v) {
      worst = std::max(worst, std::fabs(logits[row * vocab + v] - reference[row][v]));
    }
  }
  return worst;
}

}  // namespace tpserve::testing
