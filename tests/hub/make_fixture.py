#!/usr/bin/env python3
"""Build a fake Hugging Face Hub for smelt's hub tests.

  make_fixture.py serve OUT --port P --cdn-port Q [--big-mb N]
      Writes OUT/www (API JSON, raw git files, LFS blobs under cdn/),
      OUT/nginx.conf (Hub-style paths on 127.0.0.1:P, blobs on the "CDN"
      127.0.0.1:Q) and OUT/manifest.json (what every repo holds).

  make_fixture.py hfcache OUT CACHE
      Lays out CACHE exactly as huggingface_hub does after
      snapshot_download("smelt-test/tiny") and ("smelt-test/tiny", revision
      "refs/pr/1"): blobs/<etag>, relative snapshot links, refs.

Everything is deterministic (seeded), so two runs give identical bytes.
"""
import hashlib
import json
import os
import random
import struct
import sys

ORG = "smelt-test"
GOOD_TOKEN = "hf_smeltTestTokenGood0123456789"


def commit_of(*parts):
    return hashlib.sha1("/".join(parts).encode()).hexdigest()


def git_blob_sha1(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def safetensors(rng, tensors):
    """A valid safetensors file: U8 tensors of the given sizes."""
    header, off, blobs = {}, 0, []
    for name, size in tensors:
        header[name] = {"dtype": "U8", "shape": [size], "data_offsets": [off, off + size]}
        blobs.append(rng.randbytes(size))
        off += size
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def is_lfs(name):
    return name.endswith(".safetensors") or name.endswith(".bin")


def tiny_files(rng, variant):
    mib = 1 << 20
    s1 = safetensors(rng, [("model.layers.0.w", 3 * mib - 4096)])
    s2 = safetensors(rng, [("model.layers.1.w", 2 * mib - 4096 + variant)])
    index = {"metadata": {"total_size": len(s1) + len(s2)},
             "weight_map": {"model.layers.0.w": "model-00001-of-00002.safetensors",
                            "model.layers.1.w": "model-00002-of-00002.safetensors"}}
    return {
        "config.json": json.dumps({"architectures": ["TinyForCausalLM"], "model_type": "tiny",
                                   "num_hidden_layers": 2, "variant": variant}).encode(),
        "tokenizer.json": json.dumps({"version": "1.0", "model": {"type": "BPE"}}).encode(),
        "generation_config.json": b'{"max_length": 32}',
        "added_tokens.json": b"",
        "model-00001-of-00002.safetensors": s1,
        "model-00002-of-00002.safetensors": s2,
        "model.safetensors.index.json": json.dumps(index, indent=2).encode(),
        "adapters/extra.safetensors": safetensors(rng, [("extra", 1000 + variant)]),
        "README.md": b"# tiny\n",
        "pytorch_model.bin": rng.randbytes(5000),
    }


def repos(big_mb):
    rng = random.Random(1234)
    tiny_main = tiny_files(rng, 0)
    tiny_pr = dict(tiny_main)
    tiny_pr.update({k: v for k, v in tiny_files(random.Random(99), 8).items()
                    if k in ("config.json", "model-00002-of-00002.safetensors")})
    out = {
        "tiny": {"revisions": {"main": "c-main", "v1.0": "c-main", "refs/pr/1": "c-pr"},
                 "commits": {"c-main": tiny_main, "c-pr": tiny_pr}},
        "gated": {"revisions": {"main": "c1"}, "gated": True,
                  "commits": {"c1": {"config.json": b'{"model_type": "gated"}',
                                     "model.safetensors": safetensors(rng, [("w", 70000)])}}},
        "paged": {"revisions": {"main": "c1"}, "paged": True,
                  "commits": {"c1": {"config.json": b'{"model_type": "paged"}',
                                     "model.safetensors": safetensors(rng, [("w", 50000)]),
                                     "nested/deeper/tokenizer_config.json": b"{}"}}},
        "missing": {"revisions": {"main": "c1"}, "missing": ["model.safetensors"],
                    "commits": {"c1": {"config.json": b"{}",
                                       "model.safetensors": safetensors(rng, [("w", 10)])}}},
        "noweights": {"revisions": {"main": "c1"},
                      "commits": {"c1": {"config.json": b"{}", "pytorch_model.bin": b"x" * 99}}},
    }
    if big_mb:
        out["big"] = {"revisions": {"main": "c1"}, "big_mb": big_mb,
                      "commits": {"c1": {"config.json": b"{}"}}}
    return out


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def big_blob(path, mb):
    """mb MiB of pseudo-random bytes, written and hashed in chunks."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    h = hashlib.sha256()
    chunk = random.Random(7).randbytes(1 << 20)
    with open(path, "wb") as f:
        for i in range(mb):
            block = chunk[i % 4096:] + chunk[:i % 4096]
            h.update(block)
            f.write(block)
    return h.hexdigest()


def build(out, port, cdn_port, big_mb):
    www = os.path.join(out, "www")
    manifest = {"endpoint": f"http://127.0.0.1:{port}", "cdn": f"http://127.0.0.1:{cdn_port}",
                "token": GOOD_TOKEN, "repos": {}}
    loc = []  # nginx location blocks for the Hub server
    seen = set()

    def hdrs(h):
        return "".join(f"        add_header {k} '{v}' always;\n" for k, v in h.items())

    def gate(spec):
        if not spec.get("gated"):
            return ""
        return ("        if ($gate = anonymous) { add_header X-Error-Code GatedRepo always; "
                "add_header X-Error-Message 'Access to this model is restricted.' always; "
                "return 401; }\n"
                "        if ($gate = bad) { add_header X-Error-Message "
                "'Invalid credentials in Authorization header' always; return 401; }\n")

    for name, spec in repos(big_mb).items():
        repo = f"{ORG}/{name}"
        folder = f"models--{ORG}--{name}"
        commits = {key: commit_of(repo, key) for key in spec["commits"]}
        m = {"commits": {}, "revisions": {r: commits[c] for r, c in spec["revisions"].items()},
             "gated": bool(spec.get("gated"))}
        for key, files in spec["commits"].items():
            commit = commits[key]
            entries = {}
            listing = []
            for fname, data in sorted(files.items()):
                if is_lfs(fname):
                    sha = hashlib.sha256(data).hexdigest()
                    write(os.path.join(www, "cdn", sha), data)
                    entries[fname] = {"etag": sha, "size": len(data), "lfs": True}
                else:
                    sha1 = git_blob_sha1(data)
                    write(os.path.join(www, "raw", folder, commit, fname), data)
                    entries[fname] = {"etag": sha1, "size": len(data), "lfs": False}
            if spec.get("big_mb"):
                sha = big_blob(os.path.join(www, "cdn", "big-blob"), spec["big_mb"])
                os.rename(os.path.join(www, "cdn", "big-blob"), os.path.join(www, "cdn", sha))
                entries["model.safetensors"] = {"etag": sha, "size": spec["big_mb"] << 20,
                                                "lfs": True}
            for fname, e in sorted(entries.items()):
                item = {"rfilename": fname, "size": e["size"],
                        "blobId": e["etag"] if not e["lfs"] else commit_of(fname)}
                if e["lfs"]:
                    item["lfs"] = {"sha256": e["etag"], "size": e["size"], "pointerSize": 134}
                listing.append(item)
                common = {"X-Repo-Commit": commit}
                path = f"/{repo}/resolve/{commit}/{fname}"
                if fname in spec.get("missing", []):
                    loc.append(f"    location = {path} {{\n" + gate(spec) + hdrs(
                        {**common, "X-Error-Code": "EntryNotFound",
                         "X-Error-Message": "Entry not found"}) + "        return 404;\n    }\n")
                elif e["lfs"]:
                    loc.append(f"    location = {path} {{\n" + gate(spec) + hdrs(
                        {**common, "X-Linked-Etag": f'"{e["etag"]}"',
                         "X-Linked-Size": e["size"]}) +
                        f"        return 302 http://127.0.0.1:{cdn_port}/cdn/{e['etag']};\n    }}\n")
                else:
                    loc.append(f"    location = {path} {{\n" + gate(spec) +
                               "        etag off;\n" + hdrs({**common, "ETag": f'"{e["etag"]}"'}) +
                               f"        alias {www}/raw/{folder}/{commit}/{fname};\n    }}\n")
            m["commits"][commit] = entries
            info = {"id": repo, "sha": commit, "private": False, "gated": "manual" if
                    spec.get("gated") else False}
            if not spec.get("paged"):
                info["siblings"] = listing
            for rev, ckey in spec["revisions"].items():
                if ckey != key:
                    continue
                for r in (rev, commit):
                    if (repo, r) in seen:
                        continue
                    seen.add((repo, r))
                    jname = r.replace("/", "_") + ".json"
                    write(os.path.join(www, "api", folder, jname), json.dumps(info).encode())
                    loc.append(f"    location = /api/models/{repo}/revision/{r} {{\n" +
                               gate(spec) + "        default_type application/json;\n" +
                               f"        alias {www}/api/{folder}/{jname};\n    }}\n")
            if spec.get("paged"):
                tree = [{"type": "file", "path": it["rfilename"], "size": it["size"],
                         "oid": it["blobId"],
                         **({"lfs": {"oid": it["lfs"]["sha256"], "size": it["size"],
                                     "pointerSize": 134}} if "lfs" in it else {})}
                        for it in listing]
                tree.insert(1, {"type": "directory", "path": "nested", "oid": "0" * 40, "size": 0})
                half = len(tree) // 2
                write(os.path.join(www, "pages", f"{name}-1.json"), json.dumps(tree[:half]).encode())
                write(os.path.join(www, "pages", f"{name}-2.json"), json.dumps(tree[half:]).encode())
                nxt = (f"<http://127.0.0.1:{port}/api/models/{repo}/tree/{commit}"
                       f"?recursive=true&expand=false&cursor=p2>; rel=\"next\"")
                loc.append(f"    location = /api/models/{repo}/tree/{commit} {{\n" +
                           "        default_type application/json;\n" +
                           "        if ($arg_cursor = p2) { rewrite ^ /_pages/" + name +
                           "-2.json last; }\n" +
                           f"        add_header Link '{nxt}' always;\n" +
                           f"        alias {www}/pages/{name}-1.json;\n    }}\n")
        loc.append(f"    location /api/models/{repo}/revision/ {{\n" + gate(spec) + hdrs(
            {"X-Error-Code": "RevisionNotFound", "X-Error-Message": "Invalid rev id"}) +
            "        return 404;\n    }\n")
        manifest["repos"][repo] = m

    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = f"""{user}worker_processes 2;
pid {out}/nginx.pid;
error_log {out}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {out}/tmp/body;
    proxy_temp_path {out}/tmp/proxy;
    fastcgi_temp_path {out}/tmp/fastcgi;
    uwsgi_temp_path {out}/tmp/uwsgi;
    scgi_temp_path {out}/tmp/scgi;
    default_type application/octet-stream;
    sendfile on;
    keepalive_requests 10000;
    map $http_authorization $has_auth {{ "" no; default yes; }}
    map $http_authorization $gate {{ "" anonymous; "Bearer {GOOD_TOKEN}" ok; default bad; }}
    log_format hub '$server_port $request_method "$request_uri" $status $body_bytes_sent "$http_range" $has_auth';
    server {{
        listen 127.0.0.1:{port};
        access_log {out}/access.log hub;
{''.join(loc)}
        location /_pages/ {{ internal; default_type application/json; alias {www}/pages/; }}
        location /api/models/ {{
            add_header X-Error-Code RepoNotFound always;
            add_header X-Error-Message 'Repository not found' always;
            return 401;
        }}
        location / {{ return 404; }}
    }}
    server {{
        listen 127.0.0.1:{cdn_port};
        access_log {out}/access.log hub;
        location /cdn/ {{ alias {www}/cdn/; }}
        location / {{ return 404; }}
    }}
}}
"""
    os.makedirs(os.path.join(out, "tmp"), exist_ok=True)
    write(os.path.join(out, "nginx.conf"), conf.encode())
    write(os.path.join(out, "manifest.json"), json.dumps(manifest, indent=1).encode())


def hfcache(out, cache):
    """huggingface_hub's layout, reproduced file by file."""
    with open(os.path.join(out, "manifest.json")) as f:
        manifest = json.load(f)
    repo = f"{ORG}/tiny"
    m = manifest["repos"][repo]
    root = os.path.join(cache, "models--" + repo.replace("/", "--"))
    for rev in ("main", "refs/pr/1"):
        commit = m["revisions"][rev]
        write(os.path.join(root, "refs", rev), commit.encode())
        for fname, e in m["commits"][commit].items():
            src = (os.path.join(out, "www", "cdn", e["etag"]) if e["lfs"] else
                   os.path.join(out, "www", "raw", os.path.basename(root), commit, fname))
            blob = os.path.join(root, "blobs", e["etag"])
            if not os.path.exists(blob):
                with open(src, "rb") as f:
                    write(blob, f.read())
            link = os.path.join(root, "snapshots", commit, fname)
            os.makedirs(os.path.dirname(link), exist_ok=True)
            os.symlink(os.path.relpath(blob, os.path.dirname(link)), link)
            lock = os.path.join(cache, ".locks", os.path.basename(root), e["etag"] + ".lock")
            write(lock, b"")


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("out")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--cdn-port", type=int, required=True)
    s.add_argument("--big-mb", type=int, default=0)
    c = sub.add_parser("hfcache")
    c.add_argument("out")
    c.add_argument("cache")
    a = ap.parse_args()
    if a.cmd == "serve":
        build(os.path.abspath(a.out), a.port, a.cdn_port, a.big_mb)
    else:
        hfcache(os.path.abspath(a.out), os.path.abspath(a.cache))
