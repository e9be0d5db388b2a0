// Unicode Normalization Form C, for tokenizers whose normalizer is NFC (Qwen1.5/2/2.5's
// tokenizer.json; Qwen v1's tokenization_qwen.py calls unicodedata.normalize("NFC", text)).
// The normalization itself is Debian's libutf8proc; this file adds a fast path for text that is
// certainly NFC already.
#pragma once

#include <string>
#include <string_view>

namespace tpserve::runtime {

// True when `text` (valid UTF-8) is certainly NFC already: every code point is below U+0300
// (ASCII, Latin-1 and the precomposed Latin blocks, none of which decompose-then-recompose
// differently or combine) or a CJK unified ideograph (U+4E00..U+9FFF). The common case is a scan.
bool is_nfc_quick(std::string_view text);

// NFC of valid UTF-8: canonical decomposition, canonical ordering, canonical composition.
std::string to_nfc(std::string_view text);

}  // namespace tpserve::runtime
