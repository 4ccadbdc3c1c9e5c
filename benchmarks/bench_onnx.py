"""Inference latency of an exported model: ONNX Runtime against PyTorch eager, in the same process.

``spikmamba_tiny`` at its default input (8 frames of 2x64x64), batch 1 and batch 16, exported with
``spikmamba.engine.export.export_onnx`` (checked equal to PyTorch before it is timed)."""
import tempfile
from pathlib import Path

import torch

from spikmamba.benchmark import optional
from spikmamba.models import create_model


def make(batch: int):
    def setup(quick: bool):
        missing = optional("onnxruntime")
        shape = (2, 2, 2, 16, 16) if quick else (batch, 8, 2, 64, 64)
        torch.manual_seed(0)
        model = create_model("spikmamba_tiny", **({"img_size": 16, "patch_size": 4, "num_frames": 2} if quick else {}))
        model.eval()
        x = torch.rand(*shape)
        impls = {}
        if missing is None:
            import onnxruntime as ort

            from spikmamba.engine.export import export_onnx

            path = Path(tempfile.mkdtemp(prefix="spikmamba-bench-onnx-")) / "m.onnx"
            export_onnx(model, x[:2] if len(x) > 1 else torch.cat([x, x]), path)
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            feed = {"input": x.numpy()}
            impls["ONNX Runtime"] = lambda: session.run(None, feed)
        else:
            impls["ONNX Runtime"] = missing

        def eager():
            with torch.no_grad():
                model(x)

        impls["PyTorch eager"] = eager
        return {"what": f"spikmamba_tiny inference, input {tuple(shape)}", "impls": impls}
    return setup


BENCHMARKS = {"onnx-b1": make(1), "onnx-b16": make(16)}
