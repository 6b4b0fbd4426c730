"""The classifier's optional OpenVINO backend: how to *run* a registry model on a CPU with OpenVINO.

Why a second backend: side by side on the same frames, one thread, 8 frames per forward,
OpenVINO's CPU plugin ran ResNet-50 faster than videonet's hand-fused oneDNN graph
(:mod:`videonet.curation.judge.cpu_graph`): bf16 on AVX512-BF16 about 1.2x, fp32 about 1.1x
(``benchmarks/engines.py``, numbers in benchmarks/README.md). OpenVINO is a maintained library made
for exactly this (graph fusions, weight layout, bf16 kernels per CPU generation), so rather than
more hand-written fusion the classifier uses it when it is installed (``pip install
'videonet[openvino]'``) and the run is on a CPU.

The pixel normalisation is compiled into the OpenVINO graph, so frames go in as the uint8 NHWC
batch the decoder produces and logits come out: no float copy of the batch is made in Python.
"""

from __future__ import annotations

import importlib.util
import threading
from typing import Sequence

import numpy as np

PRECISIONS = {"fp32": "f32", "bf16": "bf16"}  # videonet precision -> OpenVINO inference precision hint


def import_openvino():
    """``import openvino`` without its telemetry.

    Importing OpenVINO's converter sends a usage event to Google Analytics unless the user opted out,
    and writes a client id under ``~/intel`` (openvino-telemetry's opt-out default). A dataset tool
    that picks the engine by itself must not do either, so ``openvino_telemetry`` is made
    unimportable first: OpenVINO then falls back to its own no-op stub.
    """
    import sys

    sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]  # None: ImportError on import
    import openvino

    return openvino


def openvino_available() -> bool:
    """Whether the optional ``openvino`` package is importable (without importing it)."""
    return importlib.util.find_spec("openvino") is not None


class OpenVINOModel:
    """A registry model compiled by OpenVINO for the CPU: ``model(frames_uint8_nhwc) -> logits``.

    The batch dimension stays dynamic (the last chunk of a round is smaller; a dynamic batch
    measured as fast as a static one). One infer request per calling thread: a Beam worker shares
    one classifier among its DoFn threads, and an infer request must not be used by two at once.
    """

    def __init__(self, model: "torch.nn.Module", mean: Sequence[float], std: Sequence[float],  # noqa: F821
                 precision: str, threads: int, size: int = 224):
        ov = import_openvino()
        import torch
        from openvino.preprocess import PrePostProcessor

        # torch.export, not OpenVINO's default TorchScript trace: deprecated in torch and twice as slow.
        batch = torch.export.Dim("batch", min=1, max=4096)
        exported = torch.export.export(model, (torch.zeros(2, 3, size, size),), dynamic_shapes=({0: batch},))
        converted = ov.convert_model(exported)
        converted.reshape([ov.Dimension(), 3, size, size])
        ppp = PrePostProcessor(converted)
        ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
        ppp.input().model().set_layout(ov.Layout("NCHW"))
        ppp.input().preprocess().convert_element_type(ov.Type.f32).mean(
            [255.0 * m for m in mean]).scale([255.0 * s for s in std])
        self.compiled = ov.Core().compile_model(ppp.build(), "CPU", {
            "INFERENCE_PRECISION_HINT": PRECISIONS[precision],
            "INFERENCE_NUM_THREADS": threads,  # as many as torch would use: the decode threads need the rest
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,
        })
        # What the plugin actually runs in (it may refuse a hint the CPU cannot honour), as videonet names it.
        hint = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        self.precision = {v: k for k, v in PRECISIONS.items()}.get(hint, hint)
        self._local = threading.local()

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """Float32 logits ``(N, classes)`` for a uint8 ``(N, H, W, 3)`` batch."""
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        # The output tensor is the request's own buffer, overwritten by its next call: copy it out.
        return np.array(request.infer([np.ascontiguousarray(frames)])[0], dtype=np.float32)
