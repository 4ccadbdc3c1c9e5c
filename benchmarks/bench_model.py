"""Whole-model train step (forward + backward + AdamW) of the default model, next to a dense matmul
doing the same number of floating-point operations: the ratio matmul/ours is the fraction of
this machine's matmul throughput the model achieves. ``model-train-step-compiled``: the same step
with the model under torch.compile (``device.compile=true``) against eager, in one process."""
import torch

from spikmamba.analysis import OpCounter
from spikmamba.models import create_model


def _shape(quick: bool):
    B, size, T = (2, 16, 4) if quick else (16, 32, 8)
    return B, size, T, 4 if quick else 8


def _train_step(quick: bool, compiled: bool = False, name: str = "spikmamba_tiny_sps"):
    """A train step of model ``name`` (a fresh one, seeded) on a fixed random batch."""
    B, size, T, patch = _shape(quick)
    torch.manual_seed(0)
    model = create_model(name, img_size=size, num_frames=T, **({"patch_size": patch} if "spikmamba" in name else {}))
    net = torch.compile(model) if compiled else model
    x, y = torch.rand(B, T, 2, size, size), torch.randint(0, 10, (B,))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step():
        loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return model, x, step


def setup(quick: bool):
    B, size, T, _ = _shape(quick)
    model, x, step = _train_step(quick)
    with torch.no_grad(), OpCounter(model) as ops:
        model(x)
    macs = sum(r.macs for r in ops.layers.values())
    train_flops = 3 * 2 * macs  # forward, plus about twice that for backward
    n = max(64, round((train_flops / 2) ** (1 / 3)))
    a, b = torch.rand(n, n), torch.rand(n, n)

    return {"what": f"spikmamba_tiny_sps train step, batch {B}, {T}x2x{size}x{size} "
                    f"({train_flops / 1e9:.2f} GFLOP); matmul {n}x{n} has the same FLOPs",
            "impls": {"spikmamba_tiny_sps train step": step, "dense matmul, same FLOPs": lambda: a @ b}}


def setup_compiled(quick: bool):
    B, size, T, _ = _shape(quick)
    name = "scnn_nmnist" if quick else "spikmamba_tiny_sps"  # quick: a small graph, compiled in seconds
    _, _, compiled = _train_step(quick, compiled=True, name=name)
    compiled()  # compilation happens here, before anything is timed
    _, _, eager = _train_step(quick, name=name)
    return {"what": f"{name} train step, batch {B}, {T}x2x{size}x{size}: torch.compile vs eager",
            "impls": {"compiled (device.compile=true)": compiled, "eager": eager}}


BENCHMARKS = {"model-train-step": setup, "model-train-step-compiled": setup_compiled}
