#!/usr/bin/env bash
# `tpserve generate` under mpirun on the fixtures of issue 12's family layouts (beside
# generate_e2e.sh, which stays within its time limit): ChatGLM without multi-query attention
# (per-head query_key_value, rope_ratio 50, prompts to 40 tokens), ChatGLM with add_bias_linear
# (biases on query_key_value, dense and the MLP), and YaRN (rope_scaling "yarn", factor 4 over an
# original 16 positions) past the original length. The printed ids must equal transformers'.
source "$(dirname "$0")/lib.sh"

check_fixture chatglm_mha 1 2 4
check_fixture chatglm_bias 1 2 4
check_fixture qwen2_yarn 1 2 4
finish
