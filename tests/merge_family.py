#!/usr/bin/env python3
"""Write a Llama-shaped family of bf16 safetensors folders, fast, for the merge
tests that need size rather than meaningful weights (cancellation, memory,
page-cache residency).

usage: merge_family.py OUT HIDDEN INTER VOCAB LAYERS [NAME...]   (names: base m1 m2)

Every tensor is a slice of one 8 MiB block of random finite bf16 values (a
magnitude near 2^-7), shifted per model so the models differ. Writing is
bound by the disk, not the random generator (about 1 s per GB).
"""
import json, os, struct, sys

import numpy as np


def shapes(H, I, V, L):
    yield "model.embed_tokens.weight", (V, H)
    for l in range(L):
        p = f"model.layers.{l}."
        for m in ("q_proj", "k_proj", "v_proj", "o_proj"):
            yield p + f"self_attn.{m}.weight", (H, H)
        yield p + "mlp.gate_proj.weight", (I, H)
        yield p + "mlp.up_proj.weight", (I, H)
        yield p + "mlp.down_proj.weight", (H, I)
        yield p + "input_layernorm.weight", (H,)
        yield p + "post_attention_layernorm.weight", (H,)
    yield "model.norm.weight", (H,)
    yield "lm_head.weight", (V, H)


def main():
    out, H, I, V, L = sys.argv[1], *map(int, sys.argv[2:6])
    names = sys.argv[6:] or ["base", "m1", "m2"]
    # sign, 7 mantissa bits, exponent forced to 120: finite, never NaN or Inf
    pool = (np.frombuffer(os.urandom(1 << 23), dtype=np.uint16) & np.uint16(0x807F)) | np.uint16(0x3C00)
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": H,
           "intermediate_size": I, "num_hidden_layers": L, "vocab_size": V,
           "num_attention_heads": max(1, H // 64), "torch_dtype": "bfloat16"}
    for k, name in enumerate(names):
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        hdr, off, sizes = {"__metadata__": {"format": "pt"}}, 0, []
        for n, s in shapes(H, I, V, L):
            nb = 2 * int(np.prod(s))
            hdr[n] = {"dtype": "BF16", "shape": list(s), "data_offsets": [off, off + nb]}
            off += nb
            sizes.append(nb)
        h = json.dumps(hdr, separators=(",", ":")).encode()
        h += b" " * ((8 - len(h) % 8) % 8)
        with open(os.path.join(d, "model.safetensors"), "wb") as f:
            f.write(struct.pack("<Q", len(h)))
            f.write(h)
            for i, nb in enumerate(sizes):
                f.write(np.resize(np.roll(pool, 7919 * k + 31 * i), nb // 2).tobytes())
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2)


if __name__ == "__main__":
    main()
