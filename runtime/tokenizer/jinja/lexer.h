// Splits a template into text and the tokens of its {{ }} / {% %} tags, applying whitespace control
// the way jinja2's lexer does in the environment transformers renders chat templates with
// (trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False):
//   - a '-' after an opening or before a closing delimiter strips all whitespace on that side;
//   - trim_blocks drops the first newline after a block or comment tag ('+%}' keeps it);
//   - lstrip_blocks drops spaces and tabs from the start of a line up to a block or comment tag
//     ('{%+' keeps them), never before a {{ }} expression;
//   - comments {# #} vanish; one trailing newline of the source is dropped; \r\n and \r become \n.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace tpserve::runtime::jinja {

struct Token {
  enum class Type { kText, kVariableBegin, kVariableEnd, kBlockBegin, kBlockEnd, kName, kString, kInteger,
                    kFloat, kOperator, kEnd };
  Type type;
  std::string text;  // kText: the text; kString: the decoded literal; others: as written
  int line;
};

// Throws tpserve::Error(kInvalidArgument) "<source_name>, line N: ..." for an unterminated tag or
// string, or a character no token starts with.
std::vector<Token> tokenize(std::string_view source, const std::string& source_name);

}  // namespace tpserve::runtime::jinja
