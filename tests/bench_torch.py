"""Prefix-tuning the way a PyTorch user would do it, for make bench-compare's training column.

The same work as prefix-bench's training figure (tests/bench.c): a Llama of the 134M shape (dim 768, 12
layers, 12 heads, ff 2048, vocab 32000, RMSNorm, RoPE, SwiGLU) with frozen f32 weights, a prefix of 10
virtual tokens per layer produced by the reparameterization MLP (an embedding of 10 × 768 -> 512, tanh ->
the keys and values of every layer), batch 8 × 128 tokens with the loss on the second half, AdamW.
Weights are random (the time does not depend on their values). Prints training tokens/s.

    python3 tests/bench_torch.py [THREADS]

Debian's python3-torch (apt-get install python3-torch). For the AVX2 comparison on an AVX-512 machine,
bench_compare.sh sets ATEN_CPU_CAPABILITY=avx2 and OPENBLAS_CORETYPE=Haswell.
"""
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

L, D, H, FF, V, P, MID, B, T = 12, 768, 12, 2048, 32000, 10, 512, 8, 128
HD = D // H


def main():
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else os.cpu_count()
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    g = lambda *s: (torch.randn(*s) * 0.02)
    emb = g(V, D)
    layers = [dict(n1=torch.ones(D), wq=g(D, D), wk=g(D, D), wv=g(D, D), wo=g(D, D), n2=torch.ones(D),
                   w1=g(FF, D), w3=g(FF, D), w2=g(D, FF)) for _ in range(L)]
    nf, out = torch.ones(D), g(V, D)
    # the prefix: embedding -> MLP -> keys and values of every layer
    pe = torch.nn.Parameter(g(P, D))
    m1 = torch.nn.Linear(D, MID)
    m2 = torch.nn.Linear(MID, L * 2 * D)
    params = [pe] + list(m1.parameters()) + list(m2.parameters())
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.0)

    pos = torch.arange(P, P + T, dtype=torch.float32)
    inv = 1.0 / (10000 ** (torch.arange(0, HD, 2, dtype=torch.float32) / HD))
    ang = pos[:, None] * inv[None, :]
    cos, sin = torch.cos(ang), torch.sin(ang)

    def rope(x):   # (B, H, T, HD), pairs (2i, 2i+1)
        x0, x1 = x[..., 0::2], x[..., 1::2]
        return torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), -1).flatten(-2)

    def rms(x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * w

    mask = torch.full((T, P + T), float("-inf")).triu(P + 1)
    tok = torch.randint(3, V, (B, T))
    tgt = torch.randint(3, V, (B, T))

    def step():
        kv = m2(torch.tanh(m1(pe))).view(P, L, 2, H, HD)
        x = emb[tok]
        for li, w in enumerate(layers):
            h = rms(x, w["n1"])
            q = (h @ w["wq"].T).view(B, T, H, HD).transpose(1, 2)
            k = (h @ w["wk"].T).view(B, T, H, HD).transpose(1, 2)
            v = (h @ w["wv"].T).view(B, T, H, HD).transpose(1, 2)
            q, k = rope(q), rope(k)
            pk = kv[:, li, 0].permute(1, 0, 2).unsqueeze(0).expand(B, H, P, HD)
            pv = kv[:, li, 1].permute(1, 0, 2).unsqueeze(0).expand(B, H, P, HD)
            k, v = torch.cat((pk, k), 2), torch.cat((pv, v), 2)
            a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(HD) + mask, -1) @ v
            x = x + a.transpose(1, 2).reshape(B, T, D) @ w["wo"].T
            h = rms(x, w["n2"])
            x = x + (F.silu(h @ w["w1"].T) * (h @ w["w3"].T)) @ w["w2"].T
        # logits only where there are targets (the second half), as the engine computes them
        logits = rms(x[:, T // 2:], nf) @ out.T
        loss = F.cross_entropy(logits.reshape(-1, V), tgt[:, T // 2:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()   # warm-up
    steps, t0 = 0, time.time()
    while True:
        step()
        steps += 1
        dt = time.time() - t0
        if (dt >= 3.0 and steps >= 3) or steps >= 50:
            break
    print("%.1f" % (steps * B * T / dt))


if __name__ == "__main__":
    main()
