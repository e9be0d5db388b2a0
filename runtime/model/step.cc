#include "runtime/model/step.h"

#include "common/check.h"

namespace tpserve::runtime {

namespace {

void put(std::vector<int32_t>& out, const std::vector<int32_t>& values) {
  out.push_back(static_cast<int32_t>(values.size()));
  out.insert(out.end(), values.begin(), values.end());
}

std::vector<int32_t> get(const std::vector<int32_t>& in, size_t& at) {
  TPS_CHECK(at < in.size(), "truncated step plan");
  const auto count = static_cast<size_t>(in[at++]);
  TPS_CHECK(at + count <= in.size(), "truncated step plan");
  std::vector<int32_t> values(in.begin() + static_cast<std::ptrdiff_t>(at),
                              in.begin() + static_cast<std::ptrdiff_t>(at + count));
  at += count;
  return values;
}

}  // namespace

std::vector<int32_t> serialize_step(const StepInput& step) {
  std::vector<int32_t> out;
  out.push_back(step.stop ? 1 : 0);
  out.push_back(step.max_blocks_per_seq);
  put(out, step.token_ids);
  put(out, step.token_seq);
  put(out, step.token_pos);
  put(out, step.block_tables);
  put(out, step.logit_rows);
  put(out, step.seq_prompt_len);
  return out;
}

StepInput deserialize_step(const std::vector<int32_t>& words) {
  StepInput step;
  TPS_CHECK(words.size() >= 2, "truncated step plan");
  size_t at = 0;
  step.stop = words[at++] != 0;
  step.max_blocks_per_seq = words[at++];
  step.token_ids = get(words, at);
  step.token_seq = get(words, at);
  step.token_pos = get(words, at);
  step.block_tables = get(words, at);
  step.logit_rows = get(words, at);
  step.seq_prompt_len = get(words, at);
  return step;
}

void broadcast_step(parallel::Communicator& comm, StepInput& step) {
  std::vector<int32_t> words;
  if (comm.rank() == 0) words = serialize_step(step);
  int64_t size = static_cast<int64_t>(words.size());
  comm.broadcast(&size, sizeof(size), 0);
  words.resize(static_cast<size_t>(size));
  comm.broadcast(words.data(), words.size() * sizeof(int32_t), 0);
  if (comm.rank() != 0) step = deserialize_step(words);
}

}  // namespace tpserve::runtime
