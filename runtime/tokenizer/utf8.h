// UTF-8 helpers for the tokenizers: strict validation (errors name the byte offset), code point
// iteration, and the lossy repair Hugging Face's decoders apply (Rust's String::from_utf8_lossy).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace tpserve::runtime::utf8 {

// Byte offset of the first invalid sequence (overlong, surrogate, > U+10FFFF, truncated, stray
// continuation byte), or npos when `text` is valid UTF-8.
size_t find_invalid(std::string_view text);

// Throws tpserve::Error(kInvalidArgument) "invalid UTF-8 in <what> at byte offset N".
void validate(std::string_view text, std::string_view what);

// Decodes the code point at `pos` of valid UTF-8 and advances `pos` past it.
char32_t next(std::string_view text, size_t& pos);

// The same for text that may not be valid: an ill-formed sequence (a stray or overlong byte, a
// truncated character) decodes as U+FFFD and advances past its maximal subpart, as Python's
// errors="replace" does, so that a loop over any bytes ends and reads nothing past them.
char32_t next_or_replacement(std::string_view text, size_t& pos);

void append(std::string& out, char32_t code_point);

// Length of the longest prefix that does not end inside a sequence that could still complete: the
// bytes after it are the start of a multi-byte character whose remaining bytes have not arrived.
size_t complete_prefix_length(std::string_view bytes);

// Replaces each maximal invalid subpart with U+FFFD (the Unicode / WHATWG practice that Rust's
// from_utf8_lossy follows), so decoding a cut stream in pieces gives the same text as in one go.
std::string repair(std::string_view bytes);

}  // namespace tpserve::runtime::utf8
