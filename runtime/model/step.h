// One step of work for every rank: which tokens run, where they sit, where their keys live, and
// whose logits come back. Rank 0 builds it; every rank receives the same bytes (broadcast_step),
// so no other rank makes a decision that could diverge.
#pragma once

#include <cstdint>
#include <vector>

#include "parallel/communicator.h"

namespace tpserve::runtime {

struct StepInput {
  std::vector<int32_t> token_ids;     // [T]
  std::vector<int32_t> token_seq;     // [T] row of the token's sequence in block_tables
  std::vector<int32_t> token_pos;     // [T] position in its sequence
  std::vector<int32_t> block_tables;  // [num_seqs * max_blocks_per_seq]
  int32_t max_blocks_per_seq = 0;
  std::vector<int32_t> logit_rows;    // tokens whose next-token logits are wanted, in output order
  // [num_seqs] prompt length of each block_tables row's sequence: dynamic NTK's context for prompt
  // tokens and Qwen v1's alpha (runtime/model/rope_tables.h). Empty: each sequence's prompt is taken to
  // end at the last position this step reaches (exact for a whole-prompt prefill; steps built by
  // the scheduler and generate_greedy always fill it).
  std::vector<int32_t> seq_prompt_len;
  bool stop = false;                  // rank 0 tells the others the job is over

  int num_tokens() const { return static_cast<int>(token_ids.size()); }
  int num_seqs() const {
    return max_blocks_per_seq == 0 ? 0 : static_cast<int>(block_tables.size()) / max_blocks_per_seq;
  }
};

std::vector<int32_t> serialize_step(const StepInput& step);
StepInput deserialize_step(const std::vector<int32_t>& words);

// Rank 0's step reaches every rank (two broadcasts: the size, then the words).
void broadcast_step(parallel::Communicator& comm, StepInput& step);

}  // namespace tpserve::runtime
