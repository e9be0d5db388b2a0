#include "runtime/tokenizer/jinja/lexer.h"

#include <algorithm>
#include <cctype>

#include "common/error.h"
#include "runtime/tokenizer/utf8.h"

namespace tpserve::runtime::jinja {
namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

// jinja2 normalizes every newline sequence to "\n" and, without keep_trailing_newline, drops one
// trailing newline of the source.
std::string normalize_newlines(std::string_view source) {
  std::string out;
  out.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      out += '\n';
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      out += source[i];
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

class Lexer {
 public:
  Lexer(std::string source, const std::string& name) : src_(std::move(source)), name_(name) {}

  std::vector<Token> run() {
    bool line_starting = true;  // jinja2: did the previous match end with a newline
    while (pos_ < src_.size()) {
      size_t tag = find_tag_start(pos_);
      std::string text = src_.substr(pos_, tag - pos_);
      if (tag == src_.size()) {
        emit_text(std::move(text));
        pos_ = tag;
        break;
      }
      char kind = src_[tag + 1];
      char sign = tag + 2 < src_.size() && (src_[tag + 2] == '-' || src_[tag + 2] == '+') ? src_[tag + 2] : 0;
      if (sign == '-') {
        size_t keep = text.size();
        while (keep > 0 && is_space(text[keep - 1])) --keep;
        text.resize(keep);
      } else if (sign != '+' && kind != '{') {
        // lstrip_blocks: spaces and tabs between the line start and a block or comment tag go.
        size_t line_start = text.rfind('\n');
        line_start = line_start == std::string::npos ? 0 : line_start + 1;
        if (line_start > 0 || line_starting) {
          bool blank = std::all_of(text.begin() + line_start, text.end(), is_space);
          if (blank) text.resize(line_start);
        }
      }
      emit_text(std::move(text));
      line_ += static_cast<int>(std::count(src_.begin() + pos_, src_.begin() + tag, '\n'));
      pos_ = tag + 2 + (sign ? 1 : 0);
      if (kind == '#') {
        line_starting = lex_comment();
      } else {
        line_starting = lex_tag(kind == '{');
      }
    }
    tokens_.push_back({Token::Type::kEnd, "", line_});
    return std::move(tokens_);
  }

 private:
  [[noreturn]] void fail(const std::string& message) const {
    raise(ErrorCode::kInvalidArgument, "{}, line {}: {}", name_, line_, message);
  }

  size_t find_tag_start(size_t from) const {
    for (size_t i = from; i + 1 < src_.size(); ++i) {
      if (src_[i] == '{' && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#')) return i;
    }
    return src_.size();
  }

  void emit_text(std::string text) {
    if (!text.empty()) tokens_.push_back({Token::Type::kText, std::move(text), line_});
  }

  // After a closing delimiter: '-' strips all following whitespace; trim_blocks eats one newline
  // after a block or comment tag unless it closed with '+'. Returns whether the match ended in "\n".
  bool after_close(char sign, bool block_like) {
    if (sign == '-') {
      size_t start = pos_;
      while (pos_ < src_.size() && is_space(src_[pos_])) ++pos_;
      line_ += static_cast<int>(std::count(src_.begin() + start, src_.begin() + pos_, '\n'));
      return pos_ > start && src_[pos_ - 1] == '\n';
    }
    if (sign != '+' && block_like && pos_ < src_.size() && src_[pos_] == '\n') {
      ++pos_;
      ++line_;
      return true;
    }
    return false;
  }

  bool lex_comment() {
    size_t end = src_.find("#}", pos_);
    if (end == std::string::npos) fail("missing end of comment tag");
    char sign = end > pos_ && (src_[end - 1] == '-' || src_[end - 1] == '+') ? src_[end - 1] : 0;
    line_ += static_cast<int>(std::count(src_.begin() + pos_, src_.begin() + end, '\n'));
    pos_ = end + 2;
    return after_close(sign, true);
  }

  bool lex_tag(bool variable) {
    tokens_.push_back({variable ? Token::Type::kVariableBegin : Token::Type::kBlockBegin, "", line_});
    int depth = 0;  // jinja2 only ends a tag when brackets balance: {{ {'a': {'b': 1}} }}
    while (true) {
      while (pos_ < src_.size() && is_space(src_[pos_])) {
        if (src_[pos_] == '\n') ++line_;
        ++pos_;
      }
      if (pos_ >= src_.size()) fail(variable ? "unexpected end of template, expected '}}'" : "unexpected end of template, expected '%}'");
      if (depth == 0) {
        std::string_view rest(src_.data() + pos_, src_.size() - pos_);
        std::string_view close = variable ? "}}" : "%}";
        char sign = 0;
        if ((rest.substr(0, 1) == "-" || (!variable && rest.substr(0, 1) == "+")) && rest.substr(1, 2) == close) {
          sign = rest[0];
        }
        if (sign || rest.substr(0, 2) == close) {
          pos_ += 2 + (sign ? 1 : 0);
          tokens_.push_back({variable ? Token::Type::kVariableEnd : Token::Type::kBlockEnd, "", line_});
          return after_close(sign, !variable);
        }
      }
      lex_expression_token(depth);
    }
  }

  void lex_expression_token(int& depth) {
    char c = src_[pos_];
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      size_t start = pos_;
      while (pos_ < src_.size() && (std::isalnum(static_cast<unsigned char>(src_[pos_])) || src_[pos_] == '_')) ++pos_;
      tokens_.push_back({Token::Type::kName, src_.substr(start, pos_ - start), line_});
      return;
    }
    if (std::isdigit(static_cast<unsigned char>(c))) {
      lex_number();
      return;
    }
    if (c == '\'' || c == '"') {
      lex_string(c);
      return;
    }
    static const char* kOperators[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<",
                                       ">", "=", "(", ")", "[", "]", "{", "}", ",", ".", ":", "|"};
    for (const char* op : kOperators) {
      std::string_view view(op);
      if (src_.compare(pos_, view.size(), view) == 0) {
        if (view == "(" || view == "[" || view == "{") ++depth;
        if ((view == ")" || view == "]" || view == "}") && depth > 0) --depth;
        tokens_.push_back({Token::Type::kOperator, std::string(view), line_});
        pos_ += view.size();
        return;
      }
    }
    fail(std::string("unexpected char '") + c + "'");
  }

  void lex_number() {
    size_t start = pos_;
    auto digits = [&] {
      while (pos_ < src_.size() && (std::isdigit(static_cast<unsigned char>(src_[pos_])) || src_[pos_] == '_')) ++pos_;
    };
    digits();
    bool is_float = false;
    if (pos_ + 1 < src_.size() && src_[pos_] == '.' && std::isdigit(static_cast<unsigned char>(src_[pos_ + 1]))) {
      is_float = true;
      ++pos_;
      digits();
    }
    if (pos_ < src_.size() && (src_[pos_] == 'e' || src_[pos_] == 'E')) {
      size_t save = pos_++;
      if (pos_ < src_.size() && (src_[pos_] == '+' || src_[pos_] == '-')) ++pos_;
      if (pos_ < src_.size() && std::isdigit(static_cast<unsigned char>(src_[pos_]))) {
        is_float = true;
        digits();
      } else {
        pos_ = save;
      }
    }
    std::string text;
    for (size_t i = start; i < pos_; ++i) {
      if (src_[i] != '_') text += src_[i];
    }
    tokens_.push_back({is_float ? Token::Type::kFloat : Token::Type::kInteger, text, line_});
  }

  // Python's unicode-escape decoding of the literal's body, which is what jinja2 applies.
  void lex_string(char quote) {
    int start_line = line_;
    ++pos_;
    std::string value;
    while (true) {
      if (pos_ >= src_.size()) fail("unterminated string");
      char c = src_[pos_++];
      if (c == quote) break;
      if (c == '\n') ++line_;
      if (c != '\\') {
        value += c;
        continue;
      }
      if (pos_ >= src_.size()) fail("unterminated string");
      char e = src_[pos_++];
      // Python's messages: "truncated \xXX escape" (fewer than `count` hex digits) and "illegal
      // Unicode character" (past U+10FFFF). A lone surrogate, which Python would keep in the str
      // only to fail when the text is encoded, is refused here.
      auto hex = [&](int count) {
        const char* what = count == 2 ? "truncated \\xXX escape"
                           : count == 4 ? "truncated \\uXXXX escape"
                                        : "truncated \\UXXXXXXXX escape";
        char32_t cp = 0;
        for (int i = 0; i < count; ++i, ++pos_) {
          const char digit = pos_ < src_.size() ? src_[pos_] : '\0';
          if (!std::isxdigit(static_cast<unsigned char>(digit))) fail(what);
          cp = cp * 16 + static_cast<char32_t>(std::isdigit(static_cast<unsigned char>(digit))
                                                   ? digit - '0'
                                                   : std::tolower(static_cast<unsigned char>(digit)) - 'a' + 10);
        }
        if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) fail("illegal Unicode character");
        utf8::append(value, cp);
      };
      switch (e) {
        case 'n': value += '\n'; break;
        case 't': value += '\t'; break;
        case 'r': value += '\r'; break;
        case '\\': value += '\\'; break;
        case '\'': value += '\''; break;
        case '"': value += '"'; break;
        case 'a': value += '\a'; break;
        case 'b': value += '\b'; break;
        case 'f': value += '\f'; break;
        case 'v': value += '\v'; break;
        case '\n': ++line_; break;  // an escaped newline continues the line
        case 'x': hex(2); break;
        case 'u': hex(4); break;
        case 'U': hex(8); break;
        default:
          if (e >= '0' && e <= '7') {
            int cp = e - '0';
            for (int i = 0; i < 2 && pos_ < src_.size() && src_[pos_] >= '0' && src_[pos_] <= '7'; ++i) {
              cp = cp * 8 + (src_[pos_++] - '0');
            }
            utf8::append(value, static_cast<char32_t>(cp));
          } else {
            value += '\\';  // Python keeps an unknown escape as written
            value += e;
          }
      }
    }
    tokens_.push_back({Token::Type::kString, std::move(value), start_line});
  }

  std::string src_;
  const std::string& name_;
  size_t pos_ = 0;
  int line_ = 1;
  std::vector<Token> tokens_;
};

}  // namespace

std::vector<Token> tokenize(std::string_view source, const std::string& source_name) {
  return Lexer(normalize_newlines(source), source_name).run();
}

}  // namespace tpserve::runtime::jinja
