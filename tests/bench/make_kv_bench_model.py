# A random-weight Qwen2 checkpoint (6 layers, hidden 512, 8 heads / 2 KV heads, vocab 512, 68 MB)
# big enough that prefill costs something on the CPU, for the KV / prefix-cache / n-gram serving
# benchmarks (not a test fixture; nothing checks its outputs). Plain Python, no numpy:
#   python3 tests/bench/make_kv_bench_model.py OUT_DIR tests/fixtures/qwen2_tied
import json, random, struct, sys, os, shutil
from array import array
out = sys.argv[1]; os.makedirs(out, exist_ok=True)
H, L, I, V, NH, KV = 512, 6, 1408, 512, 8, 2
D = H // NH
cfg = json.load(open(sys.argv[2] + "/config.json"))
cfg.update(hidden_size=H, num_hidden_layers=L, intermediate_size=I, vocab_size=V, num_attention_heads=NH,
           num_key_value_heads=KV, max_position_embeddings=4096)
json.dump(cfg, open(out + "/config.json", "w"), indent=1)
for f in ["tokenizer.json", "tokenizer_config.json"]:
    shutil.copy(sys.argv[2] + "/" + f, out + "/" + f)
random.seed(0)
tensors = {"model.embed_tokens.weight": [V, H], "model.norm.weight": [H]}
for l in range(L):
    p = f"model.layers.{l}."
    tensors.update({p + "input_layernorm.weight": [H], p + "post_attention_layernorm.weight": [H],
                    p + "mlp.down_proj.weight": [H, I], p + "mlp.gate_proj.weight": [I, H], p + "mlp.up_proj.weight": [I, H],
                    p + "self_attn.q_proj.weight": [H, H], p + "self_attn.q_proj.bias": [H],
                    p + "self_attn.k_proj.weight": [KV * D, H], p + "self_attn.k_proj.bias": [KV * D],
                    p + "self_attn.v_proj.weight": [KV * D, H], p + "self_attn.v_proj.bias": [KV * D],
                    p + "self_attn.o_proj.weight": [H, H]})
header, blobs, offset = {}, [], 0
for name, shape in tensors.items():
    n = 1
    for s in shape: n *= s
    if name.endswith("norm.weight"):
        data = array("f", [1.0]) * n
    else:
        scale = 0.08 if "embed" in name else 0.04
        data = array("f", (random.uniform(-scale, scale) for _ in range(n)))
    b = data.tobytes()
    header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + len(b)]}
    blobs.append(b); offset += len(b)
h = json.dumps(header).encode(); h += b" " * ((8 - len(h) % 8) % 8)
with open(out + "/model.safetensors", "wb") as f:
    f.write(struct.pack("<Q", len(h))); f.write(h)
    for b in blobs: f.write(b)
