#!/usr/bin/env python3
"""Time mergekit-style PyTorch/NumPy CPU versions of the weighted and geometric methods on one
in-memory f32 tensor, the baseline for bench/geom_kernels.c (see bench/methods-geom.md).
The formulas follow docs/methods-geom.md (mergekit semantics), written with whole-tensor ops the
way a Python merge does them.

usage: geom_torch.py ROWS COLS THREADS
"""
import sys, time
import numpy as np, torch


def best(fn, reps=3):
    t = 1e30
    for _ in range(reps):
        t0 = time.perf_counter(); fn(); t = min(t, time.perf_counter() - t0)
    return t


def slerp(t, b, x):
    b64, x64 = b.numpy(), x.numpy()
    nb, nx = np.linalg.norm(b64), np.linalg.norm(x64)
    u0 = b64 / nb if nb > 1e-8 else b64
    u1 = x64 / nx if nx > 1e-8 else x64
    c = np.sum(u0 * u1)
    if abs(c) > 0.9995:
        return torch.from_numpy((1 - t) * b64 + t * x64)
    th = np.arccos(c); s = np.sin(th)
    return torch.from_numpy(np.sin(th - th * t) / s * b64 + np.sin(th * t) / s * x64)


def nuslerp_rows(t, v0, v1):
    n0 = v0 / v0.norm(dim=-1, keepdim=True).clamp(min=1e-7)
    n1 = v1 / v1.norm(dim=-1, keepdim=True).clamp(min=1e-7)
    th = torch.acos((n0 * n1).sum(-1, keepdim=True).clamp(-1, 1)); s = torch.sin(th)
    return (torch.sin((1 - t) * th) * v0 + torch.sin(t * th) * v1) / s


def multislerp(xs, w, b):
    v = torch.stack(xs) - b; f = v.view(len(xs), -1)
    w = torch.tensor(w) / sum(w); nr = f.norm(dim=-1, keepdim=True); u = f / (nr + 1e-8)
    m = (u * w.view(-1, 1)).sum(0); m = m / m.norm()
    tg = ((u - (u * m).sum(-1, keepdim=True) * m) * w.view(-1, 1)).sum(0); tn = tg.norm() + 1e-8
    r = m * torch.cos(tn) + tg * torch.sin(tn) / tn
    return (r * (nr.squeeze(-1) * w).sum()).view(b.shape) + b


def karcher(xs, max_iter=10, tol=1e-5):
    nr = [x.norm() for x in xs]; us = [x / n for x, n in zip(xs, nr)]; a = 1 / len(xs)
    m = sum(a * u for u in us); m = m / m.norm()
    for _ in range(max_iter):
        tg = torch.zeros_like(m)
        for u in us:
            d = torch.clamp(torch.dot(m.flatten(), u.flatten()), -1, 1); th = torch.arccos(d)
            if th < tol:
                continue
            tg += a * th / torch.sin(th) * (u - d * m)
        tn = tg.norm()
        if tn < tol:
            break
        m = torch.cos(tn) * m + torch.sin(tn) * tg / tn; m = m / m.norm()
    return sum(a * n for n in nr) * m


def model_stock(xs, b):
    ds = [(x - b).view(-1) for x in xs]; cs = []
    for i in range(len(ds)):
        for j in range(i + 1, len(ds)):
            cs.append((ds[i] @ ds[j] / (ds[i].norm() * ds[j].norm()).clamp(min=1e-6)).clamp(-1, 1))
    c = torch.stack(cs).mean(); n = len(xs); t = n * c / (1 + (n - 1) * c)
    return t * sum(xs) / n + (1 - t) * b


def nearswap(t, b, x):
    a = (t / (b - x).abs()).nan_to_num(nan=1.0, posinf=1.0).clamp(0, 1)
    return a * x + (1 - a) * b


def arcee_fusion(b, x):
    p = torch.softmax(x, -1) + 1e-8; q = torch.softmax(b, -1) + 1e-8
    imp = (x - b).abs() * (p * torch.log(p / q)).sum(-1, keepdim=True)
    f = imp.view(-1)
    if f.numel() > 1_000_000:
        f = f[torch.randint(f.numel(), (1_000_000,))]
    s, _ = torch.sort(f); k = lambda q: s[int(q * (s.numel() - 1))]
    tau = k(0.5) + 1.5 * (k(0.75) - k(0.25))
    return b + (x - b) * (imp >= tau)


def main():
    rows, cols, threads = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    b = torch.rand(rows, cols, generator=g) - 0.5
    xs = [b + 0.05 * (torch.rand(rows, cols, generator=g) - 0.5) for _ in range(3)]
    n = rows * cols
    runs = {
        "linear": lambda: sum(w * x for w, x in zip([1 / 3] * 3, xs)) / 1.0,
        "task_arithmetic": lambda: b + sum(w * (x - b) for w, x in zip([1 / 3] * 3, xs)),
        "slerp": lambda: slerp(0.4, b, xs[0]),
        "nuslerp (rows, base)": lambda: b + nuslerp_rows(0.5, xs[0] - b, xs[1] - b),
        "multislerp (3, base)": lambda: multislerp(xs, [1, 1, 1], b),
        "karcher (3)": lambda: karcher(xs),
        "model_stock (3)": lambda: model_stock(xs, b),
        "nearswap": lambda: nearswap(1e-3, b, xs[0]),
        "arcee_fusion": lambda: arcee_fusion(b, xs[0]),
    }
    for name, fn in runs.items():
        t = best(fn)
        print(f"{name:22s} {rows}x{cols} threads {threads}: {t:.3f} s, {n / t / 1e6:.1f} M elements/s")


if __name__ == "__main__":
    main()
