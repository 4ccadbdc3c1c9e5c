"""Collectives under torchrun get tensors on a device their process group serves (issue 30): NCCL
refuses CPU tensors, which only a multi-GPU machine would show, so the rule is checked on every
collective everywhere, and the CUDA group takes gloo beside NCCL for the CPU bookkeeping."""
import pytest
import torch
import torch.distributed as dist

from spikmamba.engine import TrainConfig, train
from spikmamba.engine import distributed as D

TINY = {"data.synth.sensor_size": 16, "data.frames": 4, "model.patch_size": 4, "data.synth.num_train": 16,
        "data.synth.num_test": 8, "data.batch_size": 8, "schedule.epochs": 1, "run.progress": False,
        "run.tensorboard": False}


@pytest.fixture
def one_process_group(tmp_path):
    """A real gloo group of one process (a file store: no port, no network)."""
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield
    if dist.is_initialized():
        dist.destroy_process_group()


def test_a_cuda_run_joins_a_group_with_gloo_for_the_cpu_and_sets_its_gpu_first(monkeypatch):
    calls = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls.append(("set_device", d)))
    monkeypatch.setattr(dist, "init_process_group", lambda backend: calls.append(("init", backend)))
    monkeypatch.setattr(dist, "get_rank", lambda: 1)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    env = D.init("cuda")
    assert calls == [("set_device", 1), ("init", "cpu:gloo,cuda:nccl")]
    assert (env.rank, env.world_size, env.local_rank) == (1, 2, 1)
    calls.clear()
    D.init("cpu")
    assert calls == [("init", "gloo")]


def test_the_devices_a_group_serves_are_read_from_its_backend_config(monkeypatch):
    for config, devices in (("cpu:gloo,cuda:nccl", {"cpu", "cuda"}), ("nccl", {"cuda"}), ("gloo", {"cpu"}),
                            ("cuda:nccl", {"cuda"})):
        monkeypatch.setattr(dist, "get_backend_config", lambda config=config: config)
        assert D.group_devices() == devices, config


def test_a_collective_on_a_device_the_group_does_not_serve_is_refused(one_process_group, monkeypatch):
    env = D.DistEnv(rank=0, world_size=2)  # what the helpers see under torchrun
    t = torch.ones(3)
    assert D.all_reduce_sum(t, env) is t and t.tolist() == [1.0, 1.0, 1.0]  # a one-process sum
    monkeypatch.setattr(dist, "get_backend_config", lambda group=None: "nccl")
    with pytest.raises(RuntimeError, match=r"a collective got a cpu tensor, but the process group \(nccl\)"):
        D.all_reduce_sum(t, env)


@pytest.mark.slow  # two tiny training runs
def test_every_collective_of_a_training_run_is_checked(one_process_group, monkeypatch, tmp_path):
    """The loop's collectives (counts, metrics, evaluation) all pass the check: a run on a
    one-process group that the loop takes for two processes completes on gloo, and the same run
    on a group serving CUDA only is stopped at its first CPU collective."""
    seen = []
    real = dist.all_reduce
    monkeypatch.setattr(dist, "all_reduce", lambda t, *a, **kw: (seen.append(t.device.type), real(t, *a, **kw))[1])
    monkeypatch.setattr(D, "init", lambda device_type: D.DistEnv(rank=0, world_size=2))
    # object gathers (skipped-sample lists, weight digests) fill every slot, as a second identical rank would
    monkeypatch.setattr(dist, "all_gather_object", lambda out, obj, group=None: out.__setitem__(slice(None),
                                                                                              [obj] * len(out)))
    monkeypatch.setattr(D, "shutdown", lambda env: None)  # the fixture's group outlives the run
    summary = train(TrainConfig().replace({**TINY, "run.out_dir": str(tmp_path / "gloo")}))
    assert summary["steps"] == 2 and seen and set(seen) == {"cpu"}
    monkeypatch.setattr(dist, "get_backend_config", lambda group=None: "nccl")
    with pytest.raises(RuntimeError, match="a collective got a cpu tensor"):
        train(TrainConfig().replace({**TINY, "run.out_dir": str(tmp_path / "nccl")}))


def test_default_workers_feed_a_gpu_with_every_spare_cpu_and_leave_a_cpu_model_its_cores(monkeypatch):
    from spikmamba import threads
    from spikmamba.engine.loader import CPU_MODEL_MAX_WORKERS, default_num_workers

    monkeypatch.setattr(threads, "usable_cpus", lambda: 16)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert default_num_workers(False, device=torch.device("cuda")) == 15  # was capped at 4 on the H200 host
    assert default_num_workers(False, device="cpu") == CPU_MODEL_MAX_WORKERS
    assert default_num_workers(True, device="cuda") == 0  # data in memory: nothing to read
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # two GPUs' processes share the CPUs
    assert default_num_workers(False, D.DistEnv(0, 2, 0), device="cuda") == 7
    monkeypatch.setattr(threads, "usable_cpus", lambda: 2)
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    assert default_num_workers(False, device="cpu") == default_num_workers(False, device="cuda") == 1
