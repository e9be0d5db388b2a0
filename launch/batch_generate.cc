#include "launch/batch_generate.h"

#include <cstdio>
#include <filesystem>
#include <thread>

#include "common/error.h"
#include "common/log.h"
#include "parallel/mpi_communicator.h"
#include "runtime/engine/batch_job.h"
#include "runtime/engine/engine.h"
#include "runtime/tokenizer/chat_template.h"

namespace tpserve::launch {

int run_batch_generate(const BatchGenerateOptions& options) {
  parallel::MpiSession session;
  parallel::MpiCommunicator comm(MPI_COMM_WORLD, options.rank.collective_timeout());
  configure_cpu_threads(session);
  ServingRank rank;
  std::optional<runtime::ChatTemplate> chat_template;
  const bool loaded = run_phase(comm, "load", [&] {
    if (comm.rank() == 0 && !std::filesystem::is_regular_file(options.input)) {
      raise(ErrorCode::kNotFound, "--input {}: no such file", options.input);
    }
    ServingRankOptions serving;
    serving.model_dir = options.model_dir;
    serving.lora_dir = options.lora_dir;
    serving.max_seqs = options.max_seqs;
    serving.kv_cache_mib = options.kv_cache_mib;
    serving.rank = options.rank;
    serving.speculative_ngram = options.engine.speculative_ngram;
    load_serving_rank(rank, comm, serving);
    if (rank.tokenizer) {
      try {
        chat_template = runtime::chat_template_for_model(options.model_dir, *rank.tokenizer, options.chat_template_file);
      } catch (const Error& e) {
        if (e.code() != ErrorCode::kUnimplemented) throw;
        log().warn("{}: lines with messages will be error records", e.what());
      }
    }
  });
  if (!loaded) return 1;
  comm.set_timeout(options.rank.step_timeout());
  if (comm.rank() != 0) {
    runtime::Engine::follow(*rank.model, comm);
    return 0;
  }
  runtime::EngineOptions engine_options = options.engine;
  engine_options.max_queued_requests = std::max(64, 2 * options.max_seqs);
  runtime::Engine engine(*rank.model, comm, rank.tokenizer.get(), engine_options);

  runtime::BatchContext context;
  context.tokenizer = rank.tokenizer.get();
  context.chat_template = chat_template ? &*chat_template : nullptr;
  context.defaults = engine.sampling_defaults();  // generation_config.json's, as in serve
  context.defaults.max_tokens = options.max_tokens;
  context.defaults.ignore_eos = options.ignore_eos;
  runtime::BatchOptions batch;
  batch.input = options.input;
  batch.output = options.output;
  batch.max_in_flight = static_cast<size_t>(engine_options.max_queued_requests);
  batch.progress = options.progress;

  // The engine owns this (the MPI) thread; the batch driver feeds it from another.
  runtime::BatchSummary summary;
  std::optional<Error> failure;
  std::thread driver([&] {
    try {
      summary = runtime::run_batch(engine, context, batch);
    } catch (const Error& e) {
      failure = e;
    }
  });
  engine.run();
  driver.join();
  if (failure) {
    log().error("{}", failure->what());
    return 1;
  }
  std::printf("batch: %lld lines, %lld completed, %lld failed (error records), %lld skipped (already in %s)\n",
              static_cast<long long>(summary.lines), static_cast<long long>(summary.completed),
              static_cast<long long>(summary.failed), static_cast<long long>(summary.skipped),
              options.output.c_str());
  std::printf("batch: %lld prompt tokens, %lld generated tokens in %.2f s (%.1f generated tokens/s)\n",
              static_cast<long long>(summary.prompt_tokens),
              static_cast<long long>(summary.completion_tokens), summary.seconds,
              summary.seconds > 0 ? summary.completion_tokens / summary.seconds : 0.0);
  const runtime::EngineStats stats = engine.stats();
  std::printf("batch: %lld preemptions; prefix cache served %lld of %lld prompt tokens; %lld n-gram "
              "drafts, %lld accepted; %lld steps\n",
              static_cast<long long>(stats.preemptions), static_cast<long long>(stats.prefix_hit_tokens),
              static_cast<long long>(stats.prefix_query_tokens), static_cast<long long>(stats.draft_tokens),
              static_cast<long long>(stats.accepted_draft_tokens), static_cast<long long>(stats.steps));
  std::fflush(stdout);
  if (summary.interrupted) {
    log().error("the engine stopped before every request finished; re-run the same command to resume");
    return 1;
  }
  return 0;
}

}  // namespace tpserve::launch
