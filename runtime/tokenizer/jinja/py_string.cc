#include "runtime/tokenizer/jinja/py_string.h"

#include <utf8proc.h>

#include "runtime/tokenizer/utf8.h"

namespace tpserve::runtime::jinja::py {
namespace {

std::vector<char32_t> decode(std::string_view text) {
  std::vector<char32_t> out;
  for (size_t pos = 0; pos < text.size();) out.push_back(utf8::next_or_replacement(text, pos));
  return out;
}

std::string encode(const std::vector<char32_t>& cps, size_t begin, size_t end) {
  std::string out;
  for (size_t i = begin; i < end; ++i) utf8::append(out, cps[i]);
  return out;
}

// Python's str.isspace: the Unicode White_Space characters plus the ASCII separators \x1c-\x1f.
bool is_space(char32_t c) {
  if (c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f) || c == 0x85 || c == 0xa0) return true;
  if (c < 0x1680) return false;
  return c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f ||
         c == 0x205f || c == 0x3000;
}

bool is_cased_letter(char32_t c) {
  auto category = utf8proc_category(static_cast<utf8proc_int32_t>(c));
  return category == UTF8PROC_CATEGORY_LU || category == UTF8PROC_CATEGORY_LL || category == UTF8PROC_CATEGORY_LT;
}

char32_t to_upper(char32_t c) { return static_cast<char32_t>(utf8proc_toupper(static_cast<utf8proc_int32_t>(c))); }
char32_t to_lower(char32_t c) { return static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(c))); }
char32_t to_title(char32_t c) { return static_cast<char32_t>(utf8proc_totitle(static_cast<utf8proc_int32_t>(c))); }

}  // namespace

std::string strip(std::string_view text, const std::string* chars, Side side) {
  std::vector<char32_t> cps = decode(text);
  std::vector<char32_t> set = chars ? decode(*chars) : std::vector<char32_t>{};
  auto strippable = [&](char32_t c) {
    if (!chars) return is_space(c);
    for (char32_t s : set) {
      if (s == c) return true;
    }
    return false;
  };
  size_t begin = 0, end = cps.size();
  if (side != Side::kRight) {
    while (begin < end && strippable(cps[begin])) ++begin;
  }
  if (side != Side::kLeft) {
    while (end > begin && strippable(cps[end - 1])) --end;
  }
  return encode(cps, begin, end);
}

std::vector<std::string> split(std::string_view text, const std::string* sep, long maxsplit) {
  std::vector<std::string> parts;
  if (sep) {
    size_t start = 0;
    while (maxsplit < 0 || static_cast<long>(parts.size()) < maxsplit) {
      size_t found = text.find(*sep, start);
      if (found == std::string_view::npos) break;
      parts.emplace_back(text.substr(start, found - start));
      start = found + sep->size();
    }
    parts.emplace_back(text.substr(start));
    return parts;
  }
  std::vector<char32_t> cps = decode(text);
  size_t i = 0;
  while (i < cps.size()) {
    while (i < cps.size() && is_space(cps[i])) ++i;
    if (i == cps.size()) break;
    if (maxsplit >= 0 && static_cast<long>(parts.size()) == maxsplit) {
      size_t end = cps.size();
      while (end > i && is_space(cps[end - 1])) --end;
      parts.push_back(encode(cps, i, end));
      break;
    }
    size_t start = i;
    while (i < cps.size() && !is_space(cps[i])) ++i;
    parts.push_back(encode(cps, start, i));
  }
  return parts;
}

std::string replace(std::string_view text, std::string_view old, std::string_view with, long count) {
  std::string out;
  if (old.empty()) {
    // Python inserts `with` before every character and at the end.
    std::vector<char32_t> cps = decode(text);
    long done = 0;
    for (char32_t c : cps) {
      if (count < 0 || done < count) {
        out += with;
        ++done;
      }
      utf8::append(out, c);
    }
    if (count < 0 || done < count) out += with;
    return out;
  }
  size_t start = 0;
  long done = 0;
  while (count < 0 || done < count) {
    size_t found = text.find(old, start);
    if (found == std::string_view::npos) break;
    out.append(text.substr(start, found - start));
    out.append(with);
    start = found + old.size();
    ++done;
  }
  out.append(text.substr(start));
  return out;
}

std::string upper(std::string_view text) {
  std::string out;
  for (size_t pos = 0; pos < text.size();) utf8::append(out, to_upper(utf8::next_or_replacement(text, pos)));
  return out;
}

std::string lower(std::string_view text) {
  std::string out;
  for (size_t pos = 0; pos < text.size();) utf8::append(out, to_lower(utf8::next_or_replacement(text, pos)));
  return out;
}

std::string title(std::string_view text) {
  std::string out;
  bool previous_cased = false;
  for (size_t pos = 0; pos < text.size();) {
    char32_t c = utf8::next_or_replacement(text, pos);
    utf8::append(out, previous_cased ? to_lower(c) : to_title(c));
    previous_cased = is_cased_letter(c);
  }
  return out;
}

std::string capitalize(std::string_view text) {
  std::string out;
  bool first = true;
  for (size_t pos = 0; pos < text.size();) {
    char32_t c = utf8::next_or_replacement(text, pos);
    utf8::append(out, first ? to_title(c) : to_lower(c));
    first = false;
  }
  return out;
}

// Python: every cased character has the case asked for, and there is at least one.
bool has_only_case(std::string_view text, utf8proc_category_t wanted) {
  bool cased = false;
  for (size_t pos = 0; pos < text.size();) {
    char32_t c = utf8::next_or_replacement(text, pos);
    if (!is_cased_letter(c)) continue;
    if (utf8proc_category(static_cast<utf8proc_int32_t>(c)) != wanted) return false;
    cased = true;
  }
  return cased;
}

bool is_lower(std::string_view text) { return has_only_case(text, UTF8PROC_CATEGORY_LL); }
bool is_upper(std::string_view text) { return has_only_case(text, UTF8PROC_CATEGORY_LU); }

}  // namespace tpserve::runtime::jinja::py
