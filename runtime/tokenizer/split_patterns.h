// Hand-written matchers for the split regexes that nearly every byte-level BPE uses (GPT-2's,
// Qwen's, Llama-3's, and the Digits pre-tokenizer's \p{N}): the same pieces PCRE2 finds, several
// times faster, since each is one pass over the characters with no backtracking engine. The
// character classes (\p{L}, \p{N}, \s in PCRE2's UCP sense) come from PCRE2 itself, one code point
// at a time the first time it is seen, so the two paths cannot disagree on what a letter is.
// RegexSplitter uses these when its pattern is one of them, verbatim; any other pattern runs on
// PCRE2. tests/runtime/tokenizer/split_patterns_test.cc checks them against PCRE2 on random text.
#pragma once

#include <optional>
#include <string_view>
#include <vector>

namespace tpserve::runtime {

enum class SplitPattern { kGpt2, kQwen, kLlama3, kEachDigit, kDigitRuns };

// Which hand-written matcher implements `pattern` exactly, if any.
std::optional<SplitPattern> known_split_pattern(std::string_view pattern);

// Appends the pieces of `text` (valid UTF-8), as RegexSplitter::split does for that pattern.
void split_known_pattern(SplitPattern pattern, std::string_view text, std::vector<std::string_view>& pieces);

}  // namespace tpserve::runtime
