#include "rpc/convert.h"

#include <algorithm>

#include "common/error.h"

namespace tpserve::rpc {

namespace {

const runtime::Tokenizer& need_tokenizer(const PromptContext& context, const char* field) {
  if (context.tokenizer == nullptr) {
    raise(ErrorCode::kInvalidArgument, "{}: this model directory has no tokenizer; send token_ids",
          field);
  }
  return *context.tokenizer;
}

// The tokenizer rejects invalid UTF-8 with the byte offset; prefix the field it came from.
std::vector<int32_t> encode(const runtime::Tokenizer& tokenizer, const std::string& text,
                            bool add_special_tokens, const std::string& field) {
  try {
    return tokenizer.encode(text, add_special_tokens);
  } catch (const Error& e) {
    raise(e.code(), "{}: {}", field, e.what());
  }
}

std::vector<int32_t> encode_chat(const v1::ChatMessages& chat, const PromptContext& context,
                                 const char* field) {
  const runtime::Tokenizer& tokenizer = need_tokenizer(context, field);
  if (chat.messages().empty()) raise(ErrorCode::kInvalidArgument, "{}.messages: empty", field);
  std::vector<runtime::ChatMessage> messages;
  for (int i = 0; i < chat.messages_size(); ++i) {
    const v1::ChatMessage& m = chat.messages(i);
    if (m.role() != "system" && m.role() != "user" && m.role() != "assistant") {
      raise(ErrorCode::kInvalidArgument,
            "{}.messages[{}].role: '{}' is not system, user or assistant", field, i, m.role());
    }
    // Check each message's UTF-8 where the field is known.
    encode(tokenizer, m.content(), false, fmt::format("{}.messages[{}].content", field, i));
    messages.push_back({m.role(), m.content()});
  }
  // The rendered text already carries the template's BOS and role tokens.
  return tokenizer.encode(runtime::apply_chat_template(*context.chat_template, messages), false);
}

}  // namespace

std::vector<int32_t> prompt_ids(const v1::GenerateRequest& request, const PromptContext& context) {
  switch (request.prompt_case()) {
    case v1::GenerateRequest::kText:
      if (request.text().empty()) raise(ErrorCode::kInvalidArgument, "prompt.text: empty");
      return encode(need_tokenizer(context, "prompt.text"), request.text(), true, "prompt.text");
    case v1::GenerateRequest::kTokenIds:
      if (request.token_ids().ids().empty()) {
        raise(ErrorCode::kInvalidArgument, "prompt.token_ids: empty");
      }
      return {request.token_ids().ids().begin(), request.token_ids().ids().end()};
    case v1::GenerateRequest::kChat:
      return encode_chat(request.chat(), context, "prompt.chat");
    case v1::GenerateRequest::PROMPT_NOT_SET:
      break;
  }
  raise(ErrorCode::kInvalidArgument, "prompt: set one of text, token_ids or chat");
}

std::vector<int32_t> tokenize(const v1::TokenizeRequest& request, const PromptContext& context) {
  switch (request.input_case()) {
    case v1::TokenizeRequest::kText:
      return encode(need_tokenizer(context, "input.text"), request.text(),
                    request.add_special_tokens(), "input.text");
    case v1::TokenizeRequest::kChat:
      return encode_chat(request.chat(), context, "input.chat");
    case v1::TokenizeRequest::INPUT_NOT_SET:
      break;
  }
  raise(ErrorCode::kInvalidArgument, "input: set one of text or chat");
}

runtime::SamplingParams sampling_params(const v1::SamplingParams& wire,
                                        const runtime::SamplingParams& defaults) {
  runtime::SamplingParams params = defaults;
  if (wire.has_temperature()) params.temperature = wire.temperature();
  if (wire.has_top_k()) params.top_k = wire.top_k();
  if (wire.has_top_p()) params.top_p = wire.top_p();
  if (wire.has_min_p()) params.min_p = wire.min_p();
  if (wire.has_repetition_penalty()) params.repetition_penalty = wire.repetition_penalty();
  if (wire.has_presence_penalty()) params.presence_penalty = wire.presence_penalty();
  if (wire.has_frequency_penalty()) params.frequency_penalty = wire.frequency_penalty();
  if (wire.has_seed()) params.seed = wire.seed();
  params.stop.assign(wire.stop().begin(), wire.stop().end());
  params.stop_token_ids.assign(wire.stop_token_ids().begin(), wire.stop_token_ids().end());
  if (wire.has_max_tokens()) params.max_tokens = wire.max_tokens();
  params.ignore_eos = wire.ignore_eos();
  if (wire.has_n()) params.n = wire.n();
  params.logprobs = wire.logprobs();
  // Sorted by id, so the same request always applies its biases in the same order.
  params.logit_bias.assign(wire.logit_bias().begin(), wire.logit_bias().end());
  std::sort(params.logit_bias.begin(), params.logit_bias.end());
  return params;
}

}  // namespace tpserve::rpc
