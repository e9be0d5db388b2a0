// `tpserve generate --input prompts.jsonl --output out.jsonl`: a batch job through the
// continuous-batching engine (runtime/engine/batch_job.h has the file formats and the resume rule).
#pragma once

#include <string>

#include "launch/rank_setup.h"
#include "runtime/engine/engine.h"

namespace tpserve::launch {

struct BatchGenerateOptions {
  std::string model_dir;
  std::string lora_dir;
  std::string input;
  std::string output;
  std::string chat_template_file;  // --chat-template
  int max_seqs = 32;
  double kv_cache_mib = 0;  // 0: from the memory plan on a GPU, 256 MiB on the CPU
  int max_tokens = 16;      // default for lines without max_tokens
  bool ignore_eos = false;  // default for lines without ignore_eos
  bool progress = true;
  runtime::EngineOptions engine;  // KV admission, prefix caching (launch/engine_flags.h)
  RankOptions rank;
};

// Every rank; exit code 0 when every request got a record, 1 otherwise.
int run_batch_generate(const BatchGenerateOptions& options);

}  // namespace tpserve::launch
