#include "runtime/tokenizer/jinja/parser.h"

#include <cstdlib>
#include <initializer_list>
#include <string_view>

#include "common/error.h"

namespace tpserve::runtime::jinja {
namespace {

using Type = Token::Type;

// Deep enough for any real template, shallow enough that a hostile one cannot overflow the stack.
constexpr int kMaxNesting = 200;

class Parser {
 public:
  Parser(const std::vector<Token>& tokens, const std::string& name) : tokens_(tokens), name_(name) {}

  Body parse_template() {
    std::string end;
    Body body = parse_body({}, end);
    return body;
  }

 private:
  [[noreturn]] void fail(const std::string& message) const {
    raise(ErrorCode::kInvalidArgument, "{}, line {}: {}", name_, current().line, message);
  }

  const Token& current() const { return tokens_[pos_]; }
  const Token& peek(size_t ahead = 1) const { return tokens_[std::min(pos_ + ahead, tokens_.size() - 1)]; }
  void advance() {
    if (pos_ + 1 < tokens_.size()) ++pos_;
  }
  bool is_op(std::string_view op) const { return current().type == Type::kOperator && current().text == op; }
  bool is_name(std::string_view name) const { return current().type == Type::kName && current().text == name; }
  bool skip_op(std::string_view op) {
    if (!is_op(op)) return false;
    advance();
    return true;
  }
  void expect_op(std::string_view op) {
    if (!skip_op(op)) fail("expected '" + std::string(op) + "', got " + describe(current()));
  }
  std::string expect_name() {
    if (current().type != Type::kName) fail("expected a name, got " + describe(current()));
    std::string name = current().text;
    advance();
    return name;
  }
  void expect_block_end() {
    if (current().type != Type::kBlockEnd) fail("expected end of statement block, got " + describe(current()));
    advance();
  }
  static std::string describe(const Token& token) {
    switch (token.type) {
      case Type::kEnd: return "end of template";
      case Type::kBlockEnd: return "'%}'";
      case Type::kVariableEnd: return "'}}'";
      case Type::kString: return "a string";
      default: return "'" + token.text + "'";
    }
  }

  struct Nesting {
    explicit Nesting(Parser& parser) : parser_(parser) {
      if (++parser_.nesting_ > kMaxNesting) parser_.fail("template nests deeper than " + std::to_string(kMaxNesting));
    }
    ~Nesting() { --parser_.nesting_; }
    Parser& parser_;
  };

  // Statements until one of `ends` ({% endfor %}, {% else %}, ...); its name lands in `end`, with
  // the parser positioned just after the keyword.
  Body parse_body(std::initializer_list<std::string_view> ends, std::string& end) {
    Nesting nesting(*this);
    Body body;
    while (true) {
      const Token& token = current();
      if (token.type == Type::kEnd) {
        if (ends.size() != 0) fail("unexpected end of template, expected '" + std::string(*(ends.end() - 1)) + "'");
        return body;
      }
      if (token.type == Type::kText) {
        auto stmt = make_stmt(Stmt::Kind::kText);
        stmt->text = token.text;
        body.push_back(std::move(stmt));
        advance();
      } else if (token.type == Type::kVariableBegin) {
        advance();
        auto stmt = make_stmt(Stmt::Kind::kOutput);
        stmt->expr = parse_tuple();
        if (current().type != Type::kVariableEnd) fail("expected end of print statement, got " + describe(current()));
        advance();
        body.push_back(std::move(stmt));
      } else if (token.type == Type::kBlockBegin) {
        advance();
        if (current().type != Type::kName) fail("tag name expected");
        for (std::string_view candidate : ends) {
          if (current().text == candidate) {
            end = current().text;
            advance();
            return body;
          }
        }
        body.push_back(parse_statement());
      } else {
        fail("unexpected " + describe(token));
      }
    }
  }

  std::unique_ptr<Stmt> make_stmt(Stmt::Kind kind) {
    auto stmt = std::make_unique<Stmt>();
    stmt->kind = kind;
    stmt->line = current().line;
    return stmt;
  }

  std::unique_ptr<Stmt> parse_statement() {
    const std::string keyword = current().text;
    if (keyword == "if") return parse_if();
    if (keyword == "for") return parse_for();
    if (keyword == "set") return parse_set();
    if (keyword == "macro") return parse_macro();
    if (keyword == "break" || keyword == "continue") {
      if (loop_depth_ == 0) fail("'" + keyword + "' outside of a loop");
      auto stmt = make_stmt(keyword == "break" ? Stmt::Kind::kBreak : Stmt::Kind::kContinue);
      advance();
      expect_block_end();
      return stmt;
    }
    if (keyword == "generation") {
      auto stmt = make_stmt(Stmt::Kind::kGeneration);
      advance();
      expect_block_end();
      std::string end;
      stmt->bodies.push_back(parse_body({"endgeneration"}, end));
      expect_block_end();
      return stmt;
    }
    fail("Encountered unknown or unsupported tag '" + keyword + "'");
  }

  std::unique_ptr<Stmt> parse_if() {
    auto stmt = make_stmt(Stmt::Kind::kIf);
    advance();
    std::string end = "elif";
    while (end == "elif") {
      stmt->conditions.push_back(parse_tuple());
      expect_block_end();
      stmt->bodies.push_back(parse_body({"elif", "else", "endif"}, end));
    }
    if (end == "else") {
      expect_block_end();
      stmt->else_body = parse_body({"endif"}, end);
    }
    expect_block_end();
    return stmt;
  }

  std::unique_ptr<Stmt> parse_for() {
    auto stmt = make_stmt(Stmt::Kind::kFor);
    advance();
    bool parenthesized = skip_op("(");
    stmt->targets.push_back(expect_name());
    while (skip_op(",")) stmt->targets.push_back(expect_name());
    if (parenthesized) expect_op(")");
    if (!is_name("in")) fail("expected 'in', got " + describe(current()));
    advance();
    stmt->expr = parse_or();  // jinja2: no conditional expression here, `if` starts the loop filter
    if (is_name("if")) {
      advance();
      stmt->filter = parse_tuple();
    }
    if (is_name("recursive")) fail("recursive for loops are not supported");
    expect_block_end();
    ++loop_depth_;
    std::string end;
    stmt->bodies.push_back(parse_body({"else", "endfor"}, end));
    --loop_depth_;
    if (end == "else") {
      expect_block_end();
      stmt->else_body = parse_body({"endfor"}, end);
    }
    expect_block_end();
    return stmt;
  }

  std::unique_ptr<Stmt> parse_set() {
    auto stmt = make_stmt(Stmt::Kind::kSet);
    advance();
    stmt->targets.push_back(expect_name());
    if (skip_op(".")) {
      stmt->attribute = expect_name();
    } else {
      while (skip_op(",")) stmt->targets.push_back(expect_name());
    }
    if (skip_op("=")) {
      stmt->expr = parse_tuple();
      expect_block_end();
      return stmt;
    }
    if (!stmt->attribute.empty() || stmt->targets.size() != 1) fail("expected '='");
    stmt->kind = Stmt::Kind::kSetBlock;
    expect_block_end();
    std::string end;
    stmt->bodies.push_back(parse_body({"endset"}, end));
    expect_block_end();
    return stmt;
  }

  std::unique_ptr<Stmt> parse_macro() {
    auto stmt = make_stmt(Stmt::Kind::kMacro);
    advance();
    stmt->name = expect_name();
    expect_op("(");
    while (!skip_op(")")) {
      if (!stmt->targets.empty()) expect_op(",");
      stmt->targets.push_back(expect_name());
      stmt->defaults.push_back(skip_op("=") ? parse_expression() : nullptr);
    }
    expect_block_end();
    int saved_loops = loop_depth_;
    loop_depth_ = 0;
    std::string end;
    stmt->bodies.push_back(parse_body({"endmacro"}, end));
    loop_depth_ = saved_loops;
    if (current().type == Type::kName) advance();  // {% endmacro name %}
    expect_block_end();
    return stmt;
  }

  // ---- expressions ----

  ExprPtr make_expr(Expr::Kind kind) {
    auto expr = std::make_unique<Expr>();
    expr->kind = kind;
    expr->line = current().line;
    return expr;
  }

  ExprPtr binary(std::string op, ExprPtr left, ExprPtr right) {
    auto expr = make_expr(Expr::Kind::kBinary);
    expr->name = std::move(op);
    expr->args.push_back(std::move(left));
    expr->args.push_back(std::move(right));
    return expr;
  }

  // `a, b` (a tuple, which we represent as a list) or a single expression.
  ExprPtr parse_tuple() {
    ExprPtr first = parse_expression();
    if (!is_op(",")) return first;
    auto tuple = make_expr(Expr::Kind::kList);
    tuple->args.push_back(std::move(first));
    while (skip_op(",")) {
      if (current().type == Type::kBlockEnd || current().type == Type::kVariableEnd || is_op(")")) break;
      tuple->args.push_back(parse_expression());
    }
    return tuple;
  }

  ExprPtr parse_expression() {
    Nesting nesting(*this);
    ExprPtr body = parse_or();
    while (is_name("if")) {
      advance();
      auto cond = make_expr(Expr::Kind::kCondition);
      cond->args.push_back(std::move(body));
      cond->args.push_back(parse_or());
      if (is_name("else")) {
        advance();
        cond->args.push_back(parse_expression());
      } else {
        cond->args.push_back(nullptr);
      }
      body = std::move(cond);
    }
    return body;
  }

  ExprPtr parse_or() {
    ExprPtr left = parse_and();
    while (is_name("or")) {
      advance();
      left = binary("or", std::move(left), parse_and());
    }
    return left;
  }

  ExprPtr parse_and() {
    ExprPtr left = parse_not();
    while (is_name("and")) {
      advance();
      left = binary("and", std::move(left), parse_not());
    }
    return left;
  }

  ExprPtr parse_not() {
    if (is_name("not")) {
      Nesting nesting(*this);
      auto expr = make_expr(Expr::Kind::kUnary);
      expr->name = "not";
      advance();
      expr->object = parse_not();
      return expr;
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    ExprPtr left = parse_math1();
    while (true) {
      if (current().type == Type::kOperator &&
          (is_op("==") || is_op("!=") || is_op("<") || is_op("<=") || is_op(">") || is_op(">="))) {
        std::string op = current().text;
        advance();
        left = binary(op, std::move(left), parse_math1());
      } else if (is_name("in")) {
        advance();
        left = binary("in", std::move(left), parse_math1());
      } else if (is_name("not") && peek().type == Type::kName && peek().text == "in") {
        advance();
        advance();
        left = binary("not in", std::move(left), parse_math1());
      } else {
        return left;
      }
    }
  }

  ExprPtr parse_math1() {
    ExprPtr left = parse_concat();
    while (is_op("+") || is_op("-")) {
      std::string op = current().text;
      advance();
      left = binary(op, std::move(left), parse_concat());
    }
    return left;
  }

  ExprPtr parse_concat() {
    ExprPtr left = parse_math2();
    while (skip_op("~")) left = binary("~", std::move(left), parse_math2());
    return left;
  }

  ExprPtr parse_math2() {
    ExprPtr left = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      std::string op = current().text;
      advance();
      left = binary(op, std::move(left), parse_pow());
    }
    return left;
  }

  ExprPtr parse_pow() {
    ExprPtr left = parse_unary(true);
    while (skip_op("**")) left = binary("**", std::move(left), parse_unary(true));
    return left;
  }

  ExprPtr parse_unary(bool with_filter) {
    Nesting nesting(*this);
    ExprPtr node;
    if (is_op("-") || is_op("+")) {
      node = make_expr(Expr::Kind::kUnary);
      node->name = current().text;
      advance();
      node->object = parse_unary(false);
    } else {
      node = parse_postfix(parse_primary());
    }
    return with_filter ? parse_filter_expr(std::move(node)) : std::move(node);
  }

  ExprPtr parse_primary() {
    const Token& token = current();
    auto literal = [&](Value value) {
      auto expr = make_expr(Expr::Kind::kLiteral);
      expr->value = std::move(value);
      advance();
      return expr;
    };
    switch (token.type) {
      case Type::kName: {
        const std::string& name = token.text;
        if (name == "true" || name == "True") return literal(Value(true));
        if (name == "false" || name == "False") return literal(Value(false));
        if (name == "none" || name == "None") return literal(Value::none());
        auto expr = make_expr(Expr::Kind::kName);
        expr->name = name;
        advance();
        return expr;
      }
      case Type::kString: {
        std::string text;
        int line = token.line;
        while (current().type == Type::kString) {  // adjacent literals concatenate, as in Python
          text += current().text;
          advance();
        }
        auto expr = std::make_unique<Expr>();
        expr->kind = Expr::Kind::kLiteral;
        expr->line = line;
        expr->value = Value(std::move(text));
        return expr;
      }
      case Type::kInteger: {
        try {
          return literal(Value(static_cast<int64_t>(std::stoll(token.text))));
        } catch (const std::exception&) {
          fail("integer literal out of range");
        }
      }
      // strtod as Python's float(): 1e999 is inf and 1e-999 is 0.0 (std::stod throws on both).
      case Type::kFloat: return literal(Value(std::strtod(token.text.c_str(), nullptr)));
      case Type::kOperator:
        if (token.text == "(") {
          advance();
          if (skip_op(")")) return make_list(Expr::Kind::kList);
          ExprPtr inner = parse_tuple();
          expect_op(")");
          return inner;
        }
        if (token.text == "[") {
          auto list = make_list(Expr::Kind::kList);
          advance();
          while (!skip_op("]")) {
            if (!list->args.empty()) expect_op(",");
            if (skip_op("]")) break;
            list->args.push_back(parse_expression());
          }
          return list;
        }
        if (token.text == "{") {
          auto dict = make_list(Expr::Kind::kDict);
          advance();
          while (!skip_op("}")) {
            if (!dict->args.empty()) expect_op(",");
            if (skip_op("}")) break;
            dict->args.push_back(parse_expression());
            expect_op(":");
            dict->args.push_back(parse_expression());
          }
          return dict;
        }
        break;
      default: break;
    }
    fail("unexpected " + describe(token));
  }

  ExprPtr make_list(Expr::Kind kind) { return make_expr(kind); }

  ExprPtr parse_postfix(ExprPtr node) {
    while (true) {
      if (is_op(".")) {
        advance();
        if (current().type == Type::kInteger) {
          auto item = make_expr(Expr::Kind::kGetItem);
          item->object = std::move(node);
          auto index = make_expr(Expr::Kind::kLiteral);
          try {
            index->value = Value(static_cast<int64_t>(std::stoll(current().text)));
          } catch (const std::exception&) {
            fail("integer index out of range");
          }
          advance();
          item->args.push_back(std::move(index));
          node = std::move(item);
          continue;
        }
        auto attr = make_expr(Expr::Kind::kGetAttr);
        attr->object = std::move(node);
        attr->name = expect_name();
        node = std::move(attr);
      } else if (is_op("[")) {
        node = parse_subscript(std::move(node));
      } else if (is_op("(")) {
        node = parse_call(std::move(node));
      } else {
        return node;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr node) {
    auto expr = make_expr(Expr::Kind::kGetItem);
    advance();
    expr->object = std::move(node);
    ExprPtr start = is_op(":") ? nullptr : parse_expression();
    if (!is_op(":")) {
      expr->args.push_back(std::move(start));
      expect_op("]");
      return expr;
    }
    expr->kind = Expr::Kind::kSlice;
    advance();
    ExprPtr stop = is_op(":") || is_op("]") ? nullptr : parse_expression();
    ExprPtr step;
    if (skip_op(":")) step = is_op("]") ? nullptr : parse_expression();
    expect_op("]");
    expr->args.push_back(std::move(start));
    expr->args.push_back(std::move(stop));
    expr->args.push_back(std::move(step));
    return expr;
  }

  void parse_call_args(Expr& expr) {
    expect_op("(");
    bool first = true;
    while (!skip_op(")")) {
      if (!first) {
        expect_op(",");
        if (skip_op(")")) break;
      }
      first = false;
      if (current().type == Type::kName && peek().type == Type::kOperator && peek().text == "=") {
        std::string key = current().text;
        advance();
        advance();
        expr.kwargs.emplace_back(std::move(key), parse_expression());
      } else {
        if (!expr.kwargs.empty()) fail("positional argument follows keyword argument");
        expr.args.push_back(parse_expression());
      }
    }
  }

  ExprPtr parse_call(ExprPtr node) {
    auto call = make_expr(Expr::Kind::kCall);
    call->object = std::move(node);
    parse_call_args(*call);
    return call;
  }

  ExprPtr parse_filter_expr(ExprPtr node) {
    while (true) {
      if (is_op("|")) {
        advance();
        auto filter = make_expr(Expr::Kind::kFilter);
        filter->name = expect_name();
        if (!is_known_filter(filter->name)) fail("No filter named '" + filter->name + "'.");
        filter->object = std::move(node);
        if (is_op("(")) parse_call_args(*filter);
        node = std::move(filter);
      } else if (is_name("is")) {
        advance();
        auto test = make_expr(Expr::Kind::kTest);
        if (is_name("not")) {
          test->negated = true;
          advance();
        }
        test->name = expect_name();
        if (!is_known_test(test->name)) fail("No test named '" + test->name + "'.");
        test->object = std::move(node);
        if (is_op("(")) {
          parse_call_args(*test);
        } else if ((current().type == Type::kName || current().type == Type::kString ||
                    current().type == Type::kInteger || current().type == Type::kFloat || is_op("[") ||
                    is_op("{")) &&
                   !is_name("else") && !is_name("or") && !is_name("and") && !is_name("if")) {
          test->args.push_back(parse_postfix(parse_primary()));
        }
        node = std::move(test);
      } else if (is_op("(")) {
        node = parse_call(std::move(node));
      } else {
        return node;
      }
    }
  }

  const std::vector<Token>& tokens_;
  const std::string& name_;
  size_t pos_ = 0;
  int nesting_ = 0;
  int loop_depth_ = 0;
};

}  // namespace

Body parse(const std::vector<Token>& tokens, const std::string& source_name) {
  return Parser(tokens, source_name).parse_template();
}

}  // namespace tpserve::runtime::jinja
