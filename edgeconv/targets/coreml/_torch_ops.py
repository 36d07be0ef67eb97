"""Fixes to coremltools' PyTorch front end for patterns real models have, registered over its own op converters
(`register_torch_op(override=True)`) once, when coremltools is imported.

- `int` / `bool` (TorchScript's `aten::Int` / `aten::Bool` after `x.shape[0]`, as in `x.view(x.shape[0], -1)`):
  coremltools casts a folded constant with `int(x.val)`, which NumPy 2 refuses for a 1-element array ("only
  0-dimensional arrays can be converted to Python scalars"). The constant is read as a scalar first.
- `prelu` on an input of rank 2 (PReLU after a Linear, as in MTCNN-style face nets), 3 or 5 with one alpha per channel:
  Core ML's prelu takes per-channel alpha on rank-4 input only ("rank 3 or rank 5 input is only supported when all the
  values of alpha are same"). Rank 2 / 3 become rank 4 around the prelu (expand_dims, squeeze); rank 5 is written as
  relu(x) + alpha * min(x, 0) with alpha broadcast on the channel axis (1).
- ATen names torch.export programs use that only the TorchScript front end knew: `lstm.input` (the LSTM of a CRNN or
  speaker encoder: "Unsupported fx node lstm") takes the TorchScript `lstm` converter (same schema; `gru.input` does
  not fit the `gru` one: still refused); `alias`
  (transformers' masks: "Unsupported fx node alias") is a no-op like `alias_copy`; `new_ones` (transformers' masks:
  `x.new_ones((), dtype=torch.bool)`) is a constant of ones of the asked (else x's) dtype; `__and__` / `__or__` (the
  same masks' `&`, `|`) are the bitwise_and / logical_or converters.
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

    registry = _TORCH_OPS_REGISTRY.name_to_func_mapping
    registry.setdefault("new_ones", new_ones)
    # aten.__and__.Tensor sanitises to "__and__" (coremltools strips the dunders only when nothing follows them)
    for name, same_as in (("lstm.input", "lstm"), ("alias", "noop"), ("__and__", "bitwise_and"),
                          ("__or__", "logical_or"), ("where.scalarother", "where"), ("where.scalarself", "where"),
                          ("where.scalar", "where")):
        if name not in registry and same_as in registry:
            registry[name] = registry[same_as]

    _installed = True
