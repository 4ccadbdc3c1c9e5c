"""The thread wait policy: set before torch loads OpenMP, never over what the user chose."""
import os
import subprocess
import sys

from spikmamba.threads import SPINCOUNT, apply_wait_policy, usable_cpus


def test_policy_sets_a_short_spin_unless_the_user_chose():
    env = {}
    assert "GOMP_SPINCOUNT" in apply_wait_policy(env) and env == {"GOMP_SPINCOUNT": SPINCOUNT}
    env = {"OMP_WAIT_POLICY": "ACTIVE"}
    assert "left to the user" in apply_wait_policy(env) and env == {"OMP_WAIT_POLICY": "ACTIVE"}
    env = {"GOMP_SPINCOUNT": "5"}
    apply_wait_policy(env)
    assert env == {"GOMP_SPINCOUNT": "5"}
    env = {"SPIKMAMBA_THREAD_POLICY": "off"}
    assert "off" in apply_wait_policy(env) and "GOMP_SPINCOUNT" not in env


def test_the_command_applies_it_before_torch_is_imported():
    # in a fresh interpreter: spikmamba's entry point sets it, and torch has not been imported yet
    code = ("import os, sys; from spikmamba.cli import main; main(['datasets', 'nmnist']); "
            "print('SPIN', os.environ.get('GOMP_SPINCOUNT'))")
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY",
                                                              "SPIKMAMBA_THREAD_POLICY")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert f"SPIN {SPINCOUNT}" in out
    late = subprocess.run([sys.executable, "-c", "import torch; from spikmamba.threads import apply_wait_policy; "
                           "print(apply_wait_policy())"], env=env, capture_output=True, text=True, check=True).stdout
    assert "torch was imported first" in late


def test_usable_cpus_is_the_affinity_mask():
    assert usable_cpus() == len(os.sched_getaffinity(0))
