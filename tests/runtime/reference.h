// transformers' reference outputs for a fixture (tests/fixtures/<name>/reference.json, written by
// make_fixtures.py).
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

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

}  // namespace tpserve::testing
