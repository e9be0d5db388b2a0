// A GGUF file used where a checkpoint directory is: the fixture GGUFs (gguf-py, written the way
// convert_hf_to_gguf writes llama and qwen2 models) give the config and, through the adapters'
// GGUF names, every tensor of the transformers checkpoint they came from, bit for bit.
#include "runtime/model/checkpoint_source.h"

#include <gtest/gtest.h>

#include "common/error.h"
#include "tests/test_support.h"

namespace tpserve::runtime {
namespace {

namespace fs = std::filesystem;

void expect_same_config(const ModelConfig& gguf, const ModelConfig& hf) {
  EXPECT_EQ(gguf.architecture, hf.architecture);
  EXPECT_EQ(gguf.hidden_size, hf.hidden_size);
  EXPECT_EQ(gguf.intermediate_size, hf.intermediate_size);
  EXPECT_EQ(gguf.vocab_size, hf.vocab_size);
  EXPECT_EQ(gguf.num_layers, hf.num_layers);
  EXPECT_EQ(gguf.num_heads, hf.num_heads);
  EXPECT_EQ(gguf.num_kv_heads, hf.num_kv_heads);
  EXPECT_EQ(gguf.head_dim, hf.head_dim);
  EXPECT_FLOAT_EQ(gguf.rms_norm_eps, hf.rms_norm_eps);
  EXPECT_EQ(gguf.max_position_embeddings, hf.max_position_embeddings);
  EXPECT_FLOAT_EQ(gguf.rope.theta, hf.rope.theta);
  EXPECT_EQ(gguf.rope.rotary_dim, hf.rope.rotary_dim);
  EXPECT_EQ(gguf.tie_word_embeddings, hf.tie_word_embeddings);
  EXPECT_EQ(gguf.qkv_bias, hf.qkv_bias);
  EXPECT_EQ(gguf.o_bias, hf.o_bias);
}

class GgufFixture : public ::testing::TestWithParam<const char*> {};

TEST_P(GgufFixture, MatchesTheTransformersCheckpoint) {
  const fs::path dir = testing::fixtures_dir() / GetParam();
  const fs::path file = testing::fixtures_dir() / "gguf" / (std::string(GetParam()) + ".gguf");
  ASSERT_TRUE(is_gguf_file(file));
  EXPECT_FALSE(is_gguf_file(dir));
  const ModelConfig hf = read_model_config(dir);
  const ModelConfig gguf = read_model_config(file);
  expect_same_config(gguf, hf);
  EXPECT_EQ(gguf.dir, file);
  const auto want = open_checkpoint(hf);
  const auto got = open_checkpoint(gguf);
  std::vector<std::string> names = got->tensor_names();
  EXPECT_EQ(names, want->tensor_names());  // every GGUF tensor has its adapter name
  for (const std::string& name : names) {
    const TensorEntry& entry = want->tensor(name);
    EXPECT_EQ(got->tensor(name).shape, entry.shape) << name;
    std::vector<float> expected(static_cast<size_t>(entry.numel())), actual(expected.size());
    want->read_f32(name, 0, entry.rows(), 0, entry.cols(), expected.data());
    got->read_f32(name, 0, entry.rows(), 0, entry.cols(), actual.data());
    EXPECT_EQ(actual, expected) << name;
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GgufFixture, ::testing::Values("llama_gqa", "qwen2_tied"));

}  // namespace
}  // namespace tpserve::runtime
