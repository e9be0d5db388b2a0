#include "runtime/tokenizer/split_patterns.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <string>

#include "common/check.h"
#include "runtime/tokenizer/regex_splitter.h"
#include "runtime/tokenizer/utf8.h"

namespace tpserve::runtime {
namespace {

enum CharClass : uint8_t { kOther = 0, kLetter = 1, kNumber = 2, kSpace = 3 };

// \p{L}, \p{N} or \s of one code point, asked of PCRE2 (UTF + UCP, as RegexSplitter compiles).
CharClass ask_pcre2(char32_t cp) {
  static pcre2_code* const code = [] {
    int error = 0;
    PCRE2_SIZE offset = 0;
    constexpr std::string_view kClasses = R"((\p{L})|(\p{N})|(\s))";
    pcre2_code* compiled = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(kClasses.data()), kClasses.size(),
                                         PCRE2_UTF | PCRE2_UCP | PCRE2_ANCHORED, &error, &offset, nullptr);
    TPS_CHECK(compiled != nullptr, "the character class regex does not compile");
    return compiled;
  }();
  std::string subject;
  utf8::append(subject, cp);
  pcre2_match_data* match = pcre2_match_data_create_from_pattern(code, nullptr);
  int rc = pcre2_match(code, reinterpret_cast<PCRE2_SPTR>(subject.data()), subject.size(), 0, 0, match, nullptr);
  CharClass result = kOther;
  if (rc > 1) {
    PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(match);
    for (int group = 1; group < rc; ++group) {
      if (ovector[2 * group] != PCRE2_UNSET) result = static_cast<CharClass>(group);
    }
  }
  pcre2_match_data_free(match);
  return result;
}

// Each code point's class, asked the first time it is seen: 0 not yet known, else class + 1.
// Racing threads store the same value.
CharClass class_of(char32_t cp) {
  static std::atomic<uint8_t> known[0x110000];
  uint8_t value = known[cp].load(std::memory_order_relaxed);
  if (value == 0) {
    value = static_cast<uint8_t>(ask_pcre2(cp) + 1);
    known[cp].store(value, std::memory_order_relaxed);
  }
  return static_cast<CharClass>(value - 1);
}

// One character of the text: its code point, UTF-8 length and class.
struct Char {
  char32_t cp;
  uint32_t length;
  CharClass cls;
};

class Text {
 public:
  explicit Text(std::string_view text) : text_(text) {}
  size_t size() const { return text_.size(); }
  Char at(size_t pos) const {
    auto lead = static_cast<unsigned char>(text_[pos]);
    if (lead < 0x80) return {lead, 1, ascii_class(lead)};
    size_t next = pos;
    char32_t cp = utf8::next(text_, next);
    return {cp, static_cast<uint32_t>(next - pos), class_of(cp)};
  }
  // The end of the run of characters of class `cls` from `pos`.
  size_t run(size_t pos, CharClass cls) const {
    while (pos < size()) {
      Char c = at(pos);
      if (c.cls != cls) break;
      pos += c.length;
    }
    return pos;
  }
  // The end of at most `limit` characters of class `cls` from `pos`.
  size_t run_upto(size_t pos, CharClass cls, int limit) const {
    for (int k = 0; k < limit && pos < size(); ++k) {
      Char c = at(pos);
      if (c.cls != cls) break;
      pos += c.length;
    }
    return pos;
  }
  size_t newlines(size_t pos) const {
    while (pos < size() && (text_[pos] == '\r' || text_[pos] == '\n')) ++pos;
    return pos;
  }
  char byte(size_t pos) const { return pos < size() ? text_[pos] : '\0'; }

 private:
  static CharClass ascii_class(unsigned char byte) {
    static const auto table = [] {
      std::array<CharClass, 128> classes{};
      for (int b = 0; b < 128; ++b) classes[b] = class_of(static_cast<char32_t>(b));
      return classes;
    }();
    return table[byte];
  }
  std::string_view text_;
};

// Where the contraction after the apostrophe at `pos` ends ('s 't 're 've 'm 'll 'd), or 0.
// `ignore_case`: (?i:...) under UCP, where U+017F LATIN SMALL LETTER LONG S matches s as well.
size_t contraction_end(const Text& text, size_t pos, bool ignore_case) {
  if (pos + 1 >= text.size()) return 0;
  Char c = text.at(pos + 1);
  char32_t letter = c.cp;
  if (ignore_case) {
    if (letter >= 'A' && letter <= 'Z') letter += 'a' - 'A';
    if (letter == 0x17F) letter = 's';
  }
  const size_t after = pos + 1 + c.length;
  auto second_is = [&](char lower) {
    char b = text.byte(after);
    return b == lower || (ignore_case && b == lower - ('a' - 'A'));
  };
  switch (letter) {
    case 's': case 't': case 'm': case 'd': return after;
    case 'r': case 'v': return second_is('e') ? after + 1 : 0;
    case 'l': return second_is('l') ? after + 1 : 0;
    default: return 0;
  }
}

// \s+(?!\S) then \s+ from `pos`, a whitespace character: the run, less its last character when
// more text follows and the run has more than one.
size_t whitespace_end(const Text& text, size_t pos) {
  size_t last_start = pos, end = pos;
  while (end < text.size()) {
    Char c = text.at(end);
    if (c.cls != kSpace) break;
    last_start = end;
    end += c.length;
  }
  if (end == text.size() || last_start == pos) return end;
  return last_start;
}

// GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
size_t gpt2_match(const Text& text, size_t pos) {
  Char c = text.at(pos);
  if (c.cp == '\'') {
    if (size_t end = contraction_end(text, pos, false)) return end;
  }
  size_t start = pos;
  if (c.cp == ' ' && pos + 1 < text.size()) {
    Char next = text.at(pos + 1);
    if (next.cls != kSpace) {
      start = pos + 1;
      c = next;
    }
  }
  if (c.cls != kSpace) return text.run(start, c.cls);
  return whitespace_end(text, pos);
}

// Qwen (digits: 1) and Llama-3 (digits: 3):
// (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,digits}| ?[^\s\p{L}\p{N}]+[\r\n]*|
// \s*[\r\n]+|\s+(?!\S)|\s+
size_t qwen_match(const Text& text, size_t pos, int digits) {
  Char c = text.at(pos);
  if (c.cp == '\'') {
    if (size_t end = contraction_end(text, pos, true)) return end;
  }
  if (c.cls == kLetter) return text.run(pos, kLetter);
  if (c.cls == kNumber) return text.run_upto(pos, kNumber, digits);
  const bool line_break = c.cp == '\r' || c.cp == '\n';
  Char next = pos + c.length < text.size() ? text.at(pos + c.length) : Char{0, 0, kOther};
  if (!line_break && next.length > 0 && next.cls == kLetter) return text.run(pos + c.length, kLetter);
  if (c.cls == kOther) return text.newlines(text.run(pos, kOther));
  if (c.cp == ' ' && next.length > 0 && next.cls == kOther) return text.newlines(text.run(pos + 1, kOther));
  // Whitespace: \s*[\r\n]+ takes the run up to its last line break, if it has one.
  size_t end = pos, after_break = 0;
  while (end < text.size()) {
    Char w = text.at(end);
    if (w.cls != kSpace) break;
    end += w.length;
    if (w.cp == '\r' || w.cp == '\n') after_break = end;
  }
  if (after_break != 0) return after_break;
  return whitespace_end(text, pos);
}

}  // namespace

std::optional<SplitPattern> known_split_pattern(std::string_view pattern) {
  if (pattern == kGpt2SplitPattern) return SplitPattern::kGpt2;
  if (pattern == kQwenSplitPattern) return SplitPattern::kQwen;
  if (pattern == kLlama3SplitPattern) return SplitPattern::kLlama3;
  if (pattern == R"(\p{N})") return SplitPattern::kEachDigit;
  if (pattern == R"(\p{N}+)") return SplitPattern::kDigitRuns;
  return std::nullopt;
}

void split_known_pattern(SplitPattern pattern, std::string_view input, std::vector<std::string_view>& pieces) {
  Text text(input);
  size_t pos = 0;
  if (pattern == SplitPattern::kEachDigit || pattern == SplitPattern::kDigitRuns) {
    // Isolated: each match, and each stretch between matches, is a piece.
    size_t gap = 0;
    while (pos < text.size()) {
      Char c = text.at(pos);
      if (c.cls != kNumber) {
        pos += c.length;
        continue;
      }
      if (pos > gap) pieces.push_back(input.substr(gap, pos - gap));
      size_t end = pattern == SplitPattern::kEachDigit ? pos + c.length : text.run(pos, kNumber);
      pieces.push_back(input.substr(pos, end - pos));
      pos = gap = end;
    }
    if (gap < text.size()) pieces.push_back(input.substr(gap));
    return;
  }
  // Every character starts a match of these patterns, so the pieces are the matches, end to end.
  while (pos < text.size()) {
    size_t end = pattern == SplitPattern::kGpt2   ? gpt2_match(text, pos)
                 : pattern == SplitPattern::kQwen ? qwen_match(text, pos, 1)
                                                  : qwen_match(text, pos, 3);
    pieces.push_back(input.substr(pos, end - pos));
    pos = end;
  }
}

}  // namespace tpserve::runtime
