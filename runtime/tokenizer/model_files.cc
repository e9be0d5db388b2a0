#include "runtime/tokenizer/model_files.h"

#include <charconv>
#include <cfloat>
#include <climits>
#include <cstdint>
#include <fstream>
#include <sstream>

#include "common/error.h"
#include "common/field_table.h"

namespace tpserve::runtime {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using enum FieldUse;

// tokenizer_config.json (transformers' PreTrainedTokenizerBase.__init__ and its save_pretrained).
// The tokenizer's own file (tokenizer.json, qwen.tiktoken, tokenizer.model) defines the vocabulary
// and the splitting; these fields adjust it or describe it.
constexpr FieldRule kTokenizerConfigFields[] = {
    {"bos_token", kSupported, "the BOS token's text"},
    {"eos_token", kSupported, "an EOS token's text"},
    {"add_bos_token", kSupported, "prepend BOS when encoding"},
    {"add_eos_token", kSupported, "append EOS when encoding"},
    {"chat_template", kSupported, "the Jinja chat template"},
    {"added_tokens_decoder", kSupported, "added and special tokens by id"},
    // Special tokens written in a prompt are split as plain text: not implemented.
    {"split_special_tokens", kRefused, "splitting special tokens as text is not supported"},
    {"do_lower_case", kRefused, "lower-casing the input is not supported"},
    {"tokenizer_class", kHarmless, "transformers' class name; the files decide"},
    {"backend", kHarmless, "transformers 5's implementation choice; the files decide"},
    {"auto_map", kHarmless, "remote-code class names"},
    {"name_or_path", kHarmless, "bookkeeping"},
    {"processor_class", kHarmless, "bookkeeping"},
    {"model_max_length", kHarmless, "truncation limit; the context is config.json's"},
    {"model_input_names", kHarmless, "Python tensor names"},
    {"padding_side", kHarmless, "batch padding, which tpserve never does"},
    {"truncation_side", kHarmless, "tpserve refuses long prompts instead of truncating"},
    {"pad_token", kHarmless, "padding, which tpserve never does"},
    {"unk_token", kHarmless, "the tokenizer file names its unknown token"},
    {"sep_token", kHarmless, "not used by decoder-only prompts"},
    {"cls_token", kHarmless, "not used by decoder-only prompts"},
    {"mask_token", kHarmless, "not used by decoder-only prompts"},
    {"additional_special_tokens", kHarmless, "listed again in added_tokens_decoder / tokenizer.json"},
    {"extra_special_tokens", kHarmless, "listed again in added_tokens_decoder / tokenizer.json"},
    {"errors", kHarmless, "invalid UTF-8 is replaced on decode, as with 'replace'"},
    {"clean_up_tokenization_spaces", kHarmless,
     "decode-time space cosmetics, not applied (as vLLM's incremental detokenizer)"},
    {"spaces_between_special_tokens", kHarmless, "slow-tokenizer decode cosmetics"},
    {"use_default_system_prompt", kHarmless, "the chat template decides"},
    {"sp_model_kwargs", kHarmless, "SentencePiece sampling options for training"},
    {"tokenizer_file", kHarmless, "file names"},
    {"vocab_file", kHarmless, "file names"},
    {"merges_file", kHarmless, "file names"},
};

// generation_config.json (transformers' GenerationConfig). The sampling defaults tpserve applies
// to a request's unset fields are supported; strategies a request cannot choose in tpserve (beam
// search, n-gram bans, ...) are defaults of transformers' generate(), not of the model's math:
// tpserve, like vLLM, does not apply them.
constexpr FieldRule kGenerationConfigFields[] = {
    {"do_sample", kSupported, "false: greedy by default"},
    {"temperature", kSupported, "default temperature"},
    {"top_p", kSupported, "default top_p"},
    {"top_k", kSupported, "default top_k"},
    {"min_p", kSupported, "default min_p"},
    {"repetition_penalty", kSupported, "default repetition_penalty"},
    {"eos_token_id", kSupported, "stop tokens"},
    {"bos_token_id", kHarmless, "the prompt's BOS comes from the tokenizer settings"},
    {"pad_token_id", kHarmless, "padding, which tpserve never does"},
    {"decoder_start_token_id", kHarmless, "encoder-decoder only"},
    {"transformers_version", kHarmless, "the writer's version"},
    {"_from_model_config", kHarmless, "bookkeeping"},
    {"max_length", kHarmless, "a request's max_tokens decides"},
    {"max_new_tokens", kHarmless, "a request's max_tokens decides"},
    {"min_length", kHarmless, "not applied by default"},
    {"min_new_tokens", kHarmless, "not applied by default"},
    {"max_time", kHarmless, "a request's deadline decides"},
    {"stop_strings", kHarmless, "a request's stop decides"},
    {"early_stopping", kHarmless, "beam search only"},
    {"num_beams", kHarmless, "beam search is not offered; requests sample or decode greedily"},
    {"num_beam_groups", kHarmless, "beam search only"},
    {"diversity_penalty", kHarmless, "beam search only"},
    {"length_penalty", kHarmless, "beam search only"},
    {"penalty_alpha", kHarmless, "contrastive search is not offered"},
    {"dola_layers", kHarmless, "DoLa decoding is not offered"},
    {"typical_p", kHarmless, "not applied by default (not a request field)"},
    {"epsilon_cutoff", kHarmless, "not applied by default (not a request field)"},
    {"eta_cutoff", kHarmless, "not applied by default (not a request field)"},
    {"encoder_repetition_penalty", kHarmless, "encoder-decoder only"},
    {"encoder_no_repeat_ngram_size", kHarmless, "encoder-decoder only"},
    {"no_repeat_ngram_size", kHarmless, "not applied by default (not a request field)"},
    {"bad_words_ids", kHarmless, "not applied by default (not a request field)"},
    {"force_words_ids", kHarmless, "not applied by default (not a request field)"},
    {"suppress_tokens", kHarmless, "not applied by default (not a request field)"},
    {"begin_suppress_tokens", kHarmless, "not applied by default (not a request field)"},
    {"forced_bos_token_id", kHarmless, "not applied by default (not a request field)"},
    {"forced_eos_token_id", kHarmless, "not applied by default (not a request field)"},
    {"forced_decoder_ids", kHarmless, "not applied by default (not a request field)"},
    {"sequence_bias", kHarmless, "not applied by default (not a request field)"},
    {"exponential_decay_length_penalty", kHarmless, "not applied by default (not a request field)"},
    {"renormalize_logits", kHarmless, "log-probabilities are always normalised"},
    {"remove_invalid_values", kHarmless, "not applied by default"},
    {"guidance_scale", kHarmless, "classifier-free guidance is not offered"},
    {"num_return_sequences", kHarmless, "a request's n decides"},
    {"use_cache", kHarmless, "KV caching: same math"},
    {"cache_implementation", kHarmless, "KV cache layout: same math"},
    {"output_attentions", kHarmless, "extra outputs"},
    {"output_hidden_states", kHarmless, "extra outputs"},
    {"output_scores", kHarmless, "extra outputs"},
    {"output_logits", kHarmless, "extra outputs"},
    {"return_dict_in_generate", kHarmless, "Python return type"},
    // Qwen v1's generation_config.json: its chat() helper's prompt format and history window.
    {"chat_format", kHarmless, "Qwen v1 chat() helper; the chat template decides"},
    {"max_window_size", kHarmless, "Qwen v1 chat() history window"},
};

// tokenizer_config.json writes a token either as "text" or as {"content": "text", ...}.
std::optional<std::string> token_text(const json& value) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_object() && value.contains("content") && value["content"].is_string()) {
    return value["content"].get<std::string>();
  }
  return std::nullopt;
}

void read_ids(const json& value, std::vector<int32_t>& out) {
  if (value.is_number_integer()) {
    out.push_back(value.get<int32_t>());
  } else if (value.is_array()) {
    for (const auto& id : value) {
      if (id.is_number_integer()) out.push_back(id.get<int32_t>());
    }
  }
}

void read_tokenizer_config(const fs::path& path, TokenizerSettings& settings) {
  json config = read_json_file(path);
  if (!config.is_object()) raise(ErrorCode::kDataLoss, "{}: expected a JSON object", path.string());
  settings.unknown_fields = check_fields(config, path, {kTokenizerConfigFields});
  warn_unknown_fields(path, settings.unknown_fields);
  if (config.contains("bos_token")) settings.bos_token = token_text(config["bos_token"]);
  if (config.contains("eos_token")) settings.eos_token = token_text(config["eos_token"]);
  if (config.contains("add_bos_token") && config["add_bos_token"].is_boolean()) {
    settings.add_bos_token = config["add_bos_token"].get<bool>();
  }
  if (config.contains("add_eos_token") && config["add_eos_token"].is_boolean()) {
    settings.add_eos_token = config["add_eos_token"].get<bool>();
  }
  if (config.contains("chat_template") && config["chat_template"].is_string()) {
    settings.chat_template = config["chat_template"].get<std::string>();
  }
  if (config.contains("added_tokens_decoder")) {
    const json& decoder = config["added_tokens_decoder"];
    if (!decoder.is_object()) {
      raise(ErrorCode::kDataLoss, "{}: added_tokens_decoder is not an object", path.string());
    }
    for (const auto& [key, entry] : decoder.items()) {
      AddedToken token;
      // The key is the token's id: a whole non-negative decimal integer ("12abc" or "-5" is not).
      const auto [end, error] = std::from_chars(key.data(), key.data() + key.size(), token.id);
      if (error != std::errc() || end != key.data() + key.size() || token.id < 0) {
        raise(ErrorCode::kDataLoss, "{}: added_tokens_decoder[\"{}\"]: the key is not a token id "
              "(a non-negative integer below 2^31)", path.string(), key);
      }
      try {
        token.content = entry.at("content").get<std::string>();
        token.special = entry.value("special", true);
        token.lstrip = entry.value("lstrip", false);
        token.rstrip = entry.value("rstrip", false);
      } catch (const std::exception& e) {
        raise(ErrorCode::kDataLoss, "{}: added_tokens_decoder[\"{}\"] is malformed: {}", path.string(), key,
              e.what());
      }
      settings.added_tokens.push_back(std::move(token));
    }
  }
}

void read_model_config(const fs::path& path, TokenizerSettings& settings) {
  json config = read_json_file(path);
  if (!config.is_object()) raise(ErrorCode::kDataLoss, "{}: expected a JSON object", path.string());
  if (config.contains("model_type") && config["model_type"].is_string()) {
    settings.model_type = config["model_type"].get<std::string>();
  }
  if (config.contains("bos_token_id") && config["bos_token_id"].is_number_integer()) {
    settings.bos_token_id = config["bos_token_id"].get<int32_t>();
  }
  if (config.contains("eos_token_id")) read_ids(config["eos_token_id"], settings.eos_token_ids);
}

[[noreturn]] void generation_field_error(const fs::path& path, const char* field,
                                        const json& value, const char* expected) {
  raise(ErrorCode::kInvalidArgument, "{}: field '{}': expected {}, got {}", path.string(), field,
        expected, value.dump());
}

// A number in [low, high] (exclusive of low when `open_low`), finite.
std::optional<float> generation_number(const fs::path& path, const json& config, const char* field,
                                       double low, double high, bool open_low, const char* expected) {
  if (!config.contains(field) || config[field].is_null()) return std::nullopt;
  const json& value = config[field];
  if (!value.is_number()) generation_field_error(path, field, value, expected);
  const double number = value.get<double>();
  if (!(open_low ? number > low : number >= low) || !(number <= high)) {
    generation_field_error(path, field, value, expected);
  }
  return static_cast<float>(number);
}

}  // namespace

GenerationConfig read_generation_config(const fs::path& model_dir) {
  GenerationConfig generation;
  const fs::path path = model_dir / "generation_config.json";
  if (!fs::exists(path)) return generation;
  const json config = read_json_file(path);
  if (!config.is_object()) raise(ErrorCode::kDataLoss, "{}: expected a JSON object", path.string());
  generation.present = true;
  generation.unknown_fields = check_fields(config, path, {kGenerationConfigFields});
  warn_unknown_fields(path, generation.unknown_fields);
  if (config.contains("do_sample") && !config["do_sample"].is_null()) {
    if (!config["do_sample"].is_boolean()) {
      generation_field_error(path, "do_sample", config["do_sample"], "true or false");
    }
    generation.do_sample = config["do_sample"].get<bool>();
  }
  // The ranges the request fields accept (sampling_params.h).
  generation.temperature = generation_number(path, config, "temperature", 0.0, FLT_MAX, false,
                                             "a finite number >= 0");
  generation.top_p = generation_number(path, config, "top_p", 0.0, 1.0, true, "a number in (0, 1]");
  generation.min_p = generation_number(path, config, "min_p", 0.0, 1.0, false, "a number in [0, 1]");
  generation.repetition_penalty = generation_number(path, config, "repetition_penalty", 0.0, FLT_MAX,
                                                    true, "a finite number > 0");
  if (config.contains("top_k") && !config["top_k"].is_null()) {
    const json& value = config["top_k"];
    if (!value.is_number_integer() || value.get<int64_t>() < 0 || value.get<int64_t>() > INT32_MAX) {
      generation_field_error(path, "top_k", value, "an integer >= 0");
    }
    generation.top_k = static_cast<int32_t>(value.get<int64_t>());
  }
  if (config.contains("eos_token_id") && !config["eos_token_id"].is_null()) {
    const json& value = config["eos_token_id"];
    const json ids = value.is_array() ? value : json::array({value});
    for (const json& id : ids) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX) {
        generation_field_error(path, "eos_token_id", value, "a token id or a list of them");
      }
      generation.eos_token_ids.push_back(static_cast<int32_t>(id.get<int64_t>()));
    }
  }
  return generation;
}

json read_json_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) raise(ErrorCode::kNotFound, "{}: cannot open", path.string());
  std::stringstream buffer;
  buffer << in.rdbuf();
  try {
    return json::parse(buffer.str());
  } catch (const json::exception& e) {
    raise(ErrorCode::kDataLoss, "{}: not valid JSON: {}", path.string(), e.what());
  }
}

TokenizerSettings read_tokenizer_settings(const fs::path& model_dir) {
  TokenizerSettings settings;
  if (fs::exists(model_dir / "tokenizer_config.json")) {
    read_tokenizer_config(model_dir / "tokenizer_config.json", settings);
  }
  if (fs::exists(model_dir / "config.json")) read_model_config(model_dir / "config.json", settings);
  const GenerationConfig generation = read_generation_config(model_dir);
  settings.eos_token_ids.insert(settings.eos_token_ids.end(), generation.eos_token_ids.begin(),
                                generation.eos_token_ids.end());
  return settings;
}

}  // namespace tpserve::runtime
