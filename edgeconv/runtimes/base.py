"""The Runtime interface: load an artifact, run it on feeds keyed by the SOURCE model's input names and layout, return
outputs in the source model's output order. Runtimes hide layout transposes and int8 I/O (de)quantization."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar

import numpy as np

from edgeconv.deps import is_installed
from edgeconv.formats import Artifact, Format, TensorSpec

if TYPE_CHECKING:
    from edgeconv.context import StepContext


class Session(ABC):
    inputs: tuple[TensorSpec, ...]
    output_names: tuple[str, ...]
    # run() may be called from several threads at once (ONNX Runtime's InferenceSession.run is): `edgeconv bench -j N`
    # then keeps N calls in flight on this session. A runtime with an asynchronous API of its own (OpenVINO's
    # AsyncInferQueue) overrides run_parallel instead.
    thread_safe_run: ClassVar[bool] = False

    @abstractmethod
    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Outputs in the source model's output order."""

    def config(self) -> dict[str, Any]:
        """The runtime settings this session really runs with (OpenVINO: NUM_STREAMS, PERFORMANCE_HINT...), for the
        bench report; {} when the runtime has none worth naming."""
        return {}

    def parallel_driver(self, jobs: int) -> str:
        """How run_parallel keeps `jobs` inferences in flight, in words (for the bench report)."""
        return f"{jobs} threads calling run() on one session"

    def run_parallel(self, feeds: dict[str, np.ndarray], jobs: int, runs: int, max_seconds: float | None = None,
                     advance: Callable[[], None] | None = None) -> tuple[list[float], float]:
        """Keep `jobs` inferences in flight until `runs` have completed (or `max_seconds` passed; none started after
        that): (each inference's latency in seconds, wall-clock seconds of the whole). Threads calling run()."""
        import threading
        import time

        if not self.thread_safe_run:
            raise NotImplementedError(f"{type(self).__name__} runs one inference at a time")
        lock = threading.Lock()
        state = {"left": runs}
        times: list[float] = []
        errors: list[BaseException] = []
        begin = time.perf_counter()

        def worker() -> None:
            while True:
                with lock:
                    if state["left"] <= 0 or errors or (
                            max_seconds is not None and times and time.perf_counter() - begin > max_seconds):
                        return
                    state["left"] -= 1
                t0 = time.perf_counter()
                try:
                    self.run(feeds)
                except BaseException as e:  # noqa: BLE001 - re-raised in the calling thread below
                    with lock:
                        errors.append(e)
                    return
                with lock:
                    times.append(time.perf_counter() - t0)
                if advance is not None:
                    advance()

        threads = [threading.Thread(target=worker, name=f"edgeconv-bench-{i}", daemon=True) for i in range(jobs)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        return times, time.perf_counter() - begin


@dataclass(frozen=True)
class StructuralCheck:
    """What a runtime that cannot execute here (Core ML on Linux) verified instead."""

    passed: bool
    checks: dict[str, object] = field(default_factory=dict)
    problems: tuple[str, ...] = ()


class Runtime(ABC):
    name: ClassVar[str] = ""
    formats: ClassVar[frozenset[Format]] = frozenset()
    extra: ClassVar[str] = ""
    requires: ClassVar[tuple[str, ...]] = ()
    runs_sources: ClassVar[bool] = False  # True for the framework runtimes that run source models
    # `edgeconv bench` options beyond -j/--jobs (which any session with thread_safe_run or run_parallel takes) that
    # this runtime understands: OpenVINO's {"streams", "mode"} (NUM_STREAMS, PERFORMANCE_HINT), applied by load_tuned
    bench_options: ClassVar[frozenset[str]] = frozenset()
    # what progress lines and result rows add to the stand-in runtime's name when this runtime's artifact was not
    # built and its input was validated instead ("onnxruntime (engine not built)")
    stand_in_label: ClassVar[str] = ""

    @classmethod
    def available(cls) -> bool:
        return all(is_installed(m) for m in cls.requires)

    @classmethod
    def can_execute_here(cls) -> str | None:
        """None if models can be executed on this machine, else why not (then `check_structure` is used)."""
        return None

    @classmethod
    def fallback_here(cls) -> str | None:
        """None, or what the target does instead on this machine when its own artifact cannot be built or run here but
        a stand-in is validated numerically (TensorRT without a GPU: the TensorRT-ready ONNX on ONNX Runtime)."""
        return None

    @classmethod
    def accelerator_share(cls, notes: dict[str, Any]) -> str:
        """How much of the graph the accelerator took, read from the target's manifest notes where its converter
        measured it ('XNNPACK 96%', 'HTP 100%'); "" when this runtime has no such figure. Shown in result tables."""
        return ""

    @abstractmethod
    def load(self, artifact: Artifact, ctx: "StepContext") -> Session:
        """Load the artifact for execution."""

    def load_tuned(self, artifact: Artifact, ctx: "StepContext", **settings: Any) -> Session:
        """load() with the bench settings in bench_options (e.g. streams=2, mode="throughput")."""
        if settings:
            raise NotImplementedError(f"{self.name} takes no bench settings ({', '.join(settings)})")
        return self.load(artifact, ctx)

    def check_structure(self, artifact: Artifact, ctx: "StepContext") -> StructuralCheck:
        raise NotImplementedError(f"{self.name} has no structural check")
