"""Whole-model train step (forward + backward + AdamW) of the default model, next to a dense matmul
doing the same number of floating-point operations: the ratio matmul/ours is the fraction of
this machine's matmul throughput the model achieves."""
import torch

from spikmamba.analysis import OpCounter
from spikmamba.models import create_model


def setup(quick: bool):
    B, size, T = (2, 16, 4) if quick else (16, 32, 8)
    patch = 4 if quick else 8
    torch.manual_seed(0)
    model = create_model("spikmamba_tiny_sps", img_size=size, num_frames=T, patch_size=patch)
    x, y = torch.rand(B, T, 2, size, size), torch.randint(0, 10, (B,))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    with torch.no_grad(), OpCounter(model) as ops:
        model(x)
    macs = sum(r.macs for r in ops.layers.values())
    train_flops = 3 * 2 * macs  # forward, plus about twice that for backward
    n = max(64, round((train_flops / 2) ** (1 / 3)))
    a, b = torch.rand(n, n), torch.rand(n, n)

    def step():
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return {"what": f"spikmamba_tiny_sps train step, batch {B}, {T}x2x{size}x{size} "
                    f"({train_flops / 1e9:.2f} GFLOP); matmul {n}x{n} has the same FLOPs",
            "impls": {"spikmamba_tiny_sps train step": step, "dense matmul, same FLOPs": lambda: a @ b}}


BENCHMARKS = {"model-train-step": setup}
