// The real chat templates of Qwen2/2.5, Qwen1.5(-MoE), InternLM2, ChatGLM3, Llama-2/3, Mistral
// v0.1-v0.3 and SmolLM2 rendered by our Jinja engine, byte for byte against Python jinja2 in
// transformers' environment (tests/fixtures/chat_templates/make_expected.py wrote expected.json).
#include <gtest/gtest.h>

#include <fstream>
#include <functional>
#include <sstream>

#include "common/error.h"
#include "runtime/tokenizer/jinja/template.h"
#include "tests/test_support.h"

namespace tpserve::runtime::jinja {
namespace {

using nlohmann::ordered_json;

std::filesystem::path fixture(const std::string& name) {
  return testing::fixtures_dir() / "chat_templates" / name;
}

std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

TEST(ChatTemplateJinjaTest, RealTemplatesMatchPythonJinja2) {
  ordered_json expected = ordered_json::parse(read_text(fixture("expected.json")));
  int checked = 0, errors = 0;
  for (const auto& entry : expected["templates"]) {
    const std::string file = entry["file"];
    Template tmpl(read_text(fixture(file)), file);
    for (const auto& c : entry["cases"]) {
      SCOPED_TRACE(file + " " + c["name"].get<std::string>());
      if (c.contains("expected")) {
        EXPECT_EQ(tmpl.render(c["context"]), c["expected"].get<std::string>());
      } else {
        const std::string kind = c["error"]["kind"];
        try {
          std::string text = tmpl.render(c["context"]);
          ADD_FAILURE() << "rendered instead of failing with " << kind << ": " << text;
        } catch (const Error& e) {
          EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
          // A template's own raise_exception message reaches the caller unchanged.
          if (kind == "raise_exception") {
            EXPECT_NE(std::string(e.what()).find(c["error"]["message"].get<std::string>()), std::string::npos)
                << e.what();
          }
          EXPECT_NE(std::string(e.what()).find(file), std::string::npos) << e.what();
        }
        ++errors;
      }
      ++checked;
    }
  }
  EXPECT_EQ(checked, 242);
  EXPECT_GT(errors, 20);
}

// One small template per construct (whitespace control, loops, set/namespace, macros, filters,
// tests, slicing, methods, operators, literals, errors), rendered by jinja2 the same way.
TEST(ChatTemplateJinjaTest, EachConstructMatchesPythonJinja2) {
  ordered_json expected = ordered_json::parse(read_text(fixture("expected.json")));
  int checked = 0;
  for (const auto& c : expected["constructs"]) {
    const std::string name = c["name"];
    SCOPED_TRACE(name);
    Template tmpl(c["template"].get<std::string>(), name);
    if (c.contains("expected")) {
      EXPECT_EQ(tmpl.render(c["context"]), c["expected"].get<std::string>());
    } else {
      try {
        tmpl.render(c["context"]);
        ADD_FAILURE() << "rendered instead of failing";
      } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
        EXPECT_NE(std::string(e.what()).find(c["error"]["message"].get<std::string>()), std::string::npos) << e.what();
      }
    }
    ++checked;
  }
  EXPECT_GE(checked, 35);
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    return e.what();
  }
  ADD_FAILURE() << "no error";
  return "";
}

TEST(ChatTemplateJinjaTest, SyntaxErrorsNameTheSourceAndLine) {
  EXPECT_EQ(error_of([] { Template("line one\n{% if x %}\nunclosed", "my.jinja"); }),
            "my.jinja, line 3: unexpected end of template, expected 'endif'");
  EXPECT_EQ(error_of([] { Template("a\n\n{{ x | nosuchfilter }}", "t.jinja"); }), "t.jinja, line 3: No filter named 'nosuchfilter'.");
  EXPECT_EQ(error_of([] { Template("{% for x in y %}{% endif %}", "t.jinja"); }),
            "t.jinja, line 1: Encountered unknown or unsupported tag 'endif'");
  EXPECT_EQ(error_of([] { Template("{{ 'abc }}", "t.jinja"); }), "t.jinja, line 1: unterminated string");
  EXPECT_EQ(error_of([] { Template("{% break %}", "t.jinja"); }), "t.jinja, line 1: 'break' outside of a loop");
  EXPECT_EQ(error_of([] { Template("\n{{ x is nosuchtest }}", "t.jinja"); }), "t.jinja, line 2: No test named 'nosuchtest'.");
  EXPECT_EQ(error_of([] { Template("{% include 'x' %}", "t.jinja"); }),
            "t.jinja, line 1: Encountered unknown or unsupported tag 'include'");
}

TEST(ChatTemplateJinjaTest, RuntimeErrorsNameTheLine) {
  Template tmpl("ok\n{% for m in messages %}\n{{ m.content.nothing.deeper }}\n{% endfor %}", "rt.jinja");
  ordered_json context = {{"messages", {{{"content", "x"}}}}};
  EXPECT_EQ(error_of([&] { tmpl.render(context); }), "rt.jinja, line 3: 'str object' has no attribute 'nothing'");
  Template raiser("\n\n{{ raise_exception('System role not supported') }}", "r.jinja");
  EXPECT_EQ(error_of([&] { raiser.render(ordered_json::object()); }), "r.jinja, line 3: System role not supported");
}

TEST(ChatTemplateJinjaTest, RunawayTemplatesStop) {
  RenderLimits limits;
  limits.max_steps = 10000;
  EXPECT_NE(error_of([&] { Template("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "loop")
                               .render(ordered_json::object(), limits); })
                .find("steps"),
            std::string::npos);
  EXPECT_NE(error_of([] { Template("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "rec").render(ordered_json::object()); })
                .find("nest deeper"),
            std::string::npos);
  limits = RenderLimits();
  limits.max_output_bytes = 1000;
  EXPECT_NE(error_of([&] { Template("{% for i in range(1000) %}xxxxxxxxxx{% endfor %}", "big").render(ordered_json::object(), limits); })
                .find("exceeds 1000 bytes"),
            std::string::npos);
  EXPECT_NE(error_of([&] { Template("{{ 'x' * 100000000000 }}", "rep").render(ordered_json::object(), limits); }).find("limit"),
            std::string::npos);
  EXPECT_NE(error_of([] { Template("{{ range(1000000) | length }}", "range").render(ordered_json::object()); }).find("MAX_RANGE"),
            std::string::npos);
  const std::string deep = "{{ " + std::string(500, '(') + "1" + std::string(500, ')') + " }}";
  EXPECT_NE(error_of([&] { Template(deep, "deep"); }).find("nests deeper"), std::string::npos);
}

// Found by the chat_template fuzz target: escapes with too few hex digits ("\xZZ" reached
// std::stoul, which threw std::invalid_argument and ended the process), code points past U+10FFFF
// or in the surrogates, float literals past a double's range and huge attribute indices.
TEST(ChatTemplateJinjaTest, LiteralsOutsideTheirRangeAreErrorsOrPythonValues) {
  EXPECT_EQ(error_of([] { Template("{{ '\\xZZ' }}", "t"); }), "t, line 1: truncated \\xXX escape");
  EXPECT_EQ(error_of([] { Template("{{ '\\u12G4' }}", "t"); }), "t, line 1: truncated \\uXXXX escape");
  EXPECT_EQ(error_of([] { Template("{{ '\\U0001F60' }}", "t"); }),
            "t, line 1: truncated \\UXXXXXXXX escape");
  EXPECT_EQ(error_of([] { Template("{{ '\\x4", "t"); }), "t, line 1: truncated \\xXX escape");
  EXPECT_EQ(error_of([] { Template("{{ '\\U00110000' }}", "t"); }), "t, line 1: illegal Unicode character");
  EXPECT_EQ(error_of([] { Template("{{ '\\ud800' }}", "t"); }), "t, line 1: illegal Unicode character");
  EXPECT_EQ(Template("{{ '\\x41\\u00e9\\U0001F600' }}", "t").render(ordered_json::object()),
            "A\u00e9\U0001F600");
  // Invalid UTF-8 in the source (a Python str cannot hold it): refused naming the byte. It used to
  // reach str.strip(), whose decoder did not advance past the byte and filled memory.
  EXPECT_EQ(error_of([] { Template("{{ 'a\xC0" "b'.strip() }}", "t"); }),
            "invalid UTF-8 in t at byte offset 5 (byte 0xC0)");
  // Strings from the context are decoded leniently: an ill-formed byte is U+FFFD, never a hang.
  EXPECT_EQ(Template("{{ s.strip() | length }}", "t").render({{"s", " a\xC0\xE4" "b "}}), "4");
  // Python's float(): inf and 0.0.
  EXPECT_EQ(Template("{{ 1e999 }} {{ 1e-999 }}", "t").render(ordered_json::object()), "inf 0.0");
  EXPECT_EQ(error_of([] { Template("{{ x.99999999999999999999 }}", "t"); }),
            "t, line 1: integer index out of range");
  EXPECT_EQ(Template("{{ [[1]] | map(attribute='99999999999999999999') | list | length }}", "t")
                .render(ordered_json::object()),
            "1");
}

// Found by the chat_template fuzz target (a leak under LeakSanitizer: a namespace holding itself is
// a reference cycle); reading on, a loop that wraps a namespace attribute in a list each turn built
// values deep enough that printing, tojson, comparing or freeing them overflowed the stack, and
// tojson recursed forever through a namespace. Values now stop at Python's recursion limit when
// they are made, and tojson refuses a namespace as json.dumps does (the Python side of both
// behaviours is in EachConstructMatchesPythonJinja2).
TEST(ChatTemplateJinjaTest, ValuesNestNoDeeperThanPythonsRecursionLimit) {
  const ordered_json none = ordered_json::object();
  const std::string too_deep = "t, line 1: a value nests deeper than 1000 lists, dicts and namespaces";
  auto wrapped = [](int times, const std::string& wrap) {
    return "{% set ns = namespace(x=0, f=none, head=none) %}{% for i in range(" + std::to_string(times) +
           ") %}{% set " + wrap + " %}{% endfor %}";
  };
  // 999 lists in a namespace: 1000 deep, the most there may be; all of it prints and serializes.
  EXPECT_EQ(Template(wrapped(999, "ns.x = [ns.x]") + "{{ ns.x | tojson | length }} {{ ns.x | string | length }}", "t")
                .render(none),
            "1999 1999");
  EXPECT_EQ(error_of([&] { Template(wrapped(1000, "ns.x = [ns.x]"), "t").render(none); }), too_deep);
  EXPECT_EQ(error_of([&] { Template(wrapped(100000, "ns.x = [{'k': ns.x}]"), "t").render(none); }), too_deep);
  EXPECT_EQ(error_of([&] { Template(wrapped(100000, "ns.head = namespace(next=ns.head)"), "t").render(none); }), too_deep);
  // A bound dict method holds its dict: a chain of them is as deep.
  EXPECT_EQ(error_of([&] { Template(wrapped(100000, "ns.f = {'a': ns.f}.items"), "t").render(none); }), too_deep);
  // 100,000 namespaces linked one to the next after they were made (so each recorded a depth of 1 or
  // 2): the render frees the chain without recursing down it, since it holds every namespace it
  // assigned to until it has emptied them all.
  EXPECT_EQ(Template("{% set ns = namespace(tail=namespace(n=none)) %}{% set ns.head = ns.tail %}"
                     "{% for i in range(100000) %}{% set t = ns.tail %}{% set t.n = namespace(n=none) %}"
                     "{% set ns.tail = t.n %}{% endfor %}{{ ns.head.n.n.n is defined }}",
                     "t")
                .render(none),
            "True");
  // A namespace that holds itself renders as in Python, and the render frees it.
  EXPECT_EQ(Template("{% set ns = namespace(n=1) %}{% set ns.me = [ns, ns] %}{% set ns.f = {'k': ns}.get %}"
                     "{{ ns.me[0].me[1].n }} {{ ns.f('k').n }}",
                     "t")
                .render(none),
            "1 1");
  EXPECT_EQ(error_of([&] { Template("{% set ns = namespace() %}{% set ns.me = [ns] %}{{ ns.me | tojson }}", "t").render(none); }),
            "t, line 1: Object of type Namespace is not JSON serializable");
  // The render context: a JSON document too deep is refused by the variable's name, before any
  // recursion into it can reach the end of the stack.
  ordered_json deep = 0;
  for (int i = 0; i < 100000; ++i) {
    ordered_json outer = ordered_json::array();
    outer.push_back(std::move(deep));
    deep = std::move(outer);
  }
  ordered_json context = ordered_json::object();
  context["messages"] = std::move(deep);
  EXPECT_EQ(error_of([&] { Template("{{ messages | length }}", "t").render(context); }),
            "t: the variable 'messages': a value nests deeper than 1000 lists, dicts and namespaces");
}

// transformers' AssistantTracker extension adds {% generation %}: the body renders as is.
TEST(ChatTemplateJinjaTest, GenerationBlockRendersItsBody) {
  EXPECT_EQ(Template("a{% generation %}b{{ 1 }}{% endgeneration %}c", "g").render(ordered_json::object()), "ab1c");
}

}  // namespace
}  // namespace tpserve::runtime::jinja
