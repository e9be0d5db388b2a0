// A SentencePiece model (sentencepiece_model.proto's ModelProto) written in protobuf's wire format,
// for models that arrive as something other than a tokenizer.model file (a GGUF file's
// tokenizer.ggml.* metadata) and are then loaded by libsentencepiece itself
// (SentencePieceProcessor::LoadFromSerializedProto). Only the fields tpserve sets are written; the
// library's defaults hold for the rest. Field numbers are sentencepiece_model.proto's.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tpserve::runtime {

struct SentencePieceModelSpec {
  // ModelProto.SentencePiece.Type
  enum class PieceType : int { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };
  struct Piece {
    std::string text;
    float score = 0;
    PieceType type = PieceType::kNormal;
  };
  // TrainerSpec.ModelType
  enum class ModelType : int { kUnigram = 1, kBpe = 2 };

  std::vector<Piece> pieces;
  ModelType model_type = ModelType::kBpe;
  bool byte_fallback = false;
  int32_t unk_id = 0;  // TrainerSpec ids; -1 for none
  int32_t bos_id = 1;
  int32_t eos_id = 2;
  int32_t pad_id = -1;
  // NormalizerSpec: "identity" with no precompiled_charsmap maps every character to itself.
  std::string normalizer_name = "identity";
  bool add_dummy_prefix = true;
  bool remove_extra_whitespaces = false;
  bool escape_whitespaces = true;
};

// The serialized ModelProto.
std::string serialize_model_proto(const SentencePieceModelSpec& spec);

}  // namespace tpserve::runtime
