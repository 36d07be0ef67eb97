"""targets/coreml/_mil_reference: the NumPy MIL executor, one op at a time. Each case builds the smallest MIL program
that holds the op with coremltools' Builder (so the handler gets its arguments exactly as a converted program gives
them: defaults filled in, constants as NumPy values, variadic inputs as lists), runs it with run_program and compares
the result with an independent torch / NumPy computation of the op's documented semantics (coremltools' MIL op
reference). Every result must also have the shape and dtype the program declares for it; float16 programs compute in
float16 steps (each op's result rounded)."""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import pytest

ct = pytest.importorskip("coremltools")
torch = pytest.importorskip("torch")
from coremltools.converters.mil import Builder as mb  # noqa: E402
from coremltools.converters.mil.mil import types  # noqa: E402

from edgeconv.targets.coreml._mil_reference import _OPS, run_program, supported_ops  # noqa: E402

F = torch.nn.functional
MIL_DTYPES = {np.float32: types.fp32, np.float16: types.fp16, np.int32: types.int32, np.bool_: types.bool}
TIGHT = {"rtol": 1e-5, "atol": 1e-6}
COVERED: set[str] = {"conv", "max_pool", "avg_pool", "cast", "quantize", "dequantize"}  # and case() adds its op:
# every handler has a case below (test_every_handler_has_a_case)


def rand(*shape: int, seed: int = 0, scale: float = 1.0, low: float | None = None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if low is not None:
        return rng.uniform(low, low + scale, shape).astype(np.float32)
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def program(build: Callable[..., Any], *inputs: np.ndarray, opset: Any = None) -> Any:
    specs = [mb.TensorSpec(shape=x.shape, dtype=MIL_DTYPES[x.dtype.type]) for x in inputs]
    return mb.program(input_specs=specs, opset_version=opset or ct.target.iOS18)(build)


def run(build: Callable[..., Any], *inputs: np.ndarray, opset: Any = None) -> list[np.ndarray]:
    """run_program on a one-op program; each output checked against the shape and dtype the program declares."""
    prog = program(build, *inputs, opset=opset)
    function = prog.functions["main"]
    outputs = run_program(prog, dict(zip(function.inputs, inputs)))
    for var, out in zip(function.outputs, outputs):
        assert out.shape == tuple(var.shape), (var.name, out.shape, var.shape)
        assert out.dtype == types.nptype_from_builtin(var.dtype), (var.name, out.dtype)
    return outputs


def t(x: np.ndarray) -> Any:
    return torch.from_numpy(np.ascontiguousarray(x))


def case(op: str, build: Callable[..., Any], inputs: tuple[np.ndarray, ...], expected: Any, id: str = "",
         **tolerance: float) -> Any:
    """One op's case: `expected` is its output (a tuple: its outputs), computed independently of the executor."""
    COVERED.add(op)
    expected = expected if isinstance(expected, tuple) else [expected]
    return pytest.param(build, inputs, [np.asarray(e.numpy() if hasattr(e, "numpy") else e) for e in expected],
                        tolerance or TIGHT, id=f"{op}-{id}" if id else op)


def check(build: Callable[..., Any], inputs: tuple[np.ndarray, ...], expected: list[np.ndarray],
          tolerance: dict[str, float]) -> None:
    outputs = run(build, *inputs)
    assert len(outputs) == len(expected)
    for out, want in zip(outputs, expected):
        assert out.shape == want.shape, (out.shape, want.shape)
        if want.dtype.kind in "biu":
            np.testing.assert_array_equal(out, want)
        else:
            np.testing.assert_allclose(out, want, **tolerance)


# --- elementwise ---------------------------------------------------------------------------------------------------
X = rand(2, 3, seed=1)
Y = rand(2, 3, seed=2)
POS = rand(2, 3, seed=3, low=0.5, scale=2.0)
A = np.array([-7.0, -3.5, 2.0, 7.5, 5.0, -3.0], np.float32)
B = np.array([2.0, 2.0, -3.0, 2.0, -2.0, 3.0], np.float32)
BOOL_X = np.array([True, True, False, False])
BOOL_Y = np.array([True, False, True, False])

BINARY = [
    case("add", lambda x, y: mb.add(x=x, y=y), (X, Y), X + Y),
    case("add", lambda x: mb.add(x=x, y=np.float32(0.5)), (X,), X + 0.5, "scalar"),
    case("add", lambda x: mb.add(x=x, y=np.arange(3, dtype=np.float32)), (X,), X + np.arange(3), "broadcast"),
    case("sub", lambda x, y: mb.sub(x=x, y=y), (X, Y), X - Y),
    case("mul", lambda x, y: mb.mul(x=x, y=y), (X, Y), X * Y),
    case("real_div", lambda x, y: mb.real_div(x=x, y=y), (X, POS), X / POS),
    case("maximum", lambda x, y: mb.maximum(x=x, y=y), (X, Y), np.where(X > Y, X, Y)),
    case("minimum", lambda x, y: mb.minimum(x=x, y=y), (X, Y), np.where(X < Y, X, Y)),
    case("pow", lambda x, y: mb.pow(x=x, y=y), (POS, Y), t(POS) ** t(Y)),
    # floor_div rounds toward -inf, mod is x - floor(x / y) * y (the sign of y), as the MIL reference says
    case("floor_div", lambda x, y: mb.floor_div(x=x, y=y), (A, B), [-4.0, -2.0, -1.0, 3.0, -3.0, -1.0]),
    case("mod", lambda x, y: mb.mod(x=x, y=y), (A, B), [1.0, 0.5, -1.0, 1.5, -1.0, 0.0]),
    case("equal", lambda x, y: mb.equal(x=x, y=y), (A, -B), [False, False, False, False, False, True]),
    case("not_equal", lambda x, y: mb.not_equal(x=x, y=y), (A, -B), [True, True, True, True, True, False]),
    case("greater", lambda x, y: mb.greater(x=x, y=y), (A, -B), [False, False, False, True, True, False]),
    case("greater_equal", lambda x, y: mb.greater_equal(x=x, y=y), (A, -B), [False, False, False, True, True, True]),
    case("less", lambda x, y: mb.less(x=x, y=y), (A, -B), [True, True, True, False, False, False]),
    case("less_equal", lambda x, y: mb.less_equal(x=x, y=y), (A, -B), [True, True, True, False, False, True]),
    case("logical_and", lambda x, y: mb.logical_and(x=x, y=y), (BOOL_X, BOOL_Y), [True, False, False, False]),
    case("logical_or", lambda x, y: mb.logical_or(x=x, y=y), (BOOL_X, BOOL_Y), [True, True, True, False]),
]

HALVES = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.4, -0.6], np.float32)
W = rand(2, 8, seed=4, scale=3.0)
UNARY = [
    case("abs", lambda x: mb.abs(x=x), (W,), t(W).abs()),
    case("exp", lambda x: mb.exp(x=x), (X,), t(X).exp()),
    case("log", lambda x: mb.log(x=x), (POS,), t(POS).log()),
    # torch.log1p converts to log(x, epsilon=1): y = log(x + epsilon)
    case("log", lambda x: mb.log(x=x, epsilon=np.float32(1.0)), (POS,), t(POS).log1p(), "epsilon"),
    case("sqrt", lambda x: mb.sqrt(x=x), (POS,), t(POS).sqrt()),
    case("tanh", lambda x: mb.tanh(x=x), (W,), t(W).tanh()),
    case("sin", lambda x: mb.sin(x=x), (W,), t(W).sin()),
    case("cos", lambda x: mb.cos(x=x), (W,), t(W).cos()),
    case("floor", lambda x: mb.floor(x=x), (HALVES,), [-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 0.0, -1.0]),
    case("ceil", lambda x: mb.ceil(x=x), (HALVES,), [-2.0, -1.0, -0.0, 1.0, 2.0, 3.0, 1.0, -0.0]),
    case("round", lambda x: mb.round(x=x), (HALVES,), [-2.0, -2.0, -0.0, 0.0, 2.0, 2.0, 0.0, -1.0]),  # 0.5 → 0
    case("sign", lambda x: mb.sign(x=x), (np.array([-2.0, 0.0, 3.0], np.float32),), [-1.0, 0.0, 1.0]),
    case("square", lambda x: mb.square(x=x), (W,), t(W) ** 2),
    case("relu", lambda x: mb.relu(x=x), (W,), F.relu(t(W))),
    case("relu6", lambda x: mb.relu6(x=x), (W * 3,), F.relu6(t(W * 3))),
    case("sigmoid", lambda x: mb.sigmoid(x=x), (W,), torch.sigmoid(t(W))),
    case("silu", lambda x: mb.silu(x=x), (W,), F.silu(t(W))),
    case("softplus", lambda x: mb.softplus(x=x), (W * 10,), F.softplus(t(W * 10))),
    case("identity", lambda x: mb.identity(x=x), (W,), W),
    case("logical_not", lambda x: mb.logical_not(x=x), (BOOL_X,), [False, False, True, True]),
    case("erf", lambda x: mb.erf(x=x), (W,), torch.erf(t(W))),
    case("rsqrt", lambda x: mb.rsqrt(x=x), (POS,), 1 / np.sqrt(POS.astype(np.float64) + 1e-12)),
    case("rsqrt", lambda x: mb.rsqrt(x=x, epsilon=np.float32(0.25)), (POS,), 1 / np.sqrt(POS.astype(np.float64) + 0.25),
         "epsilon"),
    case("inverse", lambda x: mb.inverse(x=x), (POS,), 1 / (POS.astype(np.float64) + 1e-4)),
    case("inverse", lambda x: mb.inverse(x=x, epsilon=np.float32(0.0)), (POS,), 1 / POS.astype(np.float64), "epsilon0"),
    case("clip", lambda x: mb.clip(x=x, alpha=np.float32(-1.0), beta=np.float32(2.0)), (W,), t(W).clamp(-1, 2)),
    case("thresholded_relu", lambda x: mb.thresholded_relu(x=x, alpha=np.float32(1.5)), (W,),
         np.where(W >= 1.5, W, 0.0)),
    case("sigmoid_hard", lambda x: mb.sigmoid_hard(x=x, alpha=np.float32(1 / 6), beta=np.float32(0.5)), (W,),
         F.hardsigmoid(t(W))),
    case("leaky_relu", lambda x: mb.leaky_relu(x=x, alpha=np.float32(0.2)), (W,), F.leaky_relu(t(W), 0.2)),
    case("gelu", lambda x: mb.gelu(x=x), (W,), F.gelu(t(W))),
    case("gelu", lambda x: mb.gelu(x=x, mode="TANH_APPROXIMATION"), (W,), F.gelu(t(W), approximate="tanh"), "tanh"),
    case("gelu", lambda x: mb.gelu(x=x, mode="SIGMOID_APPROXIMATION"), (W,), t(W) * torch.sigmoid(1.702 * t(W)),
         "sigmoid"),
]

X4 = rand(2, 3, 4, 5, seed=5)
ALPHA = np.array([0.1, -0.5, 2.0], np.float32)
ACTIVATIONS = [
    case("prelu", lambda x: mb.prelu(x=x, alpha=ALPHA), (X4,), F.prelu(t(X4), t(ALPHA))),
    case("softmax", lambda x: mb.softmax(x=x, axis=1), (X4 * 5,), F.softmax(t(X4 * 5), dim=1), "axis1"),
    case("softmax", lambda x: mb.softmax(x=x, axis=-1), (X4 * 5,), F.softmax(t(X4 * 5), dim=-1), "axis-1"),
    case("softmax", lambda x: mb.softmax(x=x), (X4,), F.softmax(t(X4), dim=-1), "default"),
    case("select", lambda c, a, b: mb.select(cond=c, a=a, b=b), (X > 0, X, Y), np.where(X > 0, X, Y)),
    case("select", lambda c, a: mb.select(cond=c, a=a, b=np.float32(-1.0)), (X > Y, X), np.where(X > Y, X, -1.0),
         "broadcast"),
]


@pytest.mark.parametrize("build, inputs, expected, tolerance", BINARY + UNARY + ACTIVATIONS)
def test_elementwise(build, inputs, expected, tolerance) -> None:
    check(build, inputs, expected, tolerance)


# --- linear algebra ------------------------------------------------------------------------------------------------
LW, LB = rand(4, 3, seed=6), rand(4, seed=7)
Q, K, V = rand(2, 3, 5, 8, seed=8), rand(2, 3, 6, 8, seed=9), rand(2, 3, 6, 4, seed=10)
BOOL_MASK = np.tril(np.ones((5, 6), bool), k=1)
FLOAT_MASK = rand(5, 6, seed=11)
LINALG = [
    case("linear", lambda x: mb.linear(x=x, weight=LW, bias=LB), (X,), F.linear(t(X), t(LW), t(LB))),
    case("linear", lambda x: mb.linear(x=x, weight=LW), (rand(2, 5, 3, seed=12),),
         F.linear(t(rand(2, 5, 3, seed=12)), t(LW)), "nobias-rank3"),
    case("matmul", lambda x, y: mb.matmul(x=x, y=y), (rand(2, 3, 4, seed=1), rand(4, 5, seed=2)),
         t(rand(2, 3, 4, seed=1)) @ t(rand(4, 5, seed=2)), "broadcast"),
    case("matmul", lambda x, y: mb.matmul(x=x, y=y, transpose_x=True), (rand(2, 4, 3, seed=1), rand(2, 4, 5, seed=2)),
         t(rand(2, 4, 3, seed=1)).transpose(-1, -2) @ t(rand(2, 4, 5, seed=2)), "transpose_x"),
    case("matmul", lambda x, y: mb.matmul(x=x, y=y, transpose_y=True), (rand(3, 4, seed=1), rand(5, 4, seed=2)),
         t(rand(3, 4, seed=1)) @ t(rand(5, 4, seed=2)).T, "transpose_y"),
    case("matmul", lambda x, y: mb.matmul(x=x, y=y, transpose_x=True, transpose_y=True),
         (rand(4, 3, seed=1), rand(5, 4, seed=2)), t(rand(4, 3, seed=1)).T @ t(rand(5, 4, seed=2)).T, "transpose_both"),
    case("scaled_dot_product_attention", lambda q, k, v: mb.scaled_dot_product_attention(query=q, key=k, value=v),
         (Q, K, V), F.scaled_dot_product_attention(t(Q), t(K), t(V))),
    case("scaled_dot_product_attention",
         lambda q, k, v, m: mb.scaled_dot_product_attention(query=q, key=k, value=v, attn_mask=m), (Q, K, V, BOOL_MASK),
         F.scaled_dot_product_attention(t(Q), t(K), t(V), attn_mask=t(BOOL_MASK)), "bool_mask"),
    case("scaled_dot_product_attention",
         lambda q, k, v, m: mb.scaled_dot_product_attention(query=q, key=k, value=v, attn_mask=m),
         (Q, K, V, FLOAT_MASK), F.scaled_dot_product_attention(t(Q), t(K), t(V), attn_mask=t(FLOAT_MASK)),
         "float_mask"),
]


@pytest.mark.parametrize("build, inputs, expected, tolerance", LINALG)
def test_linear_algebra(build, inputs, expected, tolerance) -> None:
    check(build, inputs, expected, tolerance)


# --- convolution ---------------------------------------------------------------------------------------------------
def same_pads(size: int, k: int, s: int, d: int, lower: bool) -> tuple[int, int]:
    """MIL "same": output ceil(size / stride), the odd pixel of padding at the end ("same_lower": at the start)."""
    total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
    return (total - total // 2, total // 2) if lower else (total // 2, total - total // 2)


def torch_conv(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, strides: list[int], dilations: list[int],
               groups: int, pads: list[tuple[int, int]]) -> Any:
    flat = [p for pair in reversed(pads) for p in pair]  # F.pad takes the last axis first
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[w.ndim - 2]
    return conv(F.pad(t(x), flat), t(w), None if b is None else t(b), stride=strides, dilation=dilations, groups=groups)


CONVS = [  # (id, x shape, weight shape, pad_type, custom pad, strides, dilations, groups, bias)
    ("valid", (1, 3, 7, 6), (4, 3, 3, 3), "valid", None, [1, 1], [1, 1], 1, True),
    ("custom-asym", (1, 3, 7, 6), (4, 3, 3, 2), "custom", [1, 0, 2, 1], [1, 1], [1, 1], 1, True),
    ("same-stride2", (1, 2, 7, 6), (4, 2, 3, 3), "same", None, [2, 2], [1, 1], 1, False),
    ("same_lower-stride2", (1, 2, 7, 6), (4, 2, 4, 4), "same_lower", None, [2, 2], [1, 1], 1, True),
    ("same-dilated", (1, 2, 9, 8), (3, 2, 3, 3), "same", None, [1, 1], [2, 3], 1, True),
    ("groups2", (2, 4, 6, 6), (6, 2, 3, 3), "custom", [1, 1, 1, 1], [1, 2], [1, 1], 2, True),
    ("depthwise", (1, 3, 6, 5), (3, 1, 3, 3), "same", None, [1, 1], [1, 1], 3, True),
    ("conv1d", (2, 3, 9), (4, 3, 3), "custom", [2, 1], [2], [1], 1, True),
    ("conv3d", (1, 2, 4, 5, 4), (3, 2, 2, 3, 2), "same", None, [1, 2, 1], [1, 1, 1], 1, True),
]


@pytest.mark.parametrize("x_shape, w_shape, pad_type, pad, strides, dilations, groups, bias",
                         [pytest.param(*c[1:], id=c[0]) for c in CONVS])
def test_conv(x_shape, w_shape, pad_type, pad, strides, dilations, groups, bias) -> None:
    x, w = rand(*x_shape, seed=13), rand(*w_shape, seed=14)
    b = rand(w_shape[0], seed=15) if bias else None
    kwargs: dict[str, Any] = {"weight": w, "strides": strides, "dilations": dilations, "groups": groups,
                              "pad_type": pad_type}
    if b is not None:
        kwargs["bias"] = b
    if pad is not None:
        kwargs["pad"] = pad
    out, = run(lambda x: mb.conv(x=x, **kwargs), x)
    spatial, kernel = x_shape[2:], w_shape[2:]
    if pad_type == "custom":
        pads = [(pad[2 * i], pad[2 * i + 1]) for i in range(len(spatial))]
    elif pad_type == "valid":
        pads = [(0, 0)] * len(spatial)
    else:
        pads = [same_pads(n, k, s, d, pad_type == "same_lower")
                for n, k, s, d in zip(spatial, kernel, strides, dilations)]
        assert out.shape[2:] == tuple(math.ceil(n / s) for n, s in zip(spatial, strides))
    np.testing.assert_allclose(out, torch_conv(x, w, b, strides, dilations, groups, pads).numpy(), rtol=1e-5, atol=1e-5)


CONV_TRANSPOSES = [  # (id, x shape, weight shape [C_in, C_out / groups, *k], torch padding, strides, dilations,
    # groups, output_padding); torch's padding is symmetric, as the custom pads are here
    ("unet-up2x2", (1, 4, 5, 6), (4, 3, 2, 2), 0, [2, 2], [1, 1], 1, 0),
    ("k3-pad1-stride2", (2, 3, 4, 5), (3, 2, 3, 3), 1, [2, 2], [1, 1], 1, 0),
    ("output-padding", (1, 3, 4, 4), (3, 2, 3, 3), 1, [2, 2], [1, 1], 1, 1),
    ("dilated-groups2", (1, 4, 5, 5), (4, 1, 3, 3), 0, [1, 1], [2, 2], 2, 0),
    ("conv1d", (1, 3, 7), (3, 2, 4), 1, [3], [1], 1, 0),
]


@pytest.mark.parametrize("x_shape, w_shape, padding, strides, dilations, groups, output_padding",
                         [pytest.param(*c[1:], id=c[0]) for c in CONV_TRANSPOSES])
def test_conv_transpose(x_shape, w_shape, padding, strides, dilations, groups, output_padding) -> None:
    COVERED.add("conv_transpose")
    rank = len(x_shape) - 2
    x, w, b = rand(*x_shape, seed=21), rand(*w_shape, seed=22), rand(w_shape[1] * groups, seed=23)
    conv = {1: F.conv_transpose1d, 2: F.conv_transpose2d}[rank]
    want = conv(t(x), t(w), t(b), stride=strides, padding=padding, output_padding=output_padding, groups=groups,
                dilation=dilations).numpy()
    kwargs: dict[str, Any] = {"weight": w, "bias": b, "strides": strides, "dilations": dilations, "groups": groups,
                              "pad_type": "custom", "pad": [padding] * (2 * rank)}
    if output_padding:
        kwargs["output_shape"] = list(want.shape)
    out, = run(lambda x: mb.conv_transpose(x=x, **kwargs), x)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("scale", [2, 3])
def test_upsample_bilinear(scale: int, align_corners: bool) -> None:
    COVERED.add("upsample_bilinear")
    x = rand(1, 2, 4, 5, seed=24)
    out, = run(lambda x: mb.upsample_bilinear(x=x, scale_factor_height=scale, scale_factor_width=scale,
                                              align_corners=align_corners), x)
    want = F.interpolate(t(x), scale_factor=scale, mode="bilinear", align_corners=align_corners).numpy()
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)


def test_gather_along_axis() -> None:
    COVERED.add("gather_along_axis")
    x, index = rand(2, 5, 3, seed=25), np.array([[[4, 0, 1]], [[2, 2, 3]]], dtype=np.int32)
    out, = run(lambda x: mb.gather_along_axis(x=x, indices=index, axis=1), x)
    np.testing.assert_array_equal(out, torch.gather(t(x), 1, t(index).long()).numpy())


def torch_lstm_to_mil(lstm: Any, suffix: str = "") -> dict[str, np.ndarray]:
    """A torch LSTM direction's weights in MIL's layout: gates [i, f, o, g] (torch stacks i, f, g, o), one bias."""
    def ifog(w: Any) -> np.ndarray:
        i, f, g, o = np.split(w.detach().numpy(), 4)
        return np.concatenate([i, f, o, g])

    get = lambda name: getattr(lstm, f"{name}_l0{suffix}")  # noqa: E731
    return {"weight_ih": ifog(get("weight_ih")), "weight_hh": ifog(get("weight_hh")),
            "bias": ifog(get("bias_ih") + get("bias_hh"))}


@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
def test_lstm(direction: str) -> None:
    COVERED.add("lstm")
    torch.manual_seed(26)
    bidirectional = direction == "bidirectional"
    lstm = torch.nn.LSTM(5, 4, bidirectional=bidirectional).eval()
    d = 2 if bidirectional else 1
    x, h0, c0 = rand(6, 2, 5, seed=26), rand(2, d * 4, seed=27), rand(2, d * 4, seed=28)
    weights = torch_lstm_to_mil(lstm)
    if bidirectional:
        weights.update({k + "_back": v for k, v in torch_lstm_to_mil(lstm, "_reverse").items()})
    out, h, c = run(lambda x, h0, c0: mb.lstm(x=x, initial_h=h0, initial_c=c0, direction=direction,
                                              output_sequence=True, **weights), x, h0, c0)
    # torch's h0 / c0 are (D, b, H); MIL's (b, D*H) with the forward half first
    to_torch = lambda s: t(s.reshape(2, d, 4).transpose(1, 0, 2))  # noqa: E731
    with torch.no_grad():
        want, (wh, wc) = lstm(t(x), (to_torch(h0), to_torch(c0)))
    np.testing.assert_allclose(out, want.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h, wh.numpy().transpose(1, 0, 2).reshape(2, -1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(c, wc.numpy().transpose(1, 0, 2).reshape(2, -1), rtol=1e-5, atol=1e-6)


def test_lstm_last_step_only_and_the_undocumented_case() -> None:
    torch.manual_seed(29)
    lstm = torch.nn.LSTM(3, 4).eval()
    x, h0 = rand(5, 1, 3, seed=29), np.zeros((1, 4), np.float32)
    out, h, _ = run(lambda x, h0: mb.lstm(x=x, initial_h=h0, initial_c=h0, **torch_lstm_to_mil(lstm)), x, h0)
    with torch.no_grad():
        want = lstm(t(x))[0][-1:]
    np.testing.assert_allclose(out, want.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h, want.numpy()[0], rtol=1e-5, atol=1e-6)
    bi = torch.nn.LSTM(3, 4, bidirectional=True)
    weights = {**torch_lstm_to_mil(bi), **{k + "_back": v for k, v in torch_lstm_to_mil(bi, "_reverse").items()}}
    h0 = np.zeros((1, 8), np.float32)
    with pytest.raises(NotImplementedError, match="bidirectional"):  # which step's backward state: not documented
        run(lambda x, h0: mb.lstm(x=x, initial_h=h0, initial_c=h0, direction="bidirectional", **weights), x, h0)


def test_same_lower_puts_the_odd_pixel_first() -> None:
    """A 2x2 kernel of ones at stride 1 on a 3x3 ramp: "same" pads bottom/right, "same_lower" top/left."""
    x = np.arange(9, dtype=np.float32).reshape(1, 1, 3, 3)
    w = np.ones((1, 1, 2, 2), np.float32)
    same, = run(lambda x: mb.conv(x=x, weight=w, pad_type="same"), x)
    lower, = run(lambda x: mb.conv(x=x, weight=w, pad_type="same_lower"), x)
    np.testing.assert_array_equal(same[0, 0], [[8, 12, 7], [20, 24, 13], [13, 15, 8]])
    np.testing.assert_array_equal(lower[0, 0], [[0, 1, 3], [3, 8, 12], [9, 20, 24]])


# --- pooling -------------------------------------------------------------------------------------------------------
POOL_X = rand(1, 2, 7, 6, seed=16)
POOLS = [  # (id, kernel, strides, pad_type, pad, ceil_mode); torch's padding is symmetric: custom pads here are too
    ("valid", [2, 2], [2, 2], "valid", None, False),
    ("custom", [3, 3], [2, 2], "custom", [1, 1, 1, 1], False),
    ("ceil", [2, 2], [2, 2], "valid", None, True),
    ("ceil-stride3", [3, 3], [3, 3], "valid", None, True),
    # ceil mode with padding: a window that would start in the right padding is dropped (7 + 1 → 4 windows, not 5)
    ("ceil-custom", [2, 2], [2, 2], "custom", [1, 1, 1, 1], True),
    ("ceil-custom-k3", [3, 3], [2, 2], "custom", [1, 1, 1, 1], True),
]


def torch_pads(pad: list[int] | None) -> list[int]:
    return [0, 0] if pad is None else [pad[0], pad[2]]


@pytest.mark.parametrize("kernel, strides, pad_type, pad, ceil_mode", [pytest.param(*c[1:], id=c[0]) for c in POOLS])
def test_max_pool(kernel, strides, pad_type, pad, ceil_mode) -> None:
    extra = {"pad": pad} if pad is not None else {}
    out, = run(lambda x: mb.max_pool(x=x, kernel_sizes=kernel, strides=strides, pad_type=pad_type, ceil_mode=ceil_mode,
                                     **extra), POOL_X)
    want = F.max_pool2d(t(POOL_X), kernel, strides, torch_pads(pad), ceil_mode=ceil_mode).numpy()
    np.testing.assert_array_equal(out, want)


@pytest.mark.parametrize("exclude", [False, True], ids=["include_pad", "exclude_pad"])
@pytest.mark.parametrize("kernel, strides, pad_type, pad, ceil_mode", [pytest.param(*c[1:], id=c[0]) for c in POOLS])
def test_avg_pool(kernel, strides, pad_type, pad, ceil_mode, exclude) -> None:
    overhang = ceil_mode and any((n - k) % s for n, k, s in zip(POOL_X.shape[2:], kernel, strides))
    if overhang and not exclude:
        pytest.skip("a ceil-mode window past the input with padding counted: Core ML's divisor is not documented")
    extra = {"pad": pad} if pad is not None else {}
    out, = run(lambda x: mb.avg_pool(x=x, kernel_sizes=kernel, strides=strides, pad_type=pad_type, ceil_mode=ceil_mode,
                                     exclude_padding_from_average=exclude, **extra), POOL_X)
    want = F.avg_pool2d(t(POOL_X), kernel, strides, torch_pads(pad), ceil_mode=ceil_mode,
                        count_include_pad=not exclude).numpy()
    np.testing.assert_allclose(out, want, **TIGHT)


@pytest.mark.parametrize("lower", [False, True], ids=["same", "same_lower"])
def test_pool_same_padding(lower: bool) -> None:
    """"same" pooling pads asymmetrically: max ignores the padding; avg counts it as zeros unless it is excluded."""
    pad_type = "same_lower" if lower else "same"
    x = rand(1, 2, 5, 6, seed=17, low=1.0)  # positive: a zero pad would win a max if the padding took part
    kernel, strides = [2, 3], [2, 2]
    pads = [same_pads(n, k, s, 1, lower) for n, k, s in zip(x.shape[2:], kernel, strides)]
    flat = [p for pair in reversed(pads) for p in pair]
    maxed, = run(lambda x: mb.max_pool(x=x, kernel_sizes=kernel, strides=strides, pad_type=pad_type), x)
    summed = F.avg_pool2d(F.pad(t(x), flat), kernel, strides) * math.prod(kernel)
    counts = F.avg_pool2d(F.pad(torch.ones_like(t(x)), flat), kernel, strides) * math.prod(kernel)
    include, = run(lambda x: mb.avg_pool(x=x, kernel_sizes=kernel, strides=strides, pad_type=pad_type), x)
    exclude, = run(lambda x: mb.avg_pool(x=x, kernel_sizes=kernel, strides=strides, pad_type=pad_type,
                                         exclude_padding_from_average=True), x)
    assert maxed.shape == (1, 2, 3, 3)
    np.testing.assert_array_equal(maxed, F.max_pool2d(F.pad(t(x), flat, value=-math.inf), kernel, strides).numpy())
    np.testing.assert_allclose(include, (summed / math.prod(kernel)).numpy(), **TIGHT)
    np.testing.assert_allclose(exclude, (summed / counts).numpy(), **TIGHT)


# --- normalisation / reductions ------------------------------------------------------------------------------------
G3, B3 = rand(5, seed=18, low=0.5), rand(5, seed=19)
G45, B45 = rand(4, 5, seed=20, low=0.5), rand(4, 5, seed=21)
MEAN, VAR = rand(3, seed=22), rand(3, seed=23, low=0.1)
NORMS = [
    case("layer_norm", lambda x: mb.layer_norm(x=x, axes=[-1], gamma=G3, beta=B3, epsilon=np.float32(1e-5)), (X4,),
         F.layer_norm(t(X4), [5], t(G3), t(B3), eps=1e-5), "last"),
    case("layer_norm", lambda x: mb.layer_norm(x=x, axes=[2, 3], gamma=G45, beta=B45, epsilon=np.float32(0.5)), (X4,),
         F.layer_norm(t(X4), [4, 5], t(G45), t(B45), eps=0.5), "two-axes-eps0.5"),
    case("layer_norm", lambda x: mb.layer_norm(x=x, axes=[-1], epsilon=np.float32(0.0)), (X4,),
         F.layer_norm(t(X4), [5], eps=0.0), "eps0", rtol=1e-5, atol=1e-5),
    case("batch_norm", lambda x: mb.batch_norm(x=x, mean=MEAN, variance=VAR, gamma=G3[:3], beta=B3[:3],
                                               epsilon=np.float32(1e-3)), (X4,),
         F.batch_norm(t(X4), t(MEAN), t(VAR), t(G3[:3]), t(B3[:3]), eps=1e-3)),
    case("batch_norm", lambda x: mb.batch_norm(x=x, mean=MEAN, variance=VAR, epsilon=np.float32(0.0)), (X4[:, :, 0],),
         F.batch_norm(t(X4[:, :, 0]), t(MEAN), t(VAR), eps=0.0), "rank3-eps0"),
]
R = rand(2, 3, 4, seed=24)
REDUCTIONS = [
    case("reduce_mean", lambda x: mb.reduce_mean(x=x, axes=[1]), (R,), t(R).mean(1)),
    case("reduce_mean", lambda x: mb.reduce_mean(x=x, axes=[0, 2], keep_dims=True), (R,),
         t(R).mean((0, 2), keepdim=True), "keep_dims"),
    case("reduce_mean", lambda x: mb.reduce_mean(x=x), (R,), t(R).mean(), "all"),
    case("reduce_sum", lambda x: mb.reduce_sum(x=x, axes=[-1], keep_dims=True), (R,), t(R).sum(-1, keepdim=True)),
    case("reduce_max", lambda x: mb.reduce_max(x=x, axes=[0]), (R,), t(R).amax(0)),
    case("reduce_min", lambda x: mb.reduce_min(x=x, axes=[1, 2], keep_dims=True), (R,),
         t(R).amin((1, 2), keepdim=True)),
    case("reduce_prod", lambda x: mb.reduce_prod(x=x, axes=[2]), (R,), t(R).prod(2)),
    case("reduce_argmax", lambda x: mb.reduce_argmax(x=x, axis=1), (R,), t(R).argmax(1).int()),
    case("reduce_argmax", lambda x: mb.reduce_argmax(x=x, axis=-1, keep_dims=True), (R,),
         t(R).argmax(-1, keepdim=True).int(), "keep_dims"),
    case("topk", lambda x: mb.topk(x=x, k=3, axis=-1), (R,), tuple(v.int() if v.dtype == torch.int64 else v
                                                             for v in torch.topk(t(R), 3, dim=-1))),
    case("topk", lambda x: mb.topk(x=x, k=2, axis=1, ascending=True), (R,),
         tuple(v.int() if v.dtype == torch.int64 else v for v in torch.topk(t(R), 2, dim=1, largest=False)),
         "ascending-axis1"),
]


@pytest.mark.parametrize("build, inputs, expected, tolerance", NORMS + REDUCTIONS)
def test_normalisation_and_reductions(build, inputs, expected, tolerance) -> None:
    check(build, inputs, expected, tolerance)


def test_norm_epsilon_takes_part() -> None:
    """A tiny variance makes epsilon matter: 1e-2 against the default 1e-5 changes the result far beyond rounding."""
    x = np.array([[1.0, 1.001, 0.999, 1.0]], np.float32)
    small, = run(lambda x: mb.layer_norm(x=x, axes=[-1], epsilon=np.float32(1e-2)), x)
    np.testing.assert_allclose(small, F.layer_norm(t(x), [4], eps=1e-2).numpy(), rtol=1e-4, atol=1e-6)
    assert abs(float(small[0, 1])) < 0.02  # with epsilon 1e-5 it would be ~1.4


# --- layout --------------------------------------------------------------------------------------------------------
L = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
I6 = np.arange(6 * 5, dtype=np.float32).reshape(6, 5)
LAYOUT = [
    # iOS 17+: a 0 copies the dimension it aligns with counting from the right, 1 past x's rank; -1 is inferred
    case("reshape", lambda x: mb.reshape(x=x, shape=[0, -1]), (L,), L.reshape(3, 8), "zero-from-the-right"),
    case("reshape", lambda x: mb.reshape(x=x, shape=[1, 0, -1, 0]), (L[0, :2],), L[0, :2].reshape(1, 1, 2, 4),
         "zero-past-rank"),
    case("reshape", lambda x: mb.reshape(x=x, shape=[0, 0, -1]), (L,), L, "zeros-same-rank"),
    case("reshape", lambda x: mb.reshape(x=x, shape=[-1, 4]), (L,), L.reshape(6, 4), "infer"),
    case("transpose", lambda x: mb.transpose(x=x, perm=[2, 0, 1]), (L,), t(L).permute(2, 0, 1)),
    case("transpose", lambda x: mb.transpose(x=x, perm=[0, 2, 1]), (L,), t(L).transpose(1, 2), "swap"),
    case("expand_dims", lambda x: mb.expand_dims(x=x, axes=[0]), (L,), L[None]),
    case("expand_dims", lambda x: mb.expand_dims(x=x, axes=[-1]), (L,), L[..., None], "last"),
    case("expand_dims", lambda x: mb.expand_dims(x=x, axes=[1, 3]), (L,), L[:, None, :, None], "two"),
    case("squeeze", lambda x: mb.squeeze(x=x, axes=[1]), (L[:, :1],), L[:, 0]),
    case("squeeze", lambda x: mb.squeeze(x=x), (L[:1, :, None, :1],), L[0, :, :1].reshape(3), "all"),
    case("concat", lambda x, y: mb.concat(values=[x, y, x], axis=1), (L, L + 100), np.concatenate([L, L + 100, L], 1)),
    case("concat", lambda x: mb.concat(values=[x, np.zeros((2, 3, 1), np.float32)], axis=-1), (L,),
         np.concatenate([L, np.zeros((2, 3, 1))], -1), "const-last"),
    case("split", lambda x: mb.split(x=x, num_splits=2, axis=-1), (L,), (L[..., :2], L[..., 2:]), "num_splits"),
    case("split", lambda x: mb.split(x=x, split_sizes=[1, 3], axis=2), (L,), (L[..., :1], L[..., 1:]), "sizes"),
    case("slice_by_index", lambda x: mb.slice_by_index(x=x, begin=[1, 0], end=[5, 4], stride=[2, 1]), (I6,),
         I6[1:5:2, 0:4], "stride"),
    case("slice_by_index", lambda x: mb.slice_by_index(x=x, begin=[3, 2], end=[0, 5], begin_mask=[True, False],
                                                       end_mask=[False, True]), (I6,), I6[:0, 2:], "masks"),
    case("slice_by_index", lambda x: mb.slice_by_index(x=x, begin=[0, 1], end=[4, 5], begin_mask=[True, False],
                                                       end_mask=[False, True]), (I6,), I6[:4, 1:], "masks2"),
    case("slice_by_index", lambda x: mb.slice_by_index(x=x, begin=[5, 0], end=[0, 5], stride=[-2, 1],
                                                       end_mask=[True, True]), (I6,), I6[5::-2, 0:], "negative-stride"),
    case("slice_by_index", lambda x: mb.slice_by_index(x=x, begin=[-2, 0], end=[-1, 5], squeeze_mask=[True, False]),
         (I6,), I6[-2], "squeeze_mask"),
    case("slice_by_size", lambda x: mb.slice_by_size(x=x, begin=[1, 2], size=[3, -1]), (I6,), I6[1:4, 2:]),
    case("gather", lambda x: mb.gather(x=x, indices=np.array([3, 0, 3], np.int32), axis=0), (I6,), I6[[3, 0, 3]]),
    case("gather", lambda x: mb.gather(x=x, indices=np.array([[1, 4], [0, 2]], np.int32), axis=-1), (I6,),
         I6[:, [[1, 4], [0, 2]]], "2d-indices-last-axis"),
    case("gather", lambda x: mb.gather(x=x, indices=np.array([-1, 1], np.int32), axis=1), (L,), L[:, [2, 1]],
         "negative-index"),
    case("gather_nd", lambda x: mb.gather_nd(x=x, indices=np.array([[1, 2], [0, 0]], np.int32)), (L,),
         np.stack([L[1, 2], L[0, 0]])),
    case("gather_nd", lambda x: mb.gather_nd(x=x, indices=np.array([[[1], [0]]], np.int32)), (L,), L[[[1, 0]]],
         "one-axis"),
    case("tile", lambda x: mb.tile(x=x, reps=[1, 2, 3]), (L,), t(L).repeat(1, 2, 3)),
    case("pad", lambda x: mb.pad(x=x, pad=[1, 2, 0, 1], constant_val=np.float32(-1.0)), (L,),
         F.pad(t(L), [0, 1, 1, 2], value=-1.0), "constant-last-two"),
    case("pad", lambda x: mb.pad(x=x, pad=[0, 0, 2, 1, 1, 2], mode="reflect"), (L,),
         F.pad(t(L)[None], [1, 2, 2, 1], mode="reflect")[0], "reflect"),
    case("pad", lambda x: mb.pad(x=x, pad=[2, 1], mode="replicate"), (L,),
         F.pad(t(L), [2, 1], mode="replicate"), "replicate"),
    case("pad", lambda x: mb.pad(x=x, pad=[1, 1]), (L,), F.pad(t(L), [1, 1]), "default-zero"),
    case("shape", lambda x: mb.shape(x=x), (L,), np.array([2, 3, 4], np.int32)),
    case("fill", lambda x: mb.add(x=x, y=mb.fill(shape=np.array([2, 3, 4], np.int32), value=np.float32(1.5))),
         (L,), L + 1.5),
]


@pytest.mark.parametrize("build, inputs, expected, tolerance", LAYOUT)
def test_layout(build, inputs, expected, tolerance) -> None:
    check(build, inputs, expected, tolerance)


def test_reshape_zero_before_ios17_is_positional() -> None:
    """iOS 15 / 16 programs: a 0 copies the dimension at its own position (len(shape) == rank)."""
    out, = run(lambda x: mb.reshape(x=x, shape=[0, -1, 2]), L, opset=ct.target.iOS16)
    np.testing.assert_array_equal(out, L.reshape(2, 6, 2))


# --- precision -----------------------------------------------------------------------------------------------------
def test_cast_rounds_to_the_declared_dtype() -> None:
    """cast to int32 truncates toward zero; to fp16 rounds to the nearest float16; int32 to fp32 is exact."""
    x = np.array([1.7, -1.7, 2.5, -0.4, 1.0 + 2 ** -12], np.float32)
    as_int, = run(lambda x: mb.cast(x=x, dtype="int32"), x)
    np.testing.assert_array_equal(as_int, np.array([1, -1, 2, 0, 1], np.int32))
    as_half, = run(lambda x: mb.cast(x=x, dtype="fp16"), x)
    assert as_half.dtype == np.float16 and as_half[-1] == 1.0  # 1 + 2^-12 is no float16
    ints = np.array([3, -4, 16777217], np.int32)
    back, = run(lambda x: mb.cast(x=x, dtype="fp32"), ints)
    np.testing.assert_array_equal(back, np.array([3.0, -4.0, 16777216.0], np.float32))


QX = np.array([[-1.0, -0.05, 0.05, 0.15], [0.25, 1.0, 30.0, -30.0]], np.float32)


@pytest.mark.parametrize("dtype, zero_point, axis, expected", [
    # round(x / 0.1) + zero: halves go to even (0.5 → 0, 1.5 → 2, 2.5 → 2), then clipped to the dtype's range
    ("int8", np.int8(0), None, [[-10, 0, 0, 2], [2, 10, 127, -128]]),
    ("uint8", np.uint8(128), None, [[118, 128, 128, 130], [130, 138, 255, 0]]),
    ("int8", np.array([0, 10], np.int8), 0, [[-10, 0, 0, 2], [12, 20, 127, -128]]),
], ids=["int8", "uint8-zero128", "int8-per-axis"])
def test_quantize(dtype, zero_point, axis, expected) -> None:
    scale = np.float32(0.1) if axis is None else np.array([0.1, 0.1], np.float32)
    kwargs: dict[str, Any] = {"axis": axis} if axis is not None else {}
    out, = run(lambda x: mb.quantize(input=x, scale=scale, zero_point=zero_point, output_dtype=dtype, **kwargs), QX,
               opset=ct.target.iOS17)
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out, np.array(expected))


def test_dequantize_per_tensor_and_per_axis() -> None:
    q = np.array([[-128, -1, 0, 127], [5, 10, 20, 40]], np.int8)
    zero, scale = np.array([0, 10], np.int8), np.array([0.5, 0.25], np.float32)
    # a dequantize on a const is folded at build time: quantize an input first so the program runs the op
    def build(x):
        quantized = mb.quantize(input=x, scale=np.float32(1.0), zero_point=np.int8(0), output_dtype="int8")
        return mb.dequantize(input=quantized, scale=scale, zero_point=zero, axis=0)
    out, = run(build, q.astype(np.float32), opset=ct.target.iOS17)
    np.testing.assert_allclose(out, (q.astype(np.float64) - zero[:, None]) * scale[:, None], rtol=0, atol=0)
    def per_tensor(x):
        quantized = mb.quantize(input=x, scale=np.float32(1.0), output_dtype="uint8")
        return mb.dequantize(input=quantized, scale=np.float32(0.5), zero_point=np.uint8(100))
    out, = run(per_tensor, np.array([0.0, 100.0, 255.0, 300.0], np.float32), opset=ct.target.iOS17)
    np.testing.assert_array_equal(out, [-50.0, 0.0, 77.5, 77.5])


FP16_CASES = [  # (id, build for a dtype) run on float16 inputs: each result is the float32 result rounded to float16
    ("add", lambda dt: lambda x, y: mb.add(x=x, y=y)),
    ("real_div", lambda dt: lambda x, y: mb.real_div(x=x, y=mb.abs(x=y))),
    ("exp", lambda dt: lambda x, y: mb.exp(x=x)),
    ("softmax", lambda dt: lambda x, y: mb.softmax(x=x, axis=0)),
    ("layer_norm", lambda dt: lambda x, y: mb.layer_norm(x=x, axes=[-1], epsilon=dt(2 ** -10))),
    ("matmul", lambda dt: lambda x, y: mb.matmul(x=x, y=y, transpose_y=True)),
    ("conv", lambda dt: lambda x, y: mb.conv(x=mb.expand_dims(x=x, axes=[0, 1]), weight=np.ones((2, 1, 2, 3), dt))),
    ("gelu", lambda dt: lambda x, y: mb.gelu(x=x)),
]


@pytest.mark.parametrize("build", [pytest.param(b, id=i) for i, b in FP16_CASES])
def test_float16_program_rounds_every_result(build) -> None:
    x, y = rand(4, 6, seed=25, scale=2.0).astype(np.float16), rand(4, 6, seed=26, scale=2.0).astype(np.float16)
    out, = run(build(np.float16), x, y)
    same, = run(build(np.float32), x.astype(np.float32), y.astype(np.float32))  # float32 program, same values
    assert out.dtype == np.float16 and same.dtype == np.float32
    np.testing.assert_array_equal(out, same.astype(np.float16))
    assert not np.array_equal(out.astype(np.float32), same)  # the rounding did happen


def test_float16_rounding_happens_after_each_op() -> None:
    """(1 + 2^-12) - 1: rounded after the add (as float16 hardware computes), the difference is 0, not 2^-12."""
    one = np.ones(2, np.float16)
    tiny = np.float16(2 ** -12)
    out, = run(lambda x: mb.sub(x=mb.add(x=x, y=tiny), y=x), one)
    np.testing.assert_array_equal(out, np.zeros(2, np.float16))
    out32, = run(lambda x: mb.sub(x=mb.add(x=x, y=np.float32(2 ** -12)), y=x), one.astype(np.float32))
    np.testing.assert_array_equal(out32, np.full(2, 2 ** -12, np.float32))


def test_observe_sees_inputs_and_float_results() -> None:
    seen: dict[str, np.ndarray] = {}
    x = rand(2, 3, seed=27)
    prog = program(lambda x: mb.reduce_argmax(x=mb.relu(x=x, name="r"), axis=1, name="arg"), x)
    run_program(prog, {"x": x}, lambda name, value: seen.setdefault(name, value))
    assert set(seen) == {"x", "r"}  # the int32 argmax is no activation
    np.testing.assert_array_equal(seen["r"], np.maximum(x, 0))


def test_compressed_weights_are_decompressed() -> None:
    """A constexpr (here affine int8 weights) is materialised before the ops that read it."""
    q = np.array([[-3, 0, 5], [127, -128, 1]], np.int8)
    x = rand(4, 3, seed=28)

    def build(x):
        w = mb.constexpr_affine_dequantize(quantized_data=q, zero_point=np.int8(1), scale=np.float32(0.05), axis=0)
        return mb.linear(x=x, weight=w)
    out, = run(build, x, opset=ct.target.iOS16)
    np.testing.assert_allclose(out, x @ ((q.astype(np.float32) - 1) * 0.05).T, **TIGHT)


def test_an_unknown_op_stops_the_run() -> None:
    with pytest.raises(NotImplementedError, match="cumsum"):
        run(lambda x: mb.cumsum(x=x, axis=1), rand(1, 2, 3, 3))
    assert "cumsum" not in supported_ops() and "const" in supported_ops()


def test_cond_runs_the_branch_the_predicate_picks() -> None:
    """cond (a scripted `if` on a tensor): the true branch doubles x, the false one negates it; outer values are
    visible inside the branches."""
    def build(x):
        pred = mb.greater(x=mb.reduce_mean(x=x, axes=[0, 1]), y=np.float32(0.0))
        return mb.cond(pred=pred, _true_fn=lambda: mb.mul(x=x, y=np.float32(2.0)), _false_fn=lambda: mb.mul(x=x, y=np.float32(-1.0)))

    prog = program(build, rand(2, 3))
    for x in (rand(2, 3, low=0.5), rand(2, 3, low=-3.0)):
        out, = run_program(prog, {"x": x})
        np.testing.assert_allclose(out, x * 2 if x.mean() > 0 else -x, **TIGHT)


def test_while_loop_carries_its_variables_until_the_condition_fails() -> None:
    """while_loop (a scripted `while` on a tensor): x doubles while its mean is under 10, with a counter; the loop
    runs a data-dependent number of times (0 for a large x)."""
    def build(x):
        def cond(v, i):
            return mb.less(x=mb.reduce_mean(x=v, axes=[0, 1]), y=np.float32(10.0))

        def body(v, i):
            return mb.mul(x=v, y=np.float32(2.0)), mb.add(x=i, y=np.int32(1))

        return mb.while_loop(_cond=cond, _body=body, loop_vars=(x, mb.const(val=np.int32(0))))

    prog = program(build, rand(2, 3))
    for x, trips in ((rand(2, 3, low=0.5, scale=0.5), 4), (rand(2, 3, low=20.0), 0)):
        out, count = run_program(prog, {"x": x})
        want, n = x.copy(), 0
        while want.mean() < 10:
            want, n = want * 2, n + 1
        assert n == trips and int(count) == trips
        np.testing.assert_allclose(out, want, **TIGHT)


def test_every_handler_has_a_case() -> None:
    assert set(_OPS) - COVERED == set(), "handlers without a per-op case"


# --- end to end (a real converted program) ------------------------------------------------------------------------
def test_converted_torch_program_matches_torch() -> None:  # ~3 s
    """A tiny CNN (conv, batch norm, relu6, ceil-mode max pool with padding, avg pool, linear, log1p, softmax) converted
    by coremltools to an fp32 ML program: the executor's outputs are torch's."""
    from edgeconv.targets.coreml._mil_reference import program_of

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1, groups=1)
            self.bn = torch.nn.BatchNorm2d(8)
            self.pool = torch.nn.MaxPool2d(2, 2, padding=1, ceil_mode=True)
            self.dw = torch.nn.Conv2d(8, 8, 3, padding=1, groups=8)
            self.fc = torch.nn.Linear(8, 5)

        def forward(self, x):
            y = self.pool(F.relu6(self.bn(self.conv(x))))
            y = F.avg_pool2d(self.dw(y), 2, ceil_mode=True, count_include_pad=False).mean((2, 3))
            return torch.softmax(self.fc(torch.log1p(y.abs())), dim=-1)

    torch.manual_seed(0)
    model = Tiny().eval()
    with torch.no_grad():
        model.bn.running_mean.uniform_(-0.5, 0.5)
        model.bn.running_var.uniform_(0.5, 2.0)
    x = rand(2, 3, 19, 17, seed=30)
    traced = torch.jit.trace(model, t(x))
    mlmodel = ct.convert(traced, inputs=[ct.TensorType(name="x", shape=x.shape)], convert_to="mlprogram",
                         compute_precision=ct.precision.FLOAT32, minimum_deployment_target=ct.target.iOS16)
    out, = run_program(program_of(mlmodel), {"x": x})
    with torch.no_grad():
        want = model(t(x)).numpy()
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-6)


def test_converted_bidirectional_lstm_matches_torch() -> None:
    """A CRNN-style head (conv features as a T x N x C sequence, two-layer bidirectional LSTM, linear,
    log_softmax) converted by coremltools: the executor runs its lstm ops as torch does."""
    from edgeconv.targets.coreml._mil_reference import program_of

    class Head(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = torch.nn.LSTM(6, 5, num_layers=2, bidirectional=True)
            self.fc = torch.nn.Linear(10, 4)

        def forward(self, x):
            return torch.log_softmax(self.fc(self.rnn(x)[0]), dim=-1)

    torch.manual_seed(31)
    model = Head().eval()
    x = rand(7, 2, 6, seed=31)
    mlmodel = ct.convert(torch.jit.trace(model, t(x)), inputs=[ct.TensorType(name="x", shape=x.shape)],
                         convert_to="mlprogram", compute_precision=ct.precision.FLOAT32,
                         minimum_deployment_target=ct.target.iOS16)
    prog = program_of(mlmodel)
    assert any(op.op_type == "lstm" for op in prog.functions["main"].operations)
    out, = run_program(prog, {"x": x})
    with torch.no_grad():
        want = model(t(x)).numpy()
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-5)
