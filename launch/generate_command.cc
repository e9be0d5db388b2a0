// `tpserve generate`: one prompt, greedy decoding, tensor-parallel over the mpirun ranks.
//
//   mpirun -np 2 tpserve generate --model DIR --prompt-ids 1,2,3 --max-tokens 16
//
// Loading is one collective phase: if any rank fails (a bad file, a shape mismatch, a tp size
// that does not fit), every rank learns it and exits non-zero instead of waiting in a collective.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>

#include "common/error.h"
#include "common/log.h"
#include "kernels/ops.h"
#include "launch/command.h"
#include "launch/rank_setup.h"
#include "parallel/mpi_communicator.h"
#include "runtime/block_allocator.h"
#include "runtime/greedy.h"
#include "runtime/model.h"

namespace tpserve::launch {

namespace {

struct GenerateOptions {
  std::string model_dir;
  std::vector<int64_t> prompt_ids;
  int max_tokens = 16;
  bool ignore_eos = false;
  RankOptions rank;
};

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// The prompt is checked before any weight is read.
std::vector<int32_t> checked_prompt(const GenerateOptions& options, const runtime::ModelConfig& config) {
  if (options.prompt_ids.empty()) raise(ErrorCode::kInvalidArgument, "--prompt-ids: empty prompt");
  std::vector<int32_t> prompt;
  for (size_t i = 0; i < options.prompt_ids.size(); ++i) {
    const int64_t id = options.prompt_ids[i];
    if (id < 0 || id >= config.vocab_size) {
      raise(ErrorCode::kOutOfRange, "--prompt-ids: token {} at index {} is outside the vocabulary "
            "[0, {})", id, i, config.vocab_size);
    }
    prompt.push_back(static_cast<int32_t>(id));
  }
  const int64_t total = static_cast<int64_t>(prompt.size()) + options.max_tokens;
  if (total > config.max_position_embeddings) {
    raise(ErrorCode::kOutOfRange, "--prompt-ids + --max-tokens: {} prompt tokens + {} new tokens "
          "= {} exceeds the context length {} (max_position_embeddings)", prompt.size(),
          options.max_tokens, total, config.max_position_embeddings);
  }
  return prompt;
}

void report(const std::vector<int32_t>& generated, double load_s, const runtime::GreedyTimings& t,
            const runtime::Model& model, size_t prompt_tokens) {
  std::printf("tokens: %s\n", fmt::format("{}", fmt::join(generated, ",")).c_str());
  double decode_total = 0;
  for (double s : t.decode_s) decode_total += s;
  const double per_step = t.decode_s.empty() ? 0.0 : decode_total / t.decode_s.size();
  std::printf("load: %.3f s (%.1f MiB of weights per rank)\n", load_s,
              model.weight_bytes() / 1048576.0);
  std::printf("prefill: %zu tokens in %.3f ms\n", prompt_tokens, t.prefill_s * 1e3);
  std::printf("decode: %zu steps, %.3f ms/step (%.1f tokens/s)\n", t.decode_s.size(),
              per_step * 1e3, per_step > 0 ? 1.0 / per_step : 0.0);
  std::fflush(stdout);
}

int run_generate(const GenerateOptions& options) {
  parallel::MpiSession session;
  parallel::MpiCommunicator comm(MPI_COMM_WORLD, options.rank.collective_timeout());
  configure_cpu_threads(session);
  auto backend = kernels::make_cpu_backend();
  const auto start = Clock::now();
  std::unique_ptr<runtime::Model> model;
  std::vector<int32_t> prompt;
  // One collective phase: every rank validates and loads; all learn whether all succeeded.
  const bool ok = run_phase(comm, "load", [&] {
    runtime::ModelConfig config = runtime::load_model_config(options.model_dir);
    prompt = checked_prompt(options, config);
    runtime::ModelOptions model_options = options.rank.model_options();
    model_options.max_seqs = 1;
    model_options.max_logit_rows = 1;
    model_options.num_kv_blocks = runtime::blocks_for(
        static_cast<int64_t>(prompt.size()) + options.max_tokens, model_options.block_size);
    model_options.max_blocks_per_seq = model_options.num_kv_blocks;
    model = load_model(std::move(config), model_options, comm, *backend);
  });
  if (!ok) return 1;
  const double load_s = seconds_since(start);
  runtime::GreedyOptions greedy;
  greedy.max_tokens = options.max_tokens;
  if (!options.ignore_eos) greedy.stop_token_ids = model->config().eos_token_ids;
  runtime::GreedyTimings timings;
  const std::vector<int32_t> generated =
      runtime::generate_greedy(*model, comm, prompt, greedy, &timings);
  if (comm.rank() == 0) report(generated, load_s, timings, *model, prompt.size());
  return 0;
}

}  // namespace

void register_generate_command(CLI::App& app, CommandRunner& runner) {
  auto options = std::make_shared<GenerateOptions>();
  CLI::App* sub = app.add_subcommand("generate", "Generate tokens for one prompt (greedy)");
  sub->add_option("--model", options->model_dir, "Hugging Face model directory")->required();
  sub->add_option("--prompt-ids", options->prompt_ids, "Prompt token ids, comma-separated")
      ->required()
      ->delimiter(',');
  sub->add_option("--max-tokens", options->max_tokens, "Tokens to generate")
      ->check(CLI::Range(1, 1 << 20));
  sub->add_flag("--ignore-eos", options->ignore_eos, "Keep generating past end-of-sequence tokens");
  add_rank_options(*sub, options->rank);
  sub->callback([options, &runner] { runner = [options] { return run_generate(*options); }; });
}

}  // namespace tpserve::launch
