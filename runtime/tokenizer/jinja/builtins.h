// jinja2's filters and tests, and the Python str / dict methods chat templates call, on our Value.
// Each follows the Python original's behaviour on the inputs templates give it; a failure throws
// TemplateError, which the renderer turns into an error naming the template line.
#pragma once

#include <string>

#include "runtime/tokenizer/jinja/value.h"

namespace tpserve::runtime::jinja {

// A call's argument by position, else by keyword (Python's binding of f(a, b=...)); null if absent.
const Value* find_argument(const CallArgs& args, size_t index, const char* name);

// Looks up `name` on `object` the way jinja2's sandboxed getattr does for {{ object.name }}: a
// method of str or dict first (bound, callable), then a dict item; Undefined when neither exists.
// Undefined objects fail ("'x' is undefined").
Value get_attribute(const Value& object, const std::string& name);
// {{ object[key] }}: the item first, then (for a string key) the attribute.
Value get_item(const Value& object, const Value& key);
// {{ object[start:stop:step] }} on a list or str.
Value get_slice(const Value& object, const Value& start, const Value& stop, const Value& step);

Value apply_filter(const std::string& name, const Value& subject, CallArgs& args);
bool apply_test(const std::string& name, const Value& subject, CallArgs& args);

// Python's `needle in haystack` for str, list and dict.
bool contains(const Value& haystack, const Value& needle);
// Python len() of str (in code points), list or dict; Undefined has length 0.
int64_t length_of(const Value& value);
// Iterating a value in a for loop: list items, str characters, dict keys; Undefined is empty.
List iterate(const Value& value);

}  // namespace tpserve::runtime::jinja
