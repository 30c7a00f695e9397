#!/usr/bin/env python3
"""Check a checkpoint folder written by smelt: every float tensor of every
*.safetensors file is finite (no NaN, no Inf). Reads the files with struct and
array only (no numpy).

usage: st_check.py FOLDER     prints "N tensors finite" or the first bad tensor; exit 1 on failure
"""
import array, json, os, struct, sys

# bit patterns: a float is NaN or Inf iff all its exponent bits are set
EXP_MASK = {"BF16": ("H", 0x7F80), "F16": ("H", 0x7C00), "F32": ("I", 0x7F800000),
            "F64": ("Q", 0x7FF0000000000000)}


def bad_count(dtype, raw):
    code, mask = EXP_MASK[dtype]
    words = array.array(code, raw)
    if sys.byteorder != "little":
        words.byteswap()
    return sum(1 for w in words if w & mask == mask)


def main():
    folder = sys.argv[1]
    files = sorted(f for f in os.listdir(folder) if f.endswith(".safetensors"))
    if not files:
        print(f"{folder}: no .safetensors file")
        return 1
    checked = 0
    for fn in files:
        with open(os.path.join(folder, fn), "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            hdr = json.loads(f.read(n))
            data = f.read()
        for name, v in hdr.items():
            if name == "__metadata__" or v["dtype"] not in EXP_MASK:
                continue
            a, b = v["data_offsets"]
            bad = bad_count(v["dtype"], data[a:b])
            if bad:
                print(f"{fn}: {name}: {bad} NaN/Inf values")
                return 1
            checked += 1
    print(f"{checked} tensors finite")
    return 0


if __name__ == "__main__":
    sys.exit(main())
