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
#include "launch/batch_generate.h"
#include "launch/engine_flags.h"
#include "launch/command.h"
#include "launch/model_tokenizer.h"
#include "launch/rank_setup.h"
#include "parallel/mpi_communicator.h"
#include "runtime/engine/block_allocator.h"
#include "runtime/engine/greedy.h"
#include "runtime/model/checkpoint_source.h"
#include "runtime/model/model.h"
#include "runtime/tokenizer/chat_template.h"
#include "runtime/tokenizer/tokenizer.h"

namespace tpserve::launch {

namespace {

struct GenerateOptions {
  std::string model_dir;
  std::string lora_dir;  // --lora: PEFT adapter merged at load
  std::vector<int64_t> prompt_ids;
  std::string prompt;         // text, tokenized with the model's tokenizer
  bool text_prompt = false;   // --prompt was given (even if empty)
  bool chat = false;          // --prompt is a user message, rendered with the chat template
  std::string system;         // optional system message for --chat
  std::string chat_template_file;  // --chat-template: instead of the model's own template
  int max_tokens = 16;
  bool ignore_eos = false;
  RankOptions rank;
  BatchGenerateOptions batch;  // --input / --output: a batch job instead of one prompt
};

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Text prompts go through the model's own tokenizer (and chat template with --chat).
std::vector<int64_t> tokenize_prompt(const GenerateOptions& options,
                                     const runtime::Tokenizer& tokenizer) {
  if (options.prompt.empty()) raise(ErrorCode::kInvalidArgument, "--prompt: empty prompt");
  std::vector<int32_t> ids;
  if (options.chat) {
    std::vector<runtime::ChatMessage> messages;
    if (!options.system.empty()) messages.push_back({"system", options.system});
    messages.push_back({"user", options.prompt});
    const runtime::ChatTemplate chat_template =
        runtime::chat_template_for_model(options.model_dir, tokenizer, options.chat_template_file);
    // The rendered text already carries the template's BOS / role tokens.
    ids = tokenizer.encode(runtime::apply_chat_template(chat_template, messages), false);
  } else {
    ids = tokenizer.encode(options.prompt, true);
  }
  return {ids.begin(), ids.end()};
}

// The prompt is checked before any weight is read.
// Errors name the option the user gave: --prompt (its ids come from the tokenizer) or --prompt-ids.
std::vector<int32_t> checked_prompt(const GenerateOptions& options, const runtime::ModelConfig& config,
                                    const std::vector<int64_t>& prompt_ids) {
  const char* flag = options.text_prompt ? "--prompt" : "--prompt-ids";
  if (prompt_ids.empty()) raise(ErrorCode::kInvalidArgument, "{}: empty prompt", flag);
  std::vector<int32_t> prompt;
  for (size_t i = 0; i < prompt_ids.size(); ++i) {
    const int64_t id = prompt_ids[i];
    if (id < 0 || id >= config.vocab_size) {
      raise(ErrorCode::kOutOfRange, "{}: token {} at index {}{} is outside the vocabulary [0, {}) "
            "(vocab_size in config.json)", flag, id, i,
            options.text_prompt ? " of the tokenized prompt" : "", config.vocab_size);
    }
    prompt.push_back(static_cast<int32_t>(id));
  }
  const int64_t total = static_cast<int64_t>(prompt.size()) + options.max_tokens;
  if (total > config.max_position_embeddings) {
    raise(ErrorCode::kOutOfRange, "{} + --max-tokens: {} prompt tokens + {} new tokens "
          "= {} exceeds the context length {} (max_position_embeddings, or the longer context a "
          "rope scaling allows)", flag, prompt.size(), options.max_tokens, total,
          config.max_position_embeddings);
  }
  return prompt;
}

void report(const std::vector<int32_t>& generated, double load_s, const runtime::GreedyTimings& t,
            const runtime::Model& model, size_t prompt_tokens, const runtime::Tokenizer* tokenizer) {
  std::printf("tokens: %s\n", fmt::format("{}", fmt::join(generated, ",")).c_str());
  if (tokenizer != nullptr) {
    // Models pad their vocabulary past the tokenizer's (Qwen2: 152064 rows, 151665 tokens); like
    // Hugging Face's decode, ids with no token contribute no text.
    std::vector<int32_t> known;
    for (int32_t id : generated) {
      if (id < tokenizer->vocab_size()) known.push_back(id);
    }
    std::printf("text: %s\n", tokenizer->decode(known, /*skip_special_tokens=*/true).c_str());
  }
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
  const auto start = Clock::now();
  RankDevice device;
  std::unique_ptr<runtime::Model> model;
  std::unique_ptr<runtime::Tokenizer> tokenizer;
  std::vector<int32_t> prompt;
  // One collective phase: every rank validates and loads; all learn whether all succeeded.
  const bool ok = run_phase(comm, "load", [&] {
    options.rank.kv_dtype();  // a refused --kv-cache-dtype before any device is touched
    device = make_rank_device(options.rank.device, comm, options.rank.collective_timeout());
    runtime::ModelConfig config = runtime::read_model_config(options.model_dir);
    if (options.text_prompt) {
      // Every rank tokenizes the same text the same way; rank 0 alone decides from here on.
      tokenizer = load_tokenizer(options.model_dir);
      prompt = checked_prompt(options, config, tokenize_prompt(options, *tokenizer));
    } else {
      prompt = checked_prompt(options, config, options.prompt_ids);
    }
    runtime::ModelOptions model_options = options.rank.model_options();
    model_options.max_seqs = 1;
    model_options.max_logit_rows = 1;
    model_options.num_kv_blocks = runtime::blocks_for(
        static_cast<int64_t>(prompt.size()) + options.max_tokens, model_options.block_size);
    model_options.max_blocks_per_seq = model_options.num_kv_blocks;
    model = load_model(std::move(config), model_options, *device.model_comm, *device.backend,
                       options.lora_dir);
  });
  if (!ok) return 1;
  comm.set_timeout(options.rank.step_timeout());
  const double load_s = seconds_since(start);
  runtime::GreedyOptions greedy;
  greedy.max_tokens = options.max_tokens;
  if (!options.ignore_eos) {
    greedy.stop_token_ids = model->config().eos_token_ids;
    // Chat models end a turn with the tokenizer's end token (<|im_end|> for ChatML).
    if (tokenizer) {
      for (int32_t id : tokenizer->eos_token_ids()) greedy.stop_token_ids.push_back(id);
    }
  }
  runtime::GreedyTimings timings;
  const std::vector<int32_t> generated =
      runtime::generate_greedy(*model, comm, prompt, greedy, &timings);
  if (comm.rank() == 0) report(generated, load_s, timings, *model, prompt.size(), tokenizer.get());
  return 0;
}

}  // namespace

void register_generate_command(CLI::App& app, CommandRunner& runner) {
  auto options = std::make_shared<GenerateOptions>();
  CLI::App* sub = app.add_subcommand("generate", "Generate tokens for one prompt (greedy)");
  sub->add_option("--model", options->model_dir, "Hugging Face model directory or GGUF file")->required();
  sub->add_option("--lora", options->lora_dir,
                  "PEFT LoRA adapter directory (adapter_config.json + adapter_model.safetensors), "
                  "merged into the weights at load");
  auto* ids = sub->add_option("--prompt-ids", options->prompt_ids, "Prompt token ids, comma-separated")
                   ->delimiter(',');
  auto* text = sub->add_option("--prompt", options->prompt, "Prompt text (uses the model's tokenizer)");
  ids->excludes(text);
  sub->add_flag("--chat", options->chat, "Treat --prompt as a user message in the chat template")
      ->needs(text);
  sub->add_option("--system", options->system, "System message for --chat");
  sub->add_option("--chat-template", options->chat_template_file,
                  "Jinja chat template file, used instead of the one the model ships");

  sub->add_option("--max-tokens", options->max_tokens, "Tokens to generate")
      ->check(CLI::Range(1, 1 << 20));
  sub->add_flag("--ignore-eos", options->ignore_eos, "Keep generating past end-of-sequence tokens");
  auto* input = sub->add_option("--input", options->batch.input,
                                 "Batch job: JSON Lines of requests (id; prompt, messages or "
                                 "prompt_ids; sampling fields)");
  auto* output = sub->add_option("--output", options->batch.output,
                                  "Batch job: JSON Lines of results, appended; ids already there "
                                  "are skipped (resume)");
  input->excludes(ids)->excludes(text)->needs(output);
  output->needs(input);
  sub->add_option("--max-seqs", options->batch.max_seqs, "Batch job: sequences batched in one step")
      ->check(CLI::Range(1, 4096));
  sub->add_option("--kv-cache-mib", options->batch.kv_cache_mib,
                  "Batch job: KV cache per rank, MiB (default: the memory plan's on a GPU, 256 on CPU)")
      ->check(CLI::Range(0.0, 1e7));
  sub->add_flag_callback("--no-progress", [options] { options->batch.progress = false; },
                         "Batch job: no progress line on stderr");
  add_engine_flags(*sub, options->batch.engine);
  add_rank_options(*sub, options->rank);
  sub->callback([options, &runner, ids, text, input] {
    if (input->count() > 0) {
      BatchGenerateOptions& batch = options->batch;
      batch.model_dir = options->model_dir;
      batch.lora_dir = options->lora_dir;
      batch.chat_template_file = options->chat_template_file;
      batch.max_tokens = options->max_tokens;
      batch.ignore_eos = options->ignore_eos;
      batch.rank = options->rank;
      runner = [options] { return run_batch_generate(options->batch); };
      return;
    }
    if (ids->count() == 0 && text->count() == 0) {
      throw CLI::RequiredError("--prompt-ids, --prompt or --input");
    }
    options->text_prompt = text->count() > 0;
    runner = [options] { return run_generate(*options); };
  });
}

}  // namespace tpserve::launch
