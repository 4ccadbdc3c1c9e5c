"""Selective scan forward+backward: our time-blocked scan vs the sequential reference, mambapy's
pscan, and our previous whole-sequence chunked scan."""
import torch

from spikmamba.benchmark import optional
from spikmamba.nn.ssm.selective_scan import selective_scan_fast, selective_scan_ref


def _inputs(B, D, N, L):
    g = torch.Generator().manual_seed(0)
    u = torch.randn(B, D, L, generator=g, requires_grad=True)
    delta = (torch.rand(B, D, L, generator=g) * 0.1).requires_grad_()
    A = (-torch.rand(D, N, generator=g) - 0.5).requires_grad_()
    Bm = torch.randn(B, N, L, generator=g, requires_grad=True)
    Cm = torch.randn(B, N, L, generator=g, requires_grad=True)
    return u, delta, A, Bm, Cm


def _chunked_linear_scan(u, delta, A, Bm, Cm):
    """Our previous path: whole-sequence [L, B, D, N] tensors through the chunked linear_scan
    (kept here as a baseline for the time-blocked scan that replaced it)."""
    from spikmamba.nn.ssm.linear_scan import linear_scan

    d = delta.permute(2, 0, 1).unsqueeze(-1)                                        # [L, B, D, 1]
    dA = torch.exp(d * A)
    dBu = d * u.permute(2, 0, 1).unsqueeze(-1) * Bm.permute(2, 0, 1).unsqueeze(2)
    h = linear_scan(dA, dBu)
    return (h * Cm.permute(2, 0, 1).unsqueeze(2)).sum(-1).permute(1, 2, 0)


def _ours(fn, args):
    def run():
        for t in args:
            t.grad = None
        fn(*args).sum().backward()
    return run


def _mambapy_forward(u, delta, A, Bm, Cm):
    """The same scan (no D, z or softplus) written with mambapy's parallel scan."""
    from mambapy.pscan import pscan

    dA = torch.exp(delta.unsqueeze(-1) * A.unsqueeze(1))                            # [B, D, L, N]
    dBu = delta.unsqueeze(-1) * Bm.transpose(1, 2).unsqueeze(1) * u.unsqueeze(-1)   # [B, D, L, N]
    h = pscan(dA.transpose(1, 2).contiguous(), dBu.transpose(1, 2).contiguous())    # [B, L, D, N]
    return (h * Cm.transpose(1, 2).unsqueeze(2)).sum(-1).transpose(1, 2)            # [B, D, L]


def _mambapy(args):
    with torch.no_grad():  # a baseline computing something else would make the ratio meaningless
        torch.testing.assert_close(_mambapy_forward(*args), selective_scan_fast(*args), rtol=1e-4, atol=1e-4)

    def run():
        for t in args:
            t.grad = None
        _mambapy_forward(*args).sum().backward()
    return run


def make(L):
    def setup(quick: bool):
        B, D, N = (2, 8, 4) if quick else (8, 256, 16)
        length = 32 if quick else L
        args = _inputs(B, D, N, length)
        impls = {"spikmamba selective_scan_fast": _ours(selective_scan_fast, args)}
        impls["previous: whole-sequence chunked linear_scan"] = _ours(_chunked_linear_scan, args)
        impls["sequential reference (selective_scan_ref)"] = _ours(selective_scan_ref, args)
        missing = optional("mambapy")
        impls["mambapy pscan"] = missing or _mambapy(args)
        return {"what": f"selective scan forward+backward, B={B} D={D} N={N} L={length}", "impls": impls}
    return setup


BENCHMARKS = {f"scan-L{L}": make(L) for L in (256, 1024, 4096)}
