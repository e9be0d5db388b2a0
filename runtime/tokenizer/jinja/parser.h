// Builds the statement tree from the lexer's tokens with jinja2's grammar and operator precedence
// (or < and < not < comparisons / in / not in < + - < ~ < * / // % < ** < unary - +, and filters,
// tests, calls, attributes and subscripts binding tightest).
#pragma once

#include <string>
#include <vector>

#include "runtime/tokenizer/jinja/ast.h"
#include "runtime/tokenizer/jinja/lexer.h"

namespace tpserve::runtime::jinja {

// Throws tpserve::Error(kInvalidArgument) "<source_name>, line N: ..." on a syntax error, an
// unknown tag, filter or test, or nesting deeper than a template can reasonably need.
Body parse(const std::vector<Token>& tokens, const std::string& source_name);

// Whether the evaluator knows a filter / test of this name (jinja2 checks these at compile time).
bool is_known_filter(const std::string& name);
bool is_known_test(const std::string& name);

}  // namespace tpserve::runtime::jinja
