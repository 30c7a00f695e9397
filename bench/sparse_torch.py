#!/usr/bin/env python3
"""mergekit-style PyTorch kernels for ties / dare_ties / della on one in-memory 4096x4096 f32
tensor and 3 models (argsort-based trimming as mergekit does), the baseline for
bench/sparse_kernels.c. usage: sparse_torch.py ties,dare_ties,della [THREADS]"""
import sys, time, torch
torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 1)
R = C = 4096; N = 3
g = torch.Generator().manual_seed(0)
b = torch.rand(R, C, generator=g) - 0.5
xs = [b + 0.01 * (torch.rand(R, C, generator=g) - 0.5) for _ in range(N)]
w = torch.tensor([1 / N] * N)
def magnitude(d, density):
    k = int(density * d.numel()); m = torch.zeros_like(d)
    m.view(-1)[torch.argsort(d.abs().view(-1), descending=True)[:k]] = 1
    return d * m
def bern(d, density):
    m = torch.bernoulli(torch.full_like(d, density)); r = d * m
    return r * (d.abs().sum() / r.abs().sum())
def della(d, density, eps):
    ranks = torch.argsort(d.abs(), dim=1).argsort(dim=1).float() + 1
    mn = ranks.min(1, keepdim=True).values; mx = ranks.max(1, keepdim=True).values
    p = (density - eps) + ((ranks - mn) / (mx - mn)).clamp(0, 1) * 2 * eps
    r = d * torch.bernoulli(p)
    return r * (d.abs().sum() / r.abs().sum())
def gta(sp, consensus, normalize):
    ds = torch.stack([sp(x - b) for x in xs])
    wd = ds * w.view(-1, 1, 1)
    if consensus:
        s = (wd.sum(0) >= 0).float() * 2 - 1
        m = wd.sign() == s
        mixed = (wd * m).sum(0); div = (w.view(-1, 1, 1) * m).sum(0); div[div == 0] = 1
    else:
        mixed = wd.sum(0); div = w.sum()
    if normalize: mixed = mixed / div
    return b + mixed
cases = {
 'ties': lambda: gta(lambda d: magnitude(d, 0.5), True, True),
 'dare_ties': lambda: gta(lambda d: bern(d, 0.5), True, False),
 'della': lambda: gta(lambda d: della(d, 0.5, 0.1), True, True),
}
for name in sys.argv[1].split(','):
    best = best_cpu = 1e9
    for _ in range(2):
        t, c = time.time(), time.process_time(); cases[name]()
        best = min(best, time.time() - t); best_cpu = min(best_cpu, time.process_time() - c)
    print(f"torch {name} {R}x{C} x{N} threads {torch.get_num_threads()}: wall {best:.3f} s, cpu {best_cpu:.3f} s")
