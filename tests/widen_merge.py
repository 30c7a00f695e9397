#!/usr/bin/env python3
"""Reproduce every WIDEN reference case (testdata/widen) through `smelt merge`.

usage: widen_merge.py SMELT_BIN SHARED_DIR WORK_DIR

For each case of index.json: writes the base and the merged models of the case's
inputs file as F32 checkpoint folders (config.json + model.safetensors, tensor
names from the vectors), writes a JSON recipe (widen, out_dtype float32, the
case's threshold / calibration / temperature), runs `smelt merge` and compares
every output tensor with `expected_merged`. Tolerance: 1e-6 for the float64
score twins (`rank_and_score_dtype: float64`), 2e-6 otherwise. Prints one line
per case with the max abs error, then "N passed, N failed"; exits 1 on failure.
"""
import array, json, os, struct, subprocess, sys

from st_check import shard_tensors


def flatten(values):
    """Nested lists -> (flat list, shape)."""
    if not isinstance(values, list):
        return [values], []
    flat, shape = [], [len(values)]
    for item in values:
        sub, inner = flatten(item)
        flat += sub
    if values and isinstance(values[0], list):
        shape += flatten(values[0])[1]
    return flat, shape


def as_float(x):
    return float("nan") if x == "NaN" else float(x)


def write_model(folder, tensors):
    os.makedirs(folder, exist_ok=True)
    hdr, off, blobs = {"__metadata__": {"format": "pt"}}, 0, []
    for name, values in tensors.items():
        flat, shape = flatten(values)
        blob = array.array("f", [as_float(x) for x in flat]).tobytes()
        hdr[name] = {"dtype": "F32", "shape": shape,
                     "data_offsets": [off, off + len(blob)]}
        off += len(blob)
        blobs.append(blob)
    head = json.dumps(hdr).encode()
    head += b" " * ((8 - len(head) % 8) % 8)
    with open(os.path.join(folder, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for blob in blobs:
            f.write(blob)
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
           "num_hidden_layers": 1, "torch_dtype": "float32"}
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg, f)


def read_safetensors(folder):
    out = {}
    for fn, name, v, raw in shard_tensors(folder):
        if v["dtype"] != "F32":
            raise SystemExit(f"{fn}: {name} is {v['dtype']}, want F32")
        out[name] = (array.array("f", raw), v["shape"])
    return out


def run_case(smelt, shared, work, entry):
    case = json.load(open(os.path.join(shared, "testdata/widen", entry["file"])))
    inputs = json.load(open(os.path.join(shared, "testdata/widen", case["inputs_file"])))
    cid = case["id"]
    root = os.path.join(work, cid)
    names = [case["base"]] + case["models_to_merge"]
    for name in names:
        write_model(os.path.join(root, name), inputs["models"][name])
    recipe = {
        "merge_method": "widen",
        "base_model": os.path.join(root, case["base"]),
        "models": [{"model": os.path.join(root, m)} for m in case["models_to_merge"]],
        "parameters": {"threshold": case["above_average_value_ratio"],
                       "calibration": case["score_calibration_value"],
                       "temperature": case["temperature"]},
        "dtype": "float32",
        "out_dtype": "float32",
    }
    rpath = os.path.join(root, "recipe.json")
    with open(rpath, "w") as f:
        json.dump(recipe, f)
    out = os.path.join(root, "out")
    proc = subprocess.run([smelt, "merge", rpath, "-o", out, "--quiet"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        return None, f"smelt merge exited {proc.returncode}: {proc.stderr.strip()}"
    got = read_safetensors(out)
    worst = 0.0
    for name, want in case["expected_merged"].items():
        if name not in got:
            return None, f"{name} missing from the output"
        want, shape = flatten(want)
        values, got_shape = got[name]
        if got_shape != shape:
            return None, f"{name}: shape {got_shape}, want {shape}"
        for g, w in zip(values, want):
            worst = max(worst, abs(g - as_float(w)))
    return worst, None


def main():
    smelt, shared, work = sys.argv[1:4]
    index = json.load(open(os.path.join(shared, "testdata/widen/index.json")))
    passed = failed = 0
    for entry in index["cases"]:
        tol = 1e-6 if entry["rank_and_score_dtype"] == "float64" else 2e-6
        worst, why = run_case(smelt, shared, work, entry)
        if why is None and worst <= tol:
            passed += 1
            print(f"ok   {entry['id']}: max abs error {worst:.2e} (tolerance {tol:.0e})")
        else:
            failed += 1
            print(f"FAIL {entry['id']}: " + (why or f"max abs error {worst:.2e} > {tol:.0e}"))
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
