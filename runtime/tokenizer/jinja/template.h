// A small Jinja implementation for Hugging Face chat templates.
//
// Why our own: Debian packages no C++ Jinja library, and a chat template is code shipped with the
// checkpoint that must render exactly as transformers renders it. This implements the subset real
// chat templates use, in the environment transformers builds for them
// (utils/chat_template_utils.py: ImmutableSandboxedEnvironment(trim_blocks=True,
// lstrip_blocks=True, extensions=[loopcontrols]) with globals raise_exception and strftime_now and
// a tojson filter that is json.dumps(x, ensure_ascii=False, indent=None, separators=None,
// sort_keys=False)): {{ }}, {% %}, {# #}, whitespace control, for/else with loop.*, break and
// continue, if/elif/else, set (also block set and namespace attributes), macros, the filters and
// tests in builtins.h, slicing, str / dict methods, and Python's operators. Undefined variables
// behave like jinja2's default Undefined. Checked byte for byte against Python jinja2 on the real
// templates in tests/fixtures/chat_templates/.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace tpserve::runtime::jinja {

struct Stmt;

// Guards against runaway templates (a loop over range(10**9), macro recursion, huge repeats).
// Values also nest at most kMaxValueDepth (value.h) deep, Python's recursion limit.
struct RenderLimits {
  size_t max_output_bytes = size_t{64} << 20;
  int max_call_depth = 64;
  int64_t max_steps = 10'000'000;  // statements executed and loop iterations, together
};

class Template {
 public:
  // Parses `source`. A syntax error throws tpserve::Error(kInvalidArgument) "<name>, line N: ...";
  // a source that is not valid UTF-8, "invalid UTF-8 in <name> at byte offset N ...".
  Template(std::string_view source, std::string name);
  ~Template();
  Template(Template&&) noexcept;
  Template& operator=(Template&&) noexcept;

  // Renders with the variables of `context` (a JSON object). raise_exception('msg') in the
  // template, and any runtime error (an undefined attribute, a type error, a limit), throw
  // tpserve::Error(kInvalidArgument) "<name>, line N: msg".
  std::string render(const nlohmann::ordered_json& context, const RenderLimits& limits = {}) const;

  const std::string& name() const { return name_; }

 private:
  std::string name_;
  std::shared_ptr<const std::vector<std::unique_ptr<Stmt>>> body_;
};

}  // namespace tpserve::runtime::jinja
