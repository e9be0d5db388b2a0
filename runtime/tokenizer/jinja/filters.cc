// jinja2's filters and tests (jinja2/filters.py, jinja2/tests.py), with transformers' own tojson:
// json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False), which unlike
// jinja2's does not escape HTML characters.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <optional>
#include <set>

#include "runtime/tokenizer/jinja/builtins.h"
#include "runtime/tokenizer/jinja/parser.h"
#include "runtime/tokenizer/jinja/py_string.h"

namespace tpserve::runtime::jinja {
namespace {

Value argument_or(const CallArgs& args, size_t index, const char* name, Value fallback) {
  const Value* value = find_argument(args, index, name);
  return value ? *value : std::move(fallback);
}

// jinja2's make_attrgetter: "a.b" looks up item-then-attribute part by part; digits index lists.
Value lookup_path(const Value& item, const std::string& path) {
  Value current = item;
  size_t start = 0;
  while (start <= path.size()) {
    size_t dot = path.find('.', start);
    std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    bool digits = !part.empty() && std::all_of(part.begin(), part.end(), ::isdigit);
    // Digits past int64 index no list: INT64_MAX is out of range as well.
    int64_t index = INT64_MAX;
    if (digits) std::from_chars(part.data(), part.data() + part.size(), index);
    current = get_item(current, digits ? Value(index) : Value(part));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return current;
}

// select / reject / selectattr / rejectattr: args are [attribute,] [test name, test args...].
Value select_or_reject(const Value& seq, CallArgs& args, bool by_attribute, bool select) {
  size_t next = 0;
  std::string attribute;
  if (by_attribute) {
    const Value* attr = find_argument(args, 0, "attribute");
    if (attr == nullptr || !attr->is_string()) throw TemplateError("selectattr / rejectattr need an attribute name");
    attribute = attr->as_string();
    next = 1;
  }
  std::optional<std::string> test;
  CallArgs test_args;
  if (args.positional.size() > next) {
    if (!args.positional[next].is_string()) throw TemplateError("the test name must be a string");
    test = args.positional[next].as_string();
    if (!is_known_test(*test)) throw TemplateError("No test named '" + *test + "'.");
    test_args.positional.assign(args.positional.begin() + static_cast<long>(next) + 1, args.positional.end());
  }
  List out;
  for (const Value& item : iterate(seq)) {
    Value subject = by_attribute ? lookup_path(item, attribute) : item;
    bool passed = test ? apply_test(*test, subject, test_args) : subject.truthy();
    if (passed == select) out.push_back(item);
  }
  return Value(std::move(out));
}

Value map_filter(const Value& seq, CallArgs& args) {
  List out;
  const Value* attribute = nullptr;
  for (const auto& [key, value] : args.keyword) {
    if (key == "attribute") attribute = &value;
  }
  if (attribute) {
    if (!attribute->is_string()) throw TemplateError("map attribute must be a string");
    Value fallback = argument_or(args, 99, "default", Value());
    for (const Value& item : iterate(seq)) {
      Value found = lookup_path(item, attribute->as_string());
      out.push_back(found.is_undefined() && !fallback.is_undefined() ? fallback : found);
    }
    return Value(std::move(out));
  }
  if (args.positional.empty() || !args.positional[0].is_string()) throw TemplateError("map needs a filter name or attribute=");
  std::string filter = args.positional[0].as_string();
  if (!is_known_filter(filter)) throw TemplateError("No filter named '" + filter + "'.");
  CallArgs filter_args;
  filter_args.positional.assign(args.positional.begin() + 1, args.positional.end());
  for (const Value& item : iterate(seq)) {
    CallArgs copy = filter_args;
    out.push_back(apply_filter(filter, item, copy));
  }
  return Value(std::move(out));
}

Value tojson_filter(const Value& value, CallArgs& args) {
  JsonStyle style;
  style.ensure_ascii = argument_or(args, 0, "ensure_ascii", Value(false)).truthy();
  Value indent = argument_or(args, 1, "indent", Value::none());
  if (indent.kind() == Value::Kind::kInt) {
    style.indent = static_cast<int>(std::max<int64_t>(0, indent.as_int()));
  } else if (!indent.is_none()) {
    throw TemplateError("tojson indent must be an integer or None");
  }
  Value separators = argument_or(args, 2, "separators", Value::none());
  if (separators.is_list()) {
    const List& pair = separators.as_list();
    if (pair.size() != 2 || !pair[0].is_string() || !pair[1].is_string()) {
      throw TemplateError("tojson separators must be a pair of strings");
    }
    style.item_separator = pair[0].as_string();
    style.key_separator = pair[1].as_string();
    if (style.item_separator.empty()) style.item_separator = std::string();
  }
  style.sort_keys = argument_or(args, 3, "sort_keys", Value(false)).truthy();
  try {
    return Value(to_json(value, style));
  } catch (const std::runtime_error& e) {
    throw TemplateError(e.what());
  }
}

// jinja2's title filter splits at runs of "-", whitespace, "(", "{", "[", "<" (not str.title).
std::string jinja_title(const std::string& text) {
  auto separator = [](char c) {
    return c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || c == ' ' || c == '\t' || c == '\n' || c == '\r' ||
           c == '\f' || c == '\v';
  };
  std::string out;
  size_t i = 0;
  while (i < text.size()) {
    size_t start = i;
    bool sep = separator(text[i]);
    while (i < text.size() && separator(text[i]) == sep) ++i;
    std::string piece = text.substr(start, i - start);
    if (sep) {
      out += piece;
      continue;
    }
    size_t first = code_point_offsets(piece)[1];
    out += py::upper(piece.substr(0, first)) + py::lower(piece.substr(first));
  }
  return out;
}

Value first_or_last(const Value& value, bool first) {
  List items = iterate(value);
  if (items.empty()) return Value::undefined("No first / last item, sequence was empty.");
  return first ? items.front() : items.back();
}

Value int_filter(const Value& value, CallArgs& args) {
  Value fallback = argument_or(args, 0, "default", Value(int64_t{0}));
  switch (value.kind()) {
    case Value::Kind::kInt:
    case Value::Kind::kBool: return Value(value.as_int());
    case Value::Kind::kFloat: return Value(static_cast<int64_t>(std::trunc(value.as_float())));
    case Value::Kind::kString: {
      try {
        size_t used = 0;
        std::string text = py::strip(value.as_string(), nullptr, py::Side::kBoth);
        long long parsed = std::stoll(text, &used);
        if (used == text.size()) return Value(static_cast<int64_t>(parsed));
        double real = std::stod(text, &used);
        if (used == text.size()) return Value(static_cast<int64_t>(std::trunc(real)));
      } catch (const std::exception&) {
      }
      return fallback;
    }
    default: return fallback;
  }
}

}  // namespace

bool is_known_filter(const std::string& name) {
  static const std::set<std::string> kFilters = {
      "abs", "capitalize", "count", "d", "default", "first", "float", "int", "items", "join", "last", "length",
      "list", "lower", "map", "reject", "rejectattr", "replace", "reverse", "safe", "select", "selectattr",
      "string", "title", "tojson", "trim", "upper"};
  return kFilters.count(name) != 0;
}

bool is_known_test(const std::string& name) {
  static const std::set<std::string> kTests = {
      "boolean", "callable", "defined", "divisibleby", "eq", "equalto", "even", "false", "float", "ge", "gt",
      "in", "integer", "iterable", "le", "lower", "lt", "mapping", "ne", "none", "number", "odd", "sameas",
      "sequence", "string", "true", "undefined", "upper"};
  return kTests.count(name) != 0;
}

Value apply_filter(const std::string& name, const Value& value, CallArgs& args) {
  if (name == "trim") {
    const Value* chars = find_argument(args, 0, "chars");
    const std::string* set = chars && chars->is_string() ? &chars->as_string() : nullptr;
    return Value(py::strip(value.str(), set, py::Side::kBoth));
  }
  if (name == "tojson") return tojson_filter(value, args);
  if (name == "length" || name == "count") return Value(length_of(value));
  if (name == "upper") return Value(py::upper(value.str()));
  if (name == "lower") return Value(py::lower(value.str()));
  if (name == "capitalize") return Value(py::capitalize(value.str()));
  if (name == "title") return Value(jinja_title(value.str()));
  if (name == "string") return Value(value.str());
  if (name == "safe") return value;
  if (name == "default" || name == "d") {
    bool boolean = argument_or(args, 1, "boolean", Value(false)).truthy();
    if (value.is_undefined() || (boolean && !value.truthy())) return argument_or(args, 0, "default_value", Value(""));
    return value;
  }
  if (name == "first" || name == "last") return first_or_last(value, name == "first");
  if (name == "join") {
    Value separator = argument_or(args, 0, "d", Value(""));
    Value attribute = argument_or(args, 1, "attribute", Value::none());
    std::string out;
    bool first = true;
    for (const Value& item : iterate(value)) {
      if (!first) out += separator.str();
      out += (attribute.is_string() ? lookup_path(item, attribute.as_string()) : item).str();
      first = false;
    }
    return Value(std::move(out));
  }
  if (name == "replace") {
    Value old = argument_or(args, 0, "old", Value());
    Value with = argument_or(args, 1, "new", Value());
    Value count = argument_or(args, 2, "count", Value::none());
    return Value(py::replace(value.str(), old.str(), with.str(), count.kind() == Value::Kind::kInt ? static_cast<long>(count.as_int()) : -1));
  }
  if (name == "list") return Value(iterate(value));
  if (name == "items") {
    if (value.is_undefined()) return Value(List{});
    if (!value.is_dict()) throw TemplateError("Can only get item pairs from a mapping.");
    List pairs;
    for (const auto& [key, item] : value.as_dict().items) pairs.emplace_back(List{Value(key), item});
    return Value(std::move(pairs));
  }
  if (name == "selectattr" || name == "rejectattr") return select_or_reject(value, args, true, name == "selectattr");
  if (name == "select" || name == "reject") return select_or_reject(value, args, false, name == "select");
  if (name == "map") return map_filter(value, args);
  if (name == "reverse") {
    if (value.is_string()) return get_slice(value, Value(), Value(), Value(int64_t{-1}));
    List items = iterate(value);
    std::reverse(items.begin(), items.end());
    return Value(std::move(items));
  }
  if (name == "int") return int_filter(value, args);
  if (name == "float") {
    if (value.is_number()) return Value(value.as_float());
    try {
      if (value.is_string()) return Value(std::stod(value.as_string()));
    } catch (const std::exception&) {
    }
    return argument_or(args, 0, "default", Value(0.0));
  }
  if (name == "abs") {
    if (value.kind() == Value::Kind::kFloat) return Value(std::fabs(value.as_float()));
    if (value.is_number()) return Value(value.as_int() < 0 ? -value.as_int() : value.as_int());
    throw TemplateError("bad operand type for abs(): '" + value.type_name() + "'");
  }
  throw TemplateError("No filter named '" + name + "'.");
}

bool apply_test(const std::string& name, const Value& value, CallArgs& args) {
  using Kind = Value::Kind;
  auto other = [&]() -> const Value& {
    const Value* arg = find_argument(args, 0, "other");
    if (arg == nullptr) throw TemplateError("test '" + name + "' needs an argument");
    return *arg;
  };
  if (name == "defined") return !value.is_undefined();
  if (name == "undefined") return value.is_undefined();
  if (name == "none") return value.is_none();
  if (name == "string") return value.is_string();
  if (name == "mapping") return value.is_dict() && !value.as_dict().is_namespace;
  if (name == "number") return value.is_number();
  if (name == "integer") return value.kind() == Kind::kInt;
  if (name == "float") return value.kind() == Kind::kFloat;
  if (name == "boolean") return value.kind() == Kind::kBool;
  if (name == "true") return value.kind() == Kind::kBool && value.as_bool();
  if (name == "false") return value.kind() == Kind::kBool && !value.as_bool();
  if (name == "callable") return value.kind() == Kind::kFunction;
  if (name == "iterable") {
    return value.is_string() || value.is_list() || value.is_undefined() || (value.is_dict() && !value.as_dict().is_namespace);
  }
  if (name == "sequence") return value.is_string() || value.is_list() || value.is_dict() || value.is_undefined();
  if (name == "equalto" || name == "eq") return value.equals(other());
  if (name == "ne") return !value.equals(other());
  if (name == "sameas") {
    const Value& o = other();
    if (value.kind() != o.kind()) return false;
    if (value.is_list() || value.is_dict()) return value.equals(o) && (value.is_list() ? &value.as_list() == &o.as_list() : &value.as_dict() == &o.as_dict());
    return value.equals(o);
  }
  if (name == "in") return contains(other(), value);
  if (name == "lower") return py::is_lower(value.str());
  if (name == "upper") return py::is_upper(value.str());
  if (name == "gt" || name == "ge" || name == "lt" || name == "le") {
    const Value& o = other();
    if (!value.is_number() || !o.is_number()) throw TemplateError("'" + name + "' compares numbers");
    double a = value.as_float(), b = o.as_float();
    return name == "gt" ? a > b : name == "ge" ? a >= b : name == "lt" ? a < b : a <= b;
  }
  if (name == "divisibleby" || name == "odd" || name == "even") {
    if (value.kind() != Kind::kInt && value.kind() != Kind::kBool) throw TemplateError("'" + name + "' needs an integer");
    int64_t n = value.as_int();
    if (name == "odd") return n % 2 != 0;
    if (name == "even") return n % 2 == 0;
    const Value& d = other();
    if (d.kind() != Kind::kInt || d.as_int() == 0) throw TemplateError("divisibleby needs a non-zero integer");
    return n % d.as_int() == 0;
  }
  throw TemplateError("No test named '" + name + "'.");
}

}  // namespace tpserve::runtime::jinja
