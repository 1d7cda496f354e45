"""How face crops become spoof probabilities: the scorer backends and the Ray actor that hosts one.

Backends: torch on a GPU (bf16 autocast, channels_last), ONNX Runtime on CPU (exported
once per model version and weights, cached), torch on CPU as the fallback. Every backend
takes RGB uint8 crops at the model's input size and returns the spoof probability per crop.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from pipeline.checkpoint import DEFAULT_ONNX_CACHE, cached_onnx, onnx_cache_path
from pipeline.scoring.model import (
    SPOOF_CLASS,
    ModelCard,
    check_crops,
    load_checkpoint,
    normalisation,
    preprocess,
    read_card,
)

log = logging.getLogger(__name__)

Backend = Literal["auto", "onnx", "torch"]


class Scorer(Protocol):
    """Spoof probabilities (N,) float32 for face crops (N, S, S, 3) uint8."""

    name: str
    card: ModelCard

    def __call__(self, crops: np.ndarray) -> np.ndarray: ...


def with_softmax(model):
    """The classifier followed by softmax, in eval mode: what is exported and what torch scorers run."""
    import torch

    class WithSoftmax(torch.nn.Module):
        def __init__(self, net: torch.nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.softmax(self.net(x).float(), dim=1)

    return WithSoftmax(model).eval()


class TorchScorer:
    """torch inference; on CUDA with bf16 autocast and channels_last.

    Crops go to the device as uint8 (a quarter of float32's bytes), from pinned memory
    without blocking, and are normalised there; their NHWC memory seen as NCHW is already
    the channels_last layout the CUDA model runs in."""

    def __init__(self, checkpoint: str | Path, *, device: str = "cpu", threads: int = 0) -> None:
        import torch

        model, self.card = load_checkpoint(checkpoint)
        self.device = torch.device(device)
        if threads and self.device.type == "cpu":
            torch.set_num_threads(threads)
        self._cuda = self.device.type == "cuda"
        self._model = with_softmax(model).to(self.device)
        if self._cuda:
            self._model = self._model.to(memory_format=torch.channels_last)
        scale, shift = normalisation(self.card)
        self._scale = torch.from_numpy(scale).view(1, 3, 1, 1).to(self.device)
        self._shift = torch.from_numpy(shift).view(1, 3, 1, 1).to(self.device)
        self.name = f"torch-{self.device.type}" + ("-bf16" if self._cuda else "")

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        import torch

        if len(crops) == 0:
            return np.zeros((0,), np.float32)
        check_crops(crops, self.card)
        x = torch.from_numpy(np.ascontiguousarray(crops))
        if self._cuda:
            x = x.pin_memory().to(self.device, non_blocking=True)
        x = x.permute(0, 3, 1, 2).float().mul_(self._scale).sub_(self._shift)
        if not self._cuda:
            x = x.contiguous()
        with (
            torch.inference_mode(),
            torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self._cuda),
        ):
            probs = self._model(x)
        return probs[:, SPOOF_CLASS].float().cpu().numpy()


def export_onnx(checkpoint: str | Path, path: str | Path) -> None:
    """Write the checkpoint (with softmax) as ONNX to ``path``: (N, 3, S, S) normalised
    crops in, (N, 2) probabilities out. Callers write aside (:func:`pipeline.checkpoint.cached_onnx`)."""
    import torch

    model, card = load_checkpoint(checkpoint)
    example = torch.zeros(1, 3, card.input_size, card.input_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            with_softmax(model), (example,), str(path), input_names=["input"], output_names=["probs"],
            dynamic_axes={"input": {0: "batch"}, "probs": {0: "batch"}}, opset_version=17, dynamo=False,
        )  # fmt: skip


def spoof_onnx(checkpoint: str | Path, card: ModelCard, cache_dir: str | Path = DEFAULT_ONNX_CACHE) -> Path:
    """The cached ONNX export of the spoof checkpoint (made on a cache miss)."""
    return cached_onnx(
        onnx_cache_path("spoof", checkpoint, card, cache_dir),
        lambda tmp: export_onnx(checkpoint, tmp),
        f"spoof model {checkpoint}",
    )


class OnnxScorer:
    """ONNX Runtime on CPU, all graph optimisations on; the cached export of the checkpoint,
    or the ONNX file at ``onnx_path``."""

    def __init__(
        self,
        checkpoint: str | Path,
        *,
        cache_dir: str | Path = DEFAULT_ONNX_CACHE,
        threads: int = 0,
        onnx_path: str | Path | None = None,
    ) -> None:
        import onnxruntime as ort

        self.card = read_card(checkpoint)
        path = Path(onnx_path) if onnx_path else spoof_onnx(checkpoint, self.card, cache_dir)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Memory patterns are planned per batch shape; without them the actor holds 150 MB less
        # (measured at batches of 32, 16 and 7) and runs as fast.
        options.enable_mem_pattern = False
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.onnx_path = path
        self.name = "onnxruntime-cpu"

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        if len(crops) == 0:
            return np.zeros((0,), np.float32)
        (probs,) = self._session.run(["probs"], {"input": preprocess(crops, self.card)})
        return probs[:, SPOOF_CLASS].astype(np.float32)


def build_scorer(
    checkpoint: str | Path,
    *,
    backend: Backend = "auto",
    threads: int = 0,
    cache_dir: str | Path = DEFAULT_ONNX_CACHE,
    gpu: bool | None = None,
) -> Scorer:
    """The scorer for this process: GPU torch when CUDA is visible, else ONNX Runtime, else CPU torch.

    ``gpu=False`` says there is no GPU without asking torch, so a CPU scorer with a cached
    ONNX export never imports torch (a second or two and a few hundred MB per process).
    """
    if gpu is None:
        import torch

        gpu = torch.cuda.is_available()
    if backend in ("auto", "torch") and gpu:
        return TorchScorer(checkpoint, device="cuda")
    if backend in ("auto", "onnx"):
        try:
            return OnnxScorer(checkpoint, cache_dir=cache_dir, threads=threads)
        except Exception as exc:  # any export or runtime failure falls back to torch rather than stopping a scan
            if backend == "onnx":
                raise
            log.warning("ONNX Runtime unavailable (%s); scoring with torch on CPU", exc)
    return TorchScorer(checkpoint, device="cpu", threads=threads)
