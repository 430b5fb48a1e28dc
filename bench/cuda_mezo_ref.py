#!/usr/bin/env python3
"""The PyTorch MeZO anchor of bench/cuda.mjs: a ZO-SGD step as the MeZO code does it, timed on
a random GPT-2- or OPT-shaped model on the GPU (or the CPU, for a check with tiny shapes).

The step follows ../shared/anchors/mezo_ref.py (MeZO's trainer): torch.manual_seed(seed), then
one torch.normal z per parameter in parameters() order; p += eps*z, loss+, p -= 2*eps*z, loss-,
p += eps*z (restore), then the seed again and p -= lr*g*z with the regenerated z; everything
under torch.inference_mode. The models are HF's layouts: GPT-2 (learned positions, GELU-tanh,
pre-LN, tied head) and OPT (learned positions with OPT's offset of 2, ReLU, pre-LN, tied head).
The loss is the causal-LM cross-entropy of the batch's own next tokens, with the logits upcast
to f32 as HF's loss does. Attention: F.scaled_dot_product_attention (what HF picks by default
now, flash/memory-efficient kernels on the GPU) or --attn eager (the matmul-softmax-matmul of
the MeZO-era HF code).

  cuda_mezo_ref.py --device cuda --dtype bf16 --family opt --layers 24 --dim 2048 --heads 32 \\
      --ffn 8192 --vocab 50272 --batch 16 --seq 256 --steps 3

Prints one line of key=value: step_s, forward_s (the two losses), perturb_s (the four passes
over the weights) as medians over --steps timed steps after one warm-up, infer_s (one plain
loss), step_peak_mem_bytes / infer_peak_mem_bytes (torch.cuda.max_memory_allocated over the
steps, and over plain losses, reset between; -1 on the CPU), params, loss."""
import argparse, math, statistics, time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(s, d, h, ffn, act, attn):
        super().__init__()
        s.h, s.act, s.attn_impl = h, act, attn
        s.ln1 = nn.LayerNorm(d); s.q = nn.Linear(d, d); s.k = nn.Linear(d, d); s.v = nn.Linear(d, d)
        s.o = nn.Linear(d, d); s.ln2 = nn.LayerNorm(d); s.fc1 = nn.Linear(d, ffn); s.fc2 = nn.Linear(ffn, d)

    def forward(s, x):
        B, T, C = x.shape
        y = s.ln1(x)
        q, k, v = [t.view(B, T, s.h, C // s.h).transpose(1, 2) for t in (s.q(y), s.k(y), s.v(y))]
        if s.attn_impl == 'sdpa':
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            att = (q @ k.transpose(-2, -1)) / math.sqrt(C // s.h)
            mask = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
            a = att.masked_fill(mask, float('-inf')).softmax(-1) @ v
        x = x + s.o(a.transpose(1, 2).reshape(B, T, C))
        f = s.fc1(s.ln2(x))
        f = F.relu(f) if s.act == 'relu' else F.gelu(f, approximate='tanh')
        return x + s.fc2(f)


class Decoder(nn.Module):
    """GPT-2 (c_attn split into q/k/v: the same FLOPs and bytes) or OPT, pre-LN, tied head."""

    def __init__(s, family, L, d, h, ffn, V, P, attn):
        super().__init__()
        s.pos_offset = 2 if family == 'opt' else 0  # OPT's learned positions start at row 2
        s.wte = nn.Embedding(V, d); s.wpe = nn.Embedding(P + s.pos_offset, d)
        act = 'relu' if family == 'opt' else 'gelu'
        s.blocks = nn.ModuleList([Block(d, h, ffn, act, attn) for _ in range(L)]); s.lnf = nn.LayerNorm(d)
        nn.init.normal_(s.wte.weight, std=0.02); nn.init.normal_(s.wpe.weight, std=0.02)  # HF's init: sane logits

    def forward(s, idx):
        T = idx.shape[1]
        x = s.wte(idx) + s.wpe(torch.arange(s.pos_offset, T + s.pos_offset, device=idx.device))
        for b in s.blocks:
            x = b(x)
        logits = s.lnf(x) @ s.wte.weight.t()
        # Causal-LM loss of the batch's next tokens; logits in f32 as HF's ForCausalLMLoss.
        return F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]), idx[:, 1:].reshape(-1))


def perturb(model, seed, scale, eps):
    torch.manual_seed(seed)
    for p in model.parameters():
        z = torch.normal(mean=0, std=1, size=p.shape, device=p.device, dtype=p.dtype)
        p.data.add_(z, alpha=scale * eps)


def mezo_step(model, idx, seed, sync, eps=1e-3, lr=1e-6, times=None):
    sync(); t0 = time.perf_counter()
    perturb(model, seed, 1, eps); sync(); t1 = time.perf_counter()
    lp = model(idx).item(); t2 = time.perf_counter()
    perturb(model, seed, -2, eps); sync(); t3 = time.perf_counter()
    lm = model(idx).item(); t4 = time.perf_counter()
    perturb(model, seed, 1, eps)
    g = (lp - lm) / (2 * eps)
    torch.manual_seed(seed)
    for p in model.parameters():
        z = torch.normal(mean=0, std=1, size=p.shape, device=p.device, dtype=p.dtype)
        p.data.add_(z, alpha=-lr * g)
    sync(); t6 = time.perf_counter()
    if times is not None:
        times['forward'].append((t2 - t1) + (t4 - t3))
        times['perturb'].append((t1 - t0) + (t3 - t2) + (t6 - t4))
    return lp, lm


def main():
    a = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    a.add_argument('--device', default='cuda', help="'cuda', 'cuda:N' or 'cpu'")
    a.add_argument('--dtype', default='bf16', choices=['f32', 'bf16'])
    a.add_argument('--family', default='gpt2', choices=['gpt2', 'opt'])
    a.add_argument('--attn', default='sdpa', choices=['sdpa', 'eager'])
    for k, v in dict(layers=12, dim=768, heads=12, ffn=0, vocab=50257, positions=0, batch=16, seq=256, steps=3,
                     infer_reps=3, threads=2, seed=0).items():
        a.add_argument('--' + k, type=int, default=v)
    o = a.parse_args()
    ffn = o.ffn or 4 * o.dim
    if o.attn == 'sdpa' and not hasattr(F, 'scaled_dot_product_attention'):
        o.attn = 'eager'  # torch < 2.0 has no fused attention; the printed attn= says which ran
    positions = o.positions or max(o.seq, 2048 if o.family == 'opt' else 1024)
    dev = torch.device(o.device)
    cuda = dev.type == 'cuda'
    if cuda:
        if not torch.cuda.is_available():
            raise SystemExit('cuda_mezo_ref: torch has no CUDA device')
        # f32 as zeroth's f32 path: full-precision FMA, no TF32 tensor cores.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    else:
        torch.set_num_threads(o.threads)
    dtype = torch.bfloat16 if o.dtype == 'bf16' else torch.float32
    sync = (lambda: torch.cuda.synchronize(dev)) if cuda else (lambda: None)

    torch.manual_seed(o.seed)
    if hasattr(torch.device, '__enter__'):  # torch >= 2.0: build the weights on the device
        with dev:
            m = Decoder(o.family, o.layers, o.dim, o.heads, ffn, o.vocab, positions, o.attn)
        m = m.to(dtype)
    else:  # older torch: build on the host, narrow there (half the bytes to move), then move
        m = Decoder(o.family, o.layers, o.dim, o.heads, ffn, o.vocab, positions, o.attn).to(dtype).to(dev)
    m.eval()
    n = sum(p.numel() for p in m.parameters())
    g = torch.Generator(device='cpu').manual_seed(o.seed + 1)
    idx = torch.randint(0, o.vocab, (o.batch, o.seq), generator=g).to(dev)

    times = {'forward': [], 'perturb': []}
    steps, infer = [], []
    with torch.inference_mode():
        mezo_step(m, idx, 123, sync)  # warm-up: kernels chosen, allocator cache filled
        if cuda:
            torch.cuda.reset_peak_memory_stats(dev)
        for s in range(o.steps):
            sync(); t = time.perf_counter()
            lp, _ = mezo_step(m, idx, 1000 + s, sync, times=times)
            steps.append(time.perf_counter() - t)
        step_peak = torch.cuda.max_memory_allocated(dev) if cuda else -1
        if cuda:
            torch.cuda.reset_peak_memory_stats(dev)
        for _ in range(o.infer_reps):
            sync(); t = time.perf_counter()
            loss = m(idx).item()
            infer.append(time.perf_counter() - t)
        infer_peak = torch.cuda.max_memory_allocated(dev) if cuda else -1
    med = statistics.median
    print(f"family={o.family} dtype={o.dtype} device={dev} attn={o.attn} params={n} batch={o.batch} seq={o.seq} "
          f"step_s={med(steps):.6f} forward_s={med(times['forward']):.6f} perturb_s={med(times['perturb']):.6f} "
          f"infer_s={med(infer):.6f} step_peak_mem_bytes={step_peak} infer_peak_mem_bytes={infer_peak} "
          f"loss={loss:.6f} torch={torch.__version__}")


if __name__ == '__main__':
    main()
