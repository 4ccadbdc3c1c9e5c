"""EAS-SNN's adaptive event sampler (Wang et al., ECCV 2024, arXiv 2403.12574), as a front-end.

Fixed time bins cut every pixel's stream at the same instants. Here a recurrent spiking
network decides, per pixel and channel, when to close a sampling window:

* Input: fine frames ``[B, S, C_in, H, W]`` (polarity counts over ``S`` short bins).
* Gated recurrent LIF (the ARSNN cell), per fine step ``t``::

      leak_t, gain_t = sigmoid(conv_x(x_t) + conv_s(s_{t-1}))     gates: current input and previous spikes
      u_t = leak_t * u_{t-1} + gain_t * conv_in(x_t)              membrane potential (conv_in: no bias)
      w_t = w_{t-1} + u_t                                          the open window's summed potential
      s_t = H(u_t - v_threshold)                                   box surrogate in the backward pass
      u_t, w_t <- (1 - s_t) * u_t, (1 - s_t) * w_t                  hard reset: a spike closes the window

* A spike at ``t`` emits the closed window's sum ``w_t``. The ``S`` fine steps are grouped into
  ``T = S / fine_steps`` output steps and the emitted sums added up per step, giving
  ``[B, T, C, H, W]`` for any frame-based model.
* **Spike-Aware Training (SAT)**: the emitted value is ``s_t * w_t`` instead of ``w_t`` where
  ``s_t = 1``. Forward values are identical; the gradient also flows into the spike decision
  through the surrogate, so training learns *when* to sample.
* **Residual Potential Dropout (RPD)**: the potential of windows still open after the last
  spike is dropped. Without it, those residual sums are added to the last output step.
* The reset is detached from the graph (as SpikingJelly's ``detach_reset``): the spike's
  gradient reaches the sampler through the emitted value (SAT), not through the reset.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import InputError
from .export_mode import exporting
from .surrogate import Rectangular, SurrogateFunction, get_surrogate


class AdaptiveSampler(nn.Module):
    def __init__(self, in_chans: int = 2, channels: int = 2, fine_steps: int = 4, kernel_size: int = 3,
                 v_threshold: float = 1.0, sat: bool = True, rpd: bool = True,
                 surrogate_function: str | SurrogateFunction | None = None):
        super().__init__()
        if fine_steps < 1 or channels < 1 or kernel_size % 2 == 0:
            raise InputError(f"need fine_steps >= 1, channels >= 1 and an odd kernel_size; got "
                             f"{fine_steps}, {channels}, {kernel_size}")
        pad = kernel_size // 2
        self.in_chans, self.channels, self.fine_steps = in_chans, channels, fine_steps
        self.v_threshold, self.sat, self.rpd = float(v_threshold), bool(sat), bool(rpd)
        # no bias: a pixel without events gets no current. With a bias, empty pixels slowly
        # integrated it, kept their windows open for the whole clip and, when one finally
        # crossed the threshold, emitted a sum 100x the typical value (a measured run collapsed)
        self.conv_in = nn.Conv2d(in_chans, channels, kernel_size, padding=pad, bias=False)
        self.conv_x = nn.Conv2d(in_chans, 2 * channels, kernel_size, padding=pad)
        self.conv_s = nn.Conv2d(channels, 2 * channels, kernel_size, padding=pad, bias=False)
        self.surrogate = get_surrogate(surrogate_function) if surrogate_function is not None else Rectangular(1.0)
        self._init_as_event_counter()
        self.firing_rate = 0.0  # fraction of (step, pixel, channel) that spiked in the last forward
        self.residual: torch.Tensor | None = None  # the open windows' sums after the last step

    @torch.no_grad()
    def _init_as_event_counter(self) -> None:
        """Start as a leaky per-pixel event counter that samples at every event: channel ``c``
        integrates input channel ``c mod C_in`` at the centre tap with weight 2, leak and gain
        gates open (sigmoid(2) = 0.88), so one event (log1p(1) = 0.69 -> 1.22) crosses the
        threshold. Training starts from (nearly) fixed frames and learns to wait longer where
        that helps. With the default conv init the currents stay far below threshold on sparse
        event data: no window would ever close and no gradient would reach the gates."""
        for conv in (self.conv_in, self.conv_x, self.conv_s):
            nn.init.normal_(conv.weight, std=0.01)
        c = self.conv_in.kernel_size[0] // 2
        for out in range(self.channels):
            self.conv_in.weight[out, out % self.in_chans, c, c] += 2.0
        self.conv_x.bias.fill_(2.0)
        for p in self.parameters():  # the gains set when windows close: weight decay would silence the sampler
            p._no_weight_decay = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5 or x.shape[2] != self.in_chans:
            raise InputError(f"AdaptiveSampler expects fine frames [B, S, {self.in_chans}, H, W], got {tuple(x.shape)}")
        B, S, _, H, W = x.shape
        if S % self.fine_steps:
            raise InputError(f"{S} fine steps do not split into output steps of fine_steps={self.fine_steps}")
        xs = x.transpose(0, 1).flatten(0, 1)                                # [S*B, Cin, H, W]
        # the input-only parts of every step at once, split back into steps by chunk, not by a
        # reshape to (S, B): a traced reshape bakes the batch size into an exported graph
        current = self.conv_in(xs).chunk(S, 0)
        gates_x = self.conv_x(xs).chunk(S, 0)
        u = w = s = None
        emitted, spikes = [], 0.0
        for t in range(S):
            g = gates_x[t] if s is None else gates_x[t] + self.conv_s(s)
            leak, gain = torch.sigmoid(g).chunk(2, dim=1)
            u = gain * current[t] if u is None else leak * u + gain * current[t]
            w = u if w is None else w + u
            s = self.surrogate(u - self.v_threshold)
            fired = s.detach()
            emitted.append(s * w if self.sat else w * fired)
            keep = 1.0 - fired                                              # hard reset closes the window
            u, w = u * keep, w * keep
            spikes = spikes + fired.sum()  # a tensor: one host sync per forward, not one per step
        k = self.fine_steps
        out = torch.stack([sum(emitted[i * k:(i + 1) * k]) for i in range(S // k)])  # [T, B, C, H, W]
        self.residual = w.detach()
        if not self.rpd:
            out = torch.cat([out[:-1], (out[-1] + w).unsqueeze(0)])
        if not exporting():  # a recorded graph has no Python number to give
            self.firing_rate = float(spikes) / max(S * w.numel(), 1)
        return out.transpose(0, 1)

    def extra_repr(self) -> str:
        return (f"in_chans={self.in_chans}, channels={self.channels}, fine_steps={self.fine_steps}, "
                f"v_threshold={self.v_threshold}, sat={self.sat}, rpd={self.rpd}")


def adaptive_windows_reference(sampler: AdaptiveSampler, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The sampler's output and residual, written pixel by pixel with plain Python numbers: each
    pixel's potential trajectory, its windows, and the sum of each window placed at the step of
    its closing spike. For tests; the gates and currents come from the sampler's own convs."""
    B, S, _, H, W = x.shape
    C, k = sampler.channels, sampler.fine_steps
    with torch.no_grad():
        xs = x.transpose(0, 1).flatten(0, 1)
        cur = sampler.conv_in(xs).unflatten(0, (S, B)).tolist()
        gx = sampler.conv_x(xs).unflatten(0, (S, B))
        out = torch.zeros(S // k, B, C, H, W, dtype=x.dtype)
        spikes = torch.zeros(B, C, H, W, dtype=x.dtype)  # previous spikes, whole map (conv_s mixes pixels)
        u = torch.zeros(B, C, H, W, dtype=x.dtype)
        w = torch.zeros(B, C, H, W, dtype=x.dtype)
        for t in range(S):
            g = gx[t] + (sampler.conv_s(spikes) if t else 0)
            leak, gain = torch.sigmoid(g).chunk(2, dim=1)
            new_spikes = torch.zeros_like(spikes)
            for b in range(B):
                for c in range(C):
                    for i in range(H):
                        for j in range(W):
                            v = (
                                float(leak[b, c, i, j]) * float(u[b, c, i, j])
                                + float(gain[b, c, i, j]) * cur[t][b][c][i][j]
                            )
                            total = float(w[b, c, i, j]) + v
                            if v >= sampler.v_threshold:  # the window closes: emit its sum, reset
                                out[t // k, b, c, i, j] += total
                                new_spikes[b, c, i, j] = 1.0
                                v, total = 0.0, 0.0
                            u[b, c, i, j], w[b, c, i, j] = v, total
            spikes = new_spikes
        if not sampler.rpd:
            out[-1] += w
    return out.transpose(0, 1), w
