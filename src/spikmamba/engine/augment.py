"""Training augmentation applied to each batch, with one seeded generator (so resume is exact).

* Every input: ``augment_shift`` - a random translation of up to that many pixels, zero fill
  (for images this is the classic "pad and random crop").
* Images (``[B, C, H, W]`` uint8), ``image_augment``:
  ``flip`` - random horizontal flip;
  ``published`` - the recipe of the published image models: random resized crop (scale
  0.08-1, aspect 3/4-4/3), flip, AutoAugment (ImageNet policy, from torchvision when it is
  installed; without torchvision it is skipped with a warning) and random erasing (p = 0.25).
"""
from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F

from ..errors import InputError

IMAGE_AUGMENTS = ("none", "flip", "published")


def shift_offsets(n: int, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """``[n, 2]`` random (dy, dx) in ``[0, 2 * max_shift]`` (offsets into the padded view)."""
    return torch.randint(0, 2 * max_shift + 1, (n, 2), generator=generator)


def apply_shifts(x: torch.Tensor, offsets: torch.Tensor, max_shift: int) -> torch.Tensor:
    """``x [B, ..., H, W]`` with sample ``i`` translated by ``offsets[i] - max_shift``, zero fill."""
    H, W, s = x.shape[-2], x.shape[-1], max_shift
    padded = F.pad(x, (s, s, s, s))
    return torch.stack([padded[i, ..., dy:dy + H, dx:dx + W] for i, (dy, dx) in enumerate(offsets.tolist())])


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each sample of ``x [B, ..., H, W]`` by its own random (dx, dy) in
    ``[-max_shift, max_shift]``, filling with zeros (no events entered the view there)."""
    if max_shift <= 0:
        return x
    return apply_shifts(x, shift_offsets(x.shape[0], max_shift, generator), max_shift)


def random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    flip = torch.rand(x.shape[0], generator=generator) < 0.5
    out = x.clone()
    out[flip] = x[flip].flip(-1)
    return out


def _uniform(generator, lo, hi) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=generator))


def _random_box_sides(generator, area: float, fraction, ratio) -> tuple[int, int]:
    """Sides ``(sqrt(a * r), sqrt(a / r))`` of a box of random area ``a`` (a ``fraction`` range of
    ``area``) and random aspect ``r`` (log-uniform in ``ratio``), rounded to pixels."""
    a = area * _uniform(generator, *fraction)
    aspect = math.exp(_uniform(generator, math.log(ratio[0]), math.log(ratio[1])))
    return round(math.sqrt(a * aspect)), round(math.sqrt(a / aspect))


def random_resized_crop(
    x: torch.Tensor, generator: torch.Generator, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)
) -> torch.Tensor:
    """Per sample: a crop of random area fraction and aspect ratio, resized back to ``H x W``."""
    B, C, H, W = x.shape
    out = torch.empty_like(x)
    for i in range(B):
        for _ in range(10):
            w, h = _random_box_sides(generator, H * W, scale, ratio)
            if 0 < w <= W and 0 < h <= H:
                break
        else:  # fall back to the whole image
            h, w = H, W
        top = int(torch.randint(0, H - h + 1, (), generator=generator))
        left = int(torch.randint(0, W - w + 1, (), generator=generator))
        crop = x[i:i + 1, :, top:top + h, left:left + w].float()
        resized = F.interpolate(crop, size=(H, W), mode="bilinear", align_corners=False)
        out[i] = resized[0].round().clamp(0, 255).to(x.dtype) if not x.is_floating_point() else resized[0]
    return out


def random_erasing(x: torch.Tensor, generator: torch.Generator, p: float = 0.25, area=(0.02, 1 / 3),
                   ratio=(0.3, 3.3)) -> torch.Tensor:
    """With probability ``p`` per sample, fill one random rectangle with random pixel values."""
    B, C, H, W = x.shape
    out = x.clone()
    for i in range(B):
        if float(torch.rand((), generator=generator)) >= p:
            continue
        for _ in range(10):
            h, w = _random_box_sides(generator, H * W, area, ratio)
            if 0 < h < H and 0 < w < W:
                top = int(torch.randint(0, H - h + 1, (), generator=generator))
                left = int(torch.randint(0, W - w + 1, (), generator=generator))
                noise = torch.randint(0, 256, (C, h, w), generator=generator)
                out[i, :, top:top + h, left:left + w] = noise.to(x.dtype)
                break
    return out


_warned = []


def auto_augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """torchvision's AutoAugment (ImageNet policy) per uint8 image; skipped, with one warning, without torchvision.

    torchvision draws from the global torch RNG; it runs here inside ``fork_rng`` seeded from
    ``generator``, so the batch augmentation stays a function of our one generator (and the
    global RNG is left as it was)."""
    try:
        from torchvision.transforms import v2
    except ImportError:
        if not _warned:
            warnings.warn("data.images.augment=published: AutoAugment skipped because torchvision is not installed "
                          "(pip install torchvision); crop, flip and erasing still apply", stacklevel=2)
            _warned.append(True)
        return x
    policy = v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET)
    seed = int(torch.randint(0, 2**62, (), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return torch.stack([policy(img) for img in x])


def augment_batch(x: torch.Tensor, shift: int, image_augment: str, generator: torch.Generator) -> torch.Tensor:
    """The training augmentation of one batch (see the module docstring)."""
    x = random_shift(x, shift, generator)
    if x.dim() != 4 or image_augment == "none":
        return x
    if image_augment not in IMAGE_AUGMENTS:
        raise InputError(f"image_augment must be one of {IMAGE_AUGMENTS}, got {image_augment!r}")
    if image_augment == "published":
        x = random_resized_crop(x, generator)
    x = random_flip(x, generator)
    if image_augment == "published":
        x = random_erasing(auto_augment(x, generator), generator)
    return x
