// The C interface of the tpserve_sentencepiece module: the few SentencePieceProcessor calls the
// tokenizer needs, behind plain C functions.
//
// Why a separately loaded module: Debian's libsentencepiece carries its own copy of protobuf-lite
// and exports those symbols. Linked into the same process as gRPC's libprotobuf, one library's
// protobuf symbols interpose the other's and the process crashes before main(). The module links
// libsentencepiece and is dlopen'ed with RTLD_LOCAL | RTLD_DEEPBIND, so its protobuf stays private.
#pragma once

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

// Bumped when a signature below changes; the loader refuses a module of another version.
#define TPS_SP_ABI_VERSION 2

// Receives bytes (a piece, an error message) or ids; ctx is the caller's.
typedef void (*tps_sp_bytes_sink)(void* ctx, const char* data, size_t size);
typedef void (*tps_sp_ids_sink)(void* ctx, const int* ids, size_t count);

int tps_sp_abi_version(void);
// Returns a processor handle, or NULL with the reason sent to `error`.
void* tps_sp_load(const char* path, tps_sp_bytes_sink error, void* error_ctx);
// The same from a serialized ModelProto in memory (SentencePieceProcessor::LoadFromSerializedProto).
void* tps_sp_load_serialized(const char* data, size_t size, tps_sp_bytes_sink error, void* error_ctx);
void tps_sp_free(void* processor);
int tps_sp_piece_size(const void* processor);
int tps_sp_bos_id(const void* processor);
int tps_sp_unk_id(const void* processor);
int tps_sp_is_control(const void* processor, int id);
int tps_sp_is_byte(const void* processor, int id);
int tps_sp_is_unknown(const void* processor, int id);
int tps_sp_piece_to_id(const void* processor, const char* piece, size_t size);
void tps_sp_id_to_piece(const void* processor, int id, tps_sp_bytes_sink sink, void* ctx);
// Encodes text to ids; returns 0 on success, else sends the reason to `error` and returns -1.
int tps_sp_encode(const void* processor, const char* text, size_t size, tps_sp_ids_sink sink,
                  void* ctx, tps_sp_bytes_sink error, void* error_ctx);

#ifdef __cplusplus
}
#endif
