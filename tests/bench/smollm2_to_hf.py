#!/usr/bin/env python3
"""SmolLM2-135M-Instruct as a float32 Hugging Face directory, for CPU benchmarks that need a real
model in the float path (tests/bench/ngram_bench.sh). transformers reads the Q4_1 GGUF that
launch/fetch_smollm2.sh fetches (dequantizing every tensor and undoing llama.cpp's Q/K row order
itself) and saves the model, tokenizer and chat template:

    python smollm2_to_hf.py SmolLM2-135M-Instruct.Q4_1.gguf OUT_DIR

Needs torch and transformers (and gguf, which transformers' GGUF loader uses).
"""
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer

path, out = sys.argv[1], sys.argv[2]
folder, name = os.path.split(os.path.abspath(path))
tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, torch_dtype=torch.float32)
# save_pretrained refuses a model loaded from a GGUF: write its float32 state dict and config.
os.makedirs(out, exist_ok=True)
state = {k: v.contiguous() for k, v in model.state_dict().items()}
if model.config.tie_word_embeddings:
    state.pop("lm_head.weight", None)
save_file(state, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
config = model.config
config.architectures = ["LlamaForCausalLM"]
del config.quantization_config  # the weights written are float32
config.save_pretrained(out)
model.generation_config.save_pretrained(out)
tokenizer.save_pretrained(out)
