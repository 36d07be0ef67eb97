"""The ExecuTorch runtime: .pte detection, and `edgeconv bench` on a bare .pte (inputs from its method metadata)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeconv.formats import Format, detect

pytest.importorskip("executorch")


@pytest.fixture(scope="module")
def pte(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from edgeconv.targets.executorch.torch_to_executorch import quiet

    with quiet():
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower

        model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten()).eval()
        program = torch.export.export(model, (torch.rand(1, 3, 6, 6),))
        buffer = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch().buffer
    path = tmp_path_factory.mktemp("pte") / "tiny.pte"
    path.write_bytes(buffer)
    return path


def test_detect_pte(pte: Path) -> None:
    assert detect(pte).format == Format.EXECUTORCH


def test_bench_bare_pte(pte: Path) -> None:
    from edgeconv.benchmark import benchmark

    result = benchmark(pte, runs=5, warmup=1)
    assert result.runtime == "executorch" and result.inputs == {"input_0": [1, 3, 6, 6]}
    assert result.latency_ms["p50"] > 0
