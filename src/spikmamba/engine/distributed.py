"""Multi-process data-parallel training under ``torchrun`` (DDP; gloo on CPU, NCCL on CUDA).

``torchrun --nproc_per_node N -m spikmamba train ...`` sets ``RANK``/``WORLD_SIZE``/
``LOCAL_RANK``; :func:`init` reads them. Each global batch is split into one contiguous shard
per process, and the loss is scaled so that DDP's gradient average equals the gradient of the
mean loss over the whole global batch: N processes take the same steps as one process with
the same ``batch_size``. BatchNorm statistics are made global the same way
(:class:`GlobalBatchNorm`), because torch's SyncBatchNorm runs on GPUs only.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


#: the process group's backend per device: on CUDA, NCCL takes the gradients and the global
#: BatchNorm's statistics (device tensors), gloo the small bookkeeping the loop keeps on the CPU
#: (sample counts, metrics, the confusion matrix). NCCL alone refuses CPU tensors.
BACKENDS = {"cuda": "cpu:gloo,cuda:nccl", "cpu": "gloo"}


def init(device_type: str) -> DistEnv:
    """Join the process group torchrun describes; a single process when not launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistEnv()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        if device_type == "cuda":
            torch.cuda.set_device(local_rank)  # before NCCL makes its communicators
        dist.init_process_group(BACKENDS.get(device_type, "gloo"))
    return DistEnv(dist.get_rank(), dist.get_world_size(), local_rank)


def shutdown(env: DistEnv) -> None:
    if env.enabled and dist.is_initialized():
        import gc

        gc.collect()  # what still holds the group (autograd graphs in reference cycles) goes first
        dist.destroy_process_group()


def shard(idx: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """This process's contiguous part of a global batch of indices (sizes differ by at most one)."""
    return idx.tensor_split(env.world_size)[env.rank] if env.enabled else idx


def group_devices() -> set[str]:
    """The device types the default process group has a backend for (``cpu:gloo,cuda:nccl`` ->
    {cpu, cuda}; a bare ``nccl`` -> {cuda})."""
    config = str(dist.get_backend_config())
    if ":" not in config:  # one backend for every device it supports
        return {"cuda"} if config == "nccl" else {"cpu"} if config == "gloo" else {"cpu", "cuda"}
    return {part.split(":")[0] for part in config.split(",")}


def check_device(t: torch.Tensor) -> torch.Tensor:
    """A collective's tensor must be on a device the group has a backend for: NCCL handed a CPU
    tensor fails only on a multi-GPU machine, so every collective of ours checks it everywhere."""
    devices = group_devices()
    if t.device.type not in devices:
        raise RuntimeError(f"a collective got a {t.device.type} tensor, but the process group "
                           f"({dist.get_backend_config()}) has a backend for {sorted(devices)} only")
    return t


def all_reduce_sum(t: torch.Tensor, env: DistEnv) -> torch.Tensor:
    if env.enabled:
        dist.all_reduce(check_device(t), op=dist.ReduceOp.SUM)
    return t


def barrier(env: DistEnv) -> None:
    if env.enabled:
        dist.barrier()


class _AllReduceSum(torch.autograd.Function):
    """``y = sum over processes of x``; its gradient is the sum over processes of ``dL/dy``
    (every process's loss depends on ``y``). Checked against a single process by the DDP test."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        dist.all_reduce(check_device(y), op=dist.ReduceOp.SUM)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(check_device(grad), op=dist.ReduceOp.SUM)
        return grad


class GlobalBatchNormMixin(nn.modules.batchnorm._BatchNorm):
    """Makes a BatchNorm's batch statistics cover the samples of every process, on any device.

    Per-channel sums and sums of squares (and the sample count) are all-reduced with the
    autograd-aware :class:`_AllReduceSum`, so the backward pass is global too. With
    one process it is exactly the BatchNorm it extends; with N it equals that BatchNorm over the
    global batch. :func:`convert_batchnorm` mixes it into existing layers (keeping subclasses such
    as channel-last BatchNorms, whose own ``forward`` reshapes and then calls this one)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        self._check_input_dim(x)
        C = x.shape[1]
        dims = [0] + list(range(2, x.dim()))
        count = torch.full((1,), x.numel() / C, dtype=x.dtype, device=x.device)
        stats = _AllReduceSum.apply(torch.cat([x.sum(dims), (x * x).sum(dims), count]))
        n = stats[-1]
        mean = stats[:C] / n
        var = stats[C:2 * C] / n - mean * mean
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                unbiased = var * n / (n - 1).clamp(min=1)
                self.running_mean.mul_(1 - m).add_(m * mean)
                self.running_var.mul_(1 - m).add_(m * unbiased)
        shape = [1, C] + [1] * (x.dim() - 2)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


_GLOBAL_CLASSES: dict = {}


def convert_batchnorm(module: nn.Module) -> nn.Module:
    """Give every BatchNorm in ``module`` global statistics (see :class:`GlobalBatchNormMixin`), in place."""
    for m in module.modules():
        cls = type(m)
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not isinstance(m, GlobalBatchNormMixin):
            if cls not in _GLOBAL_CLASSES:
                _GLOBAL_CLASSES[cls] = type(f"Global{cls.__name__}", (cls, GlobalBatchNormMixin), {})
            m.__class__ = _GLOBAL_CLASSES[cls]
    return module
