#include "runtime/families/architecture.h"

#include <array>

namespace tpserve::runtime {

namespace {

// The registry: adding a family is one adapter file and one line here.
std::array<const Architecture*, 6> registry() {
  return {&llama_architecture(), &qwen2_architecture(), &qwen2_moe_architecture(),
          &qwen_v1_architecture(), &internlm2_architecture(), &chatglm_architecture()};
}

}  // namespace

const Architecture* find_architecture(std::string_view name) {
  for (const Architecture* architecture : registry()) {
    if (architecture->name == name) return architecture;
  }
  return nullptr;
}

std::vector<std::string_view> architecture_names() {
  std::vector<std::string_view> names;
  for (const Architecture* architecture : registry()) names.push_back(architecture->name);
  return names;
}

}  // namespace tpserve::runtime
