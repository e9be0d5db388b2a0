#include "runtime/tokenizer/unicode_nfc.h"

#include <utf8proc.h>

#include <cstdlib>
#include <memory>

#include "common/error.h"

namespace tpserve::runtime {

bool is_nfc_quick(std::string_view text) {
  const auto* bytes = reinterpret_cast<const unsigned char*>(text.data());
  size_t i = 0;
  while (i < text.size()) {
    const unsigned char lead = bytes[i];
    if (lead < 0x80) {
      ++i;
      continue;
    }
    char32_t cp;
    if (lead < 0xE0) {  // two bytes: U+0080..U+07FF
      if (i + 1 >= text.size()) return false;
      cp = (static_cast<char32_t>(lead & 0x1F) << 6) | (bytes[i + 1] & 0x3F);
      i += 2;
    } else if (lead < 0xF0) {  // three bytes
      if (i + 2 >= text.size()) return false;
      cp = (static_cast<char32_t>(lead & 0x0F) << 12) |
           (static_cast<char32_t>(bytes[i + 1] & 0x3F) << 6) | (bytes[i + 2] & 0x3F);
      i += 3;
    } else {
      return false;
    }
    if (cp >= 0x300 && (cp < 0x4E00 || cp > 0x9FFF)) return false;
  }
  return true;
}

std::string to_nfc(std::string_view text) {
  utf8proc_uint8_t* result = nullptr;
  const utf8proc_ssize_t length =
      utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                   static_cast<utf8proc_ssize_t>(text.size()), &result,
                   static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  if (length < 0) {
    raise(ErrorCode::kInvalidArgument, "NFC normalization failed: {}", utf8proc_errmsg(length));
  }
  std::unique_ptr<utf8proc_uint8_t, decltype(&std::free)> owned(result, &std::free);
  return std::string(reinterpret_cast<const char*>(result), static_cast<size_t>(length));
}

}  // namespace tpserve::runtime
