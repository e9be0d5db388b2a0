// Strict tensor accounting on copies of the transformers fixtures with extra tensors added in a
// shard of their own: a tensor no adapter rule reads is refused by name and file (or listed, with
// allow_unused); the adapters' unread rules pass exactly the rotary caches their families' code
// ignores; MoE experts and layers past the config's count are accounted for by index.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "runtime/families/architecture.h"
#include "runtime/families/load_config.h"
#include "runtime/model/weights.h"
#include "tests/runtime/formats/safetensors_writer.h"
#include "tests/test_support.h"

namespace tpserve::runtime {
namespace {

namespace fs = std::filesystem;

// A copy of fixture `name` in `dir` whose checkpoint also lists `extra` (F32 [2] each) in a shard
// file extra.safetensors: a single model.safetensors becomes the first shard of an index.
void copy_with_extra(const std::string& name, const fs::path& dir,
                     const std::vector<std::string>& extra) {
  const fs::path fixture = testing::fixtures_dir() / name;
  fs::copy(fixture, dir, fs::copy_options::recursive);
  nlohmann::json index = {{"metadata", nlohmann::json::object()},
                          {"weight_map", nlohmann::json::object()}};
  if (fs::exists(dir / "model.safetensors")) {
    fs::rename(dir / "model.safetensors", dir / "model-00001-of-00002.safetensors");
    const auto shard = SafetensorsFile::open(dir / "model-00001-of-00002.safetensors");
    for (const TensorEntry& entry : shard->tensors()) {
      index["weight_map"][entry.name] = "model-00001-of-00002.safetensors";
    }
  } else {
    index = nlohmann::json::parse(std::ifstream(dir / "model.safetensors.index.json"));
  }
  testing::SafetensorsWriter writer;
  for (const std::string& tensor : extra) {
    writer.add_f32(tensor, {2}, {1.0f, 2.0f});
    index["weight_map"][tensor] = "extra.safetensors";
  }
  writer.write(dir / "extra.safetensors");
  std::ofstream(dir / "model.safetensors.index.json") << index.dump();
}

std::vector<std::string> unused_in(const fs::path& dir, bool allow_unused) {
  const ModelConfig config = load_model_config(dir);
  const Architecture* architecture = find_architecture(config.architecture);
  return check_unused_tensors(*Checkpoint::open(dir), accounted_tensors(config, *architecture),
                              allow_unused);
}

TEST(TensorAccounting, EveryFixtureIsFullyRead) {
  for (const char* name : {"llama_gqa", "qwen2_tied", "llama_bias_f16", "llama_dynamic",
                           "qwen2_yarn", "qwen_v1", "qwen_v1_ntk", "internlm2", "chatglm",
                           "chatglm_mha", "chatglm_bias", "qwen2_moe"}) {
    EXPECT_EQ(unused_in(testing::fixtures_dir() / name, false), std::vector<std::string>{})
        << name;
  }
}

TEST(TensorAccounting, UnreadTensorIsRefusedNamingItAndItsFile) {
  testing::ScratchDir scratch("accounting");
  const fs::path dir = scratch.path() / "qwen2";
  // q_norm is not a Qwen2 weight; layer 2 does not exist in a 2-layer config.
  copy_with_extra("qwen2_tied", dir,
                  {"model.layers.0.self_attn.q_norm.weight", "model.layers.2.mlp.up_proj.weight"});
  try {
    unused_in(dir, false);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(message.find((dir / "extra.safetensors").string() +
                           ": tensor 'model.layers.0.self_attn.q_norm.weight', "
                           "'model.layers.2.mlp.up_proj.weight' are not read"),
              std::string::npos)
        << message;
    EXPECT_NE(message.find("--allow-unused-tensors"), std::string::npos) << message;
  }
  EXPECT_EQ(unused_in(dir, true),
            (std::vector<std::string>{"model.layers.0.self_attn.q_norm.weight",
                                      "model.layers.2.mlp.up_proj.weight"}));
}

TEST(TensorAccounting, RotaryCachesPassOnlyWhereTheFamilyIgnoresThem) {
  testing::ScratchDir scratch("accounting");
  // transformers' LLaMA / Qwen2 rotary recomputes inv_freq; older checkpoints ship it per layer.
  copy_with_extra("llama_gqa", scratch.path() / "llama",
                  {"model.layers.0.self_attn.rotary_emb.inv_freq",
                   "model.layers.1.self_attn.rotary_emb.inv_freq"});
  EXPECT_EQ(unused_in(scratch.path() / "llama", false), std::vector<std::string>{});
  // ... but not for a layer the config does not have, nor under another family's name.
  copy_with_extra("llama_gqa", scratch.path() / "llama_more",
                  {"model.layers.2.self_attn.rotary_emb.inv_freq",
                   "transformer.rotary_pos_emb.inv_freq"});
  EXPECT_EQ(unused_in(scratch.path() / "llama_more", true),
            (std::vector<std::string>{"model.layers.2.self_attn.rotary_emb.inv_freq",
                                      "transformer.rotary_pos_emb.inv_freq"}));
  // ChatGLM's fixture carries transformer.rotary_pos_emb.inv_freq as real checkpoints do (and
  // passes, EveryFixtureIsFullyRead); a per-layer copy is not ChatGLM's.
  copy_with_extra("chatglm", scratch.path() / "chatglm",
                  {"transformer.encoder.layers.0.self_attention.rotary_emb.inv_freq"});
  EXPECT_THROW(unused_in(scratch.path() / "chatglm", false), Error);
}

TEST(TensorAccounting, MoeExpertsAreAccountedByIndex) {
  const fs::path fixture = testing::fixtures_dir() / "qwen2_moe";
  const ModelConfig config = load_model_config(fixture);
  ASSERT_GT(config.moe.num_experts, 0);
  const std::set<std::string> accounted =
      accounted_tensors(config, *find_architecture(config.architecture));
  const int last = config.moe.num_experts - 1;
  for (int layer = 0; layer < config.num_layers; ++layer) {
    if (!config.moe.sparse(layer)) continue;
    for (const char* part : {"gate_proj", "up_proj", "down_proj"}) {
      EXPECT_TRUE(accounted.contains(
          fmt::format("model.layers.{}.mlp.experts.{}.{}.weight", layer, last, part)));
    }
  }
  testing::ScratchDir scratch("accounting");
  const std::string extra =
      fmt::format("model.layers.0.mlp.experts.{}.gate_proj.weight", config.moe.num_experts);
  copy_with_extra("qwen2_moe", scratch.path() / "moe", {extra});
  EXPECT_EQ(unused_in(scratch.path() / "moe", true), std::vector<std::string>{extra});
}

}  // namespace
}  // namespace tpserve::runtime
