// Every family's config.json field table (issue 20): the fixtures (config.json files written by
// transformers or the family's own remote code) hold no field the tables do not know; each
// math-changing field toggled in a fixture copy either changes the ModelConfig as the family's
// modeling code does with it, or is refused with one line naming config.json and the field; an
// unknown field is listed and logged once.
#include <gtest/gtest.h>

#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/field_table.h"
#include "runtime/families/load_config.h"
#include "tests/test_support.h"

namespace tpserve::runtime {
namespace {

using Check = std::function<void(const ModelConfig&)>;

struct Toggle {
  const char* fixture;
  nlohmann::json edit;   // merged into the fixture's config.json (null removes a field)
  const char* refused;   // the field named in the refusal, or nullptr
  Check check;           // otherwise: what the family's code makes of the edit
};

class ConfigFields : public ::testing::Test {
 protected:
  ModelConfig load_edited(const char* fixture, const nlohmann::json& edit) {
    std::ifstream in(testing::fixtures_dir() / fixture / "config.json");
    nlohmann::json config = nlohmann::json::parse(in);
    config.merge_patch(edit);
    std::filesystem::create_directories(dir());
    std::ofstream(dir() / "config.json") << config.dump(2);
    return load_model_config(dir());
  }
  // A fresh directory per load: the unknown-field line is logged once per file path.
  std::filesystem::path dir() const { return scratch_.path() / std::to_string(loads_); }
  void next() { ++loads_; }

  void run(const Toggle& toggle) {
    SCOPED_TRACE(std::string(toggle.fixture) + " " + toggle.edit.dump());
    next();
    if (toggle.refused == nullptr) {
      toggle.check(load_edited(toggle.fixture, toggle.edit));
      return;
    }
    try {
      load_edited(toggle.fixture, toggle.edit);
      ADD_FAILURE() << "accepted";
    } catch (const Error& e) {
      const std::string expected =
          (dir() / "config.json").string() + ": field '" + toggle.refused + "'";
      EXPECT_EQ(std::string(e.what()).find(expected), 0u) << e.what();
      EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << "one line";
    }
  }

  testing::ScratchDir scratch_{"config_fields"};
  int loads_ = 0;
};

constexpr const char* kFixtures[] = {"llama_gqa", "llama_bias_f16", "llama_dynamic", "qwen2_tied",
                                     "qwen2_moe", "qwen_v1", "qwen_v1_ntk", "internlm2", "chatglm",
                                     "gptq_llama_act_order", "gptq_qwen2_int8", "awq_llama"};

TEST_F(ConfigFields, EveryFixtureFieldIsInItsFamilysTable) {
  for (const char* fixture : kFixtures) {
    const ModelConfig c = load_model_config(testing::fixtures_dir() / fixture);
    EXPECT_TRUE(c.unknown_fields.empty()) << fixture << ": " << ::testing::PrintToString(c.unknown_fields);
  }
}

TEST_F(ConfigFields, UnknownFieldsAreListedAndLoggedOnceOnOneLine) {
  testing::LogCapture capture;
  next();
  const ModelConfig c = load_edited("llama_gqa", {{"sliding_window_pattern", 4},
                                                  {"rope_parameters", {{"mrope_section", {1, 2}}}},
                                                  {"attn_logit_softcapping", 30.0}});
  EXPECT_EQ(c.unknown_fields, (std::vector<std::string>{"attn_logit_softcapping",
                                                        "sliding_window_pattern",
                                                        "rope_parameters.mrope_section"}));
  const std::string line = unknown_fields_line(dir() / "config.json", c.unknown_fields);
  EXPECT_NE(capture.text().find("[warning] " + line + "\n"), std::string::npos) << capture.text();
  // Loading the same file again (every reader of config.json on a rank) adds no second line.
  load_model_config(dir());
  EXPECT_EQ(capture.text().find(line), capture.text().rfind(line));
}

TEST_F(ConfigFields, CommonFieldsAcrossFamilies) {
  for (const char* fixture : kFixtures) {
    run({fixture, {{"quantization_config", {{"quant_method", "bitsandbytes"}, {"bits", 4}}}},
         "quantization_config.quant_method", nullptr});
    run({fixture, {{"is_encoder_decoder", true}}, "is_encoder_decoder", nullptr});
    run({fixture, {{"tie_word_embeddings", true}}, nullptr,
         [](const ModelConfig& c) { EXPECT_TRUE(c.tie_word_embeddings); }});
    // Harmless by design: no refusal, nothing listed.
    run({fixture, {{"use_cache", false}, {"transformers_version", "9.9"}, {"pad_token_id", 7}},
         nullptr, [](const ModelConfig& c) { EXPECT_TRUE(c.unknown_fields.empty()); }});
  }
}

// The quantization settings as the quantizers write them: AutoGPTQ's quantize_config.json (no
// quant_method; zero points stored minus one), GPTQModel's checkpoint_format gptq_v2, AutoAWQ's
// quant_config.json (w_bit, q_group_size, version), and config.json's quantization_config.
TEST_F(ConfigFields, QuantizationSettingsFromEachFile) {
  const auto load_with = [&](const char* file, const nlohmann::json& settings) {
    next();
    std::filesystem::create_directories(dir());
    std::filesystem::copy(testing::fixtures_dir() / "llama_gqa" / "config.json", dir() / "config.json");
    std::ofstream(dir() / file) << settings.dump();
    return load_model_config(dir()).quant;
  };
  QuantConfig q = load_with("quantize_config.json", {{"bits", 4}, {"group_size", 128},
                                                     {"desc_act", true}, {"damp_percent", 0.01}});
  EXPECT_EQ(q.method, QuantMethod::kGptq);
  EXPECT_EQ(q.bits, 4);
  EXPECT_EQ(q.group_size, 128);
  EXPECT_TRUE(q.desc_act);
  EXPECT_EQ(q.zero_offset, 1);
  EXPECT_EQ(q.input_align(), 8);  // act-order: one int32 word of codes, not a group
  q = load_with("quantize_config.json", {{"bits", 8}, {"group_size", -1}, {"checkpoint_format", "gptq_v2"}});
  EXPECT_EQ(q.group_size, 0);
  EXPECT_EQ(q.zero_offset, 0);
  q = load_with("quant_config.json",
                {{"w_bit", 4}, {"q_group_size", 64}, {"zero_point", true}, {"version", "GEMM"}});
  EXPECT_EQ(q.method, QuantMethod::kAwq);
  EXPECT_EQ(q.group_size, 64);
  EXPECT_EQ(q.zero_offset, 0);
  EXPECT_EQ(q.input_align(), 64);
  next();
  const ModelConfig c = load_edited(
      "qwen2_tied", {{"quantization_config", {{"quant_method", "gptq"}, {"bits", 8}, {"group_size", 32},
                                              {"sym", true}, {"new_knob", 1}}}});
  EXPECT_EQ(c.quant.method, QuantMethod::kGptq);
  EXPECT_EQ(c.quant.bits, 8);
  EXPECT_EQ(c.unknown_fields, (std::vector<std::string>{"quantization_config.new_knob"}));
}

TEST_F(ConfigFields, QuantizationSettingsRefusedByName) {
  const auto gptq = [](nlohmann::json extra) {
    nlohmann::json q = {{"quant_method", "gptq"}, {"bits", 4}, {"group_size", 128}};
    q.merge_patch(extra);
    return nlohmann::json{{"quantization_config", q}};
  };
  const Toggle toggles[] = {
      {"llama_gqa", gptq({{"bits", 3}}), "quantization_config.bits", nullptr},
      {"llama_gqa", gptq({{"group_size", 7}}), "quantization_config.group_size", nullptr},
      {"llama_gqa", gptq({{"group_size", nullptr}}), "quantization_config.group_size", nullptr},
      {"llama_gqa", gptq({{"checkpoint_format", "marlin"}}), "quantization_config.checkpoint_format",
       nullptr},
      {"llama_gqa", gptq({{"is_marlin_format", true}}), "quantization_config.is_marlin_format", nullptr},
      {"llama_gqa", gptq({{"lm_head", true}}), "quantization_config.lm_head", nullptr},
      {"llama_gqa", gptq({{"dynamic", {{"-:.*down.*", nlohmann::json::object()}}}}),
       "quantization_config.dynamic", nullptr},
      {"llama_gqa", gptq({{"quant_method", "awq"}, {"bits", 8}}), "quantization_config.bits", nullptr},
      {"llama_gqa", gptq({{"quant_method", "awq"}, {"version", "gemv"}}),
       "quantization_config.version", nullptr},
      {"llama_gqa", gptq({{"quant_method", "awq"}, {"zero_point", false}}),
       "quantization_config.zero_point", nullptr},
  };
  for (const Toggle& toggle : toggles) run(toggle);
}

// LlamaConfig (modeling_llama.py): attention_bias puts a bias on q/k/v AND o_proj; mlp_bias on
// gate/up/down; head_dim overrides hidden_size / heads; partial_rotary_factor rotates that
// fraction of each head; rope_parameters' type and factor pick the scaling.
TEST_F(ConfigFields, Llama) {
  const Toggle toggles[] = {
      {"llama_gqa", {{"attention_bias", true}}, nullptr,
       [](const ModelConfig& c) { EXPECT_TRUE(c.qkv_bias && c.o_bias && !c.mlp_bias); }},
      {"llama_gqa", {{"mlp_bias", true}}, nullptr,
       [](const ModelConfig& c) { EXPECT_TRUE(c.mlp_bias && !c.qkv_bias); }},
      {"llama_gqa", {{"head_dim", 16}}, nullptr, [](const ModelConfig& c) { EXPECT_EQ(c.head_dim, 16); }},
      {"llama_gqa", {{"num_key_value_heads", 4}}, nullptr,
       [](const ModelConfig& c) { EXPECT_EQ(c.num_kv_heads, 4); }},
      {"llama_gqa", {{"rms_norm_eps", 1e-3}}, nullptr,
       [](const ModelConfig& c) { EXPECT_FLOAT_EQ(c.rms_norm_eps, 1e-3f); }},
      {"llama_gqa", {{"rope_parameters", {{"rope_theta", 5e5}}}}, nullptr,
       [](const ModelConfig& c) { EXPECT_FLOAT_EQ(c.rope.theta, 5e5f); }},
      {"llama_gqa", {{"rope_parameters", {{"partial_rotary_factor", 0.5}}}}, nullptr,
       [](const ModelConfig& c) { EXPECT_EQ(c.rope.rotary_dim, 4); }},
      {"llama_gqa", {{"rope_parameters", {{"rope_type", "linear"}, {"factor", 2.0}}}}, nullptr,
       [](const ModelConfig& c) {
         EXPECT_EQ(c.rope.scaling, RopeScaling::kLinear);
         EXPECT_FLOAT_EQ(c.rope.factor, 2.0f);
       }},
      {"llama_gqa", {{"max_position_embeddings", 64}}, nullptr,
       [](const ModelConfig& c) { EXPECT_EQ(c.max_position_embeddings, 64); }},
      {"llama_gqa", {{"hidden_act", "gelu"}}, "hidden_act", nullptr},
      // Sliced matmuls summed again: same math, so harmless.
      {"llama_gqa", {{"pretraining_tp", 2}}, nullptr,
       [](const ModelConfig& c) { EXPECT_TRUE(c.unknown_fields.empty()); }},
  };
  for (const Toggle& toggle : toggles) run(toggle);
}

// Qwen2Config (modeling_qwen2.py): q/k/v always biased, o_proj never; sliding windows refused.
TEST_F(ConfigFields, Qwen2) {
  const Toggle toggles[] = {
      {"qwen2_tied", {{"rope_theta", 5e5}}, nullptr,
       [](const ModelConfig& c) { EXPECT_FLOAT_EQ(c.rope.theta, 5e5f); }},
      {"qwen2_tied", {{"attention_dropout", 0.1}}, nullptr,
       [](const ModelConfig& c) { EXPECT_TRUE(c.qkv_bias && !c.o_bias); }},
      {"qwen2_tied", {{"use_sliding_window", true}}, "use_sliding_window", nullptr},
      {"qwen2_tied", {{"sliding_window", 64}}, nullptr,  // only with use_sliding_window
       [](const ModelConfig& c) { EXPECT_TRUE(c.unknown_fields.empty()); }},
      {"qwen2_moe", {{"layer_types", {"full_attention", "sliding_attention", "full_attention",
                                      "full_attention"}}},
       "layer_types", nullptr},
  };
  for (const Toggle& toggle : toggles) run(toggle);
}

// Qwen2MoeConfig (modeling_qwen2_moe.py): layer L is sparse when L is not in mlp_only_layers and
// (L + 1) % decoder_sparse_step == 0; norm_topk_prob renormalises; qkv_bias switches the q/k/v
// biases (transformers 5).
TEST_F(ConfigFields, Qwen2Moe) {
  const Toggle toggles[] = {
      {"qwen2_moe", {{"decoder_sparse_step", 2}}, nullptr,
       [](const ModelConfig& c) {
         EXPECT_EQ(c.moe.sparse_layers, (std::vector<bool>{false, true, false, true}));
       }},
      {"qwen2_moe", {{"mlp_only_layers", {0, 3}}}, nullptr,
       [](const ModelConfig& c) {
         EXPECT_EQ(c.moe.sparse_layers, (std::vector<bool>{false, true, true, false}));
       }},
      {"qwen2_moe", {{"num_experts", 0}}, nullptr,
       [](const ModelConfig& c) { EXPECT_FALSE(c.moe.any_sparse()); }},
      {"qwen2_moe", {{"norm_topk_prob", true}}, nullptr,
       [](const ModelConfig& c) { EXPECT_TRUE(c.moe.norm_topk_prob); }},
      {"qwen2_moe", {{"num_experts_per_tok", 3}}, nullptr,
       [](const ModelConfig& c) { EXPECT_EQ(c.moe.experts_per_token, 3); }},
      {"qwen2_moe", {{"qkv_bias", false}}, nullptr,
       [](const ModelConfig& c) { EXPECT_FALSE(c.qkv_bias); }},
      {"qwen2_moe", {{"router_aux_loss_coef", 0.5}, {"output_router_logits", true}}, nullptr,
       [](const ModelConfig& c) { EXPECT_TRUE(c.unknown_fields.empty()); }},
      {"qwen2_moe", {{"use_sliding_window", true}}, "use_sliding_window", nullptr},
  };
  for (const Toggle& toggle : toggles) run(toggle);
}

// QWenConfig (modeling_qwen.py): no_bias false biases c_proj and the MLP; use_dynamic_ntk /
// use_logn_attn switch the long-context schemes; scale_attn_weights false (unscaled scores) and
// use_cache_quantization (int8 KV) are refused.
TEST_F(ConfigFields, QwenV1) {
  const Toggle toggles[] = {
      {"qwen_v1", {{"no_bias", false}}, nullptr,
       [](const ModelConfig& c) { EXPECT_TRUE(c.o_bias && c.mlp_bias && c.qkv_bias); }},
      {"qwen_v1", {{"use_dynamic_ntk", false}}, nullptr,
       [](const ModelConfig& c) { EXPECT_EQ(c.rope.scaling, RopeScaling::kNone); }},
      {"qwen_v1", {{"use_logn_attn", false}}, nullptr,
       [](const ModelConfig& c) { EXPECT_EQ(c.logn_attn_context, 0); }},
      {"qwen_v1", {{"use_dynamic_ntk", false}, {"use_logn_attn", false}}, nullptr,
       [](const ModelConfig& c) { EXPECT_EQ(c.max_position_embeddings, 256); }},
      {"qwen_v1", {{"rotary_pct", 0.5}}, nullptr,
       [](const ModelConfig& c) { EXPECT_EQ(c.rope.rotary_dim, 4); }},
      {"qwen_v1", {{"rotary_emb_base", 500}}, nullptr,
       [](const ModelConfig& c) { EXPECT_FLOAT_EQ(c.rope.theta, 500.0f); }},
      {"qwen_v1", {{"scale_attn_weights", false}}, "scale_attn_weights", nullptr},
      {"qwen_v1", {{"use_cache_quantization", true}}, "use_cache_quantization", nullptr},
      {"qwen_v1", {{"bf16", true}, {"use_flash_attn", false}, {"softmax_in_fp32", true}}, nullptr,
       [](const ModelConfig& c) { EXPECT_TRUE(c.unknown_fields.empty()); }},
  };
  for (const Toggle& toggle : toggles) run(toggle);
}

// InternLM2Config (modeling_internlm2.py): "bias" on wqkv and wo, never the MLP.
TEST_F(ConfigFields, InternLM2) {
  const Toggle toggles[] = {
      {"internlm2", {{"bias", false}}, nullptr,
       [](const ModelConfig& c) { EXPECT_FALSE(c.qkv_bias || c.o_bias || c.mlp_bias); }},
      {"internlm2", {{"rope_scaling", {{"type", "linear"}, {"factor", 4.0}}}}, nullptr,
       [](const ModelConfig& c) {
         EXPECT_EQ(c.rope.scaling, RopeScaling::kLinear);
         EXPECT_FLOAT_EQ(c.rope.factor, 4.0f);
       }},
  };
  for (const Toggle& toggle : toggles) run(toggle);
}

// ChatGLMConfig (modeling_chatglm.py). add_bias_linear, multi_query_attention and rope_ratio are
// read as before here; their layouts are the families branch's (issue 12).
TEST_F(ConfigFields, ChatGLM) {
  const Toggle toggles[] = {
      {"chatglm", {{"add_qkv_bias", false}}, nullptr,
       [](const ModelConfig& c) { EXPECT_FALSE(c.qkv_bias); }},
      {"chatglm", {{"rope_ratio", 4.0}}, nullptr,
       [](const ModelConfig& c) { EXPECT_FLOAT_EQ(c.rope.theta, 40000.0f); }},
      {"chatglm", {{"layernorm_epsilon", 1e-3}}, nullptr,
       [](const ModelConfig& c) { EXPECT_FLOAT_EQ(c.rms_norm_eps, 1e-3f); }},
      {"chatglm", {{"rmsnorm", false}}, "rmsnorm", nullptr},
      {"chatglm", {{"post_layer_norm", false}}, "post_layer_norm", nullptr},
      {"chatglm", {{"original_rope", false}}, "original_rope", nullptr},
      {"chatglm", {{"apply_residual_connection_post_layernorm", true}},
       "apply_residual_connection_post_layernorm", nullptr},
      {"chatglm", {{"quantization_bit", 4}}, "quantization_bit", nullptr},
      {"chatglm", {{"pre_seq_len", 128}}, "pre_seq_len", nullptr},
      // Scaled by 1 / layer_number and multiplied back before the softmax: same math.
      {"chatglm", {{"apply_query_key_layer_scaling", false}, {"quantization_bit", 0},
                   {"pre_seq_len", nullptr}, {"prefix_projection", true}}, nullptr,
       [](const ModelConfig& c) { EXPECT_TRUE(c.unknown_fields.empty()); }},
  };
  for (const Toggle& toggle : toggles) run(toggle);
}

}  // namespace
}  // namespace tpserve::runtime
