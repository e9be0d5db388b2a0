// One line of a batch job's JSON Lines input (see batch_job.h for the format), parsed into a
// request. Apart from the job runner so that the parser of untrusted lines builds and is fuzzed on
// its own (tests/fuzz/batch_line_fuzz.cc) without the engine.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "runtime/engine/engine.h"
#include "runtime/tokenizer/chat_template.h"
#include "runtime/tokenizer/tokenizer.h"

namespace tpserve::runtime {

// One input line, parsed: a request, or why not. `id` is empty when the line has none.
struct BatchItem {
  int64_t line = 0;  // 1-based
  std::string id;
  bool id_is_number = false;  // written back as a number, as the line had it
  GenerationRequest request;
  std::string error;  // non-empty: the line is malformed; it becomes an error record
};

struct BatchContext {
  const Tokenizer* tokenizer = nullptr;          // null: only prompt_ids lines are possible
  const ChatTemplate* chat_template = nullptr;   // null: "messages" lines are refused
  SamplingParams defaults;                       // fields a line leaves out
};

// Parses one line. Never throws for bad input: the reason (naming the field) goes to item.error.
BatchItem parse_batch_line(std::string_view line, int64_t line_number, const BatchContext& context);

}  // namespace tpserve::runtime
