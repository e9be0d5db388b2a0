// GGUF metadata -> ModelConfig (hand-written metadata; the fixture files are compared with their
// transformers checkpoints in tests/runtime/model/checkpoint_source_test.cc), the tensor names and
// the Q/K row order.
#include "runtime/families/gguf_config.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "common/error.h"

namespace tpserve::runtime {
namespace {

using nlohmann::json;

json llama_metadata() {
  return {{"general.architecture", "llama"}, {"general.name", "tiny"},
          {"llama.embedding_length", 64}, {"llama.feed_forward_length", 160},
          {"llama.block_count", 2}, {"llama.attention.head_count", 8},
          {"llama.attention.head_count_kv", 2}, {"llama.context_length", 256},
          {"llama.attention.layer_norm_rms_epsilon", 1e-5}, {"llama.rope.freq_base", 500000.0},
          {"llama.rope.dimension_count", 8}, {"llama.vocab_size", 512},
          {"tokenizer.ggml.eos_token_id", 2}};
}

const std::vector<std::string> kTied = {"token_embd.weight"};

std::string error_of(const json& metadata, std::vector<std::string> tensors = kTied) {
  try {
    model_config_from_gguf(metadata, tensors, "m.gguf");
  } catch (const Error& error) {
    return error.what();
  }
  return "no error";
}

TEST(GgufConfig, ReadsLlamaKeys) {
  const ModelConfig config = model_config_from_gguf(llama_metadata(), kTied, "m.gguf");
  EXPECT_EQ(config.architecture, "LlamaForCausalLM");
  EXPECT_EQ(config.hidden_size, 64);
  EXPECT_EQ(config.intermediate_size, 160);
  EXPECT_EQ(config.num_layers, 2);
  EXPECT_EQ(config.num_heads, 8);
  EXPECT_EQ(config.num_kv_heads, 2);
  EXPECT_EQ(config.head_dim, 8);
  EXPECT_EQ(config.max_position_embeddings, 256);
  EXPECT_FLOAT_EQ(config.rope.theta, 500000.0f);
  EXPECT_TRUE(config.tie_word_embeddings);  // no output.weight
  EXPECT_FALSE(config.qkv_bias);
  EXPECT_EQ(config.eos_token_ids, std::vector<int32_t>{2});
  EXPECT_EQ(config.dir, "m.gguf");
  const ModelConfig untied =
      model_config_from_gguf(llama_metadata(), {"token_embd.weight", "output.weight"}, "m.gguf");
  EXPECT_FALSE(untied.tie_word_embeddings);
}

TEST(GgufConfig, ReportsUnknownKeys) {
  json metadata = llama_metadata();
  metadata["llama.some_new_key"] = 1;
  const ModelConfig config = model_config_from_gguf(metadata, kTied, "m.gguf");
  EXPECT_EQ(config.unknown_fields, std::vector<std::string>{"llama.some_new_key"});
}

TEST(GgufConfig, RefusesWhatItDoesNotImplement) {
  json metadata = llama_metadata();
  metadata["general.architecture"] = "gemma";
  EXPECT_NE(error_of(metadata).find("'gemma' is not supported (llama, qwen2 are)"), std::string::npos);
  metadata.erase("general.architecture");
  EXPECT_NE(error_of(metadata).find("m.gguf: metadata 'general.architecture': missing"), std::string::npos);
  metadata = llama_metadata();
  metadata["llama.rope.scaling.type"] = "linear";
  EXPECT_NE(error_of(metadata).find("llama.rope.scaling.type"), std::string::npos);
  metadata = llama_metadata();
  metadata["llama.expert_count"] = 8;
  EXPECT_NE(error_of(metadata).find("llama.expert_count"), std::string::npos);
  metadata = llama_metadata();
  metadata["llama.rope.dimension_count"] = 4;
  EXPECT_NE(error_of(metadata).find("m.gguf: metadata 'llama.rope.dimension_count': 4 differs"),
            std::string::npos);
  metadata = llama_metadata();
  metadata["llama.attention.value_length"] = 16;
  metadata["llama.attention.key_length"] = 8;
  EXPECT_NE(error_of(metadata).find("llama.attention.value_length"), std::string::npos);
}

TEST(GgufConfig, NamesTheKeyOfABadValue) {
  json metadata = llama_metadata();
  metadata["llama.embedding_length"] = "wide";
  EXPECT_EQ(error_of(metadata), "m.gguf: metadata 'llama.embedding_length': expected a number, got a string");
  metadata = llama_metadata();
  metadata["llama.attention.head_count"] = 7;  // 64 is not a multiple of 7
  EXPECT_NE(error_of(metadata).find("(GGUF metadata 'llama.attention.head_count')"), std::string::npos)
      << error_of(metadata);
  metadata = llama_metadata();
  metadata.erase("llama.block_count");
  EXPECT_NE(error_of(metadata).find("llama.block_count"), std::string::npos) << error_of(metadata);
}

TEST(GgufConfig, TensorNames) {
  ModelConfig config = model_config_from_gguf(llama_metadata(), kTied, "m.gguf");
  const std::vector<GgufTensorName> names = gguf_tensor_names(config);
  ASSERT_EQ(names.size(), 2u + 2 * 9);  // tied: no output.weight
  EXPECT_EQ(names[2].gguf_name, "blk.0.attn_norm.weight");
  EXPECT_EQ(names[2].name, "model.layers.0.input_layernorm.weight");
  EXPECT_EQ(names[4].gguf_name, "blk.0.attn_q.weight");
  EXPECT_EQ(names[4].permuted_heads, 8);
  EXPECT_EQ(names[5].permuted_heads, 2);  // attn_k: the KV heads
  EXPECT_EQ(names[6].permuted_heads, 0);  // attn_v is not permuted
  json qwen = llama_metadata();
  qwen["general.architecture"] = "qwen2";
  const json llama = llama_metadata();
  for (auto it = llama.begin(); it != llama.end(); ++it) {
    if (it.key().rfind("llama.", 0) == 0) {
      qwen.erase(it.key());
      qwen["qwen2." + it.key().substr(6)] = it.value();
    }
  }
  config = model_config_from_gguf(qwen, kTied, "m.gguf");
  EXPECT_TRUE(config.qkv_bias);
  for (const GgufTensorName& name : gguf_tensor_names(config)) EXPECT_EQ(name.permuted_heads, 0);
  EXPECT_EQ(gguf_tensor_names(config).size(), 2u + 2 * 12);  // + q/k/v biases
}

// convert_hf_to_gguf's permute on one head of 4 rows: HF [r0 r1 r2 r3] (halves [r0 r1], [r2 r3])
// becomes GGUF [r0 r2 r1 r3]; the inverse read order is the same pattern.
TEST(GgufConfig, RopePairRowOrder) {
  EXPECT_EQ(rope_pairs_to_halves_rows(1, 4), (std::vector<int64_t>{0, 2, 1, 3}));
  EXPECT_EQ(rope_pairs_to_halves_rows(2, 4), (std::vector<int64_t>{0, 2, 1, 3, 4, 6, 5, 7}));
  EXPECT_EQ(rope_pairs_to_halves_rows(1, 6), (std::vector<int64_t>{0, 2, 4, 1, 3, 5}));
}

}  // namespace
}  // namespace tpserve::runtime
