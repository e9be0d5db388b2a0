// Shared by the libFuzzer harnesses: the parsers read files, so each input is written to the file
// name the parser expects inside a scratch directory of this process.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace tpserve::fuzz {

// A fresh directory for this process (removed at exit).
const std::filesystem::path& scratch_dir();

// Writes `size` bytes to scratch_dir() / name and returns the path.
std::filesystem::path write_input(std::string_view name, const uint8_t* data, size_t size);

// tests/fixtures in the source tree.
std::filesystem::path fixtures_dir();

}  // namespace tpserve::fuzz

namespace tpserve::runtime {
class Tokenizer;
}

namespace tpserve::fuzz {

// Uses a tokenizer that loaded: encodes fixed texts (plain, specials, long runs) and `extra` when it
// is valid UTF-8, decodes every id that came out, the ids below vocab_size (at most 512) and the last one,
// whole and streamed. Ids the tokenizer does not know must raise tpserve::Error, nothing else.
void exercise_tokenizer(const runtime::Tokenizer& tokenizer, std::string_view extra);

}  // namespace tpserve::fuzz
