// The parallel shard reader against the plain scalar reference: every F16 / BF16 bit pattern (NaN
// payloads, infinities, subnormals, zeros) and random F32 bits, read as whole tensors, row blocks,
// column blocks (row-parallel slices), stacked blocks and vocab-padded shards, over pieces large
// enough to be cut, with one thread and with several; the CPU weights equal f16_to_f32 /
// bf16_to_f32 of the file's bits, bit for bit. Also: whole fixture models load exactly as the
// float32 staging path (read_f32 + upload_f32) loads them, at TP 1, 2 and 3; and a file truncated
// after it was opened stops the load with one line naming it.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "common/error.h"
#include "kernels/ops.h"
#include "runtime/families/architecture.h"
#include "runtime/families/load_config.h"
#include "runtime/model/shard_loader.h"
#include "runtime/model/quantized_load.h"
#include "runtime/model/checkpoint_source.h"
#include "runtime/model/weights.h"
#include "tests/runtime/formats/safetensors_writer.h"
#include "tests/test_support.h"

namespace tpserve::runtime {
namespace {

uint32_t bits_of(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, 4);
  return bits;
}

// The scalar reference: element `index` of a tensor's raw bytes widened to float32.
float reference_value(DType dtype, const std::vector<std::byte>& bytes, int64_t index) {
  if (dtype == DType::kF32) {
    float value;
    std::memcpy(&value, bytes.data() + index * 4, 4);
    return value;
  }
  uint16_t bits;
  std::memcpy(&bits, bytes.data() + index * 2, 2);
  return dtype == DType::kF16 ? f16_to_f32(bits) : bf16_to_f32(bits);
}

std::vector<std::byte> pattern_bytes(DType dtype, int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::byte> bytes(static_cast<size_t>(n * dtype_size(dtype)));
  for (int64_t i = 0; i < n; ++i) {
    if (dtype == DType::kF32) {
      uint32_t bits = static_cast<uint32_t>(rng());
      const uint32_t specials[] = {0x7f800001u, 0xffc00123u, 0x7f800000u, 0x00000001u, 0x80000000u};
      if (i < 5) bits = specials[i];
      std::memcpy(bytes.data() + i * 4, &bits, 4);
    } else {
      // The first 65536 elements are every pattern in order; the rest random.
      const uint16_t bits = i < 65536 ? static_cast<uint16_t>(i) : static_cast<uint16_t>(rng());
      std::memcpy(bytes.data() + i * 2, &bits, 2);
    }
  }
  return bytes;
}

struct Tensor {
  std::string name;
  int64_t rows, cols;
  std::vector<std::byte> bytes;
};

WeightShard shard(std::string name, int64_t rows, int64_t cols,
                  std::vector<std::tuple<const Tensor*, parallel::Range, parallel::Range>> blocks) {
  WeightShard w;
  w.name = std::move(name);
  w.rows = rows;
  w.cols = cols;
  for (const auto& [tensor, row_range, col_range] : blocks) {
    w.blocks.push_back({tensor->name, tensor->rows, tensor->cols, "", row_range, col_range});
  }
  return w;
}

class ShardLoaderDtype : public ::testing::TestWithParam<DType> {};

TEST_P(ShardLoaderDtype, EveryBlockShapeLandsAsTheScalarReference) {
  const DType dtype = GetParam();
  testing::ScratchDir dir("shard_loader");
  // "all": [256, 256] holds every 16-bit pattern; "big": [4100, 2048] is cut into several pieces
  // both as whole rows and as a column block (1024 columns x 2 bytes x 4100 rows > 8 MiB).
  Tensor all{"all", 256, 256, pattern_bytes(dtype, 256 * 256, 1)};
  Tensor big{"big", 4100, 2048, pattern_bytes(dtype, 4100 * 2048, 2)};
  testing::SafetensorsWriter writer;
  writer.add(all.name, dtype, {all.rows, all.cols}, all.bytes);
  writer.add(big.name, dtype, {big.rows, big.cols}, big.bytes);
  writer.write(dir.path() / "model.safetensors");
  const auto checkpoint = Checkpoint::open(dir.path());

  std::vector<WeightShard> plan;
  plan.push_back(shard("whole", 256, 256, {{&all, {0, 256}, {0, 256}}}));
  plan.push_back(shard("column_block", 247, 184, {{&all, {3, 250}, {17, 201}}}));
  plan.push_back(shard("padded_rows", 40 + 5, 256, {{&all, {100, 140}, {0, 256}}}));
  plan.push_back(shard("stacked", 10 + 7, 32, {{&all, {0, 10}, {224, 256}}, {&all, {249, 256}, {224, 256}}}));
  plan.push_back(shard("big_rows", 4100, 2048, {{&big, {0, 4100}, {0, 2048}}}));
  plan.push_back(shard("big_columns", 4100, 1024, {{&big, {0, 4100}, {1024, 2048}}}));
  plan.push_back(shard("big_rows_part", 2001, 2048, {{&big, {1000, 3001}, {0, 2048}}}));
  const std::map<std::string, const Tensor*> tensors = {{"all", &all}, {"big", &big}};

  auto backend = kernels::make_cpu_backend();
  for (int threads : {1, 4}) {
    std::vector<std::vector<float>> outputs;
    std::vector<ShardTarget> targets;
    outputs.reserve(plan.size());
    for (const WeightShard& weight : plan) {
      outputs.emplace_back(static_cast<size_t>(weight.numel()), -123.0f);  // padding must be zeroed
      targets.push_back({&weight, outputs.back().data()});
    }
    ShardLoadProgress last;
    int calls = 0;
    load_dense_shards(*checkpoint, targets, *backend, threads, [&](const ShardLoadProgress& p) {
      last = p;
      ++calls;
    });
    EXPECT_EQ(last.weights_done, plan.size());
    EXPECT_GT(calls, static_cast<int>(plan.size()));  // big tensors come in several pieces
    int64_t expected_file_bytes = 0, expected_bytes = 0;
    for (size_t w = 0; w < plan.size(); ++w) {
      const WeightShard& weight = plan[w];
      expected_bytes += weight.numel() * 4;
      int64_t row = 0;
      for (const SourceBlock& block : weight.blocks) {
        const Tensor& tensor = *tensors.at(block.tensor);
        expected_file_bytes += block.rows.size() * block.cols.size() * dtype_size(dtype);
        for (int64_t r = block.rows.begin; r < block.rows.end; ++r, ++row) {
          for (int64_t c = block.cols.begin; c < block.cols.end; ++c) {
            const float expected = reference_value(dtype, tensor.bytes, r * tensor.cols + c);
            const float got = outputs[w][static_cast<size_t>(row * weight.cols + c - block.cols.begin)];
            ASSERT_EQ(bits_of(got), bits_of(expected))
                << weight.name << " row " << r << " col " << c << " threads " << threads;
          }
        }
      }
      for (int64_t i = row * weight.cols; i < weight.numel(); ++i) {
        ASSERT_EQ(bits_of(outputs[w][static_cast<size_t>(i)]), 0u) << weight.name << " padding";
      }
    }
    EXPECT_EQ(last.file_bytes_read, expected_file_bytes);  // only the blocks' bytes are read
    EXPECT_EQ(last.bytes_done, expected_bytes);
  }
}

INSTANTIATE_TEST_SUITE_P(FileDtypes, ShardLoaderDtype,
                         ::testing::Values(DType::kF32, DType::kF16, DType::kBF16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

// TPSERVE_LOAD_CHUNK_MIB: unset or empty is 8 MiB; 1-256 MiB is taken; anything else is an error
// naming the variable (ctest's shard_loader_small_chunks reruns the loads above at 1 MiB).
TEST(ShardLoader, ChunkSizeFromTheEnvironment) {
  EXPECT_EQ(parse_load_chunk_mib(nullptr), int64_t{8} << 20);
  EXPECT_EQ(parse_load_chunk_mib(""), int64_t{8} << 20);
  EXPECT_EQ(parse_load_chunk_mib("1"), int64_t{1} << 20);
  EXPECT_EQ(parse_load_chunk_mib("256"), int64_t{256} << 20);
  for (const char* bad : {"0", "257", "-4", "8M", " 8", "eight", "99999999999999999999"}) {
    try {
      (void)parse_load_chunk_mib(bad);
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
      EXPECT_THAT(e.what(),
                  ::testing::HasSubstr("TPSERVE_LOAD_CHUNK_MIB: '" + std::string(bad) + "'"));
    }
  }
}

// A file cut short after Checkpoint::open validated it (being rewritten, a full disk, a network
// file system): the read stops with one line naming the file, not a SIGBUS or a partial model.
TEST(ShardLoader, FileTruncatedAfterOpenNamesTheFile) {
  testing::ScratchDir dir("shard_loader_truncated");
  Tensor t{"t", 64, 64, pattern_bytes(DType::kF16, 64 * 64, 3)};
  testing::SafetensorsWriter writer;
  writer.add(t.name, DType::kF16, {64, 64}, t.bytes);
  const auto path = dir.path() / "model.safetensors";
  writer.write(path);
  const auto checkpoint = Checkpoint::open(dir.path());
  std::filesystem::resize_file(path, std::filesystem::file_size(path) - 1000);
  const WeightShard weight = shard("t", 64, 64, {{&t, {0, 64}, {0, 64}}});
  const WeightShard columns = shard("t_cols", 64, 8, {{&t, {0, 64}, {56, 64}}});
  std::vector<float> out(64 * 64);
  auto backend = kernels::make_cpu_backend();
  for (const WeightShard* w : {&weight, &columns}) {
    const ShardTarget target{w, out.data()};
    try {
      load_dense_shards(*checkpoint, {&target, 1}, *backend, 2);
      FAIL() << "a truncated file loaded";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kDataLoss);
      const std::string message = e.what();
      EXPECT_NE(message.find(path.string() + ": short read"), std::string::npos) << message;
      EXPECT_NE(message.find("truncated"), std::string::npos) << message;
      EXPECT_EQ(message.find('\n'), std::string::npos) << message;
    }
  }
}

// What the float32 staging path stores for `weight`: its blocks through read_f32, padding zero.
std::vector<float> staged_f32(const Checkpoint& checkpoint, const WeightShard& weight) {
  std::vector<float> expected(static_cast<size_t>(weight.numel()), 0.0f);
  float* cursor = expected.data();
  for (const SourceBlock& block : weight.blocks) {
    checkpoint.read_f32(block.tensor, block.rows.begin, block.rows.end, block.cols.begin,
                        block.cols.end, cursor);
    cursor += block.rows.size() * block.cols.size();
  }
  return expected;
}

// Whole models from the transformers fixtures (F32, F16 and BF16 files): each rank's weights are
// the bytes the float32 staging path (read_f32, then upload_f32) produces.
class FixtureLoad : public ::testing::TestWithParam<std::string> {};

TEST_P(FixtureLoad, MatchesTheFloat32StagingPath) {
  const auto dir = testing::fixtures_dir() / GetParam();
  const ModelConfig config = load_model_config(dir);
  const Architecture* architecture = find_architecture(config.architecture);
  ASSERT_NE(architecture, nullptr);
  const auto checkpoint = Checkpoint::open(dir);
  auto backend = kernels::make_cpu_backend();
  for (int tp : {1, 2, 3}) {
    if (tp > config.num_heads) continue;
    for (int rank = 0; rank < tp; ++rank) {
      const auto plan = plan_weights(config, *architecture, rank_shape(config, tp, rank));
      WeightStore store;
      store.load(*checkpoint, plan, *backend, {}, nullptr, config.quant, 3);
      for (const WeightShard& weight : plan) {
        const std::vector<float> expected = staged_f32(*checkpoint, weight);
        const auto* got = static_cast<const float*>(store.get(weight.name));
        ASSERT_EQ(std::memcmp(got, expected.data(), expected.size() * 4), 0)
            << GetParam() << " tp " << tp << " rank " << rank << " " << weight.name;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, FixtureLoad,
                         ::testing::Values("qwen2_tied", "llama_bias_f16", "internlm2", "chatglm",
                                           "qwen_v1", "llama_9heads"));

// GGUF files (float ones, and the float tensors of a Q4/Q8 one): the shards that are not kept
// packed arrive as stored (Checkpoint::read_stored, then Backend::upload) and are the bytes of the
// float32 staging path, at TP 1-3.
TEST(GgufFixtureLoad, FloatShardsMatchTheFloat32StagingPath) {
  auto backend = kernels::make_cpu_backend();
  for (const char* file :
       {"gguf/llama_gqa.gguf", "gguf/qwen2_tied.gguf", "gguf_llama_q4/model.gguf"}) {
    const ModelConfig config = read_model_config(testing::fixtures_dir() / file);
    const Architecture* architecture = find_architecture(config.architecture);
    ASSERT_NE(architecture, nullptr);
    const auto checkpoint = open_checkpoint(config);
    for (int tp : {1, 2, 3}) {
      for (int rank = 0; rank < tp; ++rank) {
        std::vector<WeightShard> plan;
        try {
          plan = plan_weights(config, *architecture, rank_shape(config, tp, rank));
          validate_weights(*checkpoint, plan, config.quant);
        } catch (const Error&) {
          continue;  // a TP size this file refuses (more ranks than heads, a cut inside a block)
        }
        WeightStore store;
        store.load(*checkpoint, plan, *backend, {}, nullptr, config.quant, 2);
        int floats = 0;
        for (const WeightShard& weight : plan) {
          if (shard_is_quantized(*checkpoint, config.quant, weight)) continue;
          ++floats;
          const std::vector<float> expected = staged_f32(*checkpoint, weight);
          const auto* got = static_cast<const float*>(store.get(weight.name));
          ASSERT_EQ(std::memcmp(got, expected.data(), expected.size() * 4), 0)
              << file << " tp " << tp << " rank " << rank << " " << weight.name;
        }
        EXPECT_GT(floats, 0) << file;
      }
    }
  }
}

}  // namespace
}  // namespace tpserve::runtime
