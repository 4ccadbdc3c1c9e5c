"""Tiny datasets written in the real layouts, shared by the tests (writers only, no tests here)."""
import pickle

import numpy as np

CLASSES10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _images(n, seed):
    """Learnable fake data: class k in {0, 1, 2} has a bright colour channel k and a bar at row 8k."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.integers(0, 90, (n, 3, 32, 32)).astype(np.uint8)
    for i, k in enumerate(y):
        x[i, k] += 120
        x[i, :, 8 * k:8 * k + 4] = 250
    return x, y


def write_cifar10(root, n_per_batch=24):
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    with open(base / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [c.encode() for c in CLASSES10], b"num_vis": 3072}, f, protocol=2)
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        x, y = _images(n_per_batch, i)
        with open(base / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"labels": y.tolist(), b"data": x.reshape(len(x), -1),
                         b"filenames": [f"{j}.png".encode() for j in range(len(x))]}, f, protocol=2)
    return root


def write_image_tree(root, splits=("train", "val", "test"), n=4, size=(40, 30)):
    from PIL import Image

    for split in splits:
        for c, colour in enumerate([(250, 10, 10), (10, 250, 10)]):
            d = root / split / f"n0{c}"
            d.mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", size, colour).save(d / f"{i}.png")
    return root


def write_video(path, label: int, n=20, size=32, seed=0):
    """A bright square moving left (label 0) or right (label 1) over a noisy background, tinted by class."""
    import av

    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=10)
        s.width = s.height = size
        s.pix_fmt = "yuv420p"
        for i in range(n):
            img = rng.integers(0, 40, (size, size, 3)).astype(np.uint8)
            img[..., 2 * label] += 60
            x = (2 + i) % (size - 8) if label else (size - 10 - i) % (size - 8)
            img[12:20, x:x + 8] = 250
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def write_cifar100(root, n=10, label_offset=0):
    """The "CIFAR-100 python version" layout with ``n`` fake images per split (labels ``_images``'s + offset)."""
    base = root / "cifar-100-python"
    base.mkdir(parents=True)
    names = [f"class{i}" for i in range(100)]
    with open(base / "meta", "wb") as f:
        pickle.dump({b"fine_label_names": names, b"coarse_label_names": names[:20]}, f)
    for split in ("train", "test"):
        x, y = _images(n, 1)
        with open(base / split, "wb") as f:
            pickle.dump({b"data": x.reshape(n, -1), b"fine_labels": (y + label_offset).tolist(),
                         b"coarse_labels": y.tolist()}, f)
    return root
