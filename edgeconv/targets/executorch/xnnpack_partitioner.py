"""The XNNPACK partitioner edgeconv lowers with: ExecuTorch's own, with its configs corrected where they claim nodes
the XNNPACK backend then cannot build.

- PReLU: the partitioner takes `aten.prelu` of any rank, but XNNPACK's layout pass (ChannelsLastTaggedReshapePass)
  treats PReLU as a channels-last op and fails on a rank-2 input ("Attempting to convert non-NHWC compatible node to
  NHWC"): a PReLU after a Linear, as in MTCNN's R-Net / O-Net, made the whole program unlowerable (exit 4). Only the
  4-D PReLU (after a Conv) is delegated; the others are decomposed by to_edge (x > 0 ? x : w·x) and run on the
  portable kernels, exact.
"""

from __future__ import annotations

from typing import Any


def xnnpack_partitioner() -> Any:
    from executorch.backends.xnnpack.partition.config import ALL_PARTITIONER_CONFIGS
    from executorch.backends.xnnpack.partition.config.node_configs import PreluConfig
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

    class ChannelsPreluConfig(PreluConfig):
        """PReLU over a 4-D (N, C, H, W) input only."""

        def check_constraints(self, node: Any, ep: Any) -> bool:
            value = node.all_input_nodes[0].meta.get("val")
            if value is None or value.dim() != 4:
                return False
            return bool(super().check_constraints(node, ep))

    configs = [ChannelsPreluConfig if config is PreluConfig else config for config in ALL_PARTITIONER_CONFIGS]
    return XnnpackPartitioner(configs=configs)
