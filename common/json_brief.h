// A JSON value from an untrusted file, shown in an error message: short and one line.
#pragma once

#include <fmt/format.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <string>

namespace tpserve {

// Scalars and small flat arrays/objects as written (cut at 60 characters); anything nested by its
// type and size only: dump() recurses once per level, and a hostile file nests a million levels.
template <typename Json>
std::string json_brief(const Json& value) {
  const bool flat = value.is_primitive() ||
                    ((value.is_array() || value.is_object()) && value.size() <= 16 &&
                     std::all_of(value.begin(), value.end(), [](const Json& item) { return item.is_primitive(); }));
  if (!flat) return fmt::format("a JSON {} of {} items", value.type_name(), value.size());
  std::string text = value.dump(-1, ' ', false, Json::error_handler_t::replace);
  if (text.size() > 60) text = text.substr(0, 57) + "...";
  return text;
}

}  // namespace tpserve
