// Python str operations on UTF-8 text, as chat templates call them (message['content'].strip(),
// role.title(), content.split('</think>')). Case mapping goes through utf8proc per code point, as
// Python's does for the simple (one-to-one) mappings; whitespace is Python's str.isspace set.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace tpserve::runtime::jinja::py {

enum class Side { kBoth, kLeft, kRight };
// str.strip / lstrip / rstrip: with `chars` null, Unicode whitespace; otherwise those code points.
std::string strip(std::string_view text, const std::string* chars, Side side);
// str.split(sep, maxsplit): sep null splits on runs of whitespace and drops empty pieces.
std::vector<std::string> split(std::string_view text, const std::string* sep, long maxsplit);
std::string replace(std::string_view text, std::string_view old, std::string_view with, long count);
std::string upper(std::string_view text);
std::string lower(std::string_view text);
std::string title(std::string_view text);       // str.title: first letter of each letter run upper
std::string capitalize(std::string_view text);  // str.capitalize: first upper, rest lower
bool is_lower(std::string_view text);
bool is_upper(std::string_view text);

}  // namespace tpserve::runtime::jinja::py
