// Unicode Normalization Form C, for tokenizers whose normalizer is NFC (Qwen1.5/2/2.5's
// tokenizer.json; Qwen v1's tokenization_qwen.py calls unicodedata.normalize("NFC", text)).
// The normalization itself is Debian's libutf8proc; this file adds a fast path for text that is
// certainly NFC already.
#pragma once

#include <string>
#include <string_view>

namespace tpserve::runtime {

// True when `text` (valid UTF-8) is certainly NFC already: every code point is a starter that NFC
// keeps as it is and that cannot merge into the character before it (ASCII, Latin, CJK, kana,
// Hangul syllables, Cyrillic, emoji, ...; each code point is checked against libutf8proc once, then
// remembered). Text with a combining mark or a composition's second character gets a full NFC.
bool is_nfc_quick(std::string_view text);

// NFC of valid UTF-8: canonical decomposition, canonical ordering, canonical composition.
std::string to_nfc(std::string_view text);

}  // namespace tpserve::runtime
