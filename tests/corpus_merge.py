#!/usr/bin/env python3
"""Merge every recipe of testdata/mergekit-recipes with `smelt merge`.

usage: corpus_merge.py SMELT_BIN SHARED_DIR WORK_DIR

For each recipe of index.json: writes one tiny Llama-shaped bf16 checkpoint per
distinct model reference (hidden 16, intermediate 32, vocab 64, the recipe's
layer_count_guess layers; a tokenizer_config.json with a chat template), rewrites
the recipe text replacing every reference with its local folder (a reference is
replaced only where it stands as a whole YAML scalar, so `//home/x` and `/home/x`
stay distinct), runs `smelt merge --offline`, and checks by mergekit_status:

  ok                       exit 0, output layers = output_layer_count (slices) or
                           layer_count_guess, every tensor finite, passthrough
                           slices copy the right source layers, a built-in
                           chat_template written into tokenizer_config.json
  ok_with_warnings         the same, and stderr names every unknown key / param
  schema_ok_runtime_error  exit 1 with a message, no OUT and no OUT.partial-*

Recipes smelt refuses by design (LoRA `model+lora` references, union tokenizers)
must fail up front with exit 1, a message naming
the feature and no output; they are counted separately. Prints one line per
recipe, then "N passed, N failed"; exits 1 on any failure.
"""
import array, json, os, re, struct, subprocess, sys
from concurrent.futures import ThreadPoolExecutor

from st_check import first_nonfinite, shard_tensors

HIDDEN, INTER, VOCAB = 16, 32, 64


def shapes(layers):
    yield "model.embed_tokens.weight", (VOCAB, HIDDEN)
    for l in range(layers):
        p = f"model.layers.{l}."
        for m in ("q_proj", "k_proj", "v_proj", "o_proj"):
            yield p + f"self_attn.{m}.weight", (HIDDEN, HIDDEN)
        yield p + "mlp.gate_proj.weight", (INTER, HIDDEN)
        yield p + "mlp.up_proj.weight", (INTER, HIDDEN)
        yield p + "mlp.down_proj.weight", (HIDDEN, INTER)
        yield p + "input_layernorm.weight", (HIDDEN,)
        yield p + "post_attention_layernorm.weight", (HIDDEN,)
    yield "model.norm.weight", (HIDDEN,)
    yield "lm_head.weight", (VOCAB, HIDDEN)


def bf16_pool(count):
    """count finite bf16 words near +-2^-3..2^-1 (an LCG), little-endian bytes."""
    out = array.array("H", bytes(2 * count))
    x = 12345
    for i in range(count):
        x = (x * 1664525 + 1013904223) & 0xFFFFFFFF
        # sign, exponent 124..126, 7 random mantissa bits
        out[i] = ((x >> 31) << 15) | ((124 + (x >> 24) % 3) << 7) | ((x >> 8) & 0x7F)
    if sys.byteorder != "little":
        out.byteswap()
    return out.tobytes() * 2


POOL_WORDS = 1 << 14
POOL = bf16_pool(POOL_WORDS)


def bf16_values(count, seed):
    """count words of the pool from a seed-dependent offset: models differ."""
    start = (seed * 7919) % POOL_WORDS
    return POOL[2 * start:2 * (start + count)]


def write_model(folder, layers, seed, template):
    os.makedirs(folder, exist_ok=True)
    hdr, off, blobs = {"__metadata__": {"format": "pt"}}, 0, []
    for name, shape in shapes(layers):
        n = 1
        for s in shape:
            n *= s
        blob = bf16_values(n, seed * 7919 + len(blobs))
        hdr[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [off, off + len(blob)]}
        off += len(blob)
        blobs.append(blob)
    head = json.dumps(hdr, separators=(",", ":")).encode()
    head += b" " * ((8 - len(head) % 8) % 8)
    with open(os.path.join(folder, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for blob in blobs:
            f.write(blob)
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": HIDDEN,
           "intermediate_size": INTER, "num_hidden_layers": layers, "vocab_size": VOCAB,
           "num_attention_heads": 2, "torch_dtype": "bfloat16"}
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg, f)
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({"model_max_length": 2048, "chat_template": template}, f)


def local_for(ref, folders, root, layers):
    if ref not in folders:
        folders[ref] = os.path.join(root, f"m{len(folders):02d}")
        write_model(folders[ref], layers, len(folders), "{{ messages }} from " + ref)
    return folders[ref]


def rewrite(text, refs, root, layers):
    """Replace each reference where it stands as a whole scalar: preceded by
    line start, blank, quote, `[`, `{`, `,`, `:` (`model:org/name`) and followed by line end, blank,
    quote, `]`, `}`, `,` or `#`. `A+adapter` becomes LOCAL(A)+adapter."""
    folders = {}
    mapping = {}
    for ref in refs:
        if "+" in ref:
            model, adapter = ref.split("+", 1)
            mapping[ref] = local_for(model, folders, root, layers) + "+" + adapter
        else:
            mapping[ref] = local_for(ref, folders, root, layers)
    alternatives = "|".join(re.escape(r) for r in sorted(mapping, key=len, reverse=True))
    pattern = re.compile(r"(?:(?<=^)|(?<=[\s'\"\[{,:]))(" + alternatives + r")(?=$|[\s'\"\]},#])",
                         re.M)
    return pattern.sub(lambda m: mapping[m.group(1)], text), folders


def out_layers(folder):
    with open(os.path.join(folder, "config.json")) as f:
        return json.load(f)["num_hidden_layers"]


def finite(folder):
    return first_nonfinite(folder)[0]


TEMPLATE_MARKERS = {"alpaca": "### Instruction:", "chatml": "<|im_start|>",
                    "llama3": "<|start_header_id|>", "mistral": "[INST]", "exaone": "[|assistant|]"}


def template_problem(text, out):
    """A recipe naming a built-in chat template gets it in tokenizer_config.json."""
    m = re.search(r"^chat_template:\s*[\"']?(\w+)[\"']?\s*$", text, re.M)
    if not m or m.group(1) not in TEMPLATE_MARKERS:
        return None
    with open(os.path.join(out, "tokenizer_config.json")) as f:
        got = json.load(f).get("chat_template", "")
    if TEMPLATE_MARKERS[m.group(1)] not in got:
        return f"chat_template {m.group(1)} not written: '{got[:80]}'"
    return None


def read_values(folder):
    """name -> list of floats, for BF16 / F16 / F32 tensors of every shard."""
    out = {}
    for _, name, v, raw in shard_tensors(folder):
        if v["dtype"] == "BF16":
            words = array.array("H", raw)
            vals = array.array("f", b"".join(struct.pack("<I", w << 16) for w in words))
            out[name] = list(vals)
        elif v["dtype"] == "F16":
            out[name] = list(struct.unpack(f"<{len(raw) // 2}e", raw))
        elif v["dtype"] == "F32":
            out[name] = list(array.array("f", raw))
    return out


LAYER = re.compile(r"^model\.layers\.(\d+)\.(.*)$")


def passthrough_problem(out):
    """Passthrough slices copy layers: output layer k is the k-th listed source
    layer, embeddings come from the first slice's model and the final norm and
    head from the last one's (mergekit's rule). The inputs' bf16 values are
    exact in f16 and f32, so the comparison is exact."""
    with open(os.path.join(out, "smelt-recipe.json")) as f:
        recipe = json.load(f)
    if recipe.get("merge_method") != "passthrough" or "slices" not in recipe:
        return None
    order = []
    for sl in recipe["slices"]:
        src = sl["sources"][0]
        order += [(src["model"], l) for l in range(*src["layer_range"])]
    got = read_values(out)
    models = {m: read_values(m) for m in {m for m, _ in order}}
    first, last = recipe["slices"][0]["sources"][0]["model"], recipe["slices"][-1]["sources"][0]["model"]
    for name, values in got.items():
        m = LAYER.match(name)
        if m:
            model, layer = order[int(m.group(1))]
            want = models[model][f"model.layers.{layer}.{m.group(2)}"]
        else:
            want = models[first if "embed" in name else last][name]
        if values != want:
            return f"{name} is not the expected source tensor"
    return None


def refused_by_design(entry, text):
    if entry["mergekit_status"] == "schema_ok_runtime_error":
        return None  # refused anyway, checked as such
    if any("+" in r for r in entry["model_refs"]):
        return "lora"
    if re.search(r"^\s*(tokenizer_)?source:\s*union", text, re.M):
        return "tokenizer"
    return None


def leftovers(work, out):
    base = os.path.basename(out)
    return [f for f in os.listdir(work) if f == base or f.startswith(base + ".partial")]


def run(smelt, shared, work, entry):
    """returns (kind, problem): kind is 'merged', 'refused', 'lora' or 'tokenizer'"""
    src = os.path.join(shared, "testdata/mergekit-recipes", entry["file"])
    text = open(src).read()
    name = entry["file"][:-4]
    root = os.path.join(work, name)
    layers = entry["layer_count_guess"]
    refs = list(entry["model_refs"])
    if entry["base_model"] and entry["base_model"] not in refs:
        refs.append(entry["base_model"])
    new_text, folders = rewrite(text, refs, root, layers)
    missing = [r for r in refs if "+" not in r and folders[r] not in new_text]
    if missing:
        return "merged", f"reference not rewritten: {missing}"
    recipe = os.path.join(root, "recipe.yml")
    with open(recipe, "w") as f:
        f.write(new_text)
    out = os.path.join(root, "out")
    proc = subprocess.run([smelt, "merge", recipe, "-o", out, "--offline"],
                          capture_output=True, text=True, cwd=root)
    status = entry["mergekit_status"]
    why = refused_by_design(entry, text)
    stderr = proc.stderr.strip()
    if why:
        if proc.returncode == 0:
            return why, None  # merging it anyway is fine too
        if proc.returncode != 1 or not stderr:
            return why, f"exit {proc.returncode}, stderr '{stderr[-200:]}'"
        feature = {"lora": "LoRA", "tokenizer": "union"}[why]
        if feature not in stderr:
            return why, f"the message does not name '{feature}': {stderr[-200:]}"
        if leftovers(root, out):
            return why, f"left {leftovers(root, out)} behind"
        return why, None
    if status == "schema_ok_runtime_error":
        if proc.returncode != 1:
            return "refused", f"exit {proc.returncode}, want 1"
        if not stderr:
            return "refused", "no message"
        if leftovers(root, out):
            return "refused", f"left {leftovers(root, out)} behind"
        return "refused", None
    if proc.returncode != 0:
        return "merged", f"exit {proc.returncode}: {stderr[-400:]}"
    want = entry.get("output_layer_count") or layers
    got = out_layers(out)
    if got != want:
        return "merged", f"{got} layers, want {want}"
    bad = finite(out) or template_problem(text, out) or passthrough_problem(out)
    if bad:
        return "merged", bad
    if status == "ok_with_warnings":
        for key in entry["unknown_keys"] + entry["unknown_params"]:
            leaf = key.split(".")[-1].replace("[]", "")
            if leaf not in stderr:
                return "merged", f"stderr does not name '{key}': {stderr[-300:]}"
    return "merged", None


def main():
    smelt, shared, work = sys.argv[1:4]
    only = sys.argv[4:]
    index = json.load(open(os.path.join(shared, "testdata/mergekit-recipes/index.json")))
    counts = {"merged": 0, "refused": 0, "lora": 0, "tokenizer": 0}
    passed = failed = 0
    entries = [e for e in index if not only or any(e["file"].startswith(o) for o in only)]
    # two at a time: a merge of these tiny models mostly waits for fsync
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda e: run(smelt, shared, work, e), entries))
    for entry, (kind, problem) in zip(entries, results):
        if problem:
            failed += 1
            print(f"FAIL {entry['file']} ({entry['mergekit_status']}): {problem}")
        else:
            passed += 1
            counts[kind] += 1
            print(f"ok   {entry['file']}: {kind}")
    print(f"merged {counts['merged']}, refused as mergekit would {counts['refused']}, "
          f"refused by design: LoRA {counts['lora']}, tokenizer {counts['tokenizer']}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
