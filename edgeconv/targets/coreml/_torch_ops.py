"""Fixes to coremltools' PyTorch front end for patterns real models have, registered over its own op converters
(`register_torch_op(override=True)`) once, when coremltools is imported.

- `int` / `bool` (TorchScript's `aten::Int` / `aten::Bool` after `x.shape[0]`, as in `x.view(x.shape[0], -1)`):
  coremltools casts a folded constant with `int(x.val)`, which NumPy 2 refuses for a 1-element array ("only
  0-dimensional arrays can be converted to Python scalars"). The constant is read as a scalar first.
- `prelu` on an input of rank 2 (PReLU after a Linear, as in MTCNN-style face nets), 3 or 5 with one alpha per channel:
  Core ML's prelu takes per-channel alpha on rank-4 input only ("rank 3 or rank 5 input is only supported when all the
  values of alpha are same"). Rank 2 / 3 become rank 4 around the prelu (expand_dims, squeeze); rank 5 is written as
  relu(x) + alpha * min(x, 0) with alpha broadcast on the channel axis (1).
- `stft` with `return_complex=False` (torch.stft front ends of audio models): coremltools returns the complex tensor
  anyway and the `select` of the real / imaginary plane after it fails ("list assignment index out of range"). The
  real and imaginary parts are stacked on a last axis of 2, as PyTorch returns them.
- ATen names torch.export programs use that only the TorchScript front end knew: `lstm.input` (the LSTM of a CRNN or
  speaker encoder: "Unsupported fx node lstm") takes the TorchScript `lstm` converter (same schema); `alias`
  (transformers' masks: "Unsupported fx node alias") is a no-op like `alias_copy`; `new_ones` (transformers' masks:
  `x.new_ones((), dtype=torch.bool)`) is a constant of ones of the asked (else x's) dtype; `__and__` / `__or__` (the
  same masks' `&`, `|`) are the bitwise_and / logical_or converters.
- `gru.input` (a GRU in a torch.export program: "Unsupported fx node gru"): same schema as TorchScript's `gru`, but one
  fx node returns the (output, h_n) tuple that getitem nodes unpack, while coremltools' `gru` converter names two
  outputs (node.outputs[1]: IndexError). It is converted here, unrolled over its (always static: torch.export
  specialises it) sequence length into linear / sigmoid / tanh / elementwise ops, PyTorch's math exactly (the reset
  gate scales the hidden projection with its bias, which MIL's `gru` op cannot express): every layer, both
  directions, batch_first, with or without biases, and an h0. Unlike coremltools' while_loop these are Neural Engine
  ops and the reference executor runs them; the cost is ~11 ops per step and direction (a 61-step GRU: ~700 ops;
  500 steps: ~6,500 ops, 90 s to convert).
"""

from __future__ import annotations

from typing import Any

_installed = False


def install() -> None:
    global _installed
    if _installed:
        return
    import numpy as np
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.frontend.torch import ops
    from coremltools.converters.mil.frontend.torch.torch_op_registry import _TORCH_OPS_REGISTRY, register_torch_op

    original_prelu = _TORCH_OPS_REGISTRY.get_func("prelu")

    def _cast(context: Any, node: Any, dtype: type, dtype_name: str) -> None:
        x = ops._get_inputs(context, node, expected=1)[0]
        if not (len(x.shape) == 0 or all(d == 1 for d in x.shape)):
            raise ValueError("input to cast must be either a scalar or a length 1 tensor")
        if x.can_be_folded_to_const():
            value = np.asarray(x.val).reshape(()).item()  # a (1,) or (1, 1) constant is a scalar too
            res = x if isinstance(x.val, dtype) else mb.const(val=dtype(value), name=node.name)
        elif len(x.shape) > 0:
            res = mb.cast(x=mb.squeeze(x=x, name=node.name + "_item"), dtype=dtype_name, name=node.name)
        else:
            res = mb.cast(x=x, dtype=dtype_name, name=node.name)
        context.add(res, node.name)

    @register_torch_op(torch_alias=["int"], override=True)
    def _int(context: Any, node: Any) -> None:
        _cast(context, node, int, "int32")

    @register_torch_op(torch_alias=["bool"], override=True)
    def _bool(context: Any, node: Any) -> None:
        _cast(context, node, bool, "bool")

    @register_torch_op(override=True)
    def prelu(context: Any, node: Any) -> None:
        x, alpha = ops._get_inputs(context, node, expected=2)
        values = None if alpha.val is None else np.asarray(alpha.val).reshape(-1)
        if x.rank == 4 or values is None or values.size == 1 or np.all(values == values[0]):
            original_prelu(context, node)
            return
        if x.rank in (2, 3):  # as [N, C, 1, 1] / [N, C, L, 1]: one prelu op, its slope compressed like any weight
            axes = [2, 3] if x.rank == 2 else [3]
            lifted = mb.expand_dims(x=x, axes=axes)
            activated = mb.prelu(x=lifted, alpha=values.astype(np.float32))
            context.add(mb.squeeze(x=activated, axes=axes, name=node.name), node.name)
            return
        shape = [1] * x.rank
        shape[1] = values.size  # PyTorch's PReLU: one alpha per channel, channels on axis 1
        slope = mb.const(val=values.astype(np.float32).reshape(shape))
        positive = mb.relu(x=x)
        negative = mb.minimum(x=x, y=np.float32(0.0))
        context.add(mb.add(x=positive, y=mb.mul(x=negative, y=slope), name=node.name), node.name)

    original_stft = _TORCH_OPS_REGISTRY.get_func("stft")

    @register_torch_op(override=True)
    def stft(context: Any, node: Any) -> None:
        from coremltools.converters.mil.mil import types

        original_stft(context, node)  # always a complex tensor, whatever return_complex says
        inputs = ops._get_inputs(context, node, min_expected=2)
        wanted = inputs[7] if len(inputs) > 7 else None
        wanted = ops._get_kwinputs(context, node, "return_complex", default=[wanted])[0]
        result = context[node.name]
        if wanted is not None and wanted.val is not None and not bool(wanted.val) and types.is_complex(result.dtype):
            parts = [mb.expand_dims(x=part(data=result), axes=[-1]) for part in (mb.complex_real, mb.complex_imag)]
            context.add(mb.concat(values=parts, axis=-1, name=node.name), node.name, override=True)

    def new_ones(context: Any, node: Any) -> None:
        from coremltools.converters.mil.frontend.torch.utils import NUM_TO_NUMPY_DTYPE
        from coremltools.converters.mil.mil import types

        inputs = ops._get_inputs(context, node, min_expected=2)
        x, shape = inputs[0], inputs[1]
        dtype = (ops._get_kwinputs(context, node, "dtype", default=[None]) or [None])[0]
        numpy_dtype = NUM_TO_NUMPY_DTYPE[int(dtype.val)] if dtype is not None and dtype.val is not None \
            else types.nptype_from_builtin(x.dtype)
        dims = [int(d.val) for d in shape] if isinstance(shape, list) and all(d.val is not None for d in shape) \
            else (np.asarray(shape.val).astype(int).tolist() if not isinstance(shape, list) and shape.val is not None else None)
        if dims is not None:
            context.add(mb.const(val=np.ones(dims, dtype=numpy_dtype), name=node.name))
            return
        dynamic = mb.concat(values=shape, axis=0) if isinstance(shape, list) else shape
        filled = mb.fill(shape=dynamic, value=1.0)
        context.add(mb.cast(x=filled, dtype=types.builtin_to_string(types.numpy_type_to_builtin_type(numpy_dtype)),
                            name=node.name))

    def gru_input(context: Any, node: Any) -> None:
        """aten.gru.input (torch.export): the TorchScript `gru` schema, but one fx node whose (output, h_n) tuple the
        graph unpacks with getitem, where TorchScript names both outputs (coremltools' `gru` reads node.outputs[1])."""
        from coremltools.converters.mil.mil.types.symbolic import is_symbolic

        inputs = ops._get_inputs(context, node, expected=9)
        x, hx, params = inputs[0], inputs[1], inputs[2]
        has_bias, layers = bool(inputs[3].val), int(inputs[4].val)
        directions, batch_first = 2 if inputs[7].val else 1, bool(inputs[8].val)
        per_direction = 4 if has_bias else 2  # w_ih, w_hh[, b_ih, b_hh] for each layer and direction
        if len(params) != layers * directions * per_direction:
            raise ValueError(f"gru: {len(params)} weights for {layers} layer(s) × {directions} direction(s)")
        steps = x.shape[1 if batch_first else 0]
        if is_symbolic(steps) or any(p.val is None for p in params):  # torch.export specialises both
            raise ValueError("gru: a static sequence length and constant weights are needed (unrolled)")
        # A static length is unrolled: plain linear / elementwise ops (Neural Engine ops, unlike while_loop, gather,
        # scatter), in PyTorch's order, batch first: one step is seq[:, t:t + 1] and the state is (batch, 1, hidden).
        seq = x if batch_first else mb.transpose(x=x, perm=[1, 0, 2])
        finals = []
        for layer in range(layers):
            outputs = []
            for direction in range(directions):
                k = layer * directions + direction
                weights = [np.asarray(p.val, dtype=np.float32) for p in params[k * per_direction:(k + 1) * per_direction]]
                h0 = mb.transpose(x=mb.slice_by_index(x=hx, begin=[k, 0, 0], end=[k + 1, 0, 0],
                                                      begin_mask=[False, True, True], end_mask=[False, True, True]),
                                  perm=[1, 0, 2])
                out, last = _gru_direction(seq, h0, weights, int(steps), reverse=direction == 1)
                outputs.append(out)
                finals.append(mb.transpose(x=last, perm=[1, 0, 2]))  # (1, batch, hidden)
            seq = outputs[0] if directions == 1 else mb.concat(values=outputs, axis=2)
        out = mb.identity(x=seq, name=node.name) if batch_first else mb.transpose(x=seq, perm=[1, 0, 2], name=node.name)
        h_n = mb.concat(values=finals, axis=0, name=node.name + "_h_n") if len(finals) > 1 else finals[0]
        context.add((out, h_n), node.name)

    def _gru_direction(seq: Any, h: Any, weights: list[Any], steps: int, reverse: bool) -> tuple[Any, Any]:
        """One layer, one direction over seq (batch, steps, input) from h (batch, 1, hidden), as PyTorch's GRU:
        r, z = sigmoid(W_i{r,z} x + b_i{r,z} + W_h{r,z} h + b_h{r,z}); n = tanh(W_in x + b_in + r * (W_hn h + b_hn));
        h' = (1 - z) * n + z * h. The reset gate multiplies the hidden projection *with* its bias, which MIL's gru op
        (one bias, r * W_hn h) cannot express. Returns (outputs (batch, steps, hidden), last state (batch, 1, hidden))."""
        w_ih, w_hh = weights[0], weights[1]
        hidden = w_hh.shape[1]
        b_ih, b_hh = (weights[2], weights[3]) if len(weights) == 4 else (None, None)

        def part(w: Any, b: Any, rows: slice) -> dict[str, Any]:
            args = {"weight": mb.const(val=w[rows])}
            if b is not None:
                args["bias"] = mb.const(val=b[rows])
            return args

        rz, n = slice(0, 2 * hidden), slice(2 * hidden, 3 * hidden)
        x_rz, x_n = mb.linear(x=seq, **part(w_ih, b_ih, rz)), mb.linear(x=seq, **part(w_ih, b_ih, n))  # all steps
        x_rz_steps = mb.split(x=x_rz, num_splits=steps, axis=1) if steps > 1 else [x_rz]
        x_n_steps = mb.split(x=x_n, num_splits=steps, axis=1) if steps > 1 else [x_n]
        h_rz, h_n = part(w_hh, b_hh, rz), part(w_hh, b_hh, n)  # one const each, shared by every step
        states = []
        for t in (reversed(range(steps)) if reverse else range(steps)):
            gates = mb.sigmoid(x=mb.add(x=x_rz_steps[t], y=mb.linear(x=h, **h_rz)))
            r, z = mb.split(x=gates, split_sizes=[hidden, hidden], axis=2)
            candidate = mb.tanh(x=mb.add(x=x_n_steps[t], y=mb.mul(x=r, y=mb.linear(x=h, **h_n))))
            h = mb.add(x=candidate, y=mb.mul(x=z, y=mb.sub(x=h, y=candidate)))  # (1 - z) * n + z * h
            states.append(h)
        ordered = states[::-1] if reverse else states
        return (mb.concat(values=ordered, axis=1) if steps > 1 else ordered[0]), h

    registry = _TORCH_OPS_REGISTRY.name_to_func_mapping
    registry["gru.input"] = gru_input  # over any coremltools mapping: its gru is a while_loop
    registry.setdefault("new_ones", new_ones)
    # aten.__and__.Tensor sanitises to "__and__" (coremltools strips the dunders only when nothing follows them)
    for name, same_as in (("lstm.input", "lstm"), ("alias", "noop"), ("__and__", "bitwise_and"),
                          ("__or__", "logical_or"), ("where.scalarother", "where"), ("where.scalarself", "where"),
                          ("where.scalar", "where")):
        if name not in registry and same_as in registry:
            registry[name] = registry[same_as]

    _installed = True
