#!/usr/bin/env python3
"""Walk a Hugging Face cache and check it against huggingface_hub's layout.

  check_layout.py signature CACHE
      Print one line per entry (path, kind, link target or content hash),
      sorted: two caches with the same signature have identical layouts.

  check_layout.py expect MANIFEST CACHE REPO REV=FILE,FILE... [REV=...]
      Exit 1 (with the differences on stderr) unless the repo folder holds
      exactly refs/<rev> (commit, no newline) for each branch/tag revision,
      snapshots/<commit>/<file> as relative links to ../../blobs/<etag> for
      the listed files, the blobs those links need (right size and hash), and
      lock files named <etag>.lock; nothing else (no .incomplete, records or
      temporaries).
"""
import hashlib
import json
import os
import re
import sys


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def git_sha1(path):
    with open(path, "rb") as f:
        data = f.read()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def signature(cache):
    lines = []
    for root, dirs, files in os.walk(cache):
        for name in sorted(dirs + files):
            p = os.path.join(root, name)
            rel = os.path.relpath(p, cache)
            if os.path.islink(p):
                lines.append(f"{rel} link {os.readlink(p)}")
            elif os.path.isdir(p):
                lines.append(f"{rel} dir")
            else:
                lines.append(f"{rel} file {os.path.getsize(p)} {sha256(p)}")
    return sorted(lines)


def expect(manifest_path, cache, repo, specs):
    with open(manifest_path) as f:
        m = json.load(f)["repos"][repo]
    folder = "models--" + repo.replace("/", "--")
    root = os.path.join(cache, folder)
    errors = []
    want = {"blobs": "dir", "refs": "dir", "snapshots": "dir"}
    blobs = {}
    for spec in specs:
        rev, _, files = spec.partition("=")
        commit = m["revisions"].get(rev, rev)
        if rev != commit:
            parts = rev.split("/")
            for i in range(1, len(parts)):
                want["refs/" + "/".join(parts[:i])] = "dir"
            want["refs/" + rev] = ("ref", commit)
        want["snapshots/" + commit] = "dir"
        for fname in files.split(","):
            e = m["commits"][commit][fname]
            parts = fname.split("/")
            for i in range(1, len(parts)):
                want[f"snapshots/{commit}/" + "/".join(parts[:i])] = "dir"
            target = "../" * (len(parts) + 1) + "blobs/" + e["etag"]
            want[f"snapshots/{commit}/{fname}"] = ("link", target)
            blobs[e["etag"]] = e
    for etag, e in blobs.items():
        want["blobs/" + etag] = ("blob", e)
    have = {}
    for r, dirs, files in os.walk(root):
        for name in dirs + files:
            p = os.path.join(r, name)
            have[os.path.relpath(p, root)] = p
    for rel in sorted(set(have) - set(want)):
        errors.append(f"unexpected {folder}/{rel}")
    for rel in sorted(set(want) - set(have)):
        errors.append(f"missing {folder}/{rel}")
    for rel in sorted(set(want) & set(have)):
        p, w = have[rel], want[rel]
        if w == "dir":
            if os.path.islink(p) or not os.path.isdir(p):
                errors.append(f"{rel}: not a folder")
        elif w[0] == "ref":
            with open(p) as f:
                text = f.read()
            if text != w[1]:
                errors.append(f"{rel}: holds {text!r}, expected the bare commit {w[1]}")
        elif w[0] == "link":
            if not os.path.islink(p):
                errors.append(f"{rel}: not a symlink")
            elif os.readlink(p) != w[1]:
                errors.append(f"{rel}: links to {os.readlink(p)}, expected {w[1]}")
        elif w[0] == "blob":
            e = w[1]
            if os.path.islink(p) or not os.path.isfile(p):
                errors.append(f"{rel}: not a regular file")
            elif os.path.getsize(p) != e["size"]:
                errors.append(f"{rel}: {os.path.getsize(p)} bytes, expected {e['size']}")
            elif (sha256(p) if e["lfs"] else git_sha1(p)) != e["etag"]:
                errors.append(f"{rel}: content does not match its etag")
    locks = os.path.join(cache, ".locks", folder)
    if os.path.isdir(locks):
        for name in os.listdir(locks):
            if not re.fullmatch(r"[0-9a-f]{40}(?:[0-9a-f]{24})?\.lock", name):
                errors.append(f".locks/{folder}/{name}: not an <etag>.lock file")
    for name in os.listdir(cache):
        if name not in (".locks", "CACHEDIR.TAG") and not re.match(r"(models|datasets|spaces)--", name):
            errors.append(f"unexpected {name} at the cache root")
    for e in errors:
        print("layout: " + e, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    if sys.argv[1] == "signature":
        print("\n".join(signature(sys.argv[2])))
        sys.exit(0)
    sys.exit(expect(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]))
