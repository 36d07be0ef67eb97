"""STFT (a real signal, constant frame step, window and frame length) → one strided Conv whose kernels are the windowed
DFT basis: the same spectrum, written as the op every accelerator runs.

torch.stft exports as ONNX STFT. The Hexagon HTP takes it and then cannot build the graph (onnxruntime-qnn:
"Failed to finalize QNN graph … QNN_COMMON_ERROR_MEM_ALLOC", exit 4 on the torch.stft corpus audio model, the STFT
alone enough to fail) and onnx2tf cannot convert it for TFLite. As a Conv: signal [B, L, 1] → [B, 1, L]; kernels
[2K, 1, N], the first K rows window · cos(2πkn/N), the next K -window · sin(2πkn/N) (K = N/2 + 1 bins when onesided,
else N), stride = frame step, no padding (STFT frames only whole windows; torch's `center` padding is a Pad before it);
then [B, 2K, F] → [B, 2, K, F] → [B, F, K, 2], STFT's own layout. ONNX Runtime agrees with its FFT to float rounding
(tests/passes/test_stft_conv.py).
"""

from __future__ import annotations

from typing import Any

from edgeconv.passes._reads import tensor_dims, tensor_types


def _constant(model: Any, name: str) -> Any:
    from onnx import numpy_helper

    if not name:
        return None
    for init in model.graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    return None


def stft_to_conv(model: Any) -> int:
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    nodes = [n for n in model.graph.node if n.op_type == "STFT" and n.domain in ("", "ai.onnx")]
    if not nodes:
        return 0
    dims, dtypes = tensor_dims(model), tensor_types(model)
    taken = {t.name for t in model.graph.initializer} | {o for n in model.graph.node for o in n.output}
    fixed = 0
    for node in nodes:
        inputs = [*node.input, "", "", ""][:4]
        step, window, length = (_constant(model, inputs[i]) for i in (1, 2, 3))
        onesided = next((a.i for a in node.attribute if a.name == "onesided"), 1)
        if step is None or (inputs[2] and window is None) or (inputs[3] and length is None):
            continue  # computed at run time: not a fixed basis
        signal = dims.get(inputs[0], ())
        if len(signal) != 3 or signal[-1] != 1:
            continue  # a complex signal ([..., 2]) or one of unknown layout
        size = int(length.reshape(-1)[0]) if length is not None else int(window.size)
        win = window.astype(np.float64).reshape(-1) if window is not None else np.ones(size)
        if win.size != size:
            continue
        bins = size // 2 + 1 if onesided else size
        angle = 2 * np.pi * np.outer(np.arange(bins), np.arange(size)) / size
        elem = dtypes.get(inputs[0], onnx.TensorProto.FLOAT) or onnx.TensorProto.FLOAT
        kernel = np.concatenate([win * np.cos(angle), -win * np.sin(angle)])[:, None, :]
        kernel = kernel.astype(helper.tensor_dtype_to_np_dtype(elem))

        def fresh(stem: str) -> str:
            name = f"{node.name or 'stft'}_{stem}"
            while name in taken:
                name += "_"
            taken.add(name)
            return name

        kernel_name, shape_name = fresh("dft_basis"), fresh("split_shape")
        model.graph.initializer.extend([numpy_helper.from_array(kernel, kernel_name),
                                        numpy_helper.from_array(np.array([0, 2, bins, -1], np.int64), shape_name)])
        channels, conv_out, split = fresh("signal_nCL"), fresh("spectrum_2KF"), fresh("spectrum_B2KF")
        rewritten = [
            helper.make_node("Transpose", [inputs[0]], [channels], perm=[0, 2, 1], name=fresh("to_ncl")),
            helper.make_node("Conv", [channels, kernel_name], [conv_out], name=fresh("dft_conv"),
                             kernel_shape=[size], strides=[int(step.reshape(-1)[0])]),
            helper.make_node("Reshape", [conv_out, shape_name], [split], name=fresh("split_re_im")),
            helper.make_node("Transpose", [split], [node.output[0]], perm=[0, 3, 2, 1], name=fresh("to_bfk2")),
        ]
        at = list(model.graph.node).index(node)
        model.graph.node.remove(node)
        for offset, new in enumerate(rewritten):
            model.graph.node.insert(at + offset, new)
        fixed += 1
    return fixed

