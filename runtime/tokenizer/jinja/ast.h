// The parsed template: statements (text, output, if, for, set, macro, ...) holding expressions.
// One node type per layer, with a kind tag, keeps the evaluator a plain switch.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "runtime/tokenizer/jinja/value.h"

namespace tpserve::runtime::jinja {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    kLiteral,    // value
    kName,       // name
    kList,       // args
    kDict,       // args: key, value, key, value, ...
    kGetAttr,    // object . name
    kGetItem,    // object [ args[0] ]
    kSlice,      // object [ args[0] : args[1] : args[2] ] (null parts omitted)
    kCall,       // object ( args, kwargs )
    kFilter,     // object | name ( args, kwargs )
    kTest,       // object is [not] name ( args )
    kUnary,      // op object      (not, -, +)
    kBinary,     // args[0] op args[1]
    kCondition,  // args[0] if args[1] else args[2] (args[2] may be null)
  };
  Kind kind;
  int line = 0;
  Value value;
  std::string name;  // variable / attribute / filter / test name, or the operator
  bool negated = false;
  ExprPtr object;
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
};

struct Stmt;
using Body = std::vector<std::unique_ptr<Stmt>>;

struct Stmt {
  enum class Kind {
    kText,        // text
    kOutput,      // {{ expr }}
    kIf,          // conditions[i] -> bodies[i]; else_body
    kFor,         // for targets in expr [if filter]: bodies[0]; else_body
    kSet,         // set targets[0] (or targets[0].attribute) = expr
    kSetBlock,    // set targets[0] %} bodies[0] {% endset
    kMacro,       // macro name(targets with defaults): bodies[0]
    kBreak,
    kContinue,
    kGeneration,  // transformers' {% generation %} marker: renders its body
  };
  Kind kind;
  int line = 0;
  std::string text;
  std::string name;
  std::string attribute;
  std::vector<std::string> targets;
  ExprPtr expr;
  ExprPtr filter;
  std::vector<ExprPtr> conditions;
  std::vector<ExprPtr> defaults;  // macro parameter defaults, null when none
  std::vector<Body> bodies;
  Body else_body;
};

}  // namespace tpserve::runtime::jinja
