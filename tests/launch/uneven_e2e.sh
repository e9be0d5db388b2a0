#!/usr/bin/env bash
# `tpserve generate` under mpirun at N that do not divide the fixture's query heads: uneven shards
# (3 on 8 heads: 3,3,2; 4 on 6: 2,2,1,1; 5 and 7 on 12: 3,3,2,2,2 and 2,2,2,2,2,1,1; 2 and 4 on
# SmolLM2's 9 query / 3 KV heads: 5,4 and 3,2,2,2 with KV groups cut between ranks), every fused
# QKV layout (Qwen v1's c_attn, InternLM2's interleaved wqkv, ChatGLM's query_key_value) and the
# MoE experts, prefill chunked to 5 tokens: the printed ids must equal transformers' greedy
# continuation. Batched serving on uneven shards: batch_e2e.sh; refusal above the heads:
# bad_input_e2e.sh.
source "$(dirname "$0")/lib.sh"

check_fixture llama_gqa 3
check_fixture qwen2_tied 5 7
check_fixture llama_bias_f16 4
check_fixture llama_9heads 2 4
check_fixture qwen_v1 3
check_fixture internlm2 3
check_fixture chatglm 3
check_fixture qwen2_moe 3
finish
