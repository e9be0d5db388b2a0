// The tpserve_sentencepiece module: sentencepiece_abi.h over libsentencepiece. Nothing here may
// throw across the C boundary.
#include "runtime/tokenizer/sentencepiece_module/sentencepiece_abi.h"

#include <sentencepiece_processor.h>

#include <memory>
#include <string>
#include <vector>

namespace {

using Processor = sentencepiece::SentencePieceProcessor;

const Processor& processor_of(const void* handle) { return *static_cast<const Processor*>(handle); }

void send(tps_sp_bytes_sink sink, void* ctx, const std::string& text) {
  if (sink != nullptr) sink(ctx, text.data(), text.size());
}

template <typename LoadFn>
void* load_with(LoadFn load, tps_sp_bytes_sink error, void* error_ctx) {
  try {
    auto processor = std::make_unique<Processor>();
    const auto status = load(*processor);
    if (!status.ok()) {
      send(error, error_ctx, status.ToString());
      return nullptr;
    }
    return processor.release();
  } catch (const std::exception& e) {
    send(error, error_ctx, e.what());
    return nullptr;
  }
}

}  // namespace

extern "C" {

int tps_sp_abi_version(void) { return TPS_SP_ABI_VERSION; }

void* tps_sp_load(const char* path, tps_sp_bytes_sink error, void* error_ctx) {
  return load_with([&](Processor& processor) { return processor.Load(path); }, error, error_ctx);
}

void* tps_sp_load_serialized(const char* data, size_t size, tps_sp_bytes_sink error, void* error_ctx) {
  return load_with([&](Processor& processor) { return processor.LoadFromSerializedProto({data, size}); },
                   error, error_ctx);
}

void tps_sp_free(void* processor) { delete static_cast<Processor*>(processor); }

int tps_sp_piece_size(const void* processor) { return processor_of(processor).GetPieceSize(); }
int tps_sp_bos_id(const void* processor) { return processor_of(processor).bos_id(); }
int tps_sp_unk_id(const void* processor) { return processor_of(processor).unk_id(); }
int tps_sp_is_control(const void* processor, int id) { return processor_of(processor).IsControl(id); }
int tps_sp_is_byte(const void* processor, int id) { return processor_of(processor).IsByte(id); }
int tps_sp_is_unknown(const void* processor, int id) { return processor_of(processor).IsUnknown(id); }

int tps_sp_piece_to_id(const void* processor, const char* piece, size_t size) {
  return processor_of(processor).PieceToId(std::string(piece, size));
}

void tps_sp_id_to_piece(const void* processor, int id, tps_sp_bytes_sink sink, void* ctx) {
  send(sink, ctx, processor_of(processor).IdToPiece(id));
}

int tps_sp_encode(const void* processor, const char* text, size_t size, tps_sp_ids_sink sink,
                  void* ctx, tps_sp_bytes_sink error, void* error_ctx) {
  try {
    std::vector<int> ids;
    const auto status = processor_of(processor).Encode(std::string(text, size), &ids);
    if (!status.ok()) {
      send(error, error_ctx, status.ToString());
      return -1;
    }
    sink(ctx, ids.data(), ids.size());
    return 0;
  } catch (const std::exception& e) {
    send(error, error_ctx, e.what());
    return -1;
  }
}

}  // extern "C"
