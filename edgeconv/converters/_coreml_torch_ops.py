"""Fixes to coremltools' PyTorch front end for patterns real models have, registered over its own op converters
(`register_torch_op(override=True)`) once, when coremltools is imported.

- `int` / `bool` (TorchScript's `aten::Int` / `aten::Bool` after `x.shape[0]`, as in `x.view(x.shape[0], -1)`):
  coremltools casts a folded constant with `int(x.val)`, which NumPy 2 refuses for a 1-element array ("only
  0-dimensional arrays can be converted to Python scalars"). The constant is read as a scalar first.
- `prelu` on an input of rank 2 (PReLU after a Linear, as in MTCNN-style face nets), 3 or 5 with one alpha per channel:
  Core ML's prelu takes per-channel alpha on rank-4 input only ("rank 3 or rank 5 input is only supported when all the
  values of alpha are same"). Written as max(x, 0) + alpha * min(x, 0) with alpha broadcast on the channel axis (1).
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
        shape = [1] * x.rank
        shape[1] = values.size  # PyTorch's PReLU: one alpha per channel, channels on axis 1
        slope = mb.const(val=values.astype(np.float32).reshape(shape))
        positive = mb.relu(x=x)
        negative = mb.minimum(x=x, y=np.float32(0.0))
        context.add(mb.add(x=positive, y=mb.mul(x=negative, y=slope), name=node.name), node.name)

    _installed = True
