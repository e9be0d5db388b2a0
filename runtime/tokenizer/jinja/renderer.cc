// Executes the statement tree. Scoping follows jinja2: each for-loop iteration gets a fresh scope
// (a `set` inside a loop is gone after it, which is why templates use namespace()), `if` opens
// none, and a macro sees the template's top-level names plus its parameters.
#include <cmath>
#include <ctime>
#include <unordered_map>
#include <unordered_set>

#include "common/error.h"
#include "runtime/tokenizer/jinja/ast.h"
#include "runtime/tokenizer/jinja/builtins.h"
#include "runtime/tokenizer/jinja/lexer.h"
#include "runtime/tokenizer/jinja/parser.h"
#include "runtime/tokenizer/jinja/template.h"
#include "runtime/tokenizer/utf8.h"

namespace tpserve::runtime::jinja {
namespace {

using Scope = std::unordered_map<std::string, Value>;

// raise_exception('msg'): the template's own message, not a bug in it.
struct RaisedByTemplate {
  std::string message;
};

// jinja2's sandbox refuses ranges longer than this (sandbox.MAX_RANGE).
constexpr int64_t kMaxRange = 100000;

Value make_globals_function(Function fn) { return Value(std::move(fn)); }

Scope default_globals() {
  Scope globals;
  globals["raise_exception"] = make_globals_function([](CallArgs& args) -> Value {
    throw RaisedByTemplate{args.positional.empty() ? std::string() : args.positional[0].str()};
  });
  globals["strftime_now"] = make_globals_function([](CallArgs& args) -> Value {
    if (args.positional.empty() || !args.positional[0].is_string()) throw TemplateError("strftime_now needs a format");
    std::time_t now = std::time(nullptr);
    std::tm local{};
    localtime_r(&now, &local);
    char buffer[256];
    size_t n = std::strftime(buffer, sizeof(buffer), args.positional[0].as_string().c_str(), &local);
    return Value(std::string(buffer, n));
  });
  globals["namespace"] = make_globals_function([](CallArgs& args) -> Value {
    auto ns = std::make_shared<Dict>();
    ns->is_namespace = true;
    for (const Value& positional : args.positional) {
      if (!positional.is_dict()) throw TemplateError("namespace() takes a mapping or keyword arguments");
      for (const auto& [key, value] : positional.as_dict().items) ns->set(key, value);
    }
    for (const auto& [key, value] : args.keyword) ns->set(key, value);
    return Value(std::move(ns));
  });
  globals["dict"] = make_globals_function([](CallArgs& args) -> Value {
    auto dict = std::make_shared<Dict>();
    for (const auto& [key, value] : args.keyword) dict->set(key, value);
    return Value(std::move(dict));
  });
  globals["range"] = make_globals_function([](CallArgs& args) -> Value {
    std::vector<int64_t> bounds;
    for (const Value& v : args.positional) {
      if (v.kind() != Value::Kind::kInt) throw TemplateError("range() takes integers");
      bounds.push_back(v.as_int());
    }
    if (bounds.empty() || bounds.size() > 3) throw TemplateError("range expected 1 to 3 arguments");
    int64_t start = bounds.size() > 1 ? bounds[0] : 0;
    int64_t stop = bounds.size() > 1 ? bounds[1] : bounds[0];
    int64_t step = bounds.size() > 2 ? bounds[2] : 1;
    if (step == 0) throw TemplateError("range() arg 3 must not be zero");
    List list;
    for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
      if (static_cast<int64_t>(list.size()) >= kMaxRange) {
        throw TemplateError("Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
      }
      list.emplace_back(i);
    }
    return Value(std::move(list));
  });
  return globals;
}

class Renderer {
 public:
  Renderer(const std::string& name, const RenderLimits& limits) : name_(name), limits_(limits) {}
  Renderer(const Renderer&) = delete;
  Renderer& operator=(const Renderer&) = delete;

  // A namespace is the one value a template changes after making it, so it is the only way to a
  // reference cycle ({% set ns.self = ns %}, or through a list or a bound method), which shared
  // ownership alone would never free. Nothing a render makes outlives it, so emptying every
  // namespace that was assigned to frees them all. They are held until then, so a value that stops
  // at one is freed without recursing into it (whose depth can be more than its holders recorded).
  ~Renderer() {
    for (const Value& ns : assigned_namespaces_) ns.as_dict().items.clear();
  }

  std::string run(const Body& body, Scope top_level) {
    scopes_.push_back(std::move(top_level));
    std::string out;
    try {
      exec_body(body, out);
    } catch (const RaisedByTemplate& raised) {
      raise(ErrorCode::kInvalidArgument, "{}, line {}: {}", name_, line_, raised.message);
    } catch (const TemplateError& e) {
      raise(ErrorCode::kInvalidArgument, "{}, line {}: {}", name_, line_, e.what());
    }
    return out;
  }

 private:
  enum class Flow { kNormal, kBreak, kContinue };

  void step() {
    if (++steps_ > limits_.max_steps) {
      throw TemplateError("template ran more than " + std::to_string(limits_.max_steps) + " steps");
    }
  }

  void emit(std::string& out, std::string_view text) {
    emitted_ += text.size();
    if (emitted_ > limits_.max_output_bytes) {
      throw TemplateError("template output exceeds " + std::to_string(limits_.max_output_bytes) + " bytes");
    }
    out += text;
  }

  Flow exec_body(const Body& body, std::string& out) {
    for (const auto& stmt : body) {
      Flow flow = exec(*stmt, out);
      if (flow != Flow::kNormal) return flow;
    }
    return Flow::kNormal;
  }

  Flow exec(const Stmt& stmt, std::string& out) {
    step();
    line_ = stmt.line;
    switch (stmt.kind) {
      case Stmt::Kind::kText: emit(out, stmt.text); return Flow::kNormal;
      case Stmt::Kind::kOutput: emit(out, eval(*stmt.expr).str()); return Flow::kNormal;
      case Stmt::Kind::kIf:
        for (size_t i = 0; i < stmt.conditions.size(); ++i) {
          if (eval(*stmt.conditions[i]).truthy()) return exec_body(stmt.bodies[i], out);
        }
        return exec_body(stmt.else_body, out);
      case Stmt::Kind::kFor: return exec_for(stmt, out);
      case Stmt::Kind::kSet: {
        Value value = eval(*stmt.expr);
        line_ = stmt.line;
        if (!stmt.attribute.empty()) {
          Value target = lookup(stmt.targets[0]);
          if (!target.is_dict() || !target.as_dict().is_namespace) {
            throw TemplateError("cannot assign attribute on non-namespace object");
          }
          if (assigned_.insert(&target.as_dict()).second) assigned_namespaces_.push_back(target);
          target.as_dict().set(stmt.attribute, std::move(value));
        } else {
          assign_targets(stmt.targets, value);
        }
        return Flow::kNormal;
      }
      case Stmt::Kind::kSetBlock: {
        std::string captured;
        exec_body(stmt.bodies[0], captured);
        scopes_.back()[stmt.targets[0]] = Value(std::move(captured));
        return Flow::kNormal;
      }
      case Stmt::Kind::kMacro: scopes_.back()[stmt.name] = make_macro(stmt); return Flow::kNormal;
      case Stmt::Kind::kBreak: return Flow::kBreak;
      case Stmt::Kind::kContinue: return Flow::kContinue;
      case Stmt::Kind::kGeneration: exec_body(stmt.bodies[0], out); return Flow::kNormal;
    }
    return Flow::kNormal;
  }

  void assign_targets(const std::vector<std::string>& targets, const Value& value) {
    if (targets.size() == 1) {
      scopes_.back()[targets[0]] = value;
      return;
    }
    List items = iterate(value);
    if (items.size() != targets.size()) {
      throw TemplateError(items.size() > targets.size() ? "too many values to unpack (expected " + std::to_string(targets.size()) + ")"
                                                        : "not enough values to unpack (expected " + std::to_string(targets.size()) + ")");
    }
    for (size_t i = 0; i < targets.size(); ++i) scopes_.back()[targets[i]] = items[i];
  }

  Flow exec_for(const Stmt& stmt, std::string& out) {
    List items = iterate(eval(*stmt.expr));
    if (stmt.filter) {
      List kept;
      for (const Value& item : items) {
        step();
        scopes_.emplace_back();
        assign_targets(stmt.targets, item);
        bool keep = eval(*stmt.filter).truthy();
        scopes_.pop_back();
        if (keep) kept.push_back(item);
      }
      items = std::move(kept);
    }
    if (items.empty()) return exec_body(stmt.else_body, out);
    const int64_t length = static_cast<int64_t>(items.size());
    for (int64_t i = 0; i < length; ++i) {
      step();
      scopes_.emplace_back();
      assign_targets(stmt.targets, items[i]);
      scopes_.back()["loop"] = loop_object(items, i);
      Flow flow = exec_body(stmt.bodies[0], out);
      scopes_.pop_back();
      if (flow == Flow::kBreak) break;
    }
    return Flow::kNormal;
  }

  // jinja2's LoopContext: previtem / nextitem are undefined at the ends.
  static Value loop_object(const List& items, int64_t i) {
    const int64_t length = static_cast<int64_t>(items.size());
    auto loop = std::make_shared<Dict>();
    loop->items = {{"index", Value(i + 1)},         {"index0", Value(i)},
                   {"revindex", Value(length - i)}, {"revindex0", Value(length - i - 1)},
                   {"first", Value(i == 0)},         {"last", Value(i == length - 1)},
                   {"length", Value(length)},       {"depth", Value(int64_t{1})},
                   {"depth0", Value(int64_t{0})}};
    if (i > 0) loop->items.emplace_back("previtem", items[i - 1]);
    if (i + 1 < length) loop->items.emplace_back("nextitem", items[i + 1]);
    loop->items.emplace_back("cycle", Value(Function([i](CallArgs& args) -> Value {
      if (args.positional.empty()) throw TemplateError("no items for cycling given");
      return args.positional[static_cast<size_t>(i) % args.positional.size()];
    })));
    return Value(std::move(loop));
  }

  Value make_macro(const Stmt& stmt) {
    const Stmt* macro = &stmt;
    return Value(Function([this, macro](CallArgs& args) -> Value {
      if (++call_depth_ > limits_.max_call_depth) {
        throw TemplateError("macro calls nest deeper than " + std::to_string(limits_.max_call_depth));
      }
      if (args.positional.size() > macro->targets.size()) {
        throw TemplateError("macro '" + macro->name + "' takes not more than " + std::to_string(macro->targets.size()) + " argument(s)");
      }
      Scope params;
      std::vector<Scope> saved = std::move(scopes_);
      scopes_ = {saved.front(), Scope()};
      for (size_t i = 0; i < macro->targets.size(); ++i) {
        const std::string& param = macro->targets[i];
        if (i < args.positional.size()) {
          params[param] = args.positional[i];
          continue;
        }
        bool given = false;
        for (const auto& [key, value] : args.keyword) {
          if (key == param) {
            params[param] = value;
            given = true;
          }
        }
        if (!given) {
          params[param] = macro->defaults[i] ? eval(*macro->defaults[i]) : Value::undefined("parameter '" + param + "' was not provided");
        }
      }
      for (const auto& [key, value] : args.keyword) {
        if (params.find(key) == params.end()) throw TemplateError("macro '" + macro->name + "' takes no keyword argument '" + key + "'");
      }
      scopes_.back() = std::move(params);
      std::string out;
      int saved_line = line_;
      exec_body(macro->bodies[0], out);
      line_ = saved_line;
      saved.front() = std::move(scopes_.front());
      scopes_ = std::move(saved);
      --call_depth_;
      return Value(std::move(out));
    }));
  }

  Value lookup(const std::string& name) const {
    for (auto scope = scopes_.rbegin(); scope != scopes_.rend(); ++scope) {
      auto found = scope->find(name);
      if (found != scope->end()) return found->second;
    }
    return Value::undefined("'" + name + "' is undefined");
  }

  CallArgs eval_args(const Expr& expr) {
    CallArgs args;
    for (const auto& arg : expr.args) args.positional.push_back(eval(*arg));
    for (const auto& [key, arg] : expr.kwargs) args.keyword.emplace_back(key, eval(*arg));
    return args;
  }

  Value eval(const Expr& expr) {
    line_ = expr.line;
    switch (expr.kind) {
      case Expr::Kind::kLiteral: return expr.value;
      case Expr::Kind::kName: return lookup(expr.name);
      case Expr::Kind::kList: {
        List list;
        for (const auto& item : expr.args) list.push_back(eval(*item));
        return Value(std::move(list));
      }
      case Expr::Kind::kDict: {
        auto dict = std::make_shared<Dict>();
        for (size_t i = 0; i + 1 < expr.args.size(); i += 2) {
          Value key = eval(*expr.args[i]);
          if (!key.is_string()) throw TemplateError("dict keys must be strings here");
          dict->set(key.as_string(), eval(*expr.args[i + 1]));
        }
        return Value(std::move(dict));
      }
      case Expr::Kind::kGetAttr: return get_attribute(eval(*expr.object), expr.name);
      case Expr::Kind::kGetItem: {
        Value object = eval(*expr.object);
        return get_item(object, eval(*expr.args[0]));
      }
      case Expr::Kind::kSlice: {
        Value object = eval(*expr.object);
        auto part = [&](size_t i) { return expr.args[i] ? eval(*expr.args[i]) : Value::none(); };
        return get_slice(object, part(0), part(1), part(2));
      }
      case Expr::Kind::kCall: {
        Value callee = eval(*expr.object);
        CallArgs args = eval_args(expr);
        line_ = expr.line;
        if (callee.is_undefined()) throw TemplateError(callee.undefined_hint());
        if (callee.kind() != Value::Kind::kFunction) throw TemplateError("'" + callee.type_name() + "' object is not callable");
        return callee.as_function()(args);
      }
      case Expr::Kind::kFilter: {
        Value subject = eval(*expr.object);
        CallArgs args = eval_args(expr);
        line_ = expr.line;
        return apply_filter(expr.name, subject, args);
      }
      case Expr::Kind::kTest: {
        Value subject = eval(*expr.object);
        CallArgs args = eval_args(expr);
        line_ = expr.line;
        return Value(apply_test(expr.name, subject, args) != expr.negated);
      }
      case Expr::Kind::kUnary: return eval_unary(expr);
      case Expr::Kind::kBinary: return eval_binary(expr);
      case Expr::Kind::kCondition:
        if (eval(*expr.args[1]).truthy()) return eval(*expr.args[0]);
        return expr.args[2] ? eval(*expr.args[2]) : Value::undefined("the inline if-expression on line " + std::to_string(expr.line) + " evaluated to false and no else section was defined.");
    }
    return Value();
  }

  Value eval_unary(const Expr& expr) {
    Value operand = eval(*expr.object);
    if (expr.name == "not") return Value(!operand.truthy());
    if (operand.is_undefined()) throw TemplateError(operand.undefined_hint());
    if (!operand.is_number()) throw TemplateError("bad operand type for unary " + expr.name + ": '" + operand.type_name() + "'");
    if (expr.name == "+") return operand.kind() == Value::Kind::kFloat ? operand : Value(operand.as_int());
    return operand.kind() == Value::Kind::kFloat ? Value(-operand.as_float()) : Value(-operand.as_int());
  }

  Value eval_binary(const Expr& expr);

  const std::string& name_;
  const RenderLimits& limits_;
  std::vector<Scope> scopes_;
  int line_ = 1;
  int64_t steps_ = 0;
  size_t emitted_ = 0;
  int call_depth_ = 0;
  std::vector<Value> assigned_namespaces_;  // each namespace an attribute was set on, once
  std::unordered_set<const Dict*> assigned_;
};

[[noreturn]] void unsupported(const std::string& op, const Value& a, const Value& b) {
  if (a.is_undefined()) throw TemplateError(a.undefined_hint());
  if (b.is_undefined()) throw TemplateError(b.undefined_hint());
  if (op == "+" && a.is_string()) throw TemplateError("can only concatenate str (not \"" + b.type_name() + "\") to str");
  if (op == "+" && a.is_list()) throw TemplateError("can only concatenate list (not \"" + b.type_name() + "\") to list");
  throw TemplateError("unsupported operand type(s) for " + op + ": '" + a.type_name() + "' and '" + b.type_name() + "'");
}

Value repeat(const Value& sequence, int64_t times, size_t limit) {
  times = std::max<int64_t>(times, 0);
  if (sequence.is_string()) {
    if (sequence.as_string().size() * static_cast<size_t>(times) > limit) throw TemplateError("repeated string exceeds the output limit");
    std::string out;
    for (int64_t i = 0; i < times; ++i) out += sequence.as_string();
    return Value(std::move(out));
  }
  if (sequence.as_list().size() * static_cast<size_t>(times) > limit) throw TemplateError("repeated list is too long");
  List out;
  for (int64_t i = 0; i < times; ++i) out.insert(out.end(), sequence.as_list().begin(), sequence.as_list().end());
  return Value(std::move(out));
}

bool less_than(const Value& a, const Value& b, const std::string& op) {
  if (a.is_number() && b.is_number()) return a.as_float() < b.as_float();
  if (a.is_string() && b.is_string()) return a.as_string() < b.as_string();  // UTF-8 order is code point order
  if (a.is_list() && b.is_list()) {
    const List& x = a.as_list();
    const List& y = b.as_list();
    for (size_t i = 0; i < std::min(x.size(), y.size()); ++i) {
      if (!x[i].equals(y[i])) return less_than(x[i], y[i], op);
    }
    return x.size() < y.size();
  }
  if (a.is_undefined()) throw TemplateError(a.undefined_hint());
  if (b.is_undefined()) throw TemplateError(b.undefined_hint());
  throw TemplateError("'" + op + "' not supported between instances of '" + a.type_name() + "' and '" + b.type_name() + "'");
}

Value Renderer::eval_binary(const Expr& expr) {
  const std::string& op = expr.name;
  if (op == "and" || op == "or") {
    Value left = eval(*expr.args[0]);
    if (left.truthy() == (op == "or")) return left;
    return eval(*expr.args[1]);
  }
  Value a = eval(*expr.args[0]);
  Value b = eval(*expr.args[1]);
  line_ = expr.line;
  if (op == "==") return Value(a.equals(b));
  if (op == "!=") return Value(!a.equals(b));
  if (op == "<") return Value(less_than(a, b, op));
  if (op == ">") return Value(less_than(b, a, op));
  if (op == "<=") return Value(!less_than(b, a, op));
  if (op == ">=") return Value(!less_than(a, b, op));
  if (op == "in") return Value(contains(b, a));
  if (op == "not in") return Value(!contains(b, a));
  if (op == "~") {
    std::string text = a.str() + b.str();
    return Value(std::move(text));
  }
  using Kind = Value::Kind;
  const bool ints = (a.kind() == Kind::kInt || a.kind() == Kind::kBool) && (b.kind() == Kind::kInt || b.kind() == Kind::kBool);
  const bool numbers = a.is_number() && b.is_number();
  if (op == "+") {
    if (a.is_string() && b.is_string()) return Value(a.as_string() + b.as_string());
    if (a.is_list() && b.is_list()) {
      List joined = a.as_list();
      joined.insert(joined.end(), b.as_list().begin(), b.as_list().end());
      return Value(std::move(joined));
    }
    int64_t sum;
    if (ints && !__builtin_add_overflow(a.as_int(), b.as_int(), &sum)) return Value(sum);
    if (numbers) return Value(a.as_float() + b.as_float());
    unsupported(op, a, b);
  }
  if (op == "-") {
    int64_t difference;
    if (ints && !__builtin_sub_overflow(a.as_int(), b.as_int(), &difference)) return Value(difference);
    if (numbers) return Value(a.as_float() - b.as_float());
    unsupported(op, a, b);
  }
  if (op == "*") {
    int64_t product;
    if (ints && !__builtin_mul_overflow(a.as_int(), b.as_int(), &product)) return Value(product);
    if (numbers) return Value(a.as_float() * b.as_float());
    if ((a.is_string() || a.is_list()) && (b.kind() == Kind::kInt)) return repeat(a, b.as_int(), limits_.max_output_bytes);
    if ((b.is_string() || b.is_list()) && (a.kind() == Kind::kInt)) return repeat(b, a.as_int(), limits_.max_output_bytes);
    unsupported(op, a, b);
  }
  if (!numbers) unsupported(op, a, b);
  if (b.as_float() == 0 && op != "**") throw TemplateError(ints ? "integer division or modulo by zero" : "float division by zero");
  if (op == "/") return Value(a.as_float() / b.as_float());
  if (op == "//") {
    if (ints) {
      int64_t q = a.as_int() / b.as_int();
      if ((a.as_int() % b.as_int() != 0) && ((a.as_int() < 0) != (b.as_int() < 0))) --q;
      return Value(q);
    }
    return Value(std::floor(a.as_float() / b.as_float()));
  }
  if (op == "%") {
    if (ints) {
      int64_t r = a.as_int() % b.as_int();
      if (r != 0 && ((r < 0) != (b.as_int() < 0))) r += b.as_int();
      return Value(r);
    }
    double r = std::fmod(a.as_float(), b.as_float());
    if (r != 0 && ((r < 0) != (b.as_float() < 0))) r += b.as_float();
    return Value(r);
  }
  if (op == "**") {
    if (ints && b.as_int() >= 0) {
      int64_t result = 1, base = a.as_int();
      for (int64_t e = b.as_int(); e > 0; e >>= 1) {
        if ((e & 1) && __builtin_mul_overflow(result, base, &result)) throw TemplateError("integer power overflows 64 bits");
        if (e > 1 && __builtin_mul_overflow(base, base, &base)) throw TemplateError("integer power overflows 64 bits");
      }
      return Value(result);
    }
    return Value(std::pow(a.as_float(), b.as_float()));
  }
  unsupported(op, a, b);
}

}  // namespace

namespace {

std::string_view valid_source(std::string_view source, const std::string& name) {
  utf8::validate(source, name);
  return source;
}

}  // namespace

// A template is text: jinja2 gets a Python str, so its source is valid UTF-8 (transformers decodes
// the file or the JSON string first).
Template::Template(std::string_view source, std::string name)
    : name_(std::move(name)),
      body_(std::make_shared<const Body>(parse(tokenize(valid_source(source, name_), name_), name_))) {}

Template::~Template() = default;
Template::Template(Template&&) noexcept = default;
Template& Template::operator=(Template&&) noexcept = default;

std::string Template::render(const nlohmann::ordered_json& context, const RenderLimits& limits) const {
  Scope top_level = default_globals();
  if (context.is_object()) {
    for (const auto& [key, value] : context.items()) {
      try {
        top_level[key] = Value::from_json(value);
      } catch (const TemplateError& e) {
        raise(ErrorCode::kInvalidArgument, "{}: the variable '{}': {}", name_, key, e.what());
      }
    }
  }
  return Renderer(name_, limits).run(*body_, std::move(top_level));
}

}  // namespace tpserve::runtime::jinja
