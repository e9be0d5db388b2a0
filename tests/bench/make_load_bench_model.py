#!/usr/bin/env python3
# A random-weight checkpoint for `tpserve bench --load` (not a test fixture: nothing checks its
# values). Plain Python, no numpy; writes as fast as the disk takes it (values come from one 64 MiB
# random pool, each tensor starting at a different place in it).
#   python3 tests/bench/make_load_bench_model.py OUT_DIR [--shape llama-1.2g|qwen2.5-7b]
#                                                [--dtype f16|bf16] [--files N]
# llama-1.2g: LLaMA-shaped (hidden 2048, intermediate 5632, 12 layers, 32 heads / 4 KV heads,
#   vocab 32000, untied lm_head): 654M parameters, 1.22 GiB in f16 / bf16.
# qwen2.5-7b: Qwen2.5-7B's shapes (configs/presets/qwen2.5-7b.json, with q/k/v biases): 7.6B
#   parameters, 14.2 GiB in bf16.
# The tensors are spread over --files files (default 4) with a model.safetensors.index.json, as
# Hugging Face shards them. Values: uniform random sign and mantissa, the exponent masked small so
# no value is inf or NaN (|x| < 0.25 in f16, < 2^-5 in bf16); norms are 1.0.
import argparse, json, os, random, struct

SHAPES = {
    "llama-1.2g": dict(arch="LlamaForCausalLM", model_type="llama", hidden=2048, inter=5632,
                       layers=12, heads=32, kv_heads=4, vocab=32000, bias=False, theta=10000.0,
                       eps=1e-5),
    "qwen2.5-7b": dict(arch="Qwen2ForCausalLM", model_type="qwen2", hidden=3584, inter=18944,
                       layers=28, heads=28, kv_heads=4, vocab=152064, bias=True, theta=1000000.0,
                       eps=1e-6),
}

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("--shape", default="llama-1.2g", choices=sorted(SHAPES))
ap.add_argument("--dtype", default="f16", choices=["f16", "bf16"])
ap.add_argument("--files", type=int, default=4)
args = ap.parse_args()
s = SHAPES[args.shape]
H, I, L, NH, KV, V = s["hidden"], s["inter"], s["layers"], s["heads"], s["kv_heads"], s["vocab"]
D = H // NH
os.makedirs(args.out, exist_ok=True)
config = {
    "architectures": [s["arch"]], "model_type": s["model_type"], "hidden_act": "silu",
    "hidden_size": H, "intermediate_size": I, "num_hidden_layers": L, "num_attention_heads": NH,
    "num_key_value_heads": KV, "vocab_size": V, "max_position_embeddings": 4096,
    "rms_norm_eps": s["eps"], "rope_theta": s["theta"], "tie_word_embeddings": False,
    "bos_token_id": 1, "eos_token_id": 2,
    "torch_dtype": "float16" if args.dtype == "f16" else "bfloat16",
}
if s["model_type"] == "llama":
    config.update(attention_bias=False, mlp_bias=False, head_dim=D)
json.dump(config, open(os.path.join(args.out, "config.json"), "w"), indent=1)

tensors = [("model.embed_tokens.weight", [V, H])]
for l in range(L):
    p = f"model.layers.{l}."
    tensors += [(p + "input_layernorm.weight", [H]),
                (p + "self_attn.q_proj.weight", [NH * D, H]),
                (p + "self_attn.k_proj.weight", [KV * D, H]),
                (p + "self_attn.v_proj.weight", [KV * D, H])]
    if s["bias"]:
        tensors += [(p + "self_attn.q_proj.bias", [NH * D]), (p + "self_attn.k_proj.bias", [KV * D]),
                    (p + "self_attn.v_proj.bias", [KV * D])]
    tensors += [(p + "self_attn.o_proj.weight", [H, NH * D]),
                (p + "post_attention_layernorm.weight", [H]),
                (p + "mlp.gate_proj.weight", [I, H]), (p + "mlp.up_proj.weight", [I, H]),
                (p + "mlp.down_proj.weight", [H, I])]
tensors += [("model.norm.weight", [H]), ("lm_head.weight", [V, H])]

# The random pool: the high byte of each little-endian 16-bit value keeps its sign and loses its
# top exponent bits.
POOL = 64 << 20
random.seed(0)
pool = bytearray(random.randbytes(POOL)) if hasattr(random, "randbytes") else bytearray(os.urandom(POOL))
high_mask = 0xB3 if args.dtype == "f16" else 0xBC
pool[1::2] = pool[1::2].translate(bytes(b & high_mask for b in range(256)))
one = struct.pack("<e", 1.0) if args.dtype == "f16" else struct.pack("<I", 0x3F800000)[2:]

def numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n

total = sum(numel(shape) * 2 for _, shape in tensors)
per_file = (total + args.files - 1) // args.files
groups, current, size = [], [], 0
for t in tensors:
    current.append(t)
    size += numel(t[1]) * 2
    if size >= per_file and len(groups) < args.files - 1:
        groups.append(current)
        current, size = [], 0
groups.append(current)
dtype_name = "F16" if args.dtype == "f16" else "BF16"
weight_map, start = {}, 0
for index, group in enumerate(groups):
    name = f"model-{index + 1:05d}-of-{len(groups):05d}.safetensors"
    header, offset = {}, 0
    for tensor, shape in group:
        nbytes = numel(shape) * 2
        header[tensor] = {"dtype": dtype_name, "shape": shape, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
        weight_map[tensor] = name
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(os.path.join(args.out, name), "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for tensor, shape in group:
            nbytes = numel(shape) * 2
            if tensor.endswith("norm.weight"):
                f.write(one * numel(shape))
                continue
            # Even start offsets in the pool keep the 16-bit values aligned.
            start = (start + 2 * 7919 * 64) % POOL
            written = 0
            while written < nbytes:
                piece = min(nbytes - written, POOL - start)
                f.write(pool[start:start + piece])
                written += piece
                start = 0 if start + piece >= POOL else start + piece
    print(f"{name}: {len(group)} tensors, {offset / 2**30:.2f} GiB")
json.dump({"metadata": {"total_size": total}, "weight_map": weight_map},
          open(os.path.join(args.out, "model.safetensors.index.json"), "w"), indent=1)
print(f"{args.out}: {args.shape} {args.dtype}, {total / 2**30:.2f} GiB in {len(groups)} files")
