"""Every dataset on a tiny fake tree laid out exactly as the real one, plus the real N-MNIST
and gesture-clip folders when ../shared/data is present."""
import json
import os
import shutil
import tracemalloc

import numpy as np
import pytest
import torch
from conftest import random_events

from spikmamba.data import (
    DATASETS,
    HARDVS,
    NMNIST,
    PAF,
    DatasetLayoutError,
    DVSGesture,
    DVSGestureClips,
    EFAction,
    EventRepresentation,
    NCaltech101,
    SampledFrames,
    SampleError,
    stratified_split,
)
from spikmamba.events.io import write_events


def _nbin(path, n=50, sensor=(34, 34), seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    write_events(path, random_events(n, sensor, 300_000, seed), format="nbin")


def test_nmnist_official_tree(tmp_path):
    for split in ("Train", "Test"):
        for d in range(10):
            for k in range(2):
                _nbin(tmp_path / split / str(d) / f"{k:05d}.bin", seed=d * 10 + k)
    rep = EventRepresentation((34, 34), frames=4)
    tr, te = NMNIST(tmp_path, "train", representation=rep), NMNIST(tmp_path, "test")
    assert len(tr) == 20 and len(te) == 20 and sorted(set(tr.targets)) == list(range(10))
    x, y = tr[3]
    assert isinstance(x, torch.Tensor) and x.shape == (4, 2, 34, 34) and y == 1
    ev, _ = te[0]
    assert ev.dtype.names == ("t", "x", "y", "p") and len(ev) == 50


def test_nmnist_flat_folder_and_bad_labels(tmp_path):
    flat = tmp_path / "train"
    for i in range(1, 4):
        _nbin(flat / f"{i}.bs2", seed=i)
    (flat / "labels.txt").write_text("#sample #class\n1\t5\n2\t0\n3\t9\n")
    ds = NMNIST(tmp_path, "train")
    assert ds.targets == [5, 0, 9]
    (flat / "labels.txt").write_text("#sample #class\n1\tfive\n")
    with pytest.raises(ValueError, match="labels.txt:2"):
        NMNIST(tmp_path, "train")


def test_missing_dataset_folder_prints_expected_tree(tmp_path):
    (tmp_path / "stray.txt").write_text("x")
    with pytest.raises(DatasetLayoutError) as err:
        NMNIST(tmp_path, "train")
    msg = str(err.value)
    assert "expected layout" in msg and "Train/0" in msg and "stray.txt" in msg
    with pytest.raises(DatasetLayoutError, match="does not exist"):
        DVSGesture(tmp_path / "nope")


def test_ncaltech101_class_folders(tmp_path):
    for c in ("accordion", "airplanes", "BACKGROUND_Google"):
        for k in range(2):
            _nbin(tmp_path / c / f"image_{k + 1:04d}.bin", sensor=(240, 180), seed=k)
    ds = NCaltech101(tmp_path)
    assert (
        ds.classes == ["BACKGROUND_Google", "accordion", "airplanes"] and len(ds) == 6 and ds.sensor_size == (240, 180)
    )


def test_dvsgesture_trials_are_cut_into_labelled_samples(tmp_path):
    ev = random_events(20_000, (128, 128), 6_000_000, seed=2)
    write_events(tmp_path / "user01_fluorescent.aedat", ev, sensor_size=(128, 128), format="aedat3")
    (tmp_path / "user01_fluorescent_labels.csv").write_text(
        "class,startTime_usec,endTime_usec\n1,1000000,2000000\n11,3000000,4500000\n")
    (tmp_path / "trials_to_train.txt").write_text("user01_fluorescent.aedat\n")
    (tmp_path / "trials_to_test.txt").write_text("")
    ds = DVSGesture(tmp_path, "train")
    assert ds.targets == [0, 10] and len(DVSGesture(tmp_path, "test")) == 0
    first, label = ds[0]
    expected = ev[(ev["t"] >= 1_000_000) & (ev["t"] < 2_000_000)]
    assert label == 0 and np.array_equal(first, expected)
    assert ds.classes[10] == "other_gestures"
    (tmp_path / "trials_to_train.txt").write_text("user02_led.aedat\n")
    with pytest.raises(DatasetLayoutError, match="user02_led"):
        DVSGesture(tmp_path, "train")


def test_hardvs_label_files(tmp_path):
    for a, name in [(1, "dvSave-2021_10_15_19_18_02"), (300, "dvSave-2021_11_01_10_00_00")]:
        folder = tmp_path / f"action_{a:03d}"
        folder.mkdir()
        write_events(folder / f"{name}.npz", random_events(100, (346, 260)), format="npz")
    (tmp_path / "train_label.txt").write_text(
        "action_001/dvSave-2021_10_15_19_18_02 0\naction_300/dvSave-2021_11_01_10_00_00 299\n"
    )
    ds = HARDVS(tmp_path, "train", representation=EventRepresentation((346, 260), frames=2, resolution=(64, 48)))
    assert ds.targets == [0, 299] and len(ds.classes) == 300 and ds[1][0].shape == (2, 2, 48, 64)
    with pytest.raises(DatasetLayoutError, match="val_label.txt"):
        HARDVS(tmp_path, "val")


def test_paf_aedat2_davis_and_split_lists(tmp_path):
    for c in ("1", "2", "10"):
        (tmp_path / c).mkdir()
        write_events(
            tmp_path / c / "clip.aedat", random_events(200, (346, 260)), sensor_size=(346, 260), format="aedat2"
        )
    (tmp_path / "train.txt").write_text("1/clip.aedat\n10/clip.aedat\n")
    ds = PAF(tmp_path, "train")
    assert ds.classes == ["1", "2", "10"] and ds.targets == [0, 2] and len(ds[1][0]) == 200
    assert len(PAF(tmp_path)) == 3


def test_efaction_reads_aedat4(shared_data, tmp_path):
    pytest.importorskip("aedat")
    for c in ("falling", "walking"):
        (tmp_path / c).mkdir()
        shutil.copy(shared_data / "aedat4" / "data_sample.aedat4", tmp_path / c / "clip.aedat4")
    ds = EFAction(tmp_path, sensor_size=(320, 240))
    ev, y = ds[1]
    assert y == 1 and len(ev) == 323963


def test_sampled_frames_layout(tmp_path):
    for c in (1, 3):
        d = tmp_path / "frames" / str(c)
        d.mkdir(parents=True)
        np.savez(d / "clip.npz", images=np.full((8, 16, 16, 3), 255, dtype=np.uint8))
    (tmp_path / "list.txt").write_text("frames/1/clip.npz\nframes/3/clip.npz\n")
    (tmp_path / "classes.json").write_text(json.dumps({"a": 0, "b": 1, "c": 2}))
    ds = SampledFrames(tmp_path / "list.txt", tmp_path / "classes.json")
    x, y = ds[1]
    assert y == 2 and x.shape == (8, 3, 16, 16) and float(x.max()) == 1.0


def _flat_nmnist(folder, n=4, events=50):
    for i in range(1, n + 1):
        _nbin(folder / f"{i}.bs2", n=events, seed=i)
    (folder / "labels.txt").write_text("h\n" + "".join(f"{i}\t{i % 10}\n" for i in range(1, n + 1)))


def test_cache_is_reused_compact_and_equal_to_computing(tmp_path):
    flat = tmp_path / "data"
    _flat_nmnist(flat)
    rep = EventRepresentation((34, 34), frames=3, resolution=(64, 64))
    plain = NMNIST(flat, representation=rep)
    a = NMNIST(flat, representation=rep, cache_dir=tmp_path / "cache")
    b = NMNIST(flat, representation=rep, cache_dir=tmp_path / "cache")
    first = [a[i][0] for i in range(4)]
    files = sorted((tmp_path / "cache").rglob("*.npz"))
    assert len(files) == 4 and not list((tmp_path / "cache").rglob("*.tmp"))
    mtimes = [f.stat().st_mtime_ns for f in files]
    for i in range(4):
        assert torch.equal(b[i][0], first[i]) and torch.equal(plain[i][0], first[i])  # bit-identical to computing
    assert [f.stat().st_mtime_ns for f in files] == mtimes  # read back, not rebuilt
    # compact: 50 events -> at most 50 nonzero counts, stored sparse as uint32 index + uint8 count
    with np.load(files[0]) as z:
        assert (
            set(z.files) == {"meta", "digest", "shape", "index", "value"}
            and z["value"].dtype == np.uint8
            and len(z["value"]) <= 50
        )
    assert max(f.stat().st_size for f in files) < 2000  # the float32 tensor would be 3*2*64*64*4 = 98 kB
    other = NMNIST(flat, representation=EventRepresentation((34, 34), frames=5), cache_dir=tmp_path / "cache")
    assert other[0][0].shape[0] == 5 and other.cache_dir != a.cache_dir  # another representation, another folder


def test_cache_entries_dense_when_smaller_and_each_kind_round_trips():
    from spikmamba.data.cache import decode, encode

    rng = np.random.default_rng(0)
    busy = rng.integers(0, 300, (4, 2, 8, 8))  # every bin counts, some above 255
    e = encode(busy)
    assert set(e) == {"shape", "dense"} and e["dense"].dtype == np.uint16 and np.array_equal(decode(e), busy)
    voxel = np.zeros((4, 1, 8, 8), np.float32)
    voxel[1, 0, 2, 3] = -0.25
    e = encode(voxel)
    assert "index" in e and e["value"].dtype == np.float32 and np.array_equal(decode(e), voxel)
    assert np.array_equal(decode(encode(np.zeros((2, 3, 4, 4), np.uint8))), np.zeros((2, 3, 4, 4)))
    afe = (rng.random((4, 3, 9, 7)) < 0.7).astype(np.uint8)  # mostly 1 (white), 0/1 only: a bit each
    e = encode(afe)
    assert set(e) == {"shape", "bits"} and e["bits"].nbytes == (afe.size + 7) // 8 and np.array_equal(decode(e), afe)


def _cached(tmp_path, n):
    """(data folder, representation, dataset) of ``n`` N-MNIST-like files with a cache under tmp_path/cache."""
    flat = tmp_path / "data"
    _flat_nmnist(flat, n=n)
    rep = EventRepresentation((34, 34), frames=3)
    return flat, rep, NMNIST(flat, representation=rep, cache_dir=tmp_path / "cache")


def test_a_truncated_entry_is_recomputed_and_a_read_only_cache_is_reported_not_fatal(tmp_path):
    flat, rep, ds = _cached(tmp_path, 2)
    good = ds[0][0]
    entry = next((tmp_path / "cache").rglob("*.npz"))
    entry.write_bytes(entry.read_bytes()[:40])  # a crash mid-write elsewhere, or a damaged disk
    with pytest.warns(UserWarning, match="is unreadable or does not match .* recomputed"):
        again = NMNIST(flat, representation=rep, cache_dir=tmp_path / "cache")[0][0]
    assert torch.equal(again, good) and np.load(entry)["shape"].tolist() == [3, 2, 34, 34]  # replaced
    blocked = tmp_path / "a-file"
    blocked.write_text("a cache folder cannot be made under a file")
    ro = NMNIST(flat, representation=rep, cache_dir=blocked / "cache")
    with pytest.warns(UserWarning, match="a-file.* cannot be written .*without caching"):
        x = ro[1][0]
    assert torch.equal(x, NMNIST(flat, representation=rep)[1][0]) and torch.equal(ro[1][0], x)


def _forge(entry, **changes):
    """Rewrite a cache entry with some arrays changed and its digest recomputed to fit (so the
    value and record checks are tested on their own, not only the digest)."""
    from spikmamba.data.cache import payload_digest

    with np.load(entry) as z:
        arrays = {k: z[k] for k in z.files}
    arrays.update(changes)
    meta = arrays.pop("meta")
    arrays.pop("digest")
    digest = np.frombuffer(payload_digest(meta.tobytes(), arrays), np.uint8)
    with open(entry, "wb") as f:
        np.savez(f, meta=meta, digest=digest, **arrays)


def _entries(folder):
    return sorted(folder.rglob("*.npz"))


def _tamper_cases():
    """(name, tamper(entries, data_folder, cache_root)) of round three's attack on the cache (issue 33, item 1)."""
    def zeros(entries, data, cache):
        for e in entries:
            with np.load(e) as z:
                arrays = {k: z[k] for k in z.files}
            for k in ("value", "dense", "bits"):
                if k in arrays:
                    arrays[k] = np.zeros_like(arrays[k])
            with open(e, "wb") as f:  # the digest left as it was: a naive overwrite
                np.savez(f, **arrays)

    def swapped(entries, data, cache):
        shutil.copy(entries[1], entries[0])

    def linked(entries, data, cache):
        entries[0].unlink()
        os.symlink(entries[2], entries[0])

    def set_first(entry, name, dtype, value):  # one stored value changed, in a type that can hold it
        with np.load(entry) as z:
            array = z[name].astype(dtype)
        array[0] = value
        _forge(entry, **{name: array})

    def negative(entries, data, cache):
        set_first(entries[0], "value", np.int16, -5)

    def nan(entries, data, cache):
        set_first(entries[0], "value", np.float32, np.nan)

    def negative_index(entries, data, cache):
        set_first(entries[0], "index", np.int64, -1)

    def other_split(entries, data, cache):
        rep = EventRepresentation((34, 34), frames=3, split_by="number")
        other = NMNIST(data, representation=rep, cache_dir=cache)
        other[0]
        for e in _entries(other.cache_dir):  # split_by=number entries placed where split_by=time ones belong
            target = [t for t in entries if t.name == e.name]
            for t in entries:
                shutil.copy(e, t)
            assert not target  # keys differ by representation too: a copy must be placed over another name

    def rewritten_source(entries, data, cache):
        src = data / "1.bs2"
        st = src.stat()
        write_events(src, random_events(50, (34, 34), 300_000, seed=99), format="nbin")
        os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert src.stat().st_size == st.st_size and src.stat().st_mtime_ns == st.st_mtime_ns

    return [zeros, swapped, linked, negative, nan, negative_index, other_split, rewritten_source]


@pytest.mark.parametrize("tamper", _tamper_cases(), ids=lambda f: f.__name__)
def test_a_tampered_cache_entry_is_recomputed_never_used(tmp_path, tamper):
    data, rep, ds = _cached(tmp_path, 4)
    [ds[i] for i in range(4)]
    entries = _entries(ds.cache_dir)
    assert len(entries) == 4
    tamper(entries, data, tmp_path / "cache")
    again = NMNIST(data, representation=rep, cache_dir=tmp_path / "cache")
    plain = NMNIST(data, representation=rep)
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = [again[i][0] for i in range(4)]
    assert all(torch.equal(g, plain[i][0]) for i, g in enumerate(got))
    if tamper.__name__ == "rewritten_source":  # its content digest is another key: a miss, computed afresh
        assert again.cache.rebuilt == 0 and len(_entries(again.cache_dir)) == 5
    else:
        assert again.cache.rebuilt >= 1 and len(caught) == 1
        assert "is unreadable or does not match" in str(caught[0].message) and "recomputed" in str(caught[0].message)


def test_a_cache_entry_declaring_a_huge_member_is_refused_before_decompressing(tmp_path):
    import zipfile

    data, rep, ds = _cached(tmp_path, 1)
    expected = ds[0][0]
    entry = _entries(ds.cache_dir)[0]
    with np.load(entry) as z:
        arrays = {k: z[k] for k in z.files}
    entry.unlink()
    with zipfile.ZipFile(entry, "w", compression=zipfile.ZIP_DEFLATED) as zf:  # 512 MB of zeros deflated to 0.5 MB
        for k, a in arrays.items():
            if k != "value":
                with zf.open(k + ".npy", "w") as f:
                    np.lib.format.write_array(f, a)
        with zf.open("value.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "|u1", "fortran_order": False, "shape": (2**29,)})
            block = bytes(2**24)
            for _ in range(2**29 // len(block)):
                f.write(block)
    assert entry.stat().st_size < 1e6
    tracemalloc.start()  # NumPy reports its buffers to tracemalloc: the 512 MB must never be allocated
    try:
        with pytest.warns(UserWarning, match="declares 536,87.* bytes, more than"):
            x = NMNIST(data, representation=rep, cache_dir=tmp_path / "cache")[0][0]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20 and torch.equal(x, expected), peak


def test_a_full_disk_is_reported_once_and_leaves_no_partial_entry(tmp_path, monkeypatch):
    import errno

    import spikmamba.data.cache as cache

    flat = tmp_path / "data"
    _flat_nmnist(flat, n=3)
    rep = EventRepresentation((34, 34), frames=3)

    def full(f, **arrays):
        f.write(b"PK\x03\x04 partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache.np, "savez", full)
    ds = NMNIST(flat, representation=rep, cache_dir=tmp_path / "cache")
    with pytest.warns(UserWarning, match="no space left on the device") as record:
        xs = [ds[i][0] for i in range(3)]
    assert len(record) == 1  # once, not per sample
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]  # no partial entry left behind
    plain = NMNIST(flat, representation=rep)
    assert all(torch.equal(x, plain[i][0]) for i, x in enumerate(xs))


def test_stratified_split_is_seeded_disjoint_and_balanced():
    labels = [i % 4 for i in range(100)]
    tr, va = stratified_split(labels, 0.2, seed=1)
    assert not set(tr) & set(va) and len(tr) + len(va) == 100
    assert np.bincount(np.asarray(labels)[va]).tolist() == [5, 5, 5, 5]
    assert stratified_split(labels, 0.2, seed=1) == (tr, va) and stratified_split(labels, 0.2, seed=2) != (tr, va)


def test_real_nmnist_and_gesture_clips(shared_data):
    ds = NMNIST(shared_data / "nmnist-small", "train", representation=EventRepresentation((34, 34), frames=8))
    assert len(ds) == 1000 and sorted(set(ds.targets)) == list(range(10))
    assert ds[0][0].shape == (8, 2, 34, 34) and ds[0][0].sum() > 0
    clips = DVSGestureClips(shared_data / "dvsgesture-clips")
    assert len(clips) == 10 and clips.targets == list(range(10))


def test_every_dataset_documents_its_layout():
    for name, cls in DATASETS.items():
        assert cls.layout.strip(), name


def test_a_bad_sample_is_reported_by_index_and_path_even_from_dataloader_workers(tmp_path):
    for k in range(4):
        _nbin(tmp_path / "a" / f"image_{k + 1:04d}.bin", sensor=(240, 180), seed=k)
    bad = tmp_path / "a" / "image_0003.bin"
    bad.write_bytes(bad.read_bytes()[:7])  # truncated mid-event
    ds = NCaltech101(tmp_path, representation=EventRepresentation((240, 180), frames=2))
    index = [s.path for s in ds.samples].index(str(bad))
    with pytest.raises(SampleError, match=f"sample {index} \\(.*image_0003.bin, label 0\\) failed: EventFormatError"):
        ds[index]
    loader = torch.utils.data.DataLoader(ds, batch_size=1, num_workers=2)
    with pytest.raises(SampleError, match=f"sample {index} .*image_0003.bin"):
        for _ in loader:
            pass
