// Batch generation from a JSON Lines file (`tpserve generate --input prompts.jsonl --output
// out.jsonl`). Each input line is one request:
//
//   {"id": "q1", "prompt": "text"}                        (or "messages": [{"role", "content"}...],
//   {"id": 7, "prompt_ids": [1, 2, 3], "max_tokens": 32}   or "prompt_ids"), plus any sampling field
//                                                          of SamplingParams by its snake_case name
//
// Each result is appended to the output as one line as soon as its request finishes, flushed:
//
//   {"id": "q1", "choices": [{"index": 0, "text": "...", "token_ids": [...], "finish_reason": "length"}],
//    "usage": {"prompt_tokens": 5, "completion_tokens": 16}}
//   {"id": "q2", "line": 2, "error": "temperature must be ..."}   (a bad line is never fatal; the
//   {"id": null, "line": 3, "error": "not valid JSON"}              id is null where it has none)
//
// A killed job loses at most the requests in flight: re-running the same command reads the output,
// drops a last line cut short by the kill, and skips every id already there.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/engine/batch_line.h"
#include "runtime/engine/engine.h"

namespace tpserve::runtime {

// What `output` already records: the ids of results and error records, and the input line numbers
// of error records that have no usable id (no id, a repeated id, not JSON). A final line without
// a newline — cut short by a kill — is removed from the file so that appending stays well-formed.
// A missing file records nothing. (Resuming assumes the same input file.)
struct BatchRecorded {
  std::set<std::string> ids;
  std::set<int64_t> error_lines;
};
BatchRecorded recorded_batch_ids(const std::filesystem::path& output);

struct BatchOptions {
  std::filesystem::path input;
  std::filesystem::path output;
  size_t max_in_flight = 64;  // requests handed to the engine at once
  bool progress = true;       // progress line on stderr
};

struct BatchSummary {
  int64_t lines = 0;
  int64_t skipped = 0;    // already in the output
  int64_t completed = 0;
  int64_t failed = 0;     // malformed lines and refused requests (error records written)
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  double seconds = 0;
  bool interrupted = false;  // the engine went away before every request finished
};

// Rank 0, on a thread other than the one running engine.run(): reads the input, feeds the engine,
// appends results, then shuts the engine down. Input/output file problems raise tpserve::Error
// naming the file (the engine is shut down first).
BatchSummary run_batch(Engine& engine, const BatchContext& context, const BatchOptions& options);

}  // namespace tpserve::runtime
