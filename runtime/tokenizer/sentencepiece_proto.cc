#include "runtime/tokenizer/sentencepiece_proto.h"

#include <bit>
#include <string_view>

namespace tpserve::runtime {
namespace {

// Protobuf wire format (protobuf.dev/programming-guides/encoding): a key is
// (field_number << 3) | wire_type; varints are base-128, little end first; int32 -1 is the 10-byte
// varint of its sign-extended 64-bit value; floats are 4 little-endian bytes.
enum WireType : uint32_t { kVarint = 0, kLengthDelimited = 2, kFixed32 = 5 };

void put_varint(std::string& out, uint64_t value) {
  while (value >= 0x80) {
    out.push_back(static_cast<char>((value & 0x7F) | 0x80));
    value >>= 7;
  }
  out.push_back(static_cast<char>(value));
}

void put_key(std::string& out, uint32_t field, WireType type) { put_varint(out, (uint64_t{field} << 3) | type); }

void put_int(std::string& out, uint32_t field, int64_t value) {
  put_key(out, field, kVarint);
  put_varint(out, static_cast<uint64_t>(value));
}

void put_bytes(std::string& out, uint32_t field, std::string_view bytes) {
  put_key(out, field, kLengthDelimited);
  put_varint(out, bytes.size());
  out.append(bytes);
}

void put_float(std::string& out, uint32_t field, float value) {
  put_key(out, field, kFixed32);
  const auto bits = std::bit_cast<uint32_t>(value);
  for (int shift = 0; shift < 32; shift += 8) out.push_back(static_cast<char>((bits >> shift) & 0xFF));
}

// ModelProto fields.
constexpr uint32_t kPieces = 1, kTrainerSpec = 2, kNormalizerSpec = 3;
// ModelProto.SentencePiece fields.
constexpr uint32_t kPiece = 1, kScore = 2, kType = 3;
// TrainerSpec fields.
constexpr uint32_t kModelType = 3, kVocabSize = 4, kByteFallback = 35, kUnkId = 40, kBosId = 41, kEosId = 42,
                   kPadId = 43;
// NormalizerSpec fields.
constexpr uint32_t kName = 1, kAddDummyPrefix = 3, kRemoveExtraWhitespaces = 4, kEscapeWhitespaces = 5;

}  // namespace

std::string serialize_model_proto(const SentencePieceModelSpec& spec) {
  std::string out;
  std::string message;
  for (const SentencePieceModelSpec::Piece& piece : spec.pieces) {
    message.clear();
    put_bytes(message, kPiece, piece.text);
    put_float(message, kScore, piece.score);
    put_int(message, kType, static_cast<int>(piece.type));
    put_bytes(out, kPieces, message);
  }
  message.clear();
  put_int(message, kModelType, static_cast<int>(spec.model_type));
  put_int(message, kVocabSize, static_cast<int64_t>(spec.pieces.size()));
  put_int(message, kByteFallback, spec.byte_fallback ? 1 : 0);
  put_int(message, kUnkId, spec.unk_id);
  put_int(message, kBosId, spec.bos_id);
  put_int(message, kEosId, spec.eos_id);
  put_int(message, kPadId, spec.pad_id);
  put_bytes(out, kTrainerSpec, message);
  message.clear();
  put_bytes(message, kName, spec.normalizer_name);
  put_int(message, kAddDummyPrefix, spec.add_dummy_prefix ? 1 : 0);
  put_int(message, kRemoveExtraWhitespaces, spec.remove_extra_whitespaces ? 1 : 0);
  put_int(message, kEscapeWhitespaces, spec.escape_whitespaces ? 1 : 0);
  put_bytes(out, kNormalizerSpec, message);
  return out;
}

}  // namespace tpserve::runtime
