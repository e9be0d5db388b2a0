// The safetensors reader against hand-built files (tests/runtime/formats/safetensors_writer.h), the
// IEEE / bfloat16 bit patterns worked out by hand, and the fixtures written by transformers.
#include "runtime/formats/safetensors.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "tests/runtime/formats/safetensors_writer.h"
#include "tests/test_support.h"

namespace tpserve::runtime {
namespace {

namespace fs = std::filesystem;
using ::testing::AssertionFailure;
using ::testing::AssertionResult;
using ::testing::AssertionSuccess;
using testing::Corruption;
using testing::SafetensorsWriter;
using testing::ScratchDir;
using testing::to_bytes;

// `body` must throw a tpserve::Error with `code` and a one-line message that starts with
// "<prefix>:" and mentions every one of `parts`.
template <typename Body>
AssertionResult fails_with(Body&& body, ErrorCode code, const std::string& prefix,
                           const std::vector<std::string>& parts) {
  try {
    body();
  } catch (const Error& error) {
    const std::string message = error.what();
    if (error.code() != code) {
      return AssertionFailure() << "code is '" << error_code_name(error.code()) << "', expected '"
                                << error_code_name(code) << "': " << message;
    }
    if (!message.starts_with(prefix + ":")) {
      return AssertionFailure() << "message does not start with '" << prefix << ":': " << message;
    }
    if (message.find('\n') != std::string::npos) {
      return AssertionFailure() << "message is not one line: " << message;
    }
    for (const std::string& part : parts) {
      if (message.find(part) == std::string::npos) {
        return AssertionFailure() << "message does not mention \"" << part << "\": " << message;
      }
    }
    return AssertionSuccess() << message;
  }
  return AssertionFailure() << "no tpserve::Error was thrown";
}

uint32_t bits_of(float value) { return std::bit_cast<uint32_t>(value); }

class SafetensorsTest : public ::testing::Test {
 protected:
  fs::path model_file() const { return scratch_.path() / "model.safetensors"; }

  // a.weight F32 [2, 3] at [0, 24), b.bias F32 [2] at [24, 32).
  static SafetensorsWriter two_tensors() {
    SafetensorsWriter writer;
    writer.add_f32("a.weight", {2, 3}, {1, 2, 3, 4, 5, 6});
    writer.add_f32("b.bias", {2}, {7, 8});
    return writer;
  }

  // Writes two_tensors() with the given entry of the header replaced / edited.
  void write_edited(const std::function<void(nlohmann::ordered_json&)>& edit) const {
    two_tensors().write(model_file(), Corruption::edit(edit));
  }

  AssertionResult open_fails(ErrorCode code, const std::vector<std::string>& parts) const {
    return fails_with([&] { SafetensorsFile::open(model_file()); }, code, model_file().string(),
                      parts);
  }

  // Reads the whole tensor through Checkpoint::read_f32.
  std::vector<float> read_all(const Checkpoint& checkpoint, const std::string& name) const {
    const TensorEntry& entry = checkpoint.tensor(name);
    std::vector<float> values(static_cast<size_t>(entry.numel()));
    checkpoint.read_f32(name, 0, entry.rows(), 0, entry.cols(), values.data());
    return values;
  }

  ScratchDir scratch_{"safetensors"};
};

// ---- round trips ----

TEST_F(SafetensorsTest, F32RoundTripIsBitExact) {
  const std::vector<float> values = {
      1.5f, -0.0f, 1e-45f /* subnormal */, -3.25e38f, std::numeric_limits<float>::infinity(), 0.1f};
  SafetensorsWriter().add_f32("w", {2, 3}, values).write(model_file());
  auto checkpoint = Checkpoint::open(scratch_.path());
  const TensorEntry& entry = checkpoint->tensor("w");
  EXPECT_EQ(entry.dtype, DType::kF32);
  EXPECT_EQ(entry.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(entry.data_begin, 0u);
  EXPECT_EQ(entry.data_end, 24u);
  const std::vector<float> read = read_all(*checkpoint, "w");
  for (size_t i = 0; i < values.size(); ++i) EXPECT_EQ(bits_of(read[i]), bits_of(values[i])) << i;
  EXPECT_EQ(checkpoint->bytes_read(), 24u);
}

TEST_F(SafetensorsTest, F16WidensExactlyIncludingSubnormalsAndNegativeZero) {
  // IEEE binary16 bit patterns and their values, by hand.
  const std::vector<uint16_t> half = {0x3C00, 0xC000, 0x0001, 0x03FF,
                                      0x8000, 0x7BFF, 0x7C00, 0x3555};
  const std::vector<float> expected = {1.0f,
                                       -2.0f,
                                       std::ldexp(1.0f, -24) /* smallest subnormal */,
                                       std::ldexp(1023.0f, -24) /* largest subnormal */,
                                       -0.0f,
                                       65504.0f,
                                       std::numeric_limits<float>::infinity(),
                                       1365.0f / 4096.0f /* 0x3555 = 1.333251953125 / 4 */};
  SafetensorsWriter().add("h", DType::kF16, {8}, to_bytes(half)).write(model_file());
  auto checkpoint = Checkpoint::open(scratch_.path());
  EXPECT_EQ(checkpoint->tensor("h").dtype, DType::kF16);
  const std::vector<float> read = read_all(*checkpoint, "h");
  for (size_t i = 0; i < half.size(); ++i) EXPECT_EQ(bits_of(read[i]), bits_of(expected[i])) << i;
  EXPECT_TRUE(std::signbit(read[4]));
}

TEST_F(SafetensorsTest, Bf16WidensExactlyIncludingSubnormalsAndNegativeZero) {
  // bfloat16 is the top half of a binary32: these are the patterns' values by hand.
  const std::vector<uint16_t> brain = {0x3F80, 0xBF80, 0x8000, 0x0001, 0x4049, 0x7F80, 0xFF7F};
  const std::vector<float> expected = {
      1.0f,
      -1.0f,
      -0.0f,
      std::ldexp(1.0f, -133) /* smallest bf16 subnormal */,
      3.140625f,
      std::numeric_limits<float>::infinity(),
      -std::ldexp(255.0f, 120) /* -(2 - 2^-7) * 2^127, the most negative finite bf16 */};
  SafetensorsWriter().add("b", DType::kBF16, {7}, to_bytes(brain)).write(model_file());
  auto checkpoint = Checkpoint::open(scratch_.path());
  const std::vector<float> read = read_all(*checkpoint, "b");
  for (size_t i = 0; i < brain.size(); ++i) EXPECT_EQ(bits_of(read[i]), bits_of(expected[i])) << i;
}

TEST_F(SafetensorsTest, WriterNarrowsFloatsLikeTorch) {
  // 1 + 2^-8 is halfway between the bf16 neighbours 1 and 1 + 2^-7: ties go to even (1).
  SafetensorsWriter()
      .add_bf16("b", {3}, {1.0f + std::ldexp(1.0f, -8), -0.0f, 3.140625f})
      .add_f16("h", {2}, {std::ldexp(1.0f, -24), -65504.0f})
      .write(model_file());
  auto checkpoint = Checkpoint::open(scratch_.path());
  EXPECT_EQ(read_all(*checkpoint, "b"), (std::vector<float>{1.0f, -0.0f, 3.140625f}));
  EXPECT_TRUE(std::signbit(read_all(*checkpoint, "b")[1]));
  EXPECT_EQ(read_all(*checkpoint, "h"), (std::vector<float>{std::ldexp(1.0f, -24), -65504.0f}));
}

TEST_F(SafetensorsTest, ReadsMetadata) {
  two_tensors().metadata("format", "pt").metadata("note", "tiny").write(model_file());
  auto file = SafetensorsFile::open(model_file());
  EXPECT_EQ(file->metadata(),
            (std::map<std::string, std::string>{{"format", "pt"}, {"note", "tiny"}}));
  EXPECT_EQ(file->path(), model_file());
}

TEST_F(SafetensorsTest, TensorsAreInOffsetOrderWhateverTheJsonOrder) {
  SafetensorsWriter writer;
  writer.add_f32("z.first", {1}, {1}).add_f32("a.second", {2}, {2, 3}).add_f32("m.third", {1}, {4});
  writer.write(model_file(), Corruption::edit([](nlohmann::ordered_json& header) {
                 nlohmann::ordered_json reversed = nlohmann::ordered_json::object();
                 for (auto it = header.rbegin(); it != header.rend(); ++it)
                   reversed[it.key()] = it.value();
                 header = reversed;
               }));
  auto file = SafetensorsFile::open(model_file());
  ASSERT_EQ(file->tensors().size(), 3u);
  EXPECT_EQ(file->tensors()[0].name, "z.first");
  EXPECT_EQ(file->tensors()[1].name, "a.second");
  EXPECT_EQ(file->tensors()[2].name, "m.third");
  EXPECT_EQ(file->tensors()[1].data_begin, 4u);
  EXPECT_EQ(file->find("m.third")->data_begin, 12u);
  EXPECT_EQ(file->find("absent"), nullptr);
  auto checkpoint = Checkpoint::open(scratch_.path());
  EXPECT_EQ(checkpoint->tensor_names(),
            (std::vector<std::string>{"a.second", "m.third", "z.first"}));
  EXPECT_EQ(read_all(*checkpoint, "a.second"), (std::vector<float>{2, 3}));
}

TEST_F(SafetensorsTest, RowsAndColsViewTensorsAsMatrices) {
  SafetensorsWriter writer;
  writer.add_f32("vector", {5}, std::vector<float>(5, 0.0f));
  writer.add_f32("cube", {2, 3, 4}, std::vector<float>(24, 0.0f));
  writer.add_f32("scalar", {}, {42.0f});
  writer.add_f32("empty", {0, 7}, {});
  writer.write(model_file());
  auto file = SafetensorsFile::open(model_file());
  const TensorEntry& vector = *file->find("vector");
  EXPECT_EQ(vector.rows(), 5);
  EXPECT_EQ(vector.cols(), 1);
  const TensorEntry& cube = *file->find("cube");
  EXPECT_EQ(cube.rows(), 2);
  EXPECT_EQ(cube.cols(), 12);
  EXPECT_EQ(cube.numel(), 24);
  const TensorEntry& scalar = *file->find("scalar");
  EXPECT_EQ(scalar.rows(), 1);
  EXPECT_EQ(scalar.cols(), 1);
  EXPECT_EQ(scalar.numel(), 1);
  const TensorEntry& empty = *file->find("empty");
  EXPECT_EQ(empty.numel(), 0);
  EXPECT_EQ(empty.rows(), 0);
  EXPECT_EQ(empty.cols(), 7);
}

TEST_F(SafetensorsTest, ReadF32RowAndColumnBlocks) {
  // m[r][c] = 10 r + c, small integers exact in bf16.
  std::vector<float> matrix;
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 6; ++c) matrix.push_back(static_cast<float>(10 * r + c));
  SafetensorsWriter()
      .add_f32("f32", {4, 6}, matrix)
      .add_bf16("bf16", {4, 6}, matrix)
      .add_f32("cube", {2, 2, 3}, std::vector<float>(matrix.begin(), matrix.begin() + 12))
      .write(model_file());
  auto checkpoint = Checkpoint::open(scratch_.path());

  EXPECT_EQ(read_all(*checkpoint, "f32"), matrix);
  EXPECT_EQ(read_all(*checkpoint, "bf16"), matrix);
  EXPECT_EQ(checkpoint->bytes_read(), 24u * 4 + 24u * 2);

  std::vector<float> rows(12);  // rows [1, 3), every column: one contiguous read
  checkpoint->read_f32("bf16", 1, 3, 0, 6, rows.data());
  EXPECT_EQ(rows, std::vector<float>(matrix.begin() + 6, matrix.begin() + 18));

  std::vector<float> block(8);  // rows [0, 4) x cols [2, 4): one segment per row
  const uint64_t before = checkpoint->bytes_read();
  checkpoint->read_f32("f32", 0, 4, 2, 4, block.data());
  EXPECT_EQ(block, (std::vector<float>{2, 3, 12, 13, 22, 23, 32, 33}));
  EXPECT_EQ(checkpoint->bytes_read() - before, 8u * 4);  // only the block's bytes

  // [2, 2, 3] holding 0..5, 10..15 viewed as [2, 6]: row 1 is 10..15, cols [4, 6) are 14, 15.
  std::vector<float> corner(2);
  checkpoint->read_f32("cube", 1, 2, 4, 6, corner.data());
  EXPECT_EQ(corner, (std::vector<float>{14, 15}));

  float untouched = -1.0f;  // an empty block reads nothing
  checkpoint->read_f32("f32", 2, 2, 0, 6, &untouched);
  checkpoint->read_f32("f32", 0, 4, 3, 3, &untouched);
  EXPECT_EQ(untouched, -1.0f);
}

TEST_F(SafetensorsTest, BytesAreBoundsChecked) {
  two_tensors().write(model_file());
  auto file = SafetensorsFile::open(model_file());
  const TensorEntry& bias = *file->find("b.bias");
  auto bytes = file->bytes(bias, 4, 4);
  float value;
  std::memcpy(&value, bytes.data(), 4);
  EXPECT_EQ(value, 8.0f);
  EXPECT_EQ(file->bytes(bias, 8, 0).size(), 0u);
  EXPECT_TRUE(fails_with([&] { file->bytes(bias, 4, 5); }, ErrorCode::kOutOfRange,
                         model_file().string(), {"'b.bias'", "offset 4", "8 bytes"}));
  EXPECT_TRUE(fails_with([&] { file->bytes(bias, 9, 0); }, ErrorCode::kOutOfRange,
                         model_file().string(), {"'b.bias'"}));
  EXPECT_TRUE(fails_with([&] { file->bytes(bias, 4, std::numeric_limits<uint64_t>::max()); },
                         ErrorCode::kOutOfRange, model_file().string(), {"'b.bias'"}));
}

TEST_F(SafetensorsTest, IndexWithTwoShards) {
  const fs::path dir = scratch_.path();
  SafetensorsWriter()
      .add_f32("a", {2, 2}, {1, 2, 3, 4})
      .add_f32("unlisted", {1}, {9})
      .write(dir / "model-00001-of-00002.safetensors");
  SafetensorsWriter().add_bf16("b", {3}, {5, 6, 7}).write(dir / "model-00002-of-00002.safetensors");
  testing::write_index(
      dir, {{"a", "model-00001-of-00002.safetensors"}, {"b", "model-00002-of-00002.safetensors"}},
      {{"total_size", "22"}});
  auto checkpoint = Checkpoint::open(dir);
  EXPECT_EQ(checkpoint->dir(), dir);
  EXPECT_EQ(checkpoint->tensor_names(), (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(checkpoint->contains("a"));
  EXPECT_FALSE(checkpoint->contains("unlisted"));  // in a shard, not in the map: ignored
  EXPECT_EQ(checkpoint->file_of("a").path(), dir / "model-00001-of-00002.safetensors");
  EXPECT_EQ(checkpoint->file_of("b").path(), dir / "model-00002-of-00002.safetensors");
  EXPECT_EQ(read_all(*checkpoint, "a"), (std::vector<float>{1, 2, 3, 4}));
  EXPECT_EQ(read_all(*checkpoint, "b"), (std::vector<float>{5, 6, 7}));
}

TEST_F(SafetensorsTest, SingleFileWinsOverIndexLikeTransformers) {
  two_tensors().write(model_file());
  testing::write_index(scratch_.path(), {{"a.weight", "missing.safetensors"}});
  auto checkpoint = Checkpoint::open(scratch_.path());
  EXPECT_EQ(checkpoint->tensor_names(), (std::vector<std::string>{"a.weight", "b.bias"}));
}

// Files written by safetensors / transformers (tests/fixtures/make_fixtures.py).
TEST(SafetensorsFixtures, TransformersCheckpointsOpen) {
  const fs::path single = testing::fixtures_dir() / "qwen2_tied";
  const fs::path sharded = testing::fixtures_dir() / "llama_gqa";
  if (!fs::exists(single / "model.safetensors") ||
      !fs::exists(sharded / "model.safetensors.index.json")) {
    GTEST_SKIP() << "fixtures not generated";
  }
  auto qwen = Checkpoint::open(single);
  EXPECT_TRUE(qwen->contains("model.embed_tokens.weight"));
  EXPECT_EQ(qwen->file_of("model.embed_tokens.weight").metadata().at("format"), "pt");

  // The index's metadata.total_size is the sum of the listed tensors' bytes.
  std::ifstream stream(sharded / "model.safetensors.index.json");
  const auto index = nlohmann::json::parse(stream);
  auto llama = Checkpoint::open(sharded);
  EXPECT_EQ(llama->tensor_names().size(), index["weight_map"].size());
  uint64_t total = 0;
  for (const std::string& name : llama->tensor_names()) {
    EXPECT_EQ(llama->file_of(name).path().filename().string(), index["weight_map"][name]);
    total += llama->tensor(name).byte_size();
  }
  EXPECT_EQ(total, index["metadata"]["total_size"].get<uint64_t>());
}

// ---- errors: the file ----

TEST_F(SafetensorsTest, MissingFile) {
  EXPECT_TRUE(open_fails(ErrorCode::kNotFound, {"cannot open"}));
}

TEST_F(SafetensorsTest, FileShorterThanTheLengthPrefix) {
  SafetensorsWriter::write_file(model_file(), "12345");
  EXPECT_TRUE(open_fails(ErrorCode::kDataLoss, {"5 bytes", "8-byte header length"}));
}

TEST_F(SafetensorsTest, HeaderLengthOverTheLimit) {
  two_tensors().write(model_file(), Corruption::length(100'000'001));
  EXPECT_TRUE(open_fails(ErrorCode::kDataLoss, {"header length 100000001", "100000000"}));
}

TEST_F(SafetensorsTest, HeaderLengthBeyondTheFile) {
  two_tensors().write(model_file(), Corruption::length(5000));
  EXPECT_TRUE(open_fails(ErrorCode::kDataLoss, {"header length 5000", "end of the"}));
}

TEST_F(SafetensorsTest, HeaderNotJson) {
  two_tensors().write(model_file(), Corruption::raw(R"({"a.weight": {"dtype": )"));
  EXPECT_TRUE(open_fails(ErrorCode::kDataLoss, {"header is not valid JSON"}));
}

TEST_F(SafetensorsTest, HeaderNotUtf8) {
  two_tensors().write(model_file(), Corruption::raw("{\"a\xff\": {}}"));
  EXPECT_TRUE(open_fails(ErrorCode::kDataLoss, {"header is not valid JSON"}));
}

TEST_F(SafetensorsTest, HeaderNotAnObject) {
  two_tensors().write(model_file(), Corruption::raw("[1, 2]  "));
  EXPECT_TRUE(open_fails(ErrorCode::kDataLoss, {"header is a JSON array", "object"}));
}

TEST_F(SafetensorsTest, DuplicateTensorName) {
  SafetensorsWriter()
      .add_f32("x", {2}, {1, 2})
      .write(model_file(),
             Corruption::raw(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                             R"("x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})"));
  EXPECT_TRUE(open_fails(ErrorCode::kDataLoss, {"'x'", "twice"}));
}

TEST_F(SafetensorsTest, MetadataMustMapStringsToStrings) {
  write_edited([](auto& header) { header["__metadata__"] = {{"format", "pt"}, {"step", 3}}; });
  EXPECT_TRUE(open_fails(ErrorCode::kDataLoss, {"'__metadata__'", "'step'", "number"}));
}

// ---- errors: one tensor entry ----

TEST_F(SafetensorsTest, UnknownDtype) {
  write_edited([](auto& header) { header["a.weight"]["dtype"] = "Q4_K"; });
  EXPECT_TRUE(open_fails(ErrorCode::kUnimplemented, {"tensor 'a.weight'", "dtype 'Q4_K'"}));
}

TEST_F(SafetensorsTest, NegativeShape) {
  write_edited([](auto& header) { header["a.weight"]["shape"] = {-2, -3}; });
  EXPECT_TRUE(open_fails(ErrorCode::kDataLoss, {"tensor 'a.weight'", "'shape'", "-2"}));
}

TEST_F(SafetensorsTest, FractionalShape) {
  write_edited([](auto& header) { header["a.weight"]["shape"] = {2.5, 2.4}; });
  EXPECT_TRUE(open_fails(ErrorCode::kDataLoss, {"tensor 'a.weight'", "'shape'", "2.5"}));
}

TEST_F(SafetensorsTest, MissingDataOffsets) {
  write_edited([](auto& header) { header["b.bias"].erase("data_offsets"); });
  EXPECT_TRUE(
      open_fails(ErrorCode::kDataLoss, {"tensor 'b.bias'", "missing field 'data_offsets'"}));
}

TEST_F(SafetensorsTest, MalformedDataOffsets) {
  write_edited([](auto& header) { header["b.bias"]["data_offsets"] = {24}; });
  EXPECT_TRUE(open_fails(ErrorCode::kDataLoss, {"tensor 'b.bias'", "'data_offsets'", "[24]"}));
}

TEST_F(SafetensorsTest, DataOffsetsEndBeforeBegin) {
  write_edited([](auto& header) { header["b.bias"]["data_offsets"] = {32, 24}; });
  EXPECT_TRUE(open_fails(ErrorCode::kDataLoss, {"tensor 'b.bias'", "[32, 24)", "end before"}));
}

TEST_F(SafetensorsTest, ByteSizeDisagreesWithShape) {
  write_edited([](auto& header) { header["a.weight"]["shape"] = {2, 2}; });
  EXPECT_TRUE(open_fails(ErrorCode::kDataLoss,
                         {"tensor 'a.weight'", "hold 24 bytes", "[2, 2] of F32 needs 16"}));
}

TEST_F(SafetensorsTest, ByteSizeOverflows) {
  write_edited([](auto& header) { header["a.weight"]["shape"] = {uint64_t{1} << 62, 8}; });
  EXPECT_TRUE(open_fails(ErrorCode::kDataLoss, {"tensor 'a.weight'", "overflows"}));
}

// An empty tensor passes the byte-size check whatever its other dimensions; their product must
// still fit the int64 element counts (rows x cols) the loaders compute from it.
TEST_F(SafetensorsTest, ElementCountOverflowsBesideAZeroDimension) {
  SafetensorsWriter writer = two_tensors();
  writer.add_f32("empty", {0}, {});
  writer.write(model_file(), Corruption::edit([](auto& header) {
                 header["empty"]["shape"] = {0, uint64_t{1} << 62, uint64_t{1} << 62};
               }));
  EXPECT_TRUE(open_fails(ErrorCode::kDataLoss, {"tensor 'empty'", "shape", "elements"}));
}

// A deeply nested value in an error message used to be printed by recursion, one stack frame per
// level: a 1 MB header crashed the reader.
TEST_F(SafetensorsTest, DeeplyNestedShapeIsRefusedWithoutRecursion) {
  const int depth = 1'000'000;
  const std::string shape = std::string(depth, '[') + std::string(depth, ']');
  SafetensorsWriter().add_f32("x", {1}, {1}).write(
      model_file(), Corruption::raw(R"({"x":{"dtype":"F32","shape":[)" + shape + R"(],"data_offsets":[0,4]}})"));
  EXPECT_TRUE(open_fails(ErrorCode::kDataLoss, {"tensor 'x'", "'shape'", "array"}));
}

TEST_F(SafetensorsTest, UnknownFieldInTensorEntry) {
  write_edited([](auto& header) { header["b.bias"]["offsets"] = {24, 32}; });
  EXPECT_TRUE(open_fails(ErrorCode::kDataLoss, {"tensor 'b.bias'", "unknown field 'offsets'"}));
}

TEST_F(SafetensorsTest, TensorEntryNotAnObject) {
  write_edited([](auto& header) { header["b.bias"] = "F32"; });
  EXPECT_TRUE(open_fails(ErrorCode::kDataLoss, {"tensor 'b.bias'", "string"}));
}

// ---- errors: the layout of the data section ----

TEST_F(SafetensorsTest, OverlappingTensors) {
  // b.bias still holds its 8 bytes, but inside a.weight's range.
  write_edited([](auto& header) { header["b.bias"]["data_offsets"] = {16, 24}; });
  EXPECT_TRUE(open_fails(ErrorCode::kDataLoss,
                         {"tensor 'b.bias'", "[16, 24)", "overlap", "'a.weight'", "ends at 24"}));
}

TEST_F(SafetensorsTest, GapBetweenTensors) {
  Corruption corruption = Corruption::edit([](auto& header) {
    header["b.bias"]["data_offsets"] = {28, 36};
  });
  corruption.data_bytes_delta = 4;  // the data section still ends where b.bias now ends
  two_tensors().write(model_file(), corruption);
  EXPECT_TRUE(open_fails(ErrorCode::kDataLoss,
                         {"tensor 'b.bias'", "[28, 36)", "gap of 4 bytes", "'a.weight'"}));
}

TEST_F(SafetensorsTest, FirstTensorNotAtZero) {
  write_edited([](auto& header) {
    header["a.weight"]["data_offsets"] = {4, 28};
    header["b.bias"]["data_offsets"] = {28, 36};
  });
  EXPECT_TRUE(open_fails(ErrorCode::kDataLoss, {"tensor 'a.weight'", "[4, 28)", "begin at 0"}));
}

TEST_F(SafetensorsTest, TruncatedDataSection) {
  two_tensors().write(model_file(), Corruption::resize_data(-4));
  EXPECT_TRUE(open_fails(ErrorCode::kDataLoss,
                         {"data section is 28 bytes", "'b.bias' ends at 32", "truncated"}));
}

TEST_F(SafetensorsTest, TrailingBytesAfterTheLastTensor) {
  two_tensors().write(model_file(), Corruption::resize_data(4));
  EXPECT_TRUE(open_fails(ErrorCode::kDataLoss,
                         {"data section is 36 bytes", "'b.bias' ends at 32", "4 trailing bytes"}));
}

// ---- errors: the checkpoint directory and its index ----

TEST_F(SafetensorsTest, DirectoryWithNeitherFile) {
  const std::string dir = scratch_.path().string();
  EXPECT_TRUE(fails_with([&] { Checkpoint::open(scratch_.path()); }, ErrorCode::kNotFound, dir,
                         {"model.safetensors", "model.safetensors.index.json"}));
  EXPECT_TRUE(fails_with([&] { Checkpoint::open(scratch_.path() / "nope"); }, ErrorCode::kNotFound,
                         dir + "/nope", {"not a directory"}));
}

TEST_F(SafetensorsTest, CorruptSingleFileNamesTheFile) {
  two_tensors().write(model_file(), Corruption::resize_data(-1));
  EXPECT_TRUE(fails_with([&] { Checkpoint::open(scratch_.path()); }, ErrorCode::kDataLoss,
                         model_file().string(), {"truncated"}));
}

class CheckpointIndexTest : public SafetensorsTest {
 protected:
  void SetUp() override {
    SafetensorsWriter().add_f32("a", {2}, {1, 2}).write(scratch_.path() / "shard-1.safetensors");
  }
  std::string index_path() const {
    return (scratch_.path() / "model.safetensors.index.json").string();
  }
  AssertionResult checkpoint_fails(ErrorCode code, const std::vector<std::string>& parts) const {
    return fails_with([&] { Checkpoint::open(scratch_.path()); }, code, index_path(), parts);
  }
};

TEST_F(CheckpointIndexTest, IndexNamesAMissingFile) {
  testing::write_index(scratch_.path(),
                       {{"a", "shard-1.safetensors"}, {"b", "shard-2.safetensors"}});
  EXPECT_TRUE(
      checkpoint_fails(ErrorCode::kNotFound, {"'b'", "'shard-2.safetensors'", "does not exist"}));
}

TEST_F(CheckpointIndexTest, IndexNamesATensorTheFileLacks) {
  testing::write_index(scratch_.path(),
                       {{"a", "shard-1.safetensors"}, {"c", "shard-1.safetensors"}});
  EXPECT_TRUE(checkpoint_fails(ErrorCode::kNotFound, {"'shard-1.safetensors'", "no tensor 'c'"}));
}

TEST_F(CheckpointIndexTest, WeightMapNotAnObject) {
  testing::write_index_raw(scratch_.path(), R"({"weight_map": ["a", "shard-1.safetensors"]})");
  EXPECT_TRUE(checkpoint_fails(ErrorCode::kDataLoss, {"'weight_map'", "array"}));
}

TEST_F(CheckpointIndexTest, WeightMapMissing) {
  testing::write_index_raw(scratch_.path(), R"({"metadata": {}})");
  EXPECT_TRUE(checkpoint_fails(ErrorCode::kDataLoss, {"missing 'weight_map'"}));
}

TEST_F(CheckpointIndexTest, WeightMapValueNotAString) {
  testing::write_index_raw(scratch_.path(), R"({"weight_map": {"a": 1}})");
  EXPECT_TRUE(checkpoint_fails(ErrorCode::kDataLoss, {"weight_map['a']", "file name"}));
}

// JSON parsers keep one of two equal keys; which file a tensor comes from must not depend on that.
TEST_F(CheckpointIndexTest, WeightMapNamesATensorTwice) {
  SafetensorsWriter().add_f32("a", {2}, {5, 6}).write(scratch_.path() / "shard-2.safetensors");
  testing::write_index_raw(scratch_.path(),
                           R"({"weight_map": {"a": "shard-1.safetensors", "a": "shard-2.safetensors"}})");
  EXPECT_TRUE(checkpoint_fails(ErrorCode::kDataLoss, {"weight_map", "'a'", "twice"}));
}

TEST_F(CheckpointIndexTest, DeeplyNestedValueIsRefusedWithoutRecursion) {
  const int depth = 1'000'000;
  testing::write_index_raw(scratch_.path(), R"({"weight_map": {"a": )" + std::string(depth, '[') +
                                                std::string(depth, ']') + "}}");
  EXPECT_TRUE(checkpoint_fails(ErrorCode::kDataLoss, {"weight_map['a']", "array", "file name"}));
}

TEST_F(CheckpointIndexTest, IndexNotJson) {
  testing::write_index_raw(scratch_.path(), R"({"weight_map": )");
  EXPECT_TRUE(checkpoint_fails(ErrorCode::kDataLoss, {"not valid JSON"}));
}

TEST_F(CheckpointIndexTest, FileNamesMustStayInsideTheDirectory) {
  // A valid shard outside the model directory must still be refused.
  const fs::path dir = scratch_.path() / "model";
  fs::create_directories(dir / "sub");
  SafetensorsWriter().add_f32("a", {2}, {1, 2}).write(dir / "sub" / "inner.safetensors");
  const std::string index = (dir / "model.safetensors.index.json").string();
  const std::vector<std::string> names = {"../shard-1.safetensors", "sub/inner.safetensors",
                                          (scratch_.path() / "shard-1.safetensors").string(), "..",
                                          ""};
  for (const std::string& name : names) {
    testing::write_index(dir, {{"a", name}});
    EXPECT_TRUE(fails_with([&] { Checkpoint::open(dir); }, ErrorCode::kInvalidArgument, index,
                           {"weight_map['a']", "'" + name + "'", "plain file name"}))
        << name;
  }
}

TEST_F(CheckpointIndexTest, CorruptShardNamesTheShard) {
  SafetensorsWriter()
      .add_f32("b", {2}, {1, 2})
      .write(scratch_.path() / "shard-2.safetensors", Corruption::resize_data(4));
  testing::write_index(scratch_.path(),
                       {{"a", "shard-1.safetensors"}, {"b", "shard-2.safetensors"}});
  EXPECT_TRUE(fails_with([&] { Checkpoint::open(scratch_.path()); }, ErrorCode::kDataLoss,
                         (scratch_.path() / "shard-2.safetensors").string(), {"trailing bytes"}));
}

// ---- errors: reading ----

TEST_F(SafetensorsTest, ReadF32OutOfRange) {
  SafetensorsWriter().add_f32("m", {4, 6}, std::vector<float>(24, 1.0f)).write(model_file());
  auto checkpoint = Checkpoint::open(scratch_.path());
  std::vector<float> out(64);
  const std::string file = model_file().string();
  EXPECT_TRUE(fails_with([&] { checkpoint->read_f32("m", 0, 5, 0, 6, out.data()); },
                         ErrorCode::kOutOfRange, file, {"tensor 'm'", "rows [0, 5)", "4 x 6"}));
  EXPECT_TRUE(fails_with([&] { checkpoint->read_f32("m", 0, 1, 4, 7, out.data()); },
                         ErrorCode::kOutOfRange, file, {"tensor 'm'", "cols [4, 7)", "4 x 6"}));
  EXPECT_TRUE(fails_with([&] { checkpoint->read_f32("m", -1, 1, 0, 6, out.data()); },
                         ErrorCode::kOutOfRange, file, {"tensor 'm'", "rows [-1, 1)"}));
  EXPECT_TRUE(fails_with([&] { checkpoint->read_f32("m", 3, 2, 0, 6, out.data()); },
                         ErrorCode::kOutOfRange, file, {"tensor 'm'", "rows [3, 2)"}));
  EXPECT_EQ(checkpoint->bytes_read(), 0u);
}

TEST_F(SafetensorsTest, ReadF32OfAnIntegerTensor) {
  SafetensorsWriter().add_i32("ids", {3}, {1, 2, 3}).write(model_file());
  auto checkpoint = Checkpoint::open(scratch_.path());
  float out[3];
  EXPECT_TRUE(fails_with([&] { checkpoint->read_f32("ids", 0, 3, 0, 1, out); },
                         ErrorCode::kUnimplemented, model_file().string(),
                         {"tensor 'ids'", "I32"}));
}

TEST_F(SafetensorsTest, UnknownTensorInTheCheckpoint) {
  two_tensors().write(model_file());
  auto checkpoint = Checkpoint::open(scratch_.path());
  const std::string dir = scratch_.path().string();
  const std::vector<std::string> parts = {"tensor 'model.norm.weight' not found in the checkpoint"};
  EXPECT_FALSE(checkpoint->contains("model.norm.weight"));
  EXPECT_TRUE(fails_with([&] { checkpoint->tensor("model.norm.weight"); }, ErrorCode::kNotFound,
                         dir, parts));
  EXPECT_TRUE(fails_with([&] { checkpoint->file_of("model.norm.weight"); }, ErrorCode::kNotFound,
                         dir, parts));
  float out;
  EXPECT_TRUE(fails_with([&] { checkpoint->read_f32("model.norm.weight", 0, 1, 0, 1, &out); },
                         ErrorCode::kNotFound, dir, parts));
}

}  // namespace
}  // namespace tpserve::runtime
