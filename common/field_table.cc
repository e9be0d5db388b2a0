#include "common/field_table.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <mutex>
#include <nlohmann/json.hpp>
#include <set>

#include "common/error.h"
#include "common/log.h"

namespace tpserve {

namespace {

const FieldRule* find_rule(std::string_view name, const std::vector<FieldTable>& tables) {
  for (FieldTable table : tables) {
    for (const FieldRule& rule : table) {
      if (rule.name == name) return &rule;
    }
  }
  return nullptr;
}

bool unset_like(const nlohmann::json& value) {
  if (value.is_null()) return true;
  if (value.is_boolean()) return !value.get<bool>();
  if (value.is_number()) return value.get<double>() == 0.0;
  if (value.is_string()) return value.get_ref<const std::string&>().empty();
  if (value.is_array() || value.is_object()) return value.empty();
  return false;
}

bool accepted(const FieldRule& rule, const nlohmann::json& value) {
  if (rule.accepted.empty()) return unset_like(value);
  return value.is_null() || value == nlohmann::json::parse(rule.accepted);
}

}  // namespace

std::vector<std::string> check_fields(const nlohmann::json& object, const std::filesystem::path& file,
                                      const std::vector<FieldTable>& tables,
                                      std::string_view prefix) {
  std::vector<std::string> unknown;
  if (!object.is_object()) return unknown;
  for (const auto& [name, value] : object.items()) {
    const FieldRule* rule = find_rule(name, tables);
    if (rule == nullptr) {
      unknown.push_back(fmt::format("{}{}", prefix, name));
    } else if (rule->use == FieldUse::kRefused && !accepted(*rule, value)) {
      raise(ErrorCode::kUnimplemented, "{}: field '{}{}': {} is not supported: {}", file.string(),
            prefix, name, value.dump(), rule->note);
    }
  }
  return unknown;
}

std::string unknown_fields_line(const std::filesystem::path& file,
                                const std::vector<std::string>& unknown) {
  return fmt::format("{}: ignoring fields tpserve does not know (check they do not change the "
                     "model): {}", file.string(), fmt::join(unknown, ", "));
}

void warn_unknown_fields(const std::filesystem::path& file, const std::vector<std::string>& unknown) {
  if (unknown.empty()) return;
  // Several readers open the same file (the tokenizer and the chat template both read
  // tokenizer_config.json): one line per file per process.
  static std::mutex mutex;
  static std::set<std::string> warned;
  {
    std::lock_guard lock(mutex);
    if (!warned.insert(file.string()).second) return;
  }
  const auto level = log_rank() <= 0 ? spdlog::level::warn : spdlog::level::debug;
  log().log(level, "{}", unknown_fields_line(file, unknown));
}

}  // namespace tpserve
