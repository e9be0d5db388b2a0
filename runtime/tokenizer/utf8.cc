#include "runtime/tokenizer/utf8.h"

#include <cstdint>

#include "common/error.h"

namespace tpserve::runtime::utf8 {
namespace {

// Number of bytes a sequence starting with `lead` has, 0 for a byte that cannot start one.
int sequence_length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if (lead >= 0xC2 && lead <= 0xDF) return 2;
  if (lead >= 0xE0 && lead <= 0xEF) return 3;
  if (lead >= 0xF0 && lead <= 0xF4) return 4;
  return 0;
}

// The allowed range of the second byte (Unicode Table 3-7): excludes overlongs, surrogates and
// code points above U+10FFFF.
bool second_byte_ok(unsigned char lead, unsigned char second) {
  switch (lead) {
    case 0xE0: return second >= 0xA0 && second <= 0xBF;
    case 0xED: return second >= 0x80 && second <= 0x9F;
    case 0xF0: return second >= 0x90 && second <= 0xBF;
    case 0xF4: return second >= 0x80 && second <= 0x8F;
    default: return second >= 0x80 && second <= 0xBF;
  }
}

// How many bytes of the sequence at `pos` are well-formed (1..length); equals the sequence length
// when the whole character is valid, and is the "maximal subpart" length otherwise.
int valid_prefix(std::string_view s, size_t pos, int length) {
  if (length == 1) return 1;
  int ok = 1;
  for (int k = 1; k < length && pos + k < s.size(); ++k) {
    auto byte = static_cast<unsigned char>(s[pos + k]);
    bool good = k == 1 ? second_byte_ok(static_cast<unsigned char>(s[pos]), byte)
                       : (byte >= 0x80 && byte <= 0xBF);
    if (!good) break;
    ++ok;
  }
  return ok;
}

}  // namespace

size_t find_invalid(std::string_view text) {
  size_t pos = 0;
  while (pos < text.size()) {
    // ASCII fast path, eight bytes at a time.
    while (pos + 8 <= text.size()) {
      uint64_t word;
      __builtin_memcpy(&word, text.data() + pos, 8);
      if (word & 0x8080808080808080ULL) break;
      pos += 8;
    }
    if (pos >= text.size()) break;
    int length = sequence_length(static_cast<unsigned char>(text[pos]));
    if (length == 0 || valid_prefix(text, pos, length) != length) return pos;
    pos += length;
  }
  return std::string_view::npos;
}

void validate(std::string_view text, std::string_view what) {
  size_t bad = find_invalid(text);
  if (bad != std::string_view::npos) {
    raise(ErrorCode::kInvalidArgument, "invalid UTF-8 in {} at byte offset {} (byte 0x{:02X})", what,
          bad, static_cast<unsigned char>(text[bad]));
  }
}

char32_t next_or_replacement(std::string_view text, size_t& pos) {
  const int length = sequence_length(static_cast<unsigned char>(text[pos]));
  if (length == 0) {
    ++pos;
    return 0xFFFD;
  }
  const int valid = valid_prefix(text, pos, length);
  if (valid != length) {
    pos += static_cast<size_t>(valid);
    return 0xFFFD;
  }
  return next(text, pos);
}

char32_t next(std::string_view text, size_t& pos) {
  auto lead = static_cast<unsigned char>(text[pos]);
  int length = sequence_length(lead);
  char32_t cp = length == 1 ? lead : length == 2 ? (lead & 0x1F) : length == 3 ? (lead & 0x0F) : (lead & 0x07);
  for (int k = 1; k < length; ++k) cp = (cp << 6) | (static_cast<unsigned char>(text[pos + k]) & 0x3F);
  pos += length;
  return cp;
}

void append(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

size_t complete_prefix_length(std::string_view bytes) {
  // Only the last three bytes can hold an unfinished character.
  size_t start = bytes.size() > 3 ? bytes.size() - 3 : 0;
  for (size_t pos = start; pos < bytes.size(); ++pos) {
    auto byte = static_cast<unsigned char>(bytes[pos]);
    if (byte >= 0x80 && byte <= 0xBF) continue;  // a continuation byte
    int length = sequence_length(byte);
    if (length <= 1) continue;
    size_t available = bytes.size() - pos;
    if (available < static_cast<size_t>(length) &&
        valid_prefix(bytes, pos, length) == static_cast<int>(available)) {
      return pos;  // a well-formed start still waiting for its last bytes
    }
  }
  return bytes.size();
}

std::string repair(std::string_view bytes) {
  size_t bad = find_invalid(bytes);
  if (bad == std::string_view::npos) return std::string(bytes);
  std::string out(bytes.substr(0, bad));
  size_t pos = bad;
  while (pos < bytes.size()) {
    int length = sequence_length(static_cast<unsigned char>(bytes[pos]));
    int ok = length == 0 ? 0 : valid_prefix(bytes, pos, length);
    if (length != 0 && ok == length) {
      out.append(bytes.substr(pos, length));
      pos += length;
    } else {
      out.append("\xEF\xBF\xBD");  // U+FFFD for the maximal subpart (at least one byte)
      pos += ok > 0 ? ok : 1;
    }
  }
  return out;
}

}  // namespace tpserve::runtime::utf8
