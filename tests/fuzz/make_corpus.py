#!/usr/bin/env python3
"""Write the seed corpus for fuzz_st_header into tests/fuzz/corpus/st_header/.

A dozen small safetensors files, valid and invalid, covering the header
rules: metadata, every dtype family, scalars and empty tensors, odd names,
unknown fields, and the reference test vectors (overlap, size mismatch,
overflow, trailing bytes). Run from anywhere; output is deterministic.
"""
import json, os, struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "st_header")


def st(header, data=b"", pad=True, raw=None):
    h = raw if raw is not None else json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    if pad:
        h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + data


def t(dtype, shape, b, e):
    return {"dtype": dtype, "shape": shape, "data_offsets": [b, e]}


files = {
    "valid_meta": st({"__metadata__": {"format": "pt", "note": "x"},
                      "w": t("F32", [2, 2], 0, 16), "h": t("BF16", [3], 16, 22), "b": t("U8", [2], 22, 24)},
                     bytes(range(24))),
    "valid_scalar": st({"s": t("I32", [], 0, 4)}, b"\x01\x00\x00\x00"),
    "valid_empty_tensor": st({"e": t("I32", [2, 0], 0, 0)}),
    "valid_ws_padded": st(None, raw=b"  \n{}\t\r "),
    "valid_subbyte": st({"f": t("F4", [2, 2], 0, 2), "g": t("F6_E3M2", [4], 2, 5), "c": t("C64", [1], 5, 13)}, bytes(13)),
    "valid_names": st({"": t("U8", [1], 0, 1), "layers.\u00e9\u20ac\"\\": t("F16", [1], 1, 3),
                       "x": {"dtype": "U8", "shape": [1], "data_offsets": [3, 4], "extra": [1.5, None, {"k": True}]}},
                      bytes(4)),
    "bad_overlap": st({"t%d" % i: t("F32", [4], 0, 16) for i in range(10)}, bytes(16)),
    "bad_size": st({"a": t("I32", [2, 2], 0, 4)}, bytes(4)),
    "bad_overflow": st(None, raw=b'{"a":{"dtype":"I32","shape":[2,18446744073709551614],"data_offsets":[0,16]}}', data=bytes(16)),
    "bad_trailing": st({"a": t("F32", [4], 0, 16)}, bytes(16) + b"extra"),
    "bad_dup_meta": st(None, raw=b'{"__metadata__":{"a":"1"},"__metadata__":null,"x":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', data=b"\x00"),
    "bad_numbers": st(None, raw=b'{"a":{"dtype":"U8","shape":[1e0],"data_offsets":[-0,1.5]},"\\u0000":{}}', data=b"\x00"),
}

os.makedirs(OUT, exist_ok=True)
for name, blob in files.items():
    with open(os.path.join(OUT, name + ".safetensors"), "wb") as f:
        f.write(blob)
print("%d files in %s" % (len(files), OUT))
