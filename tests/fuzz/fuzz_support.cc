#include "tests/fuzz/fuzz_support.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <fstream>
#include <vector>

#include "common/error.h"
#include "runtime/tokenizer/tokenizer.h"
#include "runtime/tokenizer/utf8.h"

namespace tpserve::fuzz {

namespace fs = std::filesystem;

const fs::path& scratch_dir() {
  static const fs::path dir = [] {
    // Memory-backed where the machine has it: every execution writes its input there, and a disk
    // file system's metadata updates were the fuzzers' bottleneck (5x fewer executions/s).
    std::error_code error;
    const fs::path base = fs::is_directory("/dev/shm", error) && ::access("/dev/shm", W_OK) == 0
                              ? fs::path("/dev/shm")
                              : fs::temp_directory_path();
    fs::path path = base / ("tpserve_fuzz_" + std::to_string(::getpid()));
    fs::remove_all(path);
    fs::create_directories(path);
    std::atexit([] { std::error_code ignored; fs::remove_all(scratch_dir(), ignored); });
    return path;
  }();
  return dir;
}

fs::path write_input(std::string_view name, const uint8_t* data, size_t size) {
  fs::path path = scratch_dir() / name;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  return path;
}

fs::path fixtures_dir() { return fs::path(TPSERVE_SOURCE_DIR) / "tests" / "fixtures"; }

namespace {

void decode_all(const runtime::Tokenizer& tokenizer, const std::vector<int32_t>& ids) {
  try {
    (void)tokenizer.decode(ids, false);
    (void)tokenizer.decode(ids, true);
  } catch (const Error&) {
  }
  runtime::IncrementalDecoder stream(tokenizer);
  for (int32_t id : ids) {
    try {
      (void)stream.push(id);
    } catch (const Error&) {
    }
  }
  (void)stream.finish();
}

}  // namespace

void exercise_tokenizer(const runtime::Tokenizer& tokenizer, std::string_view extra) {
  std::vector<std::string> texts = {"Hello world, 123 + 4567!", "  leading spaces\n\ttabs\r\n",
                                    "\xE4\xBD\xA0\xE5\xA5\xBD \xF0\x9F\x98\x80 caf\x65\xCC\x81",
                                    "<|im_start|>user\nhi<|im_end|><|endoftext|><s></s>",
                                    std::string(64, 'a'), ""};
  if (runtime::utf8::find_invalid(extra) == std::string_view::npos) {
    // At most 256 bytes, cut before a character that the 256th byte would split (encode refuses
    // invalid UTF-8, naming the offset: that is the tokenizer's contract, not a failure).
    texts.emplace_back(extra.substr(0, runtime::utf8::complete_prefix_length(extra.substr(0, 256))));
  }
  for (const std::string& text : texts) {
    for (bool special : {true, false}) {
      std::vector<int32_t> ids = tokenizer.encode(text, special);
      for (int32_t id : ids) {
        if (id < 0 || id >= tokenizer.vocab_size()) {
          std::fprintf(stderr, "encode gave id %d outside [0, %d)\n", id, tokenizer.vocab_size());
          std::abort();
        }
      }
      decode_all(tokenizer, ids);
    }
  }
  std::vector<int32_t> every;
  for (int32_t id = -2; id < std::min(tokenizer.vocab_size(), 512) + 2; ++id) every.push_back(id);
  every.push_back(tokenizer.vocab_size() - 1);
  decode_all(tokenizer, every);
  for (int32_t id : tokenizer.eos_token_ids()) decode_all(tokenizer, {id});
}

}  // namespace tpserve::fuzz
