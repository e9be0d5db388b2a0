#include "runtime/tokenizer/jinja/value.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <stdexcept>

#include "runtime/tokenizer/utf8.h"

namespace tpserve::runtime::jinja {

namespace {

[[noreturn]] void too_deep() {
  throw TemplateError("a value nests deeper than " + std::to_string(kMaxValueDepth) + " lists, dicts and namespaces");
}

// The depth of a value that holds a value `deepest` deep.
uint32_t one_deeper(uint32_t deepest) {
  if (deepest >= kMaxValueDepth) too_deep();
  return deepest + 1;
}

template <typename Items, typename Get>
uint32_t container_depth(const Items& items, Get get) {
  uint32_t deepest = 0;
  for (const auto& item : items) deepest = std::max(deepest, get(item).depth());
  return one_deeper(deepest);
}

}  // namespace

Value::Value(List list)
    : kind_(Kind::kList),
      depth_(container_depth(list, [](const Value& item) -> const Value& { return item; })),
      list_(std::make_shared<List>(std::move(list))) {}

Value::Value(std::shared_ptr<Dict> dict) : kind_(Kind::kDict) {
  dict->depth = container_depth(dict->items, [](const auto& item) -> const Value& { return item.second; });
  dict_ = std::move(dict);
}

Value Value::bound_method(Function fn, const Value& self) {
  Value method(std::move(fn));
  method.depth_ = one_deeper(self.depth());
  return method;
}

const Value* Dict::find(std::string_view key) const {
  for (const auto& [k, v] : items) {
    if (k == key) return &v;
  }
  return nullptr;
}

void Dict::set(const std::string& key, Value value) {
  depth = std::max(depth, one_deeper(value.depth()));
  for (auto& [k, v] : items) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  items.emplace_back(key, std::move(value));
}

Value Value::from_json(const nlohmann::ordered_json& json) { return from_json(json, 0); }

Value Value::from_json(const nlohmann::ordered_json& json, uint32_t level) {
  // Checked on the way down too: the recursion itself must stop before the stack does.
  if (level >= kMaxValueDepth && (json.is_array() || json.is_object())) too_deep();
  switch (json.type()) {
    case nlohmann::ordered_json::value_t::null: return none();
    case nlohmann::ordered_json::value_t::boolean: return Value(json.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer:
    case nlohmann::ordered_json::value_t::number_unsigned: return Value(json.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_float: return Value(json.get<double>());
    case nlohmann::ordered_json::value_t::string: return Value(json.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      List list;
      for (const auto& item : json) list.push_back(from_json(item, level + 1));
      return Value(std::move(list));
    }
    case nlohmann::ordered_json::value_t::object: {
      auto dict = std::make_shared<Dict>();
      for (const auto& [key, item] : json.items()) dict->items.emplace_back(key, from_json(item, level + 1));
      return Value(std::move(dict));
    }
    default: return none();
  }
}

bool Value::truthy() const {
  switch (kind_) {
    case Kind::kUndefined:
    case Kind::kNone: return false;
    case Kind::kBool:
    case Kind::kInt: return int_ != 0;
    case Kind::kFloat: return float_ != 0;
    case Kind::kString: return !text_.empty();
    case Kind::kList: return !list_->empty();
    case Kind::kDict: return dict_->is_namespace || !dict_->items.empty();
    case Kind::kFunction: return true;
  }
  return false;
}

std::string float_repr(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  // Python's repr: the shortest digits that round-trip, positional when 1e-4 <= |x| < 1e16.
  char buffer[64];
  auto [end, ec] = std::to_chars(buffer, buffer + sizeof(buffer), value, std::chars_format::scientific);
  std::string sci(buffer, end);
  size_t e = sci.find('e');
  std::string mantissa = sci.substr(0, e);
  int exponent = std::stoi(sci.substr(e + 1));
  bool negative = mantissa[0] == '-';
  if (negative) mantissa.erase(0, 1);
  std::string digits;
  for (char c : mantissa) {
    if (c != '.') digits += c;
  }
  std::string out = negative ? "-" : "";
  if (exponent >= 16 || exponent < -4) {
    out += digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    char exp[16];
    snprintf(exp, sizeof(exp), "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
    return out + exp;
  }
  if (exponent < 0) return out + "0." + std::string(-exponent - 1, '0') + digits;
  if (digits.size() <= static_cast<size_t>(exponent) + 1) {
    return out + digits + std::string(exponent + 1 - digits.size(), '0') + ".0";
  }
  return out + digits.substr(0, exponent + 1) + "." + digits.substr(exponent + 1);
}

namespace {

std::string string_repr(const std::string& text) {
  char quote = text.find('\'') != std::string::npos && text.find('"') == std::string::npos ? '"' : '\'';
  std::string out(1, quote);
  for (unsigned char c : text) {
    if (c == quote || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7f) {
      char hex[16];
      snprintf(hex, sizeof(hex), "\\x%02x", c);
      out += hex;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + quote;
}

void json_string(std::string& out, const std::string& text, bool ensure_ascii) {
  out += '"';
  size_t pos = 0;
  while (pos < text.size()) {
    unsigned char c = static_cast<unsigned char>(text[pos]);
    if (c < 0x80) {
      ++pos;
      switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        default:
          if (c < 0x20 || (ensure_ascii && c == 0x7f)) {
            char hex[16];
            snprintf(hex, sizeof(hex), "\\u%04x", c);
            out += hex;
          } else {
            out += static_cast<char>(c);
          }
      }
      continue;
    }
    size_t start = pos;
    char32_t cp = utf8::next_or_replacement(text, pos);
    if (!ensure_ascii) {
      out.append(text, start, pos - start);
      continue;
    }
    auto unit = [&](unsigned value) {
      char hex[16];
      snprintf(hex, sizeof(hex), "\\u%04x", value);
      out += hex;
    };
    if (cp >= 0x10000) {
      cp -= 0x10000;
      unit(0xD800 + (cp >> 10));
      unit(0xDC00 + (cp & 0x3FF));
    } else {
      unit(cp);
    }
  }
  out += '"';
}

void json_value(std::string& out, const Value& value, const JsonStyle& style, int depth) {
  std::string item_sep = style.item_separator.empty() ? (style.indent >= 0 ? "," : ", ") : style.item_separator;
  auto newline = [&](int level) {
    if (style.indent < 0) return;
    out += '\n';
    out += std::string(static_cast<size_t>(style.indent) * level, ' ');
  };
  switch (value.kind()) {
    case Value::Kind::kNone: out += "null"; return;
    case Value::Kind::kBool: out += value.as_bool() ? "true" : "false"; return;
    case Value::Kind::kInt: out += std::to_string(value.as_int()); return;
    case Value::Kind::kFloat: {
      double f = value.as_float();
      out += std::isnan(f) ? "NaN" : std::isinf(f) ? (f > 0 ? "Infinity" : "-Infinity") : float_repr(f);
      return;
    }
    case Value::Kind::kString: json_string(out, value.as_string(), style.ensure_ascii); return;
    case Value::Kind::kList: {
      const List& list = value.as_list();
      if (list.empty()) {
        out += "[]";
        return;
      }
      out += '[';
      for (size_t i = 0; i < list.size(); ++i) {
        if (i) out += item_sep;
        newline(depth + 1);
        json_value(out, list[i], style, depth + 1);
      }
      newline(depth);
      out += ']';
      return;
    }
    case Value::Kind::kDict: {
      if (value.as_dict().is_namespace) break;  // json.dumps refuses a jinja2 Namespace object too
      std::vector<const std::pair<std::string, Value>*> items;
      for (const auto& item : value.as_dict().items) items.push_back(&item);
      if (style.sort_keys) {
        std::stable_sort(items.begin(), items.end(), [](auto* a, auto* b) { return a->first < b->first; });
      }
      if (items.empty()) {
        out += "{}";
        return;
      }
      out += '{';
      for (size_t i = 0; i < items.size(); ++i) {
        if (i) out += item_sep;
        newline(depth + 1);
        json_string(out, items[i]->first, style.ensure_ascii);
        out += style.key_separator;
        json_value(out, items[i]->second, style, depth + 1);
      }
      newline(depth);
      out += '}';
      return;
    }
    case Value::Kind::kUndefined:
    case Value::Kind::kFunction: break;
  }
  throw std::runtime_error("Object of type " + value.type_name() + " is not JSON serializable");
}

}  // namespace

std::string to_json(const Value& value, const JsonStyle& style) {
  std::string out;
  json_value(out, value, style, 0);
  return out;
}

std::string Value::str() const {
  switch (kind_) {
    case Kind::kUndefined: return "";
    case Kind::kString: return text_;
    default: return repr();
  }
}

std::string Value::repr() const {
  switch (kind_) {
    case Kind::kUndefined: return "";
    case Kind::kNone: return "None";
    case Kind::kBool: return int_ ? "True" : "False";
    case Kind::kInt: return std::to_string(int_);
    case Kind::kFloat: return float_repr(float_);
    case Kind::kString: return string_repr(text_);
    case Kind::kList: {
      std::string out = "[";
      for (size_t i = 0; i < list_->size(); ++i) out += (i ? ", " : "") + (*list_)[i].repr();
      return out + "]";
    }
    case Kind::kDict: {
      if (dict_->is_namespace) return "<Namespace>";
      std::string out = "{";
      for (size_t i = 0; i < dict_->items.size(); ++i) {
        out += (i ? ", " : "") + string_repr(dict_->items[i].first) + ": " + dict_->items[i].second.repr();
      }
      return out + "}";
    }
    case Kind::kFunction: return "<function>";
  }
  return "";
}

bool Value::equals(const Value& other) const {
  if (is_number() && other.is_number()) {
    if (kind_ == Kind::kFloat || other.kind_ == Kind::kFloat) return as_float() == other.as_float();
    return int_ == other.int_;
  }
  if (kind_ != other.kind_) return false;
  switch (kind_) {
    case Kind::kUndefined:
    case Kind::kNone: return true;
    case Kind::kString: return text_ == other.text_;
    case Kind::kList: {
      if (list_->size() != other.list_->size()) return false;
      for (size_t i = 0; i < list_->size(); ++i) {
        if (!(*list_)[i].equals((*other.list_)[i])) return false;
      }
      return true;
    }
    case Kind::kDict: {
      if (dict_ == other.dict_) return true;
      if (dict_->is_namespace || other.dict_->is_namespace) return false;
      if (dict_->items.size() != other.dict_->items.size()) return false;
      for (const auto& [key, item] : dict_->items) {
        const Value* theirs = other.dict_->find(key);
        if (theirs == nullptr || !item.equals(*theirs)) return false;
      }
      return true;
    }
    case Kind::kFunction: return fn_ == other.fn_;
    default: return false;
  }
}

std::string Value::type_name() const {
  switch (kind_) {
    case Kind::kUndefined: return "Undefined";
    case Kind::kNone: return "NoneType";
    case Kind::kBool: return "bool";
    case Kind::kInt: return "int";
    case Kind::kFloat: return "float";
    case Kind::kString: return "str";
    case Kind::kList: return "list";
    case Kind::kDict: return dict_->is_namespace ? "Namespace" : "dict";
    case Kind::kFunction: return "function";
  }
  return "object";
}

std::vector<size_t> code_point_offsets(std::string_view text) {
  std::vector<size_t> offsets;
  for (size_t pos = 0; pos < text.size(); ++pos) {
    if ((static_cast<unsigned char>(text[pos]) & 0xC0) != 0x80) offsets.push_back(pos);
  }
  offsets.push_back(text.size());
  return offsets;
}

}  // namespace tpserve::runtime::jinja
