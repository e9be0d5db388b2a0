// Attribute, item and slice access, and the bound str / dict methods a template may call. jinja2's
// ImmutableSandboxedEnvironment refuses methods that mutate (list.append, dict.update), so only
// the reading methods exist here.
#include <algorithm>
#include <optional>

#include "runtime/tokenizer/jinja/builtins.h"
#include "runtime/tokenizer/jinja/py_string.h"

namespace tpserve::runtime::jinja {
namespace {

const std::string* optional_string(const CallArgs& args, size_t index, const char* name) {
  const Value* value = find_argument(args, index, name);
  if (value == nullptr || value->is_none()) return nullptr;
  if (!value->is_string()) throw TemplateError(std::string(name) + " must be None or a string");
  return &value->as_string();
}

long optional_int(const CallArgs& args, size_t index, const char* name, long fallback) {
  const Value* value = find_argument(args, index, name);
  if (value == nullptr || value->is_none()) return fallback;
  if (value->kind() != Value::Kind::kInt) throw TemplateError(std::string(name) + " must be an integer");
  return static_cast<long>(value->as_int());
}

Value string_list(const std::vector<std::string>& parts) {
  List list;
  for (const std::string& part : parts) list.emplace_back(part);
  return Value(std::move(list));
}

// startswith / endswith take a string or a tuple (list) of strings.
bool affix_matches(const std::string& text, const Value& affix, bool prefix) {
  auto one = [&](const Value& candidate) {
    if (!candidate.is_string()) throw TemplateError("startswith / endswith take str or a tuple of str");
    const std::string& a = candidate.as_string();
    if (a.size() > text.size()) return false;
    return prefix ? text.compare(0, a.size(), a) == 0 : text.compare(text.size() - a.size(), a.size(), a) == 0;
  };
  if (affix.is_list()) {
    return std::any_of(affix.as_list().begin(), affix.as_list().end(), one);
  }
  return one(affix);
}

Value string_method(const std::string& text, const std::string& name) {
  using py::Side;
  auto bind = [&](auto fn) { return Value(Function([text, fn](CallArgs& args) -> Value { return fn(text, args); })); };
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    Side side = name == "strip" ? Side::kBoth : name == "lstrip" ? Side::kLeft : Side::kRight;
    return bind([side](const std::string& s, CallArgs& args) {
      return Value(py::strip(s, optional_string(args, 0, "chars"), side));
    });
  }
  if (name == "split") {
    return bind([](const std::string& s, CallArgs& args) {
      const std::string* sep = optional_string(args, 0, "sep");
      if (sep && sep->empty()) throw TemplateError("empty separator");
      return string_list(py::split(s, sep, optional_int(args, 1, "maxsplit", -1)));
    });
  }
  if (name == "startswith" || name == "endswith") {
    bool prefix = name == "startswith";
    return bind([prefix](const std::string& s, CallArgs& args) {
      const Value* affix = find_argument(args, 0, "prefix");
      if (affix == nullptr) throw TemplateError("startswith / endswith need an argument");
      return Value(affix_matches(s, *affix, prefix));
    });
  }
  if (name == "upper") return bind([](const std::string& s, CallArgs&) { return Value(py::upper(s)); });
  if (name == "lower") return bind([](const std::string& s, CallArgs&) { return Value(py::lower(s)); });
  if (name == "title") return bind([](const std::string& s, CallArgs&) { return Value(py::title(s)); });
  if (name == "capitalize") return bind([](const std::string& s, CallArgs&) { return Value(py::capitalize(s)); });
  if (name == "islower") return bind([](const std::string& s, CallArgs&) { return Value(py::is_lower(s)); });
  if (name == "isupper") return bind([](const std::string& s, CallArgs&) { return Value(py::is_upper(s)); });
  if (name == "replace") {
    return bind([](const std::string& s, CallArgs& args) {
      const std::string* old = optional_string(args, 0, "old");
      const std::string* with = optional_string(args, 1, "new");
      if (!old || !with) throw TemplateError("replace needs two strings");
      return Value(py::replace(s, *old, *with, optional_int(args, 2, "count", -1)));
    });
  }
  if (name == "find" || name == "count") {
    bool find = name == "find";
    return bind([find](const std::string& s, CallArgs& args) {
      const std::string* sub = optional_string(args, 0, "sub");
      if (!sub) throw TemplateError("find / count need a string");
      if (find) {
        size_t at = s.find(*sub);
        return Value(at == std::string::npos ? int64_t{-1} : static_cast<int64_t>(code_point_offsets(s.substr(0, at)).size() - 1));
      }
      if (sub->empty()) return Value(static_cast<int64_t>(code_point_offsets(s).size()));
      int64_t n = 0;
      for (size_t at = s.find(*sub); at != std::string::npos; at = s.find(*sub, at + sub->size())) ++n;
      return Value(n);
    });
  }
  if (name == "join") {
    return bind([](const std::string& s, CallArgs& args) {
      const Value* items = find_argument(args, 0, "iterable");
      if (!items) throw TemplateError("join needs an iterable");
      std::string out;
      bool first = true;
      for (const Value& item : iterate(*items)) {
        if (!item.is_string()) throw TemplateError("sequence item: expected str instance, " + item.type_name() + " found");
        if (!first) out += s;
        out += item.as_string();
        first = false;
      }
      return Value(std::move(out));
    });
  }
  return Value::undefined("'str object' has no attribute '" + name + "'");
}

Value dict_method(const Value& dict, const std::string& name) {
  auto bind = [&](auto fn) {
    return Value::bound_method(Function([dict, fn](CallArgs& args) -> Value { return fn(dict.as_dict(), args); }), dict);
  };
  if (name == "items") {
    return bind([](const Dict& d, CallArgs&) {
      List list;
      for (const auto& [key, item] : d.items) list.emplace_back(List{Value(key), item});
      return Value(std::move(list));
    });
  }
  if (name == "keys") {
    return bind([](const Dict& d, CallArgs&) {
      List list;
      for (const auto& entry : d.items) list.emplace_back(entry.first);
      return Value(std::move(list));
    });
  }
  if (name == "values") {
    return bind([](const Dict& d, CallArgs&) {
      List list;
      for (const auto& entry : d.items) list.push_back(entry.second);
      return Value(std::move(list));
    });
  }
  if (name == "get") {
    return bind([](const Dict& d, CallArgs& args) {
      const Value* key = find_argument(args, 0, "key");
      if (key == nullptr) throw TemplateError("get expected at least 1 argument, got 0");
      const Value* found = key->is_string() ? d.find(key->as_string()) : nullptr;
      if (found) return *found;
      const Value* fallback = find_argument(args, 1, "default");
      return fallback ? *fallback : Value::none();
    });
  }
  return Value();
}

[[noreturn]] void fail_undefined(const Value& value) {
  throw TemplateError(value.undefined_hint().empty() ? "undefined value" : value.undefined_hint());
}

}  // namespace

const Value* find_argument(const CallArgs& args, size_t index, const char* name) {
  if (index < args.positional.size()) return &args.positional[index];
  for (const auto& [key, value] : args.keyword) {
    if (key == name) return &value;
  }
  return nullptr;
}

Value get_attribute(const Value& object, const std::string& name) {
  switch (object.kind()) {
    case Value::Kind::kUndefined: fail_undefined(object);
    case Value::Kind::kString: return string_method(object.as_string(), name);
    case Value::Kind::kDict: {
      if (!object.as_dict().is_namespace) {
        Value method = dict_method(object, name);
        if (!method.is_undefined()) return method;
      }
      if (const Value* item = object.as_dict().find(name)) return *item;
      return Value::undefined("'" + object.type_name() + " object' has no attribute '" + name + "'");
    }
    default: return Value::undefined("'" + object.type_name() + " object' has no attribute '" + name + "'");
  }
}

Value get_item(const Value& object, const Value& key) {
  switch (object.kind()) {
    case Value::Kind::kUndefined: fail_undefined(object);
    case Value::Kind::kDict:
      if (key.is_string()) {
        if (const Value* item = object.as_dict().find(key.as_string())) return *item;
        return get_attribute(object, key.as_string());
      }
      break;
    case Value::Kind::kList:
      if (key.kind() == Value::Kind::kInt || key.kind() == Value::Kind::kBool) {
        int64_t size = static_cast<int64_t>(object.as_list().size());
        int64_t index = key.as_int() < 0 ? key.as_int() + size : key.as_int();
        if (index >= 0 && index < size) return object.as_list()[static_cast<size_t>(index)];
        return Value::undefined("list object has no element " + std::to_string(key.as_int()));
      }
      break;
    case Value::Kind::kString:
      if (key.kind() == Value::Kind::kInt) {
        std::vector<size_t> offsets = code_point_offsets(object.as_string());
        int64_t size = static_cast<int64_t>(offsets.size()) - 1;
        int64_t index = key.as_int() < 0 ? key.as_int() + size : key.as_int();
        if (index >= 0 && index < size) {
          return Value(object.as_string().substr(offsets[index], offsets[index + 1] - offsets[index]));
        }
        return Value::undefined("str object has no element " + std::to_string(key.as_int()));
      }
      break;
    default: break;
  }
  if (key.is_string()) return get_attribute(object, key.as_string());
  return Value::undefined("'" + object.type_name() + " object' has no attribute '" + key.str() + "'");
}

Value get_slice(const Value& object, const Value& start_value, const Value& stop_value, const Value& step_value) {
  if (object.is_undefined()) fail_undefined(object);
  auto as_index = [](const Value& v, const char* what) -> std::optional<int64_t> {
    if (v.is_undefined() || v.is_none()) return std::nullopt;
    if (v.kind() != Value::Kind::kInt) throw TemplateError(std::string("slice ") + what + " must be an integer");
    return v.as_int();
  };
  int64_t step = as_index(step_value, "step").value_or(1);
  if (step == 0) throw TemplateError("slice step cannot be zero");
  std::vector<size_t> offsets;
  int64_t size;
  if (object.is_list()) {
    size = static_cast<int64_t>(object.as_list().size());
  } else if (object.is_string()) {
    offsets = code_point_offsets(object.as_string());
    size = static_cast<int64_t>(offsets.size()) - 1;
  } else {
    throw TemplateError("'" + object.type_name() + "' object is not subscriptable");
  }
  // Python's slice.indices().
  auto clamp = [&](std::optional<int64_t> v, int64_t fallback) {
    if (!v) return fallback;
    int64_t x = *v < 0 ? *v + size : *v;
    if (step > 0) return std::clamp<int64_t>(x, 0, size);
    return std::clamp<int64_t>(x, -1, size - 1);
  };
  int64_t start = clamp(as_index(start_value, "start"), step > 0 ? 0 : size - 1);
  int64_t stop = clamp(as_index(stop_value, "stop"), step > 0 ? size : -1);
  List list;
  std::string text;
  for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
    if (object.is_list()) {
      list.push_back(object.as_list()[static_cast<size_t>(i)]);
    } else {
      text.append(object.as_string(), offsets[i], offsets[i + 1] - offsets[i]);
    }
  }
  return object.is_list() ? Value(std::move(list)) : Value(std::move(text));
}

bool contains(const Value& haystack, const Value& needle) {
  switch (haystack.kind()) {
    case Value::Kind::kString:
      if (!needle.is_string()) throw TemplateError("'in <string>' requires string as left operand, not " + needle.type_name());
      return haystack.as_string().find(needle.as_string()) != std::string::npos;
    case Value::Kind::kList:
      return std::any_of(haystack.as_list().begin(), haystack.as_list().end(),
                         [&](const Value& item) { return item.equals(needle); });
    case Value::Kind::kDict: return needle.is_string() && haystack.as_dict().find(needle.as_string()) != nullptr;
    case Value::Kind::kUndefined: return false;
    default: throw TemplateError("argument of type '" + haystack.type_name() + "' is not iterable");
  }
}

int64_t length_of(const Value& value) {
  switch (value.kind()) {
    case Value::Kind::kString: return static_cast<int64_t>(code_point_offsets(value.as_string()).size()) - 1;
    case Value::Kind::kList: return static_cast<int64_t>(value.as_list().size());
    case Value::Kind::kDict: return static_cast<int64_t>(value.as_dict().items.size());
    case Value::Kind::kUndefined: return 0;
    default: throw TemplateError("object of type '" + value.type_name() + "' has no len()");
  }
}

List iterate(const Value& value) {
  switch (value.kind()) {
    case Value::Kind::kList: return value.as_list();
    case Value::Kind::kDict: {
      List keys;
      for (const auto& entry : value.as_dict().items) keys.emplace_back(entry.first);
      return keys;
    }
    case Value::Kind::kString: {
      List chars;
      std::vector<size_t> offsets = code_point_offsets(value.as_string());
      for (size_t i = 0; i + 1 < offsets.size(); ++i) {
        chars.emplace_back(value.as_string().substr(offsets[i], offsets[i + 1] - offsets[i]));
      }
      return chars;
    }
    case Value::Kind::kUndefined: return {};
    default: throw TemplateError("'" + value.type_name() + "' object is not iterable");
  }
}

}  // namespace tpserve::runtime::jinja
