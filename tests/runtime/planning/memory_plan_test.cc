// The memory plan against hand-computed numbers (a small config at TP=4, qwen2-72b at TP=8, the
// Qwen2-MoE preset), its refusals, the size parser, every shape preset, and synthetic weights.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <functional>

#include "common/error.h"
#include "kernels/ops.h"
#include "runtime/model/local_shard_communicator.h"
#include "runtime/model/weights.h"
#include "runtime/planning/memory_plan.h"
#include "tests/test_support.h"

namespace tpserve::runtime {
namespace {

std::filesystem::path presets_dir() {
  return testing::fixtures_dir().parent_path().parent_path() / "configs" / "presets";
}

PlanModel preset(const std::string& name) {
  return read_plan_model(presets_dir() / (name + ".json"), name);
}

// Qwen2-style (q/k/v biases), 2 layers, hidden 64, 4 q / 2 kv heads of 16, intermediate 102,
// vocab 10, untied.
PlanModel small_model() {
  PlanModel model;
  model.name = "small";
  ModelConfig& c = model.config;
  c.architecture = "Qwen2ForCausalLM";
  c.hidden_size = 64;
  c.intermediate_size = 102;
  c.vocab_size = 10;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 16;
  c.max_position_embeddings = 16;
  c.rope.rotary_dim = 16;
  c.qkv_bias = true;
  return model;
}

MemoryPlanOptions small_options(int64_t memory) {
  MemoryPlanOptions options;
  options.tp_size = 4;
  options.dtype_bytes = 4;
  options.gpu_memory_bytes = memory;
  options.gpu_utilization = 1.0;
  options.model.max_tokens_per_step = 8;
  options.model.max_logit_rows = 2;
  options.model.max_seqs = 2;
  options.model.block_size = 4;
  options.model.max_blocks_per_seq = 4;
  return options;
}

TEST(MemoryPlan, SmallConfigAtTp4MatchesTheHandCount) {
  // TP=4: 1 q head per rank, 1 KV head (2 KV heads < 4 ranks: replicated); intermediate 102 splits
  // 26/26/25/25 (the plan takes the largest rank, 26); vocab 3/3/2/2 rows padded to ceil(10/4) = 3.
  // Per layer: attn_norm 64 + qkv 3*16 rows x 64 = 3072 + qkv_bias 48 + o 64x16 = 1024
  //   + mlp_norm 64 + gate_up 2*26 x 64 = 3328 + down 64 x 26 = 1664 = 9264; x2 layers = 18528.
  // embed 3x64 = 192, lm_head 192, final_norm 64: 18976 elements x 4 bytes = 75904.
  // Replicated: norms 2 x 128 + 64 = 320 elements = 1280 bytes.
  // KV/token: 2 layers x 2 x 1 kv head x 16 x 4 = 256 bytes; a block of 4 = 1024.
  // Workspace (rank with 26 units): hidden, normed, proj 8x64x4 = 2048 each; qkv 8x48x4 = 1536;
  //   attn 8x16x4 = 512; gate_up 8x52x4 = 1664; mlp_act 8x26x4 = 832; final_rows 2x64x4 = 512;
  //   logits_local 2x3x4 = 24; logits_all 4 x 24 = 96; ids/seq/pos 3 x 8 x 4 = 96;
  //   block tables 2x4x4 = 32; logit rows 2x4 = 8: 11456.
  // 100000 bytes: 100000 - 75904 - 11456 = 12640 left = 12 blocks (48 tokens); one step of 8
  // tokens needs 2.
  const MemoryPlan plan = plan_memory(small_model(), small_options(100000));
  EXPECT_EQ(plan.weight_bytes, 75904);
  EXPECT_EQ(plan.replicated_weight_bytes, 1280);
  EXPECT_EQ(plan.kv_bytes_per_token, 256);
  EXPECT_EQ(plan.kv_block_bytes, 1024);
  EXPECT_EQ(plan.workspace_bytes, 11456);
  EXPECT_EQ(plan.budget_bytes, 100000);
  EXPECT_EQ(plan.kv_blocks, 12);
  EXPECT_EQ(plan.kv_tokens, 48);
  EXPECT_EQ(plan.min_kv_blocks, 2);
  EXPECT_TRUE(plan.fits);
  EXPECT_TRUE(plan.message.empty());
}

TEST(MemoryPlan, SaysWhyItDoesNotFit) {
  // 88000: 640 bytes left, no whole block.
  MemoryPlan plan = plan_memory(small_model(), small_options(88000));
  EXPECT_FALSE(plan.fits);
  EXPECT_EQ(plan.kv_blocks, 0);
  EXPECT_NE(plan.message.find("small does not fit at TP=4"), std::string::npos) << plan.message;
  EXPECT_NE(plan.message.find("needs 2"), std::string::npos) << plan.message;
  // 80000: weights + workspace (87360) exceed the budget.
  plan = plan_memory(small_model(), small_options(80000));
  EXPECT_FALSE(plan.fits);
  EXPECT_NE(plan.message.find("exceed the budget"), std::string::npos) << plan.message;
}

TEST(MemoryPlan, TpAboveTheQueryHeadsIsRefusedNamingTheLimit) {
  MemoryPlanOptions options = small_options(100000);
  options.tp_size = 5;
  try {
    plan_memory(small_model(), options);
    FAIL() << "TP=5 with 4 heads accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("size 5 exceeds the 4 query heads"), std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("valid sizes: 1 to 4"), std::string::npos) << e.what();
  }
}

TEST(MemoryPlan, UnevenTp3SizesEveryRankForTheLargestShard) {
  // TP=3 on 4 q / 2 kv heads: q 2,1,1 -> rank 0 [0,2) reads KV head 0, ranks 1 and 2 KV head 1;
  // intermediate 102 = 34 x 3; vocab 10 = 4,3,3 padded to 4.
  // Rank 0 per layer: norms 128 + qkv (2+1+1) x 16 = 64 rows x 64 = 4096 + bias 64 + o 64 x 32 =
  //   2048 + gate_up 68 x 64 = 4352 + down 64 x 34 = 2176 = 12864; x2 = 25728; embed + lm_head
  //   2 x 4 x 64 = 512, final norm 64: 26304 elements = 105216 bytes.
  // Ranks 1, 2: qkv 48 rows x 64 = 3072, bias 48, o 64 x 16 = 1024: 10800 per layer; 21600 + 576
  //   = 22176 elements = 88704 bytes.
  MemoryPlanOptions options = small_options(1 << 20);
  options.tp_size = 3;
  const MemoryPlan plan = plan_memory(small_model(), options);
  ASSERT_EQ(plan.ranks.size(), 3u);
  EXPECT_EQ(plan.ranks[0].weight_bytes, 105216);
  EXPECT_EQ(plan.ranks[1].weight_bytes, 88704);
  EXPECT_EQ(plan.ranks[2].weight_bytes, 88704);
  EXPECT_EQ(plan.weight_bytes, 105216);
  EXPECT_EQ(plan.kv_bytes_per_token, 256);  // every rank holds one KV head
  EXPECT_EQ(plan.ranks[0].shape.heads.num_q_heads(), 2);
  EXPECT_EQ(plan.ranks[2].shape.vocab.end - plan.ranks[2].shape.vocab.begin, 3);
  EXPECT_EQ(plan.ranks[2].shape.vocab.padded_rows, 4);
  // Imbalance: the largest rank's decode bytes over the mean.
  double total = 0;
  int64_t largest = 0;
  for (const RankSplit& rank : plan.ranks) {
    total += static_cast<double>(rank.decode_bytes);
    largest = std::max(largest, rank.decode_bytes);
  }
  EXPECT_EQ(largest, plan.ranks[0].decode_bytes);
  EXPECT_GT(plan.imbalance, 1.05);
  EXPECT_DOUBLE_EQ(plan.imbalance, static_cast<double>(largest) * 3 / total);
  // An even split: no imbalance.
  options.tp_size = 2;
  EXPECT_DOUBLE_EQ(plan_memory(small_model(), options).imbalance, 1.0);
}

TEST(MemoryPlan, KvPoolIsSizedForTheRankWithTheMostKvHeads) {
  // 12 q / 4 kv heads over 5 ranks: q 3,3,2,2,2, KV [0] [1] [2] [2,3] [3] — rank 3's heads straddle
  // two KV groups, so it holds 2 KV heads: 2 layers x 2 x 2 x 16 x 4 = 512 bytes per token.
  PlanModel model = small_model();
  model.config.num_heads = 12;
  model.config.num_kv_heads = 4;
  MemoryPlanOptions options = small_options(1 << 20);
  options.tp_size = 5;
  const MemoryPlan plan = plan_memory(model, options);
  EXPECT_EQ(plan.ranks[0].kv_bytes_per_token, 256);
  EXPECT_EQ(plan.ranks[3].kv_bytes_per_token, 512);
  EXPECT_EQ(plan.kv_bytes_per_token, 512);
  EXPECT_EQ(plan.kv_block_bytes, 512 * 4);
}

TEST(MemoryPlan, Qwen2_72bAtTp8Bf16) {
  // hidden 8192, intermediate 29568 (3696 per rank), 80 layers, 64 q / 8 kv heads of 128 (8 q and
  // 1 kv per rank), vocab 152064 (19008 rows per rank), untied, q/k/v biases.
  // Per layer: norms 2 x 8192 + qkv 1280 x 8192 = 10485760 + bias 1280 + o 8192 x 1024 = 8388608
  //   + gate_up 7392 x 8192 = 60555264 + down 8192 x 3696 = 30277632 = 109724928; x80 =
  //   8777994240; embed + lm_head 2 x 19008 x 8192 = 311427072; final norm 8192:
  //   9089429504 elements = 18178859008 bytes (72.7e9 * 2 / 8 = 18.175e9).
  // Replicated: 80 x 16384 + 8192 = 1318912 elements = 2637824 bytes.
  // Workspace (256 tokens, 64 seqs and logit rows, 2048 blocks per seq): 3 x 4194304 (hidden,
  //   normed, proj) + qkv 655360 + attn 524288 + gate_up 3784704 + mlp_act 1892352 + final rows
  //   1048576 + logits 2433024 + gathered 8 x 2433024 + ids 3072 + tables 524288 + rows 256
  //   = 42913024.
  // 80 GiB x 0.9 = 77309411328; left 59087639296; KV/token 80 x 2 x 128 x 2 = 40960, block of 16
  //   = 655360: 90160 blocks.
  MemoryPlanOptions options;
  options.tp_size = 8;
  options.dtype_bytes = 2;
  options.gpu_memory_bytes = parse_byte_size("80GiB");
  options.gpu_utilization = 0.9;
  options.model.max_logit_rows = 64;
  const MemoryPlan plan = plan_memory(preset("qwen2-72b"), options);
  EXPECT_EQ(plan.weight_bytes, 18178859008);
  EXPECT_NEAR(plan.weight_bytes, 72.7e9 * 2 / 8, 0.01 * 72.7e9 * 2 / 8);
  EXPECT_EQ(plan.replicated_weight_bytes, 2637824);
  EXPECT_EQ(plan.workspace_bytes, 42913024);
  EXPECT_EQ(plan.budget_bytes, 77309411328);
  EXPECT_EQ(plan.kv_bytes_per_token, 40960);
  EXPECT_EQ(plan.kv_blocks, 90160);
  EXPECT_TRUE(plan.fits);

  // An int8 KV cache: 80 x 2 x (128 codes + a 4-byte scale) = 21120 B per position, blocks of
  // 337920: 174856 blocks, 1.94x the bf16 cache's positions in the same memory.
  options.model.kv_cache_dtype = KvCacheDtype::kInt8;
  const MemoryPlan int8 = plan_memory(preset("qwen2-72b"), options);
  EXPECT_EQ(int8.kv_bytes_per_token, 21120);
  EXPECT_EQ(int8.kv_blocks, 174856);
  EXPECT_EQ(int8.weight_bytes, plan.weight_bytes);
  EXPECT_EQ(int8.workspace_bytes, plan.workspace_bytes);
  options.model.kv_cache_dtype = KvCacheDtype::kAuto;

  options.tp_size = 1;  // 145.4e9 bytes of weights on one 80 GiB device
  const MemoryPlan single = plan_memory(preset("qwen2-72b"), options);
  EXPECT_FALSE(single.fits);
  EXPECT_NE(single.message.find("exceed the budget 72.00 GiB"), std::string::npos) << single.message;
}

TEST(MemoryPlan, CountsQwen2MoeExperts) {
  // Per layer: attention 4608 x 3584 + bias 4608 + o 3584 x 3584 + norms 7168 = 29371904;
  //   experts 64 x 3 x 2560 x 3584 = 1761607680; shared expert 3 x 20480 x 3584 = 220200960;
  //   router 64 x 3584 = 229376; shared gate 3584: 2011413504; x28 = 56319578112.
  // Embed + lm_head 2 x 151936 x 3584 = 1089077248; final norm 3584: 57408658944 (57.4B).
  const PlanModel model = preset("qwen2-57b-a14b");
  EXPECT_EQ(model.config.moe.num_experts, 64);
  EXPECT_EQ(model.config.moe.experts_per_token, 8);
  EXPECT_TRUE(model.config.moe.sparse(27));
  int64_t replicated = 0;
  EXPECT_EQ(rank_weight_bytes(model, rank_shape(model.config, 1, 0), 1, &replicated), 57408658944);
  EXPECT_EQ(replicated, 28 * (7168 + 229376 + 3584) + 3584);
}

TEST(MemoryPlan, EveryPresetParses) {
  int count = 0;
  for (const auto& entry : std::filesystem::directory_iterator(presets_dir())) {
    if (entry.path().extension() != ".json") continue;
    SCOPED_TRACE(entry.path().string());
    const PlanModel model = read_plan_model(entry.path(), entry.path().stem().string());
    EXPECT_GT(model.config.num_layers, 0);
    EXPECT_EQ(model.config.head_dim, 128);
    MemoryPlanOptions options;
    options.tp_size = 2;
    options.gpu_memory_bytes = parse_byte_size("80GiB");
    EXPECT_GT(plan_memory(model, options).weight_bytes, 0);
    ++count;
  }
  EXPECT_EQ(count, 9);
}

TEST(ByteSize, ParsesBinaryAndDecimalUnits) {
  EXPECT_EQ(parse_byte_size("80GiB"), 85899345920);
  EXPECT_EQ(parse_byte_size("80GB"), 80000000000);
  EXPECT_EQ(parse_byte_size("81920MiB"), 85899345920);
  EXPECT_EQ(parse_byte_size("80 gib"), 85899345920);
  EXPECT_EQ(parse_byte_size("1.5KiB"), 1536);
  EXPECT_EQ(parse_byte_size("4096"), 4096);
  EXPECT_EQ(parse_byte_size("2TB"), 2000000000000);
  for (const char* bad : {"", "GiB", "80XB", "-1GiB", "1.2.3GB", "0"}) {
    EXPECT_THROW(parse_byte_size(bad), Error) << bad;
  }
}

TEST(SyntheticWeights, DeterministicSmallAndShaped) {
  auto backend = kernels::make_cpu_backend();
  const PlanModel model = small_model();
  const RankShape shape = rank_shape(model.config, 4, 3);  // vocab rows [8, 10): 2 real rows of 3
  const std::vector<WeightShard> plan = plan_weights(model.config, qwen2_architecture(), shape);
  WeightStore a, b;
  a.load_synthetic(plan, *backend, 7);
  b.load_synthetic(plan, *backend, 7);
  // Rank 3 holds 25 units: the hand count above less 2 layers x (gate, up, down) x 64 x 4 bytes.
  EXPECT_EQ(a.bytes(), 75904u - 2 * 3 * 64 * 4);
  const auto* embed = static_cast<const float*>(a.get("embed"));
  for (int i = 0; i < 2 * 64; ++i) EXPECT_LE(std::abs(embed[i]), 0.02f);
  for (int i = 2 * 64; i < 3 * 64; ++i) EXPECT_EQ(embed[i], 0.0f) << "padding row element " << i;
  const auto* norm = static_cast<const float*>(a.get("layers.1.attn_norm"));
  for (int i = 0; i < 64; ++i) EXPECT_EQ(norm[i], 1.0f);
  const auto* qkv_a = static_cast<const float*>(a.get("layers.0.qkv"));
  const auto* qkv_b = static_cast<const float*>(b.get("layers.0.qkv"));
  float largest = 0;
  for (int i = 0; i < 3072; ++i) {
    EXPECT_EQ(qkv_a[i], qkv_b[i]);
    largest = std::max(largest, std::abs(qkv_a[i]));
  }
  EXPECT_LE(largest, 0.02f);
  EXPECT_GT(largest, 0.015f);  // not all zero
}

// --quant on a preset: the linear weights are packed (4-bit codes, a scale and a min per row and
// group), exactly the bytes the memory plan counts; the rest stays float.
TEST(SyntheticWeights, QuantizedPresetPacksLinearsAsPlanned) {
  auto backend = kernels::make_cpu_backend();
  PlanModel model = small_model();
  model.config.intermediate_size = 128;  // whole groups of 32 on each of 2 ranks
  model.config.quant = quant_preset("gptq-int4", 32);
  const RankShape shape = rank_shape(model.config, 2, 1);
  const std::vector<WeightShard> plan = plan_weights(model.config, qwen2_architecture(), shape);
  WeightStore store;
  store.load_synthetic(plan, *backend, 3, {}, model.config.quant);
  int64_t planned = 0;
  int quantized = 0;
  for (const WeightShard& w : plan) {
    planned += shard_bytes(w, model.config.quant, 4);
    const LinearWeight linear = store.find_linear(w.name);
    if (linear.quantized == nullptr) continue;
    ++quantized;
    EXPECT_TRUE(w.linear) << w.name;
    const kernels::QuantizedMatrix& m = *linear.quantized;
    EXPECT_EQ(m.bits, 4);
    EXPECT_EQ(m.rows, w.rows);
    EXPECT_EQ(m.cols, w.cols);
    EXPECT_EQ(m.num_groups, (w.cols + 31) / 32) << w.name;
    // Every weight scale * code + min within [-0.02, 0.02], both ends reached somewhere.
    const auto* scales = static_cast<const float*>(m.scales);
    const auto* mins = static_cast<const float*>(m.mins);
    EXPECT_NEAR(mins[0], -0.02f, 1e-7f);
    EXPECT_NEAR(scales[0] * 15 + mins[0], 0.02f, 1e-7f);
  }
  EXPECT_EQ(quantized, 2 * 4) << "qkv, o, gate_up and down of 2 layers";
  EXPECT_EQ(static_cast<int64_t>(store.bytes()), planned);
  const MemoryPlan float_plan = plan_memory(small_model(), small_options(1 << 20));
  MemoryPlanOptions options = small_options(1 << 20);
  options.tp_size = 2;
  EXPECT_LT(plan_memory(model, options).weight_bytes, float_plan.weight_bytes * 2);
}

// The error a call raises: its code and message.
std::pair<ErrorCode, std::string> error_of(const std::function<void()>& call) {
  try {
    call();
  } catch (const Error& e) {
    return {e.code(), e.what()};
  }
  return {ErrorCode::kInternal, "no error"};
}

TEST(QuantPreset, NamesTheFlagOnBadValues) {
  const QuantConfig awq = quant_preset("awq-int4", -1);
  EXPECT_EQ(awq.method, QuantMethod::kAwq);
  EXPECT_EQ(awq.bits, 4);
  EXPECT_EQ(awq.group_size, 0);
  EXPECT_FALSE(quant_preset("none", 128).enabled());
  EXPECT_EQ(quant_preset("gptq-int8", 64).bits, 8);
  const auto bad_method = error_of([] { quant_preset("gptq-int3", 128); });
  EXPECT_EQ(bad_method.first, ErrorCode::kInvalidArgument);
  EXPECT_EQ(bad_method.second, "--quant: 'gptq-int3' is not none, gptq-int4, gptq-int8 or awq-int4");
  for (int64_t group : {33, 0, -2}) {
    const auto bad_group = error_of([&] { quant_preset("gptq-int4", group); });
    EXPECT_EQ(bad_group.first, ErrorCode::kInvalidArgument);
    EXPECT_EQ(bad_group.second, fmt::format("--group-size: {} is not -1 or a positive even size", group));
  }
}

TEST(LocalShardCommunicator, GathersThisRanksPartIntoEverySlot) {
  auto backend = kernels::make_cpu_backend();
  LocalShardCommunicator comm(1, 3, *backend);
  std::vector<float> send = {1, 2}, recv(6, 0), sum = {5, 6};
  comm.all_gather(send.data(), 2, DType::kF32, recv.data());
  EXPECT_EQ(recv, (std::vector<float>{1, 2, 1, 2, 1, 2}));
  comm.all_reduce_sum(sum.data(), 2, DType::kF32);
  EXPECT_EQ(sum, (std::vector<float>{5, 6}));  // no peers: unchanged
  EXPECT_EQ(comm.rank(), 1);
  EXPECT_EQ(comm.size(), 3);
}

}  // namespace
}  // namespace tpserve::runtime
