// The values a chat template computes with, modelled on the Python objects jinja2 hands a template:
// undefined (jinja2's default Undefined: prints empty, is falsy, iterates as empty, but fails on
// attribute access, arithmetic and calls), None, bool, int, float, str, list, dict (insertion
// ordered, as Python's), and callables (globals such as raise_exception, bound string / dict
// methods, macros). Lists and dicts are shared by reference like Python's, which is what makes
// `namespace()` attribute assignment visible outside a for loop.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tpserve::runtime::jinja {

// A runtime error in a template (a type error, an undefined attribute, a limit); the renderer turns
// it into tpserve::Error naming the template line.
struct TemplateError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// How deeply lists, dicts, namespaces and bound dict methods may nest (Python's recursion limit,
// past which its repr, json.dumps and == fail too). Each value knows its depth when it is made, and
// making a deeper one throws TemplateError, so that nothing that walks a value (printing, tojson,
// comparing, freeing it) can recurse deep enough to overflow the stack.
constexpr uint32_t kMaxValueDepth = 1000;

class Value;
using List = std::vector<Value>;

struct Dict {
  std::vector<std::pair<std::string, Value>> items;
  bool is_namespace = false;  // jinja2's namespace(): the one object a template may assign attributes on
  // 1 + the deepest item's depth. A namespace's is the deepest it has been: attributes only raise it.
  uint32_t depth = 1;

  const Value* find(std::string_view key) const;
  // Throws TemplateError, changing nothing, when `value` would nest deeper than kMaxValueDepth.
  void set(const std::string& key, Value value);
};

struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
};

using Function = std::function<Value(CallArgs&)>;

class Value {
 public:
  enum class Kind { kUndefined, kNone, kBool, kInt, kFloat, kString, kList, kDict, kFunction };

  Value() = default;  // undefined
  static Value undefined(std::string hint) {
    Value v;
    v.text_ = std::move(hint);
    return v;
  }
  static Value none() { return Value(Kind::kNone); }
  Value(bool b) : kind_(Kind::kBool), int_(b) {}
  Value(int64_t i) : kind_(Kind::kInt), int_(i) {}
  Value(int i) : kind_(Kind::kInt), int_(i) {}
  Value(double f) : kind_(Kind::kFloat), float_(f) {}
  Value(std::string s) : kind_(Kind::kString), text_(std::move(s)) {}
  Value(const char* s) : kind_(Kind::kString), text_(s) {}
  // A list or dict nesting deeper than kMaxValueDepth throws TemplateError.
  Value(List list);
  Value(std::shared_ptr<Dict> dict);
  Value(Function fn) : kind_(Kind::kFunction), fn_(std::make_shared<Function>(std::move(fn))) {}
  // A method bound to `self` (a dict's items, get, ...): it holds self, one level deeper.
  static Value bound_method(Function fn, const Value& self);

  // A JSON document (the render context) as Python's json.loads would give it. A document nesting
  // deeper than kMaxValueDepth throws TemplateError.
  static Value from_json(const nlohmann::ordered_json& json);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::kUndefined; }
  bool is_none() const { return kind_ == Kind::kNone; }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_number() const { return kind_ == Kind::kInt || kind_ == Kind::kFloat || kind_ == Kind::kBool; }
  bool is_list() const { return kind_ == Kind::kList; }
  bool is_dict() const { return kind_ == Kind::kDict; }
  // 0 for a scalar; for a list, dict or bound method 1 + the deepest value it holds.
  uint32_t depth() const { return kind_ == Kind::kDict ? dict_->depth : depth_; }

  bool as_bool() const { return int_ != 0; }
  int64_t as_int() const { return int_; }
  double as_float() const { return kind_ == Kind::kFloat ? float_ : static_cast<double>(int_); }
  const std::string& as_string() const { return text_; }
  // For undefined: why ("'x' is undefined", "'dict object' has no attribute 'y'").
  const std::string& undefined_hint() const { return text_; }
  List& as_list() const { return *list_; }
  Dict& as_dict() const { return *dict_; }
  const Function& as_function() const { return *fn_; }

  // Python truthiness.
  bool truthy() const;
  // str(value) as jinja2 prints it ({{ x }}): undefined prints empty, None as "None".
  std::string str() const;
  // repr(value): what str() gives for an element inside a printed list or dict.
  std::string repr() const;
  // Python ==, with int / float / bool comparing by number.
  bool equals(const Value& other) const;
  // jinja2's type names in messages ("dict object", "str object").
  std::string type_name() const;

 private:
  explicit Value(Kind kind) : kind_(kind) {}
  static Value from_json(const nlohmann::ordered_json& json, uint32_t level);

  Kind kind_ = Kind::kUndefined;
  uint32_t depth_ = 0;  // lists and bound methods; a dict keeps its own
  int64_t int_ = 0;
  double float_ = 0;
  std::string text_;
  std::shared_ptr<List> list_;
  std::shared_ptr<Dict> dict_;
  std::shared_ptr<Function> fn_;
};

// Python's repr of a float (shortest round trip; "1.0", "1e-05", "inf").
std::string float_repr(double value);

// Python's json.dumps(value, ensure_ascii, indent, separators, sort_keys), the arguments
// transformers' own tojson filter takes. indent < 0 means None. Throws std::runtime_error for
// undefined or callables, which json.dumps cannot serialize either.
struct JsonStyle {
  bool ensure_ascii = false;
  int indent = -1;
  std::string item_separator;  // empty: Python's default (", " or "," with indent)
  std::string key_separator = ": ";
  bool sort_keys = false;
};
std::string to_json(const Value& value, const JsonStyle& style);

// Code point count and code-point-indexed access for str (Python indexes characters, not bytes).
std::vector<size_t> code_point_offsets(std::string_view text);

}  // namespace tpserve::runtime::jinja
