// `tpserve tokenize --input FILE|-`: bulk encoding, one output line per input line.
//
// Input, one item a line (FILE, or standard input for "-"):
//   text   each line is one text (its "\n", and a "\r" before it, are not part of the text)
//   jsonl  each line is a JSON object with exactly one of
//            "text": "..." or "prompt": "..."   a text (the batch job's "prompt" lines work as they are)
//            "messages": [{"role", "content"}...]   rendered by the model's chat template
//          other fields (an "id", metadata) are ignored
// Output, one line per input line, in order, on standard output:
//   ids    the ids separated by spaces ("9707 11 1879"): `wc -w` counts tokens, awk/cut/xargs read it
//   json   a JSON array ("[9707,11,1879]")
// A bad line (not JSON, a missing or mistyped field, invalid UTF-8) stops the run with one error
// naming the file and line number; the lines before it have been written.
#pragma once

#include <functional>
#include <string>

#include "runtime/tokenizer/chat_template.h"
#include "runtime/tokenizer/tokenizer.h"

namespace tpserve::launch {

struct TokenizeInputOptions {
  std::string input;         // a path, or "-" for standard input
  std::string input_format;  // "text" or "jsonl"; empty: jsonl for a *.jsonl file, else text
  std::string output_format = "ids";  // "ids" or "json"
  bool chat = false;         // each text becomes a one-turn user chat prompt
  bool add_special = true;   // BOS / prefix tokens on texts (never on chat prompts: the template has them)
  bool progress = true;      // a progress line on stderr every 2 s (long inputs only)
  int bench_rounds = 0;      // > 0: time encode over the whole input this many times, report on stderr
};

// The chat template, loaded on first use (only --chat and "messages" lines need one).
using ChatTemplateSource = std::function<const runtime::ChatTemplate&()>;

// Returns the exit code. Throws tpserve::Error "FILE:LINE: ..." for a bad line.
int run_tokenize_input(const runtime::Tokenizer& tokenizer, const ChatTemplateSource& chat_template,
                       const TokenizeInputOptions& options);

}  // namespace tpserve::launch
