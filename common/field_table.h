// A reader of an outside JSON format (config.json, adapter_config.json, generation_config.json,
// tokenizer_config.json) states every field it knows in a table, like a spec:
//   kSupported — read and honoured by the reader (each has a test);
//   kHarmless  — ignored by design (bookkeeping, training-only, or not part of the math);
//   kRefused   — changes the math in a way tpserve does not implement: refused by name when set.
// A field in none of these is reported, so that a new upstream field is seen the day it appears.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace tpserve {

enum class FieldUse { kSupported, kHarmless, kRefused };

struct FieldRule {
  std::string_view name;
  FieldUse use;
  // kSupported: what it sets; kHarmless: why it does not matter; kRefused: why it is refused,
  // completing "field 'x': <value> is not supported: <note>".
  std::string_view note;
  // kRefused only: the JSON text of the one value that is accepted besides null (e.g. "true" for a
  // switch that must stay on). Empty: accepted when unset-like (null, false, 0, "", [] or {}).
  std::string_view accepted = {};
};

using FieldTable = std::span<const FieldRule>;

// Checks an object's fields against the tables: throws tpserve::Error(kUnimplemented)
// "<file>: field '<prefix><name>': <value> is not supported: <note>" for the first refused field
// that is set, and returns the fields no table lists (as "<prefix><name>", in name order).
std::vector<std::string> check_fields(const nlohmann::json& object, const std::filesystem::path& file,
                                      const std::vector<FieldTable>& tables,
                                      std::string_view prefix = {});

// The one warning line per file for its unknown fields (none: no line; a file already reported by
// this process: no second line). Rank 0 (or a process that
// has no rank yet) logs it at warn; the other ranks read the same file, so they log it at debug.
void warn_unknown_fields(const std::filesystem::path& file, const std::vector<std::string>& unknown);

// The text of that line, without the log prefix (for tests and callers that collect it).
std::string unknown_fields_line(const std::filesystem::path& file,
                                const std::vector<std::string>& unknown);

}  // namespace tpserve
