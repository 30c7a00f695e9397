#!/usr/bin/env python3
"""Read and check checkpoint folders written by smelt, with struct and array
only (no numpy). Imported by the other test helpers for its readers.

usage: st_check.py FOLDER     every float tensor of every *.safetensors file
                              must be finite; prints "N tensors finite" or the
                              first bad tensor; exit 1 on failure
"""
import array, json, os, struct, sys

# bit patterns: a float is NaN or Inf iff all its exponent bits are set
EXP_MASK = {"BF16": ("H", 0x7F80), "F16": ("H", 0x7C00), "F32": ("I", 0x7F800000),
            "F64": ("Q", 0x7FF0000000000000)}


def shard_tensors(folder):
    """(file name, tensor name, header entry, raw bytes) of every tensor of
    every *.safetensors file in folder, files in name order."""
    for fn in sorted(f for f in os.listdir(folder) if f.endswith(".safetensors")):
        with open(os.path.join(folder, fn), "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            hdr = json.loads(f.read(n))
            data = f.read()
        for name, v in hdr.items():
            if name == "__metadata__":
                continue
            a, b = v["data_offsets"]
            yield fn, name, v, data[a:b]


def bad_count(dtype, raw):
    code, mask = EXP_MASK[dtype]
    words = array.array(code, raw)
    if sys.byteorder != "little":
        words.byteswap()
    return sum(1 for w in words if w & mask == mask)


def first_nonfinite(folder):
    """(message about the first tensor holding NaN/Inf or None, float tensors checked)."""
    checked = 0
    for fn, name, v, raw in shard_tensors(folder):
        if v["dtype"] not in EXP_MASK:
            continue
        bad = bad_count(v["dtype"], raw)
        if bad:
            return f"{fn}: {name}: {bad} NaN/Inf values", checked
        checked += 1
    return None, checked


def main():
    folder = sys.argv[1]
    if not any(f.endswith(".safetensors") for f in os.listdir(folder)):
        print(f"{folder}: no .safetensors file")
        return 1
    problem, checked = first_nonfinite(folder)
    if problem:
        print(problem)
        return 1
    print(f"{checked} tensors finite")
    return 0


if __name__ == "__main__":
    sys.exit(main())
