// The pre-tokenizer split of byte-level BPE: a PCRE2 regex (Unicode classes, look-ahead) run over
// the text, every match and every gap between matches becoming one piece (the `Isolated` split
// behaviour of Hugging Face tokenizers, and what tiktoken's regex iteration yields).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace tpserve::runtime {

// GPT-2's pattern: what tokenizers' ByteLevel pre-tokenizer uses when use_regex is true.
inline constexpr std::string_view kGpt2SplitPattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// Qwen v1's PAT_STR (tokenization_qwen.py), also the Split regex of Qwen1.5/2/2.5's tokenizer.json:
// single digits, letters with one leading non-letter, punctuation runs with their newlines.
inline constexpr std::string_view kQwenSplitPattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// Llama-3's pattern (Meta's tokenizer.py pat_str): like Qwen's but digits in groups of up to three.
inline constexpr std::string_view kLlama3SplitPattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

class RegexSplitter {
 public:
  // Compiles (and JIT-compiles) `pattern` in UTF + UCP mode; `where` names the file and field for
  // the error when the pattern does not compile.
  RegexSplitter(std::string_view pattern, std::string_view where);
  ~RegexSplitter();
  RegexSplitter(const RegexSplitter&) = delete;
  RegexSplitter& operator=(const RegexSplitter&) = delete;

  // Appends the pieces of `text` (valid UTF-8) to `pieces`, in order; they concatenate to `text`.
  // Thread-safe.
  void split(std::string_view text, std::vector<std::string_view>& pieces) const;

  const std::string& pattern() const { return pattern_; }

 private:
  struct Compiled;
  std::string pattern_;
  std::unique_ptr<Compiled> compiled_;
};

}  // namespace tpserve::runtime
