"""Dense versus CSR versus block-sparse recurrent steps, through the export path's ``SparseRNN``.

For every hidden size ``n``, sparsity and batch, a recurrent matrix shaped like
one a local moduli prior leaves -- neurons uniform on a flat torus, weights
``N(0, 1) * exp(-d^2 / 2 sigma^2)`` pruned by magnitude, so kept connections are
short but scattered in index order -- is loaded into a plain ``nn.RNN`` (ReLU,
no bias, as the navigation model) and run by :class:`moduli.sparse.SparseRNN`
one step at a time, ``h <- relu(u + W h)``, in these layouts:

``dense``          the strided matrix (``addmm``), the reference;
``csr``            ``torch.sparse_csr`` of the same matrix;
``bsr``            ``torch.sparse_bsr`` with ``B x B`` tiles, neurons in index order;
``bsr-curve``      the same matrix after ordering neurons along a Hilbert curve over
                   the torus (``curve_order`` + ``permute_neurons``);
``bsr-struct``     a block-structured matrix of the same sparsity: whole tiles in
                   curve order kept by summed magnitude (what
                   ``GradualMagnitudePruning(..., block=B, order=curve)`` leaves).

Per cell it prints milliseconds per step (median of repeats), the speed-up over
dense, the bytes the layout stores, and the ratio of the measured time to a
bound ``max(flops / F, bytes / M)``, where ``F`` is the dense GEMM rate and ``M``
the copy bandwidth, both measured in the same run (so dense sits near 1 when
compute-bound); ``bound x`` is the speed-up over dense that bound allows.
On CUDA, ``peak MB`` is ``torch.cuda.max_memory_allocated`` during the step;
on CPU it is the layout's stored bytes plus the state vectors.

Usage::

    python benchmarks/sparse_inference.py                 # n 1024 4096, 90/98/99%, batch 1 and 100
    python benchmarks/sparse_inference.py --device cuda   # the same on a GPU
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
import warnings

import torch
from torch import nn

from moduli import sparse

warnings.filterwarnings("ignore", message=".*Sparse (CSR|BSR) tensor support is in beta.*")


def torus_matrix(n: int, s: float, gen: torch.Generator):
    """``(pruned, envelope, points)``: a ``[n, n]`` matrix of local connections on the unit torus before and
    after magnitude pruning to sparsity ``s``, and the neurons' points."""
    pts = torch.rand(n, 2, generator=gen)
    diff = (pts[:, None, :] - pts[None, :, :]).abs()
    d2 = torch.minimum(diff, 1 - diff).pow(2).sum(-1)
    del diff
    sigma2 = (1 - s) / math.pi  # the envelope's disk of radius sigma holds about the kept fraction
    w = torch.randn(n, n, generator=gen).mul_(torch.exp(-d2 / (2 * sigma2)))
    del d2
    thr = w.abs().reshape(-1).kthvalue(round(s * n * n)).values
    return torch.where(w.abs() > thr, w, torch.zeros(())), w, pts


def block_structured(w: torch.Tensor, order: torch.Tensor, s: float, b: int) -> torch.Tensor:
    """``w`` with neurons in ``order``, keeping whole ``b x b`` tiles: the ``(1 - s)`` of them with the
    largest summed ``|w|`` (structured magnitude pruning)."""
    wo = w[order][:, order]
    t = wo.abs().reshape(w.shape[0] // b, b, w.shape[1] // b, b).sum((1, 3)).reshape(-1)
    keep = torch.zeros(t.numel(), dtype=torch.bool)
    keep[torch.topk(t, max(1, round((1 - s) * t.numel()))).indices] = True
    m = keep.reshape(w.shape[0] // b, w.shape[1] // b).repeat_interleave(b, 0).repeat_interleave(b, 1)
    return torch.where(m, wo, torch.zeros(()))


def make_rnn(w: torch.Tensor) -> nn.RNN:
    rnn = nn.RNN(2, w.shape[0], nonlinearity="relu", bias=False)
    with torch.no_grad():
        rnn.weight_hh_l0.copy_(w)
    return rnn


def stored_bytes(w: torch.Tensor, layout: str, b: int) -> tuple[int, int]:
    """(bytes stored, multiply-adds per batch column) of ``w`` in ``layout`` (float32 values, int64 indices)."""
    n = w.shape[0]
    nnz = int(torch.count_nonzero(w))
    if layout == "dense":
        return 4 * n * n, n * n
    if layout == "csr":
        return 4 * nnz + 8 * nnz + 8 * (n + 1), nnz
    tiles = int((w.reshape(n // b, b, n // b, b) != 0).any(3).any(1).sum())
    return 4 * tiles * b * b + 8 * tiles + 8 * (n // b + 1), tiles * b * b


def timed(fn, device, min_s: float, min_reps: int = 3) -> float:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    fn()
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    one = max(time.perf_counter() - t0, 1e-7)
    reps = max(min_reps, min(2000, int(min_s / one)))
    times = []
    for _ in range(min(reps, 7)):
        per = max(1, reps // 7)
        t0 = time.perf_counter()
        for _ in range(per):
            fn()
        sync()
        times.append((time.perf_counter() - t0) / per)
    return statistics.median(times)


def machine_rates(device) -> tuple[float, float]:
    """(dense GEMM FLOP/s at 4096 x 4096 x 100, copy bytes/s of 256 MB), measured now."""
    a = torch.randn(4096, 4096, device=device)
    x = torch.randn(4096, 100, device=device)
    t = timed(lambda: a @ x, device, 0.5)
    flops = 2 * 4096 * 4096 * 100 / t
    big = torch.empty(64 * 1024 * 1024, device=device)
    dst = torch.empty_like(big)
    tc = timed(lambda: dst.copy_(big), device, 0.5)
    return flops, 2 * big.numel() * 4 / tc


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, action="append", help="hidden sizes (default 1024 4096)")
    p.add_argument("--sparsity", type=float, action="append", help="default 0.9 0.98 0.99")
    p.add_argument("--batch", type=int, action="append", help="default 1 100")
    p.add_argument("--block", type=int, default=32)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--min-time", type=float, default=0.2, help="seconds of repeats per cell")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    ns, ss, bs = args.n or [1024, 4096], args.sparsity or [0.9, 0.98, 0.99], args.batch or [1, 100]
    b = args.block
    flops, bw = machine_rates(device)
    print(f"device {device}, threads {torch.get_num_threads()}, torch {torch.__version__}, block {b}; "
          f"measured dense GEMM {flops / 1e9:.1f} GFLOP/s, copy {bw / 1e9:.1f} GB/s")
    print(f"{'n':>5} {'sparsity':>8} {'batch':>5} {'layout':>10} {'ms/step':>9} {'vs dense':>8} "
          f"{'stored MB':>9} {'peak MB':>8} {'/ bound':>7} {'bound x':>7} {'fill':>6}")
    gen = torch.Generator().manual_seed(args.seed)
    for n in ns:
        for s in ss:
            w, envelope, pts = torus_matrix(n, s, gen)
            order = sparse.curve_order(pts)
            variants = {"dense": (w, "dense"), "csr": (w, "csr"), "bsr": (w, "bsr")}
            rnn_c = make_rnn(w)
            sparse.permute_neurons(rnn_c, order, rows=["weight_ih_l0", "weight_hh_l0"], cols=["weight_hh_l0"])
            variants["bsr-curve"] = (rnn_c.weight_hh_l0.detach().clone(), "bsr")
            variants["bsr-struct"] = (block_structured(envelope, order, s, b), "bsr")
            del envelope
            for batch in bs:
                h0 = torch.rand(n, batch, device=device)
                u = torch.randn(n, batch, device=device) * 0.01
                dense_ms = dense_bound = None
                rows = []
                for name, (mat, layout) in variants.items():
                    m = sparse.SparseRNN(make_rnn(mat), layout=layout, block=b).to(device)
                    ref = torch.relu(u + mat.to(device) @ h0)
                    out = m.step(0, h0, u)
                    if not torch.allclose(out, ref, rtol=1e-4, atol=1e-4):
                        raise AssertionError(f"{name} differs from dense by {(out - ref).abs().max():.3g}")
                    if device.type == "cuda":
                        torch.cuda.reset_peak_memory_stats(device)
                    ms = 1e3 * timed(lambda: m.step(0, h0, u), device, args.min_time)
                    nbytes, macs = stored_bytes(mat, layout, b)
                    traffic = nbytes + 3 * 4 * n * batch
                    bound = 1e3 * max(2 * macs * batch / flops, traffic / bw)
                    peak = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
                            else nbytes + 3 * 4 * n * batch) / 2**20
                    if name == "dense":
                        dense_ms, dense_bound = ms, bound
                    fill = int(torch.count_nonzero(mat)) / macs
                    rows.append(f"{n:5d} {s:8.2%} {batch:5d} {name:>10} {ms:9.4f} {dense_ms / ms:7.2f}x "
                                f"{nbytes / 2**20:9.2f} {peak:8.2f} {ms / bound:7.2f} {dense_bound / bound:6.1f}x "
                                f"{fill:6.3f}")
                print("\n".join(rows), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
