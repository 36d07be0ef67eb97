"""`edgeconv batch`: every (model, target) pair of a config, each as its own `edgeconv convert ... --json` process, N at
a time; pairs whose inputs and settings are unchanged since their last successful run are skipped.

The cache key of a pair hashes: the content of the source (and weights, calibration and evaluation data), the
resolved target profile, the convert options and the tools (edgeconv's version and the digest of its code, Python, the
installed backends' versions), as the stage cache's key does. It is kept in
OUTPUT/.edgeconv-batch.json; a pair is skipped only when its key matches, its last run passed, and the artifacts its
manifest lists are still there with the same sha256. Each run's stderr goes to OUTPUT/.logs/<model>--<target>.log.
The summary (OUTPUT/batch-summary.json) lists every pair; the exit code is the highest of the runs' exit codes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from edgeconv.config import BatchConfig, ModelEntry
from edgeconv.errors import EXIT_INTERNAL, EXIT_OK

CACHE_NAME = ".edgeconv-batch.json"
SUMMARY_NAME = "batch-summary.json"
LOG_DIR = ".logs"


@dataclass
class PairResult:
    model: str
    target: str
    status: str  # ok | skipped | failed
    exit_code: int
    seconds: float
    outdir: str
    key: str = ""
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    validation: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    log: str | None = None


@dataclass
class BatchSummary:
    config: str
    output: str
    jobs: int
    exit_code: int
    seconds: float
    runs: list[PairResult]

    @property
    def counts(self) -> dict[str, int]:
        out = {"ok": 0, "skipped": 0, "failed": 0}
        for r in self.runs:
            out[r.status] = out.get(r.status, 0) + 1
        return out

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["counts"] = self.counts
        return data


def worst(codes: list[int]) -> int:
    """The batch's exit code: the highest of the runs' codes (0 when all passed or were skipped)."""
    return max(codes, default=EXIT_OK)


def pair_dir(config: BatchConfig, model: ModelEntry, target: str) -> Path:
    return config.output / model.name / _target_slug(target)


def _target_slug(target: str) -> str:
    """The folder (and log) name of a target: a profile file's name without `.toml`, else the target's own name."""
    from edgeconv.targets import _looks_like_path

    if _looks_like_path(target):
        name = Path(target).name
        return name[: -len(".toml")] if name.endswith(".toml") else name
    return target


def check_pairs(config: BatchConfig, pairs: list[tuple[ModelEntry, str]]) -> None:
    """Before any work: every pair has a folder (and log) of its own inside OUTPUT (exit 2 otherwise)."""
    from edgeconv.errors import UsageError
    from edgeconv.targets.schema import name_problem

    owners: dict[str, str] = {}
    for model, target in pairs:
        slug = _target_slug(target)
        problem = name_problem(slug)
        if problem is not None:
            raise UsageError(f"{config.path}: target {target!r} of model {model.name!r} cannot name an output folder: "
                             f"{slug!r} {problem}", "name profile files like my-target.toml")
        key = f"{model.name}/{slug}".lower()
        if key in owners and owners[key] != target:
            raise UsageError(f"{config.path}: targets {owners[key]!r} and {target!r} of model {model.name!r} would both "
                             f"write {config.output / model.name / slug}",
                             "give the profile files distinct names (the file name names the output folder)")
        owners[key] = target


def _file_digest(path: Path) -> list[str]:
    from edgeconv.manifest import sha256_of

    return [str(path), sha256_of(path) if path.exists() else "<missing>"]


def pair_key(model: ModelEntry, target: str, root: Path | None = None) -> str:
    """Content hash of everything that decides a pair's result (`root`: the config's folder, where the runs start):
    stage_cache.cache_key over the files by content, the resolved profile, the options and the tools (edgeconv's code
    digest and version, the installed backends)."""
    from edgeconv.stage_cache import cache_key, tool_versions
    from edgeconv.targets import resolve
    from edgeconv.targets.schema import _profile_to_dict

    files = [_file_digest(path) for path in model.input_paths()]
    try:
        profile: Any = _profile_to_dict(resolve(target))
    except Exception as e:  # an unknown target: the run itself reports it (exit 2); never cached as passed
        profile = f"unresolved: {e}"
    if target.endswith(".toml") and Path(target).is_file():
        files.append(_file_digest(Path(target)))
    factory = model.options.get("model")
    if isinstance(factory, str):
        module_file = _factory_file(factory, root)
        if module_file is not None:
            files.append(_file_digest(module_file))
    return cache_key({"files": files, "target": target, "profile": profile, "options": model.options,
                      "tools": tool_versions()})


def _factory_file(spec: str, root: Path | None = None) -> Path | None:
    """The file of a `--model pkg.module:function` factory, found on disk without importing anything (find_spec would
    import `pkg`, running its __init__.py in the batch process before any run could refuse it)."""
    parts = spec.split(":")[0].split(".")
    if not all(part.isidentifier() for part in parts):
        return None
    for entry in dict.fromkeys([str(root) if root else os.getcwd(), *(p or os.getcwd() for p in sys.path if isinstance(p, str))]):
        base = Path(entry).joinpath(*parts)
        for candidate in (base.with_name(base.name + ".py"), base / "__init__.py"):
            try:
                if candidate.is_file():
                    return candidate
            except OSError:
                continue
    return None


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as e:
        from edgeconv.outputs import io_error

        raise io_error(e, f"writing {path}") from e


def _outputs_intact(outdir: Path) -> bool:
    from edgeconv.manifest import MANIFEST_NAME, sha256_of

    manifest = outdir / MANIFEST_NAME
    if not manifest.is_file():
        return False
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
        for target in data.get("targets", []):
            for art in target.get("artifacts", []):
                if art.get("sha256") is None:
                    continue
                path = outdir / art["path"]
                if not path.exists() or sha256_of(path) != art["sha256"]:
                    return False
    except (OSError, ValueError, KeyError):
        return False
    return True


def _summarise_manifest(manifest: dict[str, Any], outdir: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    artifacts, validation = [], {}
    for target in manifest.get("targets", []):
        for art in target.get("artifacts", []):
            artifacts.append({"path": str(outdir / art["path"]) if art.get("sha256") else art["path"],
                              "format": art.get("format"), "bytes": art.get("bytes"), "sha256": art.get("sha256"),
                              "role": art.get("role"), "shipped_bytes": art.get("shipped_bytes")})
        v = target.get("validation") or {}
        metrics = v.get("metrics") or {}
        validation = {"runtime": v.get("runtime"), "kind": v.get("kind"), "passed": v.get("passed"),
                      "snr_db": metrics.get("snr_db"), "cosine": metrics.get("cosine"),
                      "top1_agreement": metrics.get("top1_agreement"), "task": v.get("task")}
    return artifacts, validation


StartCallback = Callable[[str, str], None]  # (model, target): its conversion started
StageCallback = Callable[[str, str, str, str], None]  # (model, target, stage, detail): it entered a stage


class Runner:
    """Runs the pairs' subprocesses; `stop()` terminates the ones still running (Ctrl-C, SIGTERM). Each run's stage
    events (edgeconv.progress) go to `on_stage`, its other stderr lines to its log."""

    def __init__(self, config: BatchConfig, verbose: int = 0, no_cache: bool = False,
                 on_start: StartCallback | None = None, on_stage: StageCallback | None = None):
        self.config = config
        self.verbose = verbose
        self.no_cache = no_cache
        self.on_start = on_start
        self.on_stage = on_stage
        self._procs: set[subprocess.Popen] = set()
        self._lock = threading.Lock()
        self._stopped = False

    def run_pair(self, model: ModelEntry, target: str, key: str) -> PairResult:
        outdir = pair_dir(self.config, model, target)
        log_path = self.config.output / LOG_DIR / f"{model.name}--{_target_slug(target)}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        args = [sys.executable, "-m", "edgeconv", *(["-" + "v" * self.verbose] if self.verbose else []),
                *model.convert_args(target, outdir), "--json", "--force",
                *(["--no-cache"] if self.no_cache else [])]
        from edgeconv.progress import EVENTS_ENV

        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3"), EVENTS_ENV: "1"}
        started = time.perf_counter()
        with open(log_path, "w", encoding="utf-8", errors="surrogateescape") as log:
            log.write("$ " + " ".join(args[1:]) + "\n")
            log.flush()
            with self._lock:
                if self._stopped:
                    return PairResult(model.name, target, "failed", 130, 0.0, str(outdir), key,
                                      error={"kind": "interrupted", "message": "not started: the batch was interrupted"})
                proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8",
                                        errors="surrogateescape", cwd=self.config.root, env=env)
                self._procs.add(proc)
            try:
                if self.on_start:
                    self.on_start(model.name, target)
                stdout = self._follow(proc, log, model.name, target)
            finally:
                with self._lock:
                    self._procs.discard(proc)
        seconds = round(time.perf_counter() - started, 2)
        code = proc.returncode if proc.returncode >= 0 else 128 - proc.returncode
        try:
            payload = json.loads(stdout) if stdout.strip() else {}
        except ValueError:
            payload = {"error": {"kind": "internal", "message": "convert printed something other than JSON on stdout"}}
            code = code or EXIT_INTERNAL
        result = PairResult(model.name, target, "ok" if code == 0 else "failed", code, seconds, str(outdir), key,
                            log=str(log_path))
        if "targets" in payload:
            result.artifacts, result.validation = _summarise_manifest(payload, outdir)
        if code != 0:
            result.error = payload.get("error") or {"kind": "internal", "message": f"exit code {code}, no JSON error",
                                                    "hint": f"see {log_path}"}
        return result

    def _follow(self, proc: subprocess.Popen, log: Any, model: str, target: str) -> str:
        """Read the run's stderr line by line as it comes (stage events → on_stage, the rest → its log) while a thread
        drains its stdout (the JSON result); returns that stdout once the process has ended."""
        from edgeconv.progress import parse_event

        chunks: list[str] = []
        reader = threading.Thread(target=lambda: chunks.append(proc.stdout.read()), daemon=True)  # type: ignore[union-attr]  # Popen(stdout=PIPE)
        reader.start()
        try:
            for line in proc.stderr:  # type: ignore[union-attr]  # Popen(stderr=PIPE)
                event = parse_event(line)
                if event is None:
                    log.write(line)
                else:
                    log.write(f"[{event['stage']}] {event['detail']}\n")
                    if self.on_stage:
                        self.on_stage(model, target, event["stage"], event["detail"])
                log.flush()
        except BaseException:  # a full disk or a failing callback: stop the child, which may block on a full pipe
            proc.kill()
            raise
        finally:
            proc.wait()
            reader.join()
        return "".join(chunks)

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            procs = list(self._procs)
        for proc in procs:
            try:
                proc.terminate()
            except OSError:
                pass
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def select_pairs(config: BatchConfig, only_models: list[str] | None = None,
                 only_targets: list[str] | None = None) -> list[tuple[ModelEntry, str]]:
    """The (model, target) pairs a run converts: the config's, filtered by --model / --target (exit 2 for an unknown
    model name or filters that leave nothing)."""
    from edgeconv.errors import UsageError

    pairs = config.pairs()
    if only_models:
        unknown = sorted(set(only_models) - {m.name for m in config.models})
        if unknown:
            raise UsageError(f"no model named {', '.join(unknown)} in {config.path}",
                             f"models: {', '.join(m.name for m in config.models)}")
        pairs = [(m, t) for m, t in pairs if m.name in only_models]
    if only_targets:
        pairs = [(m, t) for m, t in pairs if t in only_targets or _target_slug(t) in only_targets]
    if not pairs:
        raise UsageError("nothing to convert: the filters match no (model, target) pair", "check --model / --target")
    return pairs


def run_batch(config: BatchConfig, *, jobs: int | None = None, force: bool = False,
              only_models: list[str] | None = None, only_targets: list[str] | None = None, verbose: int = 0,
              on_done: Callable[[PairResult], None] | None = None, dry_run: bool = False,
              no_cache: bool = False, on_start: StartCallback | None = None,
              on_stage: StageCallback | None = None) -> BatchSummary:
    """Convert the selected pairs, `jobs` at a time. Callbacks, for progress: on_start(model, target) when a pair's
    conversion starts, on_stage(model, target, stage, detail) as it enters export / normalise / quantize / compile /
    validate (called from worker threads), on_done(result) for each pair finished or skipped (in the calling thread)."""
    pairs = select_pairs(config, only_models, only_targets)
    check_pairs(config, config.pairs())  # all of them: a filtered run must not write another pair's folder
    jobs = max(1, jobs or config.jobs)
    cache_path = config.output / CACHE_NAME
    cache = _read_cache(cache_path)
    started = time.perf_counter()
    results: list[PairResult] = []
    todo: list[tuple[ModelEntry, str, str]] = []
    for model, target in pairs:
        key = pair_key(model, target, config.root)
        outdir = pair_dir(config, model, target)
        entry = cache.get(f"{model.name}/{target}")
        if not force and entry and entry.get("key") == key and entry.get("exit_code") == 0 and _outputs_intact(outdir):
            result = PairResult(model.name, target, "skipped", 0, 0.0, str(outdir), key,
                                entry.get("artifacts", []), entry.get("validation", {}))
            results.append(result)
            if on_done:
                on_done(result)
        else:
            todo.append((model, target, key))
    if dry_run:
        results += [PairResult(m.name, t, "pending", 0, 0.0, str(pair_dir(config, m, t)), k) for m, t, k in todo]
        return BatchSummary(str(config.path), str(config.output), jobs, 0, 0.0, _ordered(results, pairs))
    try:
        config.output.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        from edgeconv.outputs import io_error

        raise io_error(e, f"creating {config.output}") from e
    runner = Runner(config, verbose, no_cache, on_start, on_stage)
    pool = ThreadPoolExecutor(max_workers=jobs)
    try:
        futures = [pool.submit(runner.run_pair, m, t, k) for m, t, k in todo]
        for future in as_completed(futures):
            result = future.result()
            results.append(result)
            if result.status == "ok":
                cache[f"{result.model}/{result.target}"] = {"key": result.key, "exit_code": 0,
                                                            "artifacts": result.artifacts,
                                                            "validation": result.validation}
            else:
                cache.pop(f"{result.model}/{result.target}", None)
            if on_done:
                on_done(result)
    except BaseException:  # Ctrl-C / SIGTERM: stop the running conversions (each leaves nothing behind)
        runner.stop()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        if todo:
            _write_json_atomic(cache_path, cache)
    summary = BatchSummary(str(config.path), str(config.output), jobs, worst([r.exit_code for r in results]),
                           round(time.perf_counter() - started, 2), _ordered(results, pairs))
    _write_json_atomic(config.output / SUMMARY_NAME, summary.to_json())
    return summary


def _ordered(results: list[PairResult], pairs: list[tuple[ModelEntry, str]]) -> list[PairResult]:
    order = {(m.name, t): i for i, (m, t) in enumerate(pairs)}
    return sorted(results, key=lambda r: order.get((r.model, r.target), len(order)))

