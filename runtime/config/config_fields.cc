#include "runtime/config/config_fields.h"

namespace tpserve::runtime {

namespace {

using enum FieldUse;

constexpr FieldRule kPretrained[] = {
    // Read by read_common_fields / load_model_config.
    {"architectures", kSupported, "picks the family adapter"},
    {"model_type", kSupported, "ModelConfig::model_type (chat template and stop-token choices)"},
    {"torch_dtype", kSupported, "the checkpoint's dtype"},
    {"dtype", kSupported, "transformers 5's name for torch_dtype"},
    {"eos_token_id", kSupported, "stop tokens"},
    {"bos_token_id", kSupported, "the BOS id"},
    {"tie_word_embeddings", kSupported, "lm_head shares the embedding"},
    {"hidden_act", kSupported, "silu only; others are refused by read_common_fields"},
    {"quantization_config", kSupported, "GPTQ / AWQ settings (runtime/config/quant_config.h)"},
    // Bookkeeping: who wrote the file and how to load it.
    {"transformers_version", kHarmless, "the writer's version"},
    {"_name_or_path", kHarmless, "where the checkpoint came from"},
    {"_commit_hash", kHarmless, "hub revision"},
    {"auto_map", kHarmless, "remote-code class names"},
    {"tokenizer_class", kHarmless, "the tokenizer is read from its own files"},
    {"attn_implementation", kHarmless, "kernel choice (eager/sdpa/flash): same math"},
    {"_attn_implementation_autoset", kHarmless, "kernel choice: same math"},
    {"use_cache", kHarmless, "KV caching: same math"},
    {"initializer_range", kHarmless, "initialisation only"},
    {"pad_token_id", kHarmless, "padding never reaches the decoder here"},
    {"sep_token_id", kHarmless, "not used by a decoder-only model"},
    {"decoder_start_token_id", kHarmless, "encoder-decoder only"},
    {"use_bfloat16", kHarmless, "superseded by torch_dtype"},
    // Outputs, heads and training switches that do not touch the causal LM's logits.
    {"return_dict", kHarmless, "Python return type"},
    {"output_attentions", kHarmless, "extra outputs"},
    {"output_hidden_states", kHarmless, "extra outputs"},
    {"torchscript", kHarmless, "export switch"},
    {"tf_legacy_loss", kHarmless, "training loss"},
    {"pruned_heads", kHarmless, "pruned heads change tensor shapes, which the weight plan checks"},
    {"chunk_size_feed_forward", kHarmless, "chunked MLP: same math"},
    {"is_encoder_decoder", kRefused, "encoder-decoder models are not decoder-only", "false"},
    {"is_decoder", kHarmless, "decoder-only models are decoders"},
    {"add_cross_attention", kRefused, "cross-attention layers are not part of the decoder", "false"},
    {"cross_attention_hidden_size", kHarmless, "only with add_cross_attention"},
    {"tie_encoder_decoder", kHarmless, "encoder-decoder only"},
    {"finetuning_task", kHarmless, "task head metadata"},
    {"id2label", kHarmless, "classification heads"},
    {"label2id", kHarmless, "classification heads"},
    {"num_labels", kHarmless, "classification heads"},
    {"problem_type", kHarmless, "classification heads"},
    {"prefix", kHarmless, "task prompt metadata"},
    {"task_specific_params", kHarmless, "task prompt metadata"},
    // Legacy generation defaults: a request's sampling comes from the request and
    // generation_config.json (runtime/tokenizer/model_files.h), as with transformers >= 4.
    {"max_length", kHarmless, "legacy generation default"},
    {"min_length", kHarmless, "legacy generation default"},
    {"do_sample", kHarmless, "legacy generation default"},
    {"early_stopping", kHarmless, "legacy generation default"},
    {"num_beams", kHarmless, "legacy generation default"},
    {"num_beam_groups", kHarmless, "legacy generation default"},
    {"diversity_penalty", kHarmless, "legacy generation default"},
    {"temperature", kHarmless, "legacy generation default"},
    {"top_k", kHarmless, "legacy generation default"},
    {"top_p", kHarmless, "legacy generation default"},
    {"typical_p", kHarmless, "legacy generation default"},
    {"repetition_penalty", kHarmless, "legacy generation default"},
    {"length_penalty", kHarmless, "legacy generation default"},
    {"no_repeat_ngram_size", kHarmless, "legacy generation default"},
    {"encoder_no_repeat_ngram_size", kHarmless, "legacy generation default"},
    {"bad_words_ids", kHarmless, "legacy generation default"},
    {"num_return_sequences", kHarmless, "legacy generation default"},
    {"output_scores", kHarmless, "legacy generation default"},
    {"return_dict_in_generate", kHarmless, "legacy generation default"},
    {"forced_bos_token_id", kHarmless, "legacy generation default"},
    {"forced_eos_token_id", kHarmless, "legacy generation default"},
    {"remove_invalid_values", kHarmless, "legacy generation default"},
    {"exponential_decay_length_penalty", kHarmless, "legacy generation default"},
    {"suppress_tokens", kHarmless, "legacy generation default"},
    {"begin_suppress_tokens", kHarmless, "legacy generation default"},
};

constexpr FieldRule kLlamaStyle[] = {
    {"hidden_size", kSupported, "ModelConfig::hidden_size"},
    {"intermediate_size", kSupported, "the MLP width"},
    {"vocab_size", kSupported, "embedding / lm_head rows"},
    {"num_hidden_layers", kSupported, "decoder layers"},
    {"num_attention_heads", kSupported, "query heads"},
    {"num_key_value_heads", kSupported, "KV heads (GQA); defaults to num_attention_heads"},
    {"head_dim", kSupported, "per-head width; defaults to hidden_size / num_attention_heads"},
    {"rms_norm_eps", kSupported, "RMSNorm epsilon"},
    {"max_position_embeddings", kSupported, "trained context length"},
    {"rope_theta", kSupported, "rotary base"},
    {"rope_scaling", kSupported, "rotary scaling (keys: kRopeScalingFields)"},
    {"rope_parameters", kSupported, "transformers 5's rope_theta + rope_scaling"},
    {"partial_rotary_factor", kSupported, "fraction of each head that rotates"},
    {"attention_dropout", kHarmless, "training only"},
};

constexpr FieldRule kRopeScaling[] = {
    {"rope_type", kSupported, "default, linear, dynamic, llama3 (others refused by parse_rope)"},
    {"type", kSupported, "older name of rope_type"},
    {"factor", kSupported, "linear / dynamic / llama3 factor"},
    {"low_freq_factor", kSupported, "llama3 band"},
    {"high_freq_factor", kSupported, "llama3 band"},
    {"original_max_position_embeddings", kSupported, "llama3's original context"},
    {"rope_theta", kSupported, "rope_parameters' rotary base"},
    {"partial_rotary_factor", kSupported, "rope_parameters' rotary fraction"},
    // YaRN's keys: transformers reads them only for rope_type "yarn", which parse_rope refuses until
    // the families branch adds it; for every other type they are ignored, as here.
    {"attention_factor", kHarmless, "yarn only"},
    {"beta_fast", kHarmless, "yarn only"},
    {"beta_slow", kHarmless, "yarn only"},
    {"mscale", kHarmless, "yarn only"},
    {"mscale_all_dim", kHarmless, "yarn only"},
    {"truncate", kHarmless, "yarn only"},
};

}  // namespace

const FieldTable kPretrainedConfigFields = kPretrained;
const FieldTable kLlamaStyleFields = kLlamaStyle;
const FieldTable kRopeScalingFields = kRopeScaling;

}  // namespace tpserve::runtime
