#include "runtime/tokenizer/unicode_nfc.h"

#include <utf8proc.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <memory>

#include "common/error.h"
#include "runtime/tokenizer/utf8.h"

namespace tpserve::runtime {

namespace {

// A composition's second character (what NFC may merge into the starter before it): utf8proc's
// table marks them with comb_index >= 0x8000; Hangul vowel and trailing jamo compose by rule
// (libutf8proc also composes U+11A7, the trailing-jamo base, so it counts here too).
bool composes_with_previous(char32_t cp) {
  if ((cp >= 0x1161 && cp <= 0x1175) || (cp >= 0x11A7 && cp <= 0x11C2)) return true;
  const utf8proc_property_t* property = utf8proc_get_property(static_cast<utf8proc_int32_t>(cp));
  return property->comb_index != UINT16_MAX && property->comb_index >= 0x8000;
}

// Whether any text made of characters like `cp` is unchanged by NFC: `cp` is a starter (combining
// class 0), NFC leaves it alone by itself, and neither it nor the first character of its canonical
// decomposition merges into a character before it. Then nothing reorders, nothing composes across
// characters, and each character recomposes to itself.
bool compute_nfc_stable(char32_t cp) {
  const auto code = static_cast<utf8proc_int32_t>(cp);
  if (utf8proc_get_property(code)->combining_class != 0 || composes_with_previous(cp)) return false;
  utf8proc_int32_t decomposed[8];
  int boundclass = 0;
  utf8proc_ssize_t length = utf8proc_decompose_char(code, decomposed, 8, UTF8PROC_DECOMPOSE, &boundclass);
  if (length < 1 || length > 8 || composes_with_previous(static_cast<char32_t>(decomposed[0]))) return false;
  if (length == 1 && decomposed[0] == code) return true;
  std::string text;
  utf8::append(text, cp);
  return to_nfc(text) == text;
}

// Each code point's answer, worked out the first time it is seen (text uses a few thousand
// distinct characters at most): 0 not yet known, 1 stable, 2 not. Racing threads store the same.
bool nfc_stable(char32_t cp) {
  static std::atomic<uint8_t> known[0x110000];
  uint8_t verdict = known[cp].load(std::memory_order_relaxed);
  if (verdict == 0) {
    verdict = compute_nfc_stable(cp) ? 1 : 2;
    known[cp].store(verdict, std::memory_order_relaxed);
  }
  return verdict == 1;
}

}  // namespace

bool is_nfc_quick(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    if (static_cast<unsigned char>(text[i]) < 0x80) {
      ++i;
      continue;
    }
    const size_t start = i;
    const char32_t cp = utf8::next(text, i);
    if (i == start || cp > 0x10FFFF) return false;  // not valid UTF-8: let the full NFC refuse it
    // Below U+0300 (Latin-1 and the precomposed Latin blocks) and the CJK unified ideographs
    // nothing decomposes or combines: no table lookup.
    if (cp < 0x300 || (cp >= 0x4E00 && cp <= 0x9FFF)) continue;
    if (!nfc_stable(cp)) return false;
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
