"""dlib's serialization of its face-recognition ResNet, read in pure Python and numpy, and the
layer sequence matched against the network type it was trained as.

Used by :mod:`training.cards.identity_export` (which made the shipped ``models/identity/face_resnet.onnx``).

:func:`read_dlib_network` parses dlib's serialization in pure Python/numpy: dlib's variable-length
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
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

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
