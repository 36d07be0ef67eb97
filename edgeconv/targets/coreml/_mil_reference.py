"""A small NumPy reference executor for Core ML ML programs, used where the Core ML runtime does not exist (Linux).

It runs the package's MIL program op by op (weights decompressed from their constexpr ops, every result rounded to
the dtype the program declares, so float16 programs compute in float16 steps) for the ops common in CNNs and
transformer blocks. It is NOT Core ML: kernels, fusions and accumulation precision on the device differ. What it proves
is that the converted program — its graph, its layouts, its compressed weights, its quantize/dequantize ranges —
computes what the source computes. An op it does not know stops it (`NotImplementedError`), and the check then says so
instead of guessing.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

Handler = Callable[[dict[str, Any]], "np.ndarray | tuple[np.ndarray, ...]"]  # split: one array per output
_OPS: dict[str, Handler] = {}


def _op(*names: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        for name in names:
            _OPS[name] = fn
        return fn
    return register


MAX_LOOP_ITERATIONS = 100_000  # a while_loop still running after this many is taken as not terminating


def supported_ops() -> frozenset[str]:
    return frozenset(_OPS) | {"const", "cond", "while_loop"}


def run_program(program: Any, feeds: dict[str, np.ndarray],
                observe: Callable[[str, np.ndarray], None] | None = None,
                consts: Mapping[str, np.ndarray] | None = None) -> list[np.ndarray]:
    """Outputs of `main` (in the program's output order) for `feeds` keyed by the program's input names. `observe`
    sees every input and every computed (non-constant) tensor by its MIL name (used to calibrate activations).
    `consts` replaces the values of const / constexpr outputs by name (a search trying other weights on one program)."""
    from coremltools.converters.mil.mil import types

    function = program.functions["main"]
    env: dict[str, Any] = {}
    for name, var in function.inputs.items():
        env[name] = np.asarray(feeds[name]).astype(types.nptype_from_builtin(var.dtype))
        if observe is not None:
            observe(name, env[name])

    def value(var: Any) -> Any:
        if isinstance(var, (list, tuple)):
            return [value(v) for v in var]
        if var.name in env:
            return env[var.name]
        return var.val

    def store(outputs: Any, results: Any) -> None:
        for var, res in zip(outputs, results):
            dtype = types.nptype_from_builtin(var.dtype) if types.is_tensor(var.sym_type) or types.is_scalar(var.sym_type) else None
            arr = np.asarray(res)
            env[var.name] = arr.astype(dtype) if dtype is not None and arr.dtype != dtype else arr
            if observe is not None and env[var.name].dtype.kind == "f":
                observe(var.name, env[var.name])

    def run_block(block: Any, bind: list[Any] | None = None) -> list[Any]:
        """Run a nested block (a cond branch, a while_loop's condition or body) with its inputs bound to `bind`; its
        outputs' values. Names are unique across a program's blocks, so the blocks share `env` (outer values stay
        visible, as MIL scoping allows)."""
        for var, val in zip(block.inputs, bind or []):
            env[var.name] = val
        run_ops(block.operations)
        return [value(v) for v in block.outputs]

    def run_ops(operations: Any) -> None:
        for op in operations:
            if op.op_type == "const" or op.op_type.startswith("constexpr_"):
                out = op.outputs[0]
                if consts is not None and out.name in consts:
                    env[out.name] = consts[out.name]
                    continue
                val = out.val
                if val is None:
                    infer = getattr(op, "materialized_val_inference", None) or op.value_inference
                    val = infer()
                env[out.name] = val
                continue
            if op.op_type == "cond":  # scripted `if` on a tensor: run the branch the predicate picks
                store(op.outputs, run_block(op.blocks[0] if bool(np.asarray(value(op.inputs["pred"]))) else op.blocks[1]))
                continue
            if op.op_type == "while_loop":  # scripted loops: blocks[0] the condition, blocks[1] the body
                loop_vars = [value(v) for v in op.inputs["loop_vars"]]
                for _ in range(MAX_LOOP_ITERATIONS):
                    if not bool(np.asarray(run_block(op.blocks[0], loop_vars)[0])):
                        break
                    loop_vars = run_block(op.blocks[1], loop_vars)
                else:
                    raise NotImplementedError(f"while_loop {op.name} ran {MAX_LOOP_ITERATIONS} iterations")
                store(op.outputs, loop_vars)
                continue
            handler = _OPS.get(op.op_type)
            if handler is None:
                raise NotImplementedError(op.op_type)
            args = {k: value(v) for k, v in op.inputs.items()}
            result = handler(args)
            store(op.outputs, result if isinstance(result, tuple) else (result,))

    run_ops(function.operations)
    return [np.asarray(env[v.name]) for v in function.outputs]


def _f(x: Any) -> np.ndarray:
    """Compute in float32 (results are rounded back to the declared dtype by run_program)."""
    x = np.asarray(x)
    return x.astype(np.float32) if x.dtype.kind == "f" else x


# --- elementwise ---------------------------------------------------------------------------------------------------
_fn: Callable[..., Any]  # the op tables below hold numpy ufuncs, functions and lambdas
_BINARY = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "real_div": np.divide, "maximum": np.maximum,
           "minimum": np.minimum, "pow": np.power, "floor_div": np.floor_divide, "mod": np.mod,
           "equal": np.equal, "not_equal": np.not_equal, "greater": np.greater, "greater_equal": np.greater_equal,
           "less": np.less, "less_equal": np.less_equal, "logical_and": np.logical_and, "logical_or": np.logical_or}
for _name, _fn in _BINARY.items():
    _OPS[_name] = (lambda fn: lambda a: fn(_f(a["x"]), _f(a["y"])))(_fn)

_UNARY: dict[str, Callable[..., Any]]
_UNARY = {"abs": np.abs, "exp": np.exp, "sqrt": np.sqrt, "tanh": np.tanh, "sin": np.sin, "cos": np.cos,
          "floor": np.floor, "ceil": np.ceil, "round": np.round, "sign": np.sign, "square": np.square,
          "relu": lambda x: np.maximum(x, 0), "relu6": lambda x: np.clip(x, 0, 6),
          "sigmoid": lambda x: 1 / (1 + np.exp(-x)), "silu": lambda x: x / (1 + np.exp(-x)),
          "softplus": lambda x: np.logaddexp(0, x), "identity": lambda x: x, "logical_not": np.logical_not}
for _name, _fn in _UNARY.items():
    _OPS[_name] = (lambda fn: lambda a: fn(_f(a["x"])))(_fn)


def _epsilon(a: dict[str, Any], default: float) -> float:
    """The op's epsilon (0 is a value, not "use the default")."""
    return float(a["epsilon"]) if a.get("epsilon") is not None else default


@_op("log")
def _log(a: dict[str, Any]) -> np.ndarray:
    """log(x + epsilon): torch.log1p converts to log with epsilon 1. The default (1e-45) is added in the declared
    dtype (0 in float16), as the device adds it."""
    x = _f(a["x"])
    epsilon = _f(a["epsilon"]) if a.get("epsilon") is not None else np.float32(1e-45)
    return np.log(x + epsilon)


@_op("erf")
def _erf(a: dict[str, Any]) -> np.ndarray:
    return np.vectorize(math.erf, otypes=[np.float32])(_f(a["x"]))


@_op("rsqrt")
def _rsqrt(a: dict[str, Any]) -> np.ndarray:
    return 1 / np.sqrt(_f(a["x"]) + _epsilon(a, 1e-12))


@_op("inverse")
def _inverse(a: dict[str, Any]) -> np.ndarray:
    return 1 / (_f(a["x"]) + _epsilon(a, 1e-4))


@_op("clip")
def _clip(a: dict[str, Any]) -> np.ndarray:
    return np.clip(_f(a["x"]), a["alpha"], a["beta"])


@_op("thresholded_relu")
def _thresholded_relu(a: dict[str, Any]) -> np.ndarray:
    x = _f(a["x"])
    return np.where(x >= float(a.get("alpha", 1.0)), x, np.zeros_like(x))


@_op("sigmoid_hard")
def _sigmoid_hard(a: dict[str, Any]) -> np.ndarray:
    return np.clip(_f(a["x"]) * float(a.get("alpha", 0.2)) + float(a.get("beta", 0.5)), 0.0, 1.0)


@_op("leaky_relu")
def _leaky_relu(a: dict[str, Any]) -> np.ndarray:
    x = _f(a["x"])
    return np.where(x >= 0, x, x * float(a.get("alpha", 0.01)))


@_op("prelu")
def _prelu(a: dict[str, Any]) -> np.ndarray:
    """Core ML's prelu: rank-4 (or 3 / 5) x, one alpha per channel (axis 1)."""
    x = _f(a["x"])
    alpha = _f(a["alpha"]).reshape([1, -1] + [1] * (x.ndim - 2))
    return np.where(x >= 0, x, x * alpha)


@_op("gelu")
def _gelu(a: dict[str, Any]) -> np.ndarray:
    x, mode = _f(a["x"]), str(a.get("mode") or "EXACT")
    if mode == "TANH_APPROXIMATION":
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    if mode == "SIGMOID_APPROXIMATION":
        return x / (1 + np.exp(-1.702 * x))
    return 0.5 * x * (1 + np.vectorize(math.erf, otypes=[np.float32])(x / math.sqrt(2)))


@_op("softmax")
def _softmax(a: dict[str, Any]) -> np.ndarray:
    x, axis = _f(a["x"]), int(a.get("axis", -1))
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@_op("select")
def _select(a: dict[str, Any]) -> np.ndarray:
    return np.where(a["cond"], _f(a["a"]), _f(a["b"]))


# --- linear algebra ------------------------------------------------------------------------------------------------
@_op("linear")
def _linear(a: dict[str, Any]) -> np.ndarray:
    out = _f(a["x"]) @ _f(a["weight"]).T
    return out + _f(a["bias"]) if a.get("bias") is not None else out


@_op("matmul")
def _matmul(a: dict[str, Any]) -> np.ndarray:
    x, y = _f(a["x"]), _f(a["y"])
    if a.get("transpose_x"):
        x = np.swapaxes(x, -1, -2)
    if a.get("transpose_y"):
        y = np.swapaxes(y, -1, -2)
    return np.matmul(x, y)


@_op("scaled_dot_product_attention")
def _sdpa(a: dict[str, Any]) -> np.ndarray:
    q, k, v = _f(a["query"]), _f(a["key"]), _f(a["value"])
    scores = np.matmul(q, np.swapaxes(k, -1, -2)) / math.sqrt(q.shape[-1])
    mask = a.get("attn_mask")
    if mask is not None:
        scores = np.where(mask, scores, -np.inf) if np.asarray(mask).dtype == bool else scores + _f(mask)
    return np.matmul(_softmax({"x": scores, "axis": -1}), v)


def _per_axis(a: dict[str, Any], key: str, rank: int) -> tuple[int, ...]:
    """An op's per-spatial-axis ints (strides, dilations): 1 on every axis when not given."""
    return tuple(int(v) for v in (a[key] if a.get(key) is not None else [1] * rank))


def _spatial_pads(a: dict[str, Any], spatial: tuple[int, ...], kernel: tuple[int, ...], strides: tuple[int, ...],
                  dilations: tuple[int, ...]) -> list[tuple[int, int]]:
    pad_type = str(a.get("pad_type") or "valid")
    if pad_type == "custom":
        pad = [int(p) for p in a["pad"]]
        return [(pad[2 * i], pad[2 * i + 1]) for i in range(len(spatial))]
    if pad_type in ("same", "same_lower"):
        pads = []
        for size, k, s, d in zip(spatial, kernel, strides, dilations):
            out = -(-size // s)
            total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
            small, big = total // 2, total - total // 2
            pads.append((big, small) if pad_type == "same_lower" else (small, big))
        return pads
    return [(0, 0)] * len(spatial)


def _windows(x: np.ndarray, kernel: tuple[int, ...], strides: tuple[int, ...], dilations: tuple[int, ...]) -> np.ndarray:
    """(N, C, *spatial) → (N, C, *out_spatial, *kernel) views."""
    rank = len(kernel)
    effective = tuple((k - 1) * d + 1 for k, d in zip(kernel, dilations))
    view = np.lib.stride_tricks.sliding_window_view(x, effective, axis=tuple(range(2, 2 + rank)))
    index = (slice(None), slice(None)) + tuple(slice(None, None, s) for s in strides) \
        + tuple(slice(None, None, d) for d in dilations)
    return view[index]


@_op("conv")
def _conv(a: dict[str, Any]) -> np.ndarray:
    x, w = _f(a["x"]), _f(a["weight"])
    rank = w.ndim - 2
    strides = _per_axis(a, "strides", rank)
    dilations = _per_axis(a, "dilations", rank)
    groups = int(a.get("groups") or 1)
    kernel = tuple(w.shape[2:])
    pads = _spatial_pads(a, x.shape[2:], kernel, strides, dilations)
    x = np.pad(x, [(0, 0), (0, 0), *pads])
    win = _windows(x, kernel, strides, dilations)  # N, C, *out, *k
    n, c = win.shape[:2]
    out_spatial = win.shape[2:2 + rank]
    cg, og = c // groups, w.shape[0] // groups
    outs = []
    letters = "hwd"[:rank]
    klet = "klm"[:rank]
    for g in range(groups):
        xs = win[:, g * cg:(g + 1) * cg]
        ws = w[g * og:(g + 1) * og]
        outs.append(np.einsum(f"nc{letters}{klet},oc{klet}->no{letters}", xs, ws, optimize=True))
    out = np.concatenate(outs, axis=1).reshape(n, w.shape[0], *out_spatial)
    if a.get("bias") is not None:
        out = out + _f(a["bias"]).reshape(1, -1, *([1] * rank))
    return out


@_op("conv_transpose")
def _conv_transpose(a: dict[str, Any]) -> np.ndarray:
    """MIL conv_transpose (weight [C_in, C_out / groups, *k]): every input pixel scatters its kernel-weighted copy at
    stride s, dilation d; the full result ((i - 1)·s + (k - 1)·d + 1 per axis) is then cropped by the padding, or to
    `output_shape` when given (the extra rows output padding asks for are zeros past the full result)."""
    x, w = _f(a["x"]), _f(a["weight"])
    rank = w.ndim - 2
    strides = _per_axis(a, "strides", rank)
    dilations = _per_axis(a, "dilations", rank)
    groups = int(a.get("groups") or 1)
    kernel, spatial = tuple(w.shape[2:]), tuple(x.shape[2:])
    n, cin = x.shape[:2]
    cg, og = cin // groups, w.shape[1]
    full = [(i - 1) * s + (k - 1) * d + 1 for i, k, s, d in zip(spatial, kernel, strides, dilations)]
    out = np.zeros((n, og * groups, *full), dtype=np.float64)
    for g in range(groups):
        xs, ws = x[:, g * cg:(g + 1) * cg].astype(np.float64), w[g * cg:(g + 1) * cg].astype(np.float64)
        for offset in np.ndindex(*kernel):
            at = tuple(slice(o * d, o * d + (i - 1) * s + 1, s) for o, d, i, s in zip(offset, dilations, spatial, strides))
            out[(slice(None), slice(g * og, (g + 1) * og), *at)] += np.einsum(
                "nc...,co->no...", xs, ws[(slice(None), slice(None), *offset)])
    pad_type = str(a.get("pad_type") or "valid")
    if pad_type in ("same", "same_lower"):  # a transposed conv's "same" output is i·s: not a conv's padding
        totals = [f - i * s for f, i, s in zip(full, spatial, strides)]
        pads = [((t + 1) // 2, t // 2) if pad_type == "same_lower" else (t // 2, (t + 1) // 2) for t in totals]
    else:  # custom / valid, as for conv
        pads = _spatial_pads(a, spatial, kernel, strides, dilations)
    shape = a.get("output_shape")
    sizes = [int(v) for v in shape][-rank:] if shape is not None else [f - b - e for f, (b, e) in zip(full, pads)]
    grown = np.pad(out, [(0, 0), (0, 0), *[(0, max(0, b + size - f)) for f, (b, _), size in zip(full, pads, sizes)]])
    out = grown[(slice(None), slice(None), *[slice(b, b + size) for (b, _), size in zip(pads, sizes)])]
    if a.get("bias") is not None:
        out = out + _f(a["bias"]).reshape(1, -1, *([1] * rank))
    return out.astype(x.dtype)


def _pool(a: dict[str, Any], reduce: str) -> np.ndarray:
    x = _f(a["x"])
    kernel = tuple(int(k) for k in a["kernel_sizes"])
    rank = len(kernel)
    strides = _per_axis(a, "strides", rank)
    pads = _spatial_pads(a, x.shape[2:], kernel, strides, (1,) * rank)
    counts = [(size + lo + hi - k) // s + 1 for size, (lo, hi), k, s in zip(x.shape[2:], pads, kernel, strides)]
    if a.get("ceil_mode"):
        counts = [_ceil_windows(size, lo, hi, k, s) for size, (lo, hi), k, s in zip(x.shape[2:], pads, kernel, strides)]
        pads = [(lo, max(hi, (n - 1) * s + k - size - lo)) for size, (lo, hi), k, s, n
                in zip(x.shape[2:], pads, kernel, strides, counts)]
    fill = -np.inf if reduce == "max" else np.nan
    x = np.pad(x, [(0, 0), (0, 0), *pads], constant_values=fill)
    win = _windows(x, kernel, strides, (1,) * rank)[(slice(None), slice(None), *(slice(0, n) for n in counts))]
    axes = tuple(range(-rank, 0))
    if reduce == "max":
        return win.max(axis=axes)
    if a.get("exclude_padding_from_average", False):
        return np.nanmean(win, axis=axes)
    return np.nansum(win, axis=axes) / math.prod(kernel)


def _ceil_windows(size: int, lo: int, hi: int, k: int, s: int) -> int:
    """Windows along one axis in ceil mode (the output size coremltools declares): rounded up, less one that would
    start in the right padding when there is padding (PyTorch's rule)."""
    count = (size + lo + hi - k + s - 1) // s + 1
    return count - 1 if (count - 1) * s >= size + lo and (lo > 0 or hi > 0) else count


@_op("max_pool")
def _max_pool(a: dict[str, Any]) -> np.ndarray:
    return _pool(a, "max")


@_op("avg_pool")
def _avg_pool(a: dict[str, Any]) -> np.ndarray:
    return _pool(a, "avg")


# --- recurrent -----------------------------------------------------------------------------------------------------
# the activations MIL's lstm names that take no parameters (its scaled_tanh / hard_sigmoid carry none in the op, and
# their constants are not documented: left unsupported rather than guessed)
_RNN_ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    name: _UNARY[op] for name, op in (("sigmoid", "sigmoid"), ("tanh", "tanh"), ("relu", "relu"), ("linear", "identity"))}


def _rnn_activation(a: dict[str, Any], key: str, default: str) -> Callable[[np.ndarray], np.ndarray]:
    name = str(a.get(key) or default).lower()
    if name not in _RNN_ACTIVATIONS:
        raise NotImplementedError(f"lstm {key}={name}")
    return _RNN_ACTIVATIONS[name]


def _lstm_direction(x: np.ndarray, h: np.ndarray, c: np.ndarray, w_ih: np.ndarray, w_hh: np.ndarray,
                    bias: Any, peephole: Any, reverse: bool, a: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One direction over x (s, b, I): the hidden state of every step (s, b, H, in time order), and the last h, c.
    Gates are stacked [input, forget, output, cell] (MIL's order, not torch's i, f, g, o)."""
    gate, cell, out_act = (_rnn_activation(a, "recurrent_activation", "sigmoid"),
                           _rnn_activation(a, "cell_activation", "tanh"), _rnn_activation(a, "activation", "tanh"))
    hidden = w_hh.shape[1]
    b = _f(bias) if bias is not None else np.zeros(4 * hidden, np.float32)
    p = _f(peephole) if peephole is not None else np.zeros(3 * hidden, np.float32)
    clip = a.get("clip")
    steps = range(x.shape[0] - 1, -1, -1) if reverse else range(x.shape[0])
    seq = np.zeros((x.shape[0], x.shape[1], hidden), np.float32)
    for t in steps:
        z = x[t] @ w_ih.T + h @ w_hh.T + b
        zi, zf, zo, zg = (z[:, k * hidden:(k + 1) * hidden] for k in range(4))
        g = cell(zg)
        if clip is not None:
            g = np.clip(g, -float(clip), float(clip))
        c = gate(zf + p[hidden:2 * hidden] * c) * c + gate(zi + p[:hidden] * c) * g
        h = gate(zo + p[2 * hidden:] * c) * out_act(c)
        seq[t] = h
    return seq, h, c


@_op("lstm")
def _lstm(a: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MIL lstm: x (s, b, I), initial_h / initial_c (b, D*H) with the forward half first; outputs every step's
    hidden state (s, b, D*H) when `output_sequence` (else the last step's, (1, b, D*H)), and the final h and c
    (b, D*H): the backward direction's final state is the one at step 0."""
    x, h0, c0 = _f(a["x"]), _f(a["initial_h"]), _f(a["initial_c"])
    direction = str(a.get("direction") or "forward")
    if direction == "bidirectional" and not a.get("output_sequence"):
        raise NotImplementedError("bidirectional lstm without output_sequence")  # which step's backward state: undocumented
    hidden = _f(a["weight_hh"]).shape[1]
    runs = [("", direction == "reverse")] + ([("_back", True)] if direction == "bidirectional" else [])
    seqs, hs, cs = [], [], []
    for d, (suffix, reverse) in enumerate(runs):
        seq, h, c = _lstm_direction(x, h0[:, d * hidden:(d + 1) * hidden], c0[:, d * hidden:(d + 1) * hidden],
                                    _f(a["weight_ih" + suffix]), _f(a["weight_hh" + suffix]), a.get("bias" + suffix),
                                    a.get("peephole" + suffix), reverse, a)
        seqs.append(seq)
        hs.append(h)
        cs.append(c)
    out = np.concatenate(seqs, axis=-1) if a.get("output_sequence") else hs[0][None]
    return out, np.concatenate(hs, axis=-1), np.concatenate(cs, axis=-1)


# --- normalisation / reductions ------------------------------------------------------------------------------------
@_op("layer_norm")
def _layer_norm(a: dict[str, Any]) -> np.ndarray:
    x = _f(a["x"])
    axes = tuple(int(i) for i in a["axes"]) if a.get("axes") is not None else (-1,)
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    out = (x - mean) / np.sqrt(var + _epsilon(a, 1e-5))
    if a.get("gamma") is not None:
        out = out * _f(a["gamma"])
    if a.get("beta") is not None:
        out = out + _f(a["beta"])
    return out


@_op("batch_norm")
def _batch_norm(a: dict[str, Any]) -> np.ndarray:
    x = _f(a["x"])
    shape = (1, -1) + (1,) * (x.ndim - 2)
    out = (x - _f(a["mean"]).reshape(shape)) / np.sqrt(_f(a["variance"]).reshape(shape) + _epsilon(a, 1e-5))
    if a.get("gamma") is not None:
        out = out * _f(a["gamma"]).reshape(shape)
    if a.get("beta") is not None:
        out = out + _f(a["beta"]).reshape(shape)
    return out


def _reduce(fn: Callable[..., np.ndarray]) -> Handler:
    def run(a: dict[str, Any]) -> np.ndarray:
        axes = tuple(int(i) for i in a["axes"]) if a.get("axes") is not None else None
        return fn(_f(a["x"]), axis=axes, keepdims=bool(a.get("keep_dims", False)))
    return run


_REDUCE: dict[str, Callable[..., Any]] = {"reduce_mean": np.mean, "reduce_sum": np.sum, "reduce_max": np.max,
                                          "reduce_min": np.min, "reduce_prod": np.prod}
for _name, _fn in _REDUCE.items():
    _OPS[_name] = _reduce(_fn)


@_op("topk")
def _topk(a: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(values, indices) of the k largest (smallest when `ascending`) along `axis`, largest first; ties keep the
    lower index first (a stable sort)."""
    x = np.asarray(a["x"])
    axis, k = int(a.get("axis", -1)), int(a["k"])
    order = np.argsort(x if a.get("ascending") else -x, axis=axis, kind="stable")
    index = np.take(order, np.arange(k), axis=axis)
    return np.take_along_axis(x, index, axis=axis), index.astype(np.int32)


@_op("reduce_argmax")
def _argmax(a: dict[str, Any]) -> np.ndarray:
    out = np.argmax(a["x"], axis=int(a.get("axis", -1)))
    return np.expand_dims(out, int(a.get("axis", -1))) if a.get("keep_dims") else out


# --- layout --------------------------------------------------------------------------------------------------------
@_op("reshape")
def _reshape(a: dict[str, Any]) -> np.ndarray:
    """A 0 in `shape` copies the dimension of x it aligns with counting from the right (iOS 17; the same dimension as
    iOS 15's positional rule, which needs len(shape) == rank), or 1 past x's rank."""
    x = np.asarray(a["x"])
    shape = [int(d) for d in a["shape"]]
    offset = x.ndim - len(shape)
    shape = [(x.shape[i + offset] if i + offset >= 0 else 1) if d == 0 else d for i, d in enumerate(shape)]
    return x.reshape(shape)


@_op("transpose")
def _transpose(a: dict[str, Any]) -> np.ndarray:
    return np.transpose(a["x"], [int(p) for p in a["perm"]])


@_op("expand_dims")
def _expand_dims(a: dict[str, Any]) -> np.ndarray:
    x = np.asarray(a["x"])
    rank = x.ndim + len(a["axes"])
    return np.expand_dims(x, tuple(sorted(int(i) % rank for i in a["axes"])))


@_op("squeeze")
def _squeeze(a: dict[str, Any]) -> np.ndarray:
    x = np.asarray(a["x"])
    return np.squeeze(x, axis=tuple(int(i) for i in a["axes"])) if a.get("axes") is not None else np.squeeze(x)


@_op("concat")
def _concat(a: dict[str, Any]) -> np.ndarray:
    return np.concatenate([np.asarray(v) for v in a["values"]], axis=int(a["axis"]))


@_op("split")
def _split(a: dict[str, Any]) -> tuple[np.ndarray, ...]:
    x, axis = np.asarray(a["x"]), int(a["axis"])
    if a.get("split_sizes") is not None:
        cuts = np.cumsum([int(s) for s in a["split_sizes"]])[:-1]
        return tuple(np.split(x, cuts, axis=axis))
    return tuple(np.split(x, int(a["num_splits"]), axis=axis))


@_op("slice_by_index")
def _slice_by_index(a: dict[str, Any]) -> np.ndarray:
    x = np.asarray(a["x"])
    rank = x.ndim
    begin, end = [int(v) for v in a["begin"]], [int(v) for v in a["end"]]
    stride = [int(v) for v in a["stride"]] if a.get("stride") is not None else [1] * rank
    begin_mask = list(a["begin_mask"]) if a.get("begin_mask") is not None else [False] * rank
    end_mask = list(a["end_mask"]) if a.get("end_mask") is not None else [False] * rank
    squeeze_mask = list(a["squeeze_mask"]) if a.get("squeeze_mask") is not None else [False] * rank
    index: list[int | slice] = []
    for i in range(rank):
        if squeeze_mask[i]:
            index.append(begin[i])
            continue
        index.append(slice(None if begin_mask[i] else begin[i], None if end_mask[i] else end[i], stride[i]))
    return x[tuple(index)]


@_op("slice_by_size")
def _slice_by_size(a: dict[str, Any]) -> np.ndarray:
    x = np.asarray(a["x"])
    begin, size = [int(v) for v in a["begin"]], [int(v) for v in a["size"]]
    return x[tuple(slice(b, None if s == -1 else b + s) for b, s in zip(begin, size))]


@_op("gather")
def _gather(a: dict[str, Any]) -> np.ndarray:
    return np.take(a["x"], np.asarray(a["indices"]).astype(np.int64), axis=int(a.get("axis", 0)))


@_op("gather_nd")
def _gather_nd(a: dict[str, Any]) -> np.ndarray:
    """MIL gather_nd (batch_dims 0): the last axis of `indices` indexes the leading axes of x."""
    x, index = np.asarray(a["x"]), np.asarray(a["indices"]).astype(np.int64)
    return x[tuple(np.moveaxis(index, -1, 0))]


@_op("gather_along_axis")
def _gather_along_axis(a: dict[str, Any]) -> np.ndarray:
    return np.take_along_axis(np.asarray(a["x"]), np.asarray(a["indices"]).astype(np.int64), axis=int(a.get("axis", 0)))


def _bilinear_axis(x: np.ndarray, axis: int, size: int, align_corners: bool, half_pixel: bool) -> np.ndarray:
    """Linear interpolation along one axis to `size` samples, on MIL upsample_bilinear's grid (its op reference):
    i·(in - 1)/(out - 1) with align_corners, else i·in/out (+ half a step - 0.5 with half-pixel centres), clamped."""
    n = x.shape[axis]
    i = np.arange(size, dtype=np.float64)
    if align_corners:
        grid = i * ((n - 1) / (size - 1) if size > 1 else 0.0)
    else:
        spacing = n / size
        grid = i * spacing + (0.5 * spacing - 0.5 if half_pixel else 0.0)
    grid = np.clip(grid, 0, n - 1)
    lo = np.floor(grid).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    shape = [1] * x.ndim
    shape[axis] = size
    frac = (grid - lo).reshape(shape)
    return np.take(x, lo, axis=axis) * (1 - frac) + np.take(x, hi, axis=axis) * frac


@_op("upsample_bilinear")
def _upsample_bilinear(a: dict[str, Any]) -> np.ndarray:
    x = _f(a["x"])
    align = bool(a.get("align_corners", True))
    half = bool(a["half_pixel_centers"]) if a.get("half_pixel_centers") is not None else not align
    out = x.astype(np.float64)
    for axis, key in ((-2, "scale_factor_height"), (-1, "scale_factor_width")):
        value = a.get(key)
        scale = 1.0 if value is None else float(value)
        out = _bilinear_axis(out, x.ndim + axis, int(np.floor(x.shape[axis] * scale)), align, half)
    return out.astype(x.dtype)


@_op("tile")
def _tile(a: dict[str, Any]) -> np.ndarray:
    return np.tile(a["x"], [int(r) for r in a["reps"]])


@_op("pad")
def _pad(a: dict[str, Any]) -> np.ndarray:
    x = np.asarray(a["x"])
    pad = [int(p) for p in a["pad"]]
    pairs = [(0, 0)] * (x.ndim - len(pad) // 2) + [(pad[2 * i], pad[2 * i + 1]) for i in range(len(pad) // 2)]
    mode = str(a.get("mode") or "constant")
    if mode == "constant":
        return np.pad(x, pairs, constant_values=float(a.get("constant_val") or 0))
    return np.pad(x, pairs, mode="reflect" if mode == "reflect" else "edge")


@_op("shape")
def _shape(a: dict[str, Any]) -> np.ndarray:
    return np.asarray(np.asarray(a["x"]).shape, dtype=np.int32)


@_op("fill")
def _fill(a: dict[str, Any]) -> np.ndarray:
    return np.full([int(d) for d in a["shape"]], a.get("value", 0.0))


# --- precision -----------------------------------------------------------------------------------------------------
@_op("cast")
def _cast(a: dict[str, Any]) -> np.ndarray:
    return np.asarray(a["x"])  # run_program rounds to the declared output dtype


def _axis_shape(values: np.ndarray, x: np.ndarray, axis: Any) -> np.ndarray:
    values = np.asarray(values)
    if values.ndim == 0 or axis is None:
        return values
    shape = [1] * x.ndim
    shape[int(axis)] = -1
    return values.reshape(shape)


@_op("quantize")
def _quantize(a: dict[str, Any]) -> np.ndarray:
    x = _f(a["input"])
    dtype = np.int8 if str(a.get("output_dtype")) == "int8" else np.uint8
    scale = _axis_shape(_f(a["scale"]), x, a.get("axis"))
    zero = _axis_shape(a["zero_point"], x, a.get("axis")) if a.get("zero_point") is not None else 0
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale) + zero, info.min, info.max).astype(dtype)


@_op("dequantize")
def _dequantize(a: dict[str, Any]) -> np.ndarray:
    q = np.asarray(a["input"]).astype(np.float32)
    scale = _axis_shape(_f(a["scale"]), q, a.get("axis"))
    zero = _axis_shape(a["zero_point"], q, a.get("axis")).astype(np.float32) if a.get("zero_point") is not None else 0
    return (q - zero) * scale


def run_in_source_order(program: Any, inputs: Sequence[Any], output_names: Sequence[str],
                        samples: Iterable[dict[str, np.ndarray]],
                        consts: Mapping[str, np.ndarray] | None = None) -> tuple[list[str], list[list[np.ndarray]]]:
    """Run `main` on samples keyed by the source's input names (`inputs`: its InputSpecs, in order); the output names
    and, per sample, the outputs in the source's order (`output_names`; the program's own order when they do not all
    name its outputs)."""
    function = program.functions["main"]
    names = list(function.inputs)
    produced = [v.name for v in function.outputs]
    wanted = list(output_names)
    order = [produced.index(n) for n in wanted] if wanted and set(wanted) <= set(produced) else list(range(len(produced)))
    actuals = []
    for feeds in samples:
        outputs = run_program(program, {n: feeds[s.name] for n, s in zip(names, inputs)}, consts=consts)
        actuals.append([outputs[i] for i in order])
    return wanted or [produced[i] for i in order], actuals


def all_operations(block: Any) -> Iterable[Any]:
    """Every op of a MIL block (a function), those of its ops' nested blocks (cond branches, loop bodies) included."""
    for op in block.operations:
        yield op
        for inner in getattr(op, "blocks", ()):
            yield from all_operations(inner)


def program_of(mlmodel: Any) -> Any:
    """The pymil program of an in-memory ML program (read back from its spec and weights, as coremltools' passes do)."""
    from coremltools.converters.mil.frontend.milproto.load import load as milproto_load

    spec = mlmodel.get_spec()
    return milproto_load(spec, spec.specificationVersion, mlmodel.weights_dir)


def activation_stats(mlmodel: Any, samples: list[dict[str, np.ndarray]],
                     values: dict[str, Any] | None = None) -> dict[str, dict[str, float]]:
    """{MIL tensor name: {"rmin", "rmax"}} over `samples` (keyed by the model's input names): the ranges coremltools'
    activation quantization needs, here from the reference executor instead of a Core ML prediction. `values`, if
    given, also gets a log_domain.TensorStats per tensor (its range and a sample of its values)."""
    from edgeconv.quantizers.log_domain import TensorStats

    program = program_of(mlmodel)
    stats: dict[str, dict[str, float]] = {}

    def observe(name: str, value: np.ndarray) -> None:
        if values is not None:
            values.setdefault(name, TensorStats()).add(value)
        lo, hi = float(np.min(value)), float(np.max(value))
        if name in stats:
            stats[name]["rmin"] = min(stats[name]["rmin"], lo)
            stats[name]["rmax"] = max(stats[name]["rmax"], hi)
        else:
            stats[name] = {"rmin": lo, "rmax": hi}

    for feeds in samples:
        run_program(program, feeds, observe)
    return stats
