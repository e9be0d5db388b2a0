// From the wire to the engine: prompts (text, token ids or chat) to token ids, sampling fields to
// SamplingParams with the API's defaults. Every rejection is a tpserve::Error naming the field.
#pragma once

#include <vector>

#include "runtime/engine/sampling_params.h"
#include "runtime/tokenizer/chat_template.h"
#include "runtime/tokenizer/tokenizer.h"
#include "tpserve/v1/generation.pb.h"

namespace tpserve::rpc {

// The chat template, when the model has a tokenizer.
struct PromptContext {
  const runtime::Tokenizer* tokenizer = nullptr;
  const runtime::ChatTemplate* chat_template = nullptr;
};

std::vector<int32_t> prompt_ids(const v1::GenerateRequest& request, const PromptContext& context);

std::vector<int32_t> tokenize(const v1::TokenizeRequest& request, const PromptContext& context);

// The request's fields over `defaults` (the engine's sampling_defaults()): a field the request
// sets always wins, an unset one takes the default.
runtime::SamplingParams sampling_params(const v1::SamplingParams& wire,
                                        const runtime::SamplingParams& defaults);

}  // namespace tpserve::rpc
