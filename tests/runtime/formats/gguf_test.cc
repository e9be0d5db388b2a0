// The GGUF reader: block decoding against gguf-py's dequantize (tests/fixtures/gguf/blocks.json),
// hand-built files for every refusal, and the fixture GGUFs (written by gguf-py from transformers'
// tiny checkpoints) read back against the safetensors they came from.
#include "runtime/formats/gguf.h"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "runtime/formats/safetensors.h"
#include "tests/runtime/formats/gguf_writer.h"
#include "tests/test_support.h"

namespace tpserve::runtime {
namespace {

namespace fs = std::filesystem;
using testing::GgufBytes;
using testing::ScratchDir;

fs::path fixture(const char* name) { return testing::fixtures_dir() / "gguf" / name; }

std::vector<std::byte> from_hex(const std::string& hex) {
  std::vector<std::byte> bytes;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    bytes.push_back(static_cast<std::byte>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  }
  return bytes;
}

TEST(GgmlBlocks, DecodeLikeGgufPy) {
  std::ifstream in(fixture("blocks.json"));
  const nlohmann::json reference = nlohmann::json::parse(in);
  ASSERT_EQ(reference["cases"].size(), 8u);
  for (const nlohmann::json& item : reference["cases"]) {
    const auto type = item["ggml_type"].get<uint32_t>();
    const auto traits = ggml_type_traits(type);
    ASSERT_TRUE(traits.has_value()) << item["type"];
    EXPECT_EQ(traits->name, item["type"].get<std::string>());
    const std::vector<std::byte> bytes = from_hex(item["bytes"]);
    const auto expected = item["values"].get<std::vector<float>>();
    const int64_t blocks = static_cast<int64_t>(bytes.size()) / traits->block_bytes;
    ASSERT_EQ(blocks * traits->block_values, static_cast<int64_t>(expected.size())) << item["type"];
    std::vector<float> got(expected.size());
    dequantize_blocks(static_cast<GgmlType>(type), bytes.data(), blocks, got.data());
    for (size_t i = 0; i < expected.size(); ++i) {
      // gguf-py computes in float32 too, in another order: a few ulps apart at most.
      ASSERT_NEAR(got[i], expected[i], 1e-6f * std::max(1.0f, std::abs(expected[i])))
          << item["type"] << " value " << i;
    }
  }
}

// The packed form of Q8_0 / Q4_0 / Q4_1 (what the quantized representation keeps): fmaf(scale,
// code, min) is gguf-py's value, exactly for Q8_0 / Q4_0 and within a rounding for Q4_1 (d q + m
// rounds once in an FMA, twice in gguf-py).
TEST(GgmlBlocks, UnpackedBlocksGiveGgufPysValues) {
  std::ifstream in(fixture("blocks.json"));
  const nlohmann::json reference = nlohmann::json::parse(in);
  int packed = 0;
  for (const nlohmann::json& item : reference["cases"]) {
    const auto type = static_cast<GgmlType>(item["ggml_type"].get<uint32_t>());
    const int bits = ggml_packed_bits(type);
    if (bits == 0) continue;
    ++packed;
    const std::vector<std::byte> bytes = from_hex(item["bytes"]);
    const auto expected = item["values"].get<std::vector<float>>();
    const int64_t block_bytes = ggml_type_traits(static_cast<uint32_t>(type))->block_bytes;
    for (size_t b = 0; b * 32 < expected.size(); ++b) {
      PackedBlock block;
      unpack_block(type, bytes.data() + b * block_bytes, block);
      for (size_t i = 0; i < 32; ++i) {
        EXPECT_LT(block.codes[i], 1u << bits) << item["type"];
        const float got = std::fma(block.scale, static_cast<float>(block.codes[i]), block.min);
        const float want = expected[b * 32 + i];
        if (type == GgmlType::kQ4_1) {
          EXPECT_NEAR(got, want, 2e-7f * std::max(1.0f, std::abs(want))) << "Q4_1 value " << i;
        } else {
          EXPECT_EQ(got, want) << item["type"] << " value " << i;
        }
      }
    }
  }
  EXPECT_EQ(packed, 3);
  EXPECT_EQ(ggml_packed_bits(GgmlType::kQ6_K), 0);
  EXPECT_EQ(ggml_packed_bits(GgmlType::kF16), 0);
}

TEST(GgmlBlocks, NamesEveryType) {
  EXPECT_EQ(ggml_type_name(16), "IQ2_XXS");
  EXPECT_EQ(ggml_type_name(6), "Q5_0");
  EXPECT_EQ(ggml_type_name(9999), "an unknown type");
  EXPECT_FALSE(ggml_type_traits(6).has_value());
}

// A valid little file: two metadata keys and one 2 x 32 F32 tensor.
GgufBytes valid_file() {
  GgufBytes file;
  file.header(1, 2).kv_str("general.architecture", "llama").kv_u32("llama.block_count", 1);
  file.tensor("w", {32, 2}, 0, 0).align();
  for (int i = 0; i < 64; ++i) file.put(static_cast<float>(i));
  return file;
}

fs::path write(const ScratchDir& dir, const std::string& bytes, const char* name = "m.gguf") {
  const fs::path path = dir.path() / name;
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

// call() fails with `code` and a message containing `part`.
template <typename Call>
void expect_error(Call call, ErrorCode code, const std::string& part) {
  try {
    call();
    ADD_FAILURE() << "no error; expected one containing '" << part << "'";
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), code) << error.what();
    EXPECT_NE(std::string(error.what()).find(part), std::string::npos) << error.what();
  }
}

// Opening `bytes` fails with `code` and a message naming the file and containing `part`.
void expect_refused(const std::string& bytes, ErrorCode code, const std::string& part) {
  ScratchDir dir("gguf");
  const fs::path path = write(dir, bytes);
  try {
    GgufFile::open(path);
    ADD_FAILURE() << "opened; expected an error containing '" << part << "'";
  } catch (const Error& error) {
    const std::string message = error.what();
    EXPECT_EQ(error.code(), code) << message;
    EXPECT_EQ(message.rfind(path.string() + ":", 0), 0u) << message;
    EXPECT_NE(message.find(part), std::string::npos) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  }
}

TEST(GgufFile, ReadsHeaderMetadataAndTensor) {
  ScratchDir dir("gguf");
  const auto file = GgufFile::open(write(dir, valid_file().bytes()));
  EXPECT_EQ(file->version(), 3u);
  EXPECT_EQ(file->metadata()["general.architecture"], "llama");
  EXPECT_EQ(file->metadata()["llama.block_count"], 1);
  EXPECT_EQ(file->metadata_types().at("llama.block_count"), "UINT32");
  const GgufTensor* w = file->find("w");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->rows(), 2);
  EXPECT_EQ(w->cols(), 32);
  EXPECT_EQ(w->shape(), (std::vector<int64_t>{2, 32}));
  std::vector<float> block(3 * 1);
  EXPECT_EQ(file->read_f32(*w, 1, 2, 5, 8, block.data()), 12u);  // only the 3 floats asked for
  EXPECT_EQ(block, (std::vector<float>{37, 38, 39}));
  EXPECT_THROW(file->read_f32(*w, 0, 3, 0, 1, block.data()), Error);
}

TEST(GgufFile, RefusesMalformedHeaders) {
  std::string bytes = valid_file().bytes();
  bytes[0] = 'X';
  expect_refused(bytes, ErrorCode::kDataLoss, "magic");
  expect_refused(GgufBytes().header(0, 0, 1).bytes(), ErrorCode::kUnimplemented, "version 1");
  expect_refused("GGUF", ErrorCode::kDataLoss, "too short");
  expect_refused(GgufBytes().header(0, 1u << 30).bytes() + std::string(8, '\0'), ErrorCode::kDataLoss,
                 "metadata_kv_count");
  expect_refused(GgufBytes().header(1u << 30, 0).bytes() + std::string(40, '\0'), ErrorCode::kDataLoss,
                 "tensor_count");
  // A key whose length runs past the end of the file.
  expect_refused(GgufBytes().header(0, 1).u64(1000).bytes() + std::string(13, 'k'),
                 ErrorCode::kDataLoss, "runs past the end");
  expect_refused(GgufBytes().header(0, 1).str("k").u32(13).u32(0).bytes(), ErrorCode::kDataLoss,
                 "value type 13");
  expect_refused(GgufBytes().header(0, 1).str("k").u32(7).put<uint8_t>(2).bytes() + std::string(12, '\0'),
                 ErrorCode::kDataLoss, "BOOL holding 2");
  expect_refused(GgufBytes().header(0, 1).str("k").u32(9).u32(9).u64(1).bytes() + std::string(12, '\0'),
                 ErrorCode::kUnimplemented, "array of arrays");
  expect_refused(GgufBytes().header(0, 1).str("k").u32(9).u32(4).u64(1u << 20).bytes() + std::string(12, '\0'),
                 ErrorCode::kDataLoss, "elements");
  expect_refused(GgufBytes().header(0, 2).kv_u32("k", 1).kv_u32("k", 2).bytes(), ErrorCode::kDataLoss,
                 "appears twice");
  expect_refused(GgufBytes().header(0, 1).kv_u32("general.alignment", 24).bytes(), ErrorCode::kDataLoss,
                 "power of two");
}

TEST(GgufFile, RefusesMalformedTensorInfos) {
  auto with_tensor = [](std::vector<uint64_t> dims, uint32_t type, uint64_t offset) {
    GgufBytes file;
    file.header(1, 0).tensor("t", std::move(dims), type, offset).align();
    file.bytes().append(256, '\0');
    return file.bytes();
  };
  expect_refused(with_tensor({}, 0, 0), ErrorCode::kDataLoss, "0 dimensions");
  expect_refused(with_tensor({1, 1, 1, 1, 1}, 0, 0), ErrorCode::kDataLoss, "5 dimensions");
  expect_refused(with_tensor({32, 0}, 0, 0), ErrorCode::kDataLoss, "ne[1] is 0");
  expect_refused(with_tensor({1ull << 40, 1ull << 40}, 0, 0), ErrorCode::kDataLoss, "within int64");
  // 2^62 + 64 F32 values: the element count fits int64, the byte size 4 x that wraps uint64 to 256
  // (found by the gguf fuzz target).
  expect_refused(with_tensor({32, (1ull << 57) + 2}, 0, 0), ErrorCode::kDataLoss,
                 "byte size overflows 64 bits");
  expect_refused(with_tensor({32}, 16, 0), ErrorCode::kUnimplemented, "IQ2_XXS");
  expect_refused(with_tensor({33}, 8, 0), ErrorCode::kDataLoss, "not a whole number of Q8_0 blocks");
  expect_refused(with_tensor({4}, 0, 8), ErrorCode::kDataLoss, "not a multiple of the alignment");
  expect_refused(with_tensor({128}, 0, 0), ErrorCode::kDataLoss, "runs past the end");
  GgufBytes twice;
  twice.header(2, 0).tensor("t", {4}, 0, 0).tensor("t", {4}, 0, 32).align();
  twice.bytes().append(64, '\0');
  expect_refused(twice.bytes(), ErrorCode::kDataLoss, "appears twice");
}

// The llama fixture's tensors, seen through views that undo llama.cpp's Q/K permutation, equal
// the safetensors checkpoint transformers wrote (BF16 both ways: exact).
TEST(GgufCheckpoint, ViewsReproduceTheSafetensorsCheckpoint) {
  auto safetensors = Checkpoint::open(testing::fixtures_dir() / "llama_gqa");
  auto file = GgufFile::open(fixture("llama_gqa.gguf"));
  // 8 query heads of 8 dims: HF row (half * 4 + j) of a head is GGUF row 2 * j + half.
  std::vector<int64_t> q_order;
  for (int head = 0; head < 8; ++head) {
    for (int half = 0; half < 2; ++half) {
      for (int j = 0; j < 4; ++j) q_order.push_back(head * 8 + 2 * j + half);
    }
  }
  auto gguf = Checkpoint::open_gguf(std::move(file), {{"q", "blk.1.attn_q.weight", q_order},
                                                      {"v", "blk.1.attn_v.weight", {}}});
  EXPECT_EQ(gguf->tensor("q").shape, (std::vector<int64_t>{64, 64}));
  EXPECT_EQ(gguf->path_of("q"), fixture("llama_gqa.gguf"));
  EXPECT_TRUE(gguf->contains("blk.0.attn_q.weight"));  // not viewed: under its own name
  for (const auto& [view, hf] : {std::pair{"q", "model.layers.1.self_attn.q_proj.weight"},
                                 std::pair{"v", "model.layers.1.self_attn.v_proj.weight"}}) {
    const TensorEntry& entry = safetensors->tensor(hf);
    std::vector<float> want(static_cast<size_t>(entry.numel())), got(want.size());
    // Rows 4..12 (inside a head, so the permutation matters) and columns 16..48, as a rank's
    // shard would read them.
    safetensors->read_f32(hf, 4, 12, 16, 48, want.data());
    gguf->read_f32(view, 4, 12, 16, 48, got.data());
    want.resize(8 * 32);
    got.resize(8 * 32);
    EXPECT_EQ(got, want) << view;
  }
  EXPECT_THROW(gguf->file_of("q"), Error);
}

// A packed view with a row order (llama's q) reads whole rows in that order: codes, scale and min
// of view row i are those of file row order[i], and they decode to read_f32's values.
TEST(GgufCheckpoint, PackedReadsFollowTheRowOrder) {
  const fs::path path = testing::fixtures_dir() / "gguf_llama_q4" / "model.gguf";
  std::vector<int64_t> order(128);
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int64_t>((i * 37) % 128);
  auto gguf = Checkpoint::open_gguf(GgufFile::open(path), {{"q", "blk.0.attn_q.weight", order},
                                                           {"v", "blk.0.attn_v.weight", {}}});
  EXPECT_EQ(gguf->gguf_type("q"), GgmlType::kQ4_0);
  EXPECT_EQ(gguf->gguf_type("v"), GgmlType::kQ8_0);
  for (const char* view : {"q", "v"}) {
    const int64_t rows = gguf->tensor(view).rows();
    std::vector<float> want(static_cast<size_t>(rows * 64));
    gguf->read_f32(view, 0, rows, 32, 96, want.data());  // rows x cols [32, 96): blocks 1 and 2
    int64_t seen = 0;
    gguf->read_packed(view, 0, rows, 32, 96, [&](int64_t row, const PackedBlock* blocks, int64_t n) {
      ASSERT_EQ(n, 2);
      EXPECT_EQ(row, seen++);
      for (int64_t b = 0; b < n; ++b) {
        for (int64_t i = 0; i < 32; ++i) {
          const float got = std::fma(blocks[b].scale, static_cast<float>(blocks[b].codes[i]),
                                     blocks[b].min);
          EXPECT_EQ(got, want[static_cast<size_t>(row * 64 + b * 32 + i)]) << view << " row " << row;
        }
      }
    });
    EXPECT_EQ(seen, rows);
  }
  const auto ignore = [](int64_t, const PackedBlock*, int64_t) {};
  expect_error([&] { gguf->read_packed("q", 0, 1, 16, 64, ignore); }, ErrorCode::kInvalidArgument,
               "cols [16, 64) cut a block of 32 values");
  expect_error([&] { gguf->read_packed("q", 0, 129, 0, 32, ignore); }, ErrorCode::kOutOfRange,
               "rows [0, 129)");
  expect_error([&] { gguf->read_packed("blk.0.attn_norm.weight", 0, 1, 0, 32, ignore); },
               ErrorCode::kInvalidArgument, "not a packed GGUF matrix");
  expect_error([&] { gguf->read_packed("blk.1.ffn_down.weight", 0, 1, 0, 32, ignore); },
               ErrorCode::kInvalidArgument, "is F16, not a packed type");
}

TEST(GgufCheckpoint, RefusesBadViews) {
  auto open = [](std::vector<GgufView> views) {
    return Checkpoint::open_gguf(GgufFile::open(fixture("llama_gqa.gguf")), std::move(views));
  };
  EXPECT_THROW(open({{"x", "blk.9.attn_q.weight", {}}}), Error);
  EXPECT_THROW(open({{"x", "blk.0.attn_v.weight", {0, 1}}}), Error);  // 16 rows, not a permutation
  EXPECT_THROW(open({{"x", "blk.0.attn_v.weight", {}}, {"y", "blk.0.attn_v.weight", {}}}), Error);
  EXPECT_THROW(open({{"blk.0.attn_k.weight", "blk.0.attn_v.weight", {}}}), Error);  // name taken
}

}  // namespace
}  // namespace tpserve::runtime
