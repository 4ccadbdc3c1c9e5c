"""How our OpenMP threads wait: a policy that holds when the CPU is shared and costs nothing alone.

Why: a train step of our models is thousands of small operations, each an OpenMP parallel region
whose threads meet at a barrier. By default libgomp (the OpenMP runtime of PyTorch's Linux
wheels) lets a thread that reaches a barrier spin for about 300,000 iterations before it sleeps.
Alone, that is the fastest choice. Beside any other busy process, the sibling thread is often
descheduled and the spinning thread burns its time slice waiting for it, at every barrier:
measured on a 2-core machine (``benchmarks/RESULTS.md``), a 100 ms step took 0.4-4.7 s beside one
other training process. Waiting passively (``OMP_WAIT_POLICY=PASSIVE``) holds when shared but makes
the step 1.7x slower alone (every barrier becomes a futex sleep and wake-up). A short spin,
``GOMP_SPINCOUNT=1000``, covers the gap between two consecutive operations alone and yields
soon enough when shared: no slower alone, 2.5-3x beside a competitor (the fair share is 2x).

The runtime reads these variables once, when PyTorch loads it, so :func:`apply_wait_policy` must
run before ``import torch``; the ``spikmamba`` command calls it first thing. Library users who
want the same can set ``GOMP_SPINCOUNT=1000`` in their environment. Anything the user has set
(``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT``) is left alone, and ``SPIKMAMBA_THREAD_POLICY=off``
turns the policy off.
"""
from __future__ import annotations

import os
import sys

#: the spin count chosen by measurement (see the module docstring)
SPINCOUNT = "1000"
USER_KEYS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
OFF_KEY = "SPIKMAMBA_THREAD_POLICY"


def apply_wait_policy(environ: os._Environ | dict | None = None) -> str:
    """Set ``GOMP_SPINCOUNT`` unless the user chose a wait policy; returns what was decided, in words.

    Call before ``import torch``: afterwards the OpenMP runtime has read its settings and this
    changes nothing (the return value says so)."""
    env = os.environ if environ is None else environ
    if env.get(OFF_KEY, "").lower() in ("off", "0", "false", "no"):
        return f"thread wait policy off ({OFF_KEY}={env[OFF_KEY]})"
    chosen = [k for k in USER_KEYS if k in env]
    if chosen:
        return "thread wait policy left to the user (" + ", ".join(f"{k}={env[k]}" for k in chosen) + ")"
    if environ is None and "torch" in sys.modules:
        return "thread wait policy not applied: torch was imported first (set GOMP_SPINCOUNT=1000 yourself)"
    env["GOMP_SPINCOUNT"] = SPINCOUNT
    return f"GOMP_SPINCOUNT={SPINCOUNT} (short spin, then sleep; see spikmamba.threads)"


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)
