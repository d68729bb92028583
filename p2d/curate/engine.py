"""Where curation's per-image work runs: this process, local worker processes, or Ray (`--engine`).

Every curate command keeps its bookkeeping (cache, skip-already-done, manifest) in the calling
process and hands only the per-image work here, as jobs and a picklable `make_worker` that builds
the per-image callable (loading the dlib models) once per process or Ray actor. Results come back
in job order whatever the engine, so the manifest does not depend on it.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from p2d.errors import P2DError

ENGINES = ("local", "ray")


@dataclass(frozen=True)
class Engine:
    """`--engine`, `--workers` and `--ray-address` of a curate command."""

    name: str = "local"  # "local" (this machine's processes) or "ray" (Ray Data actors)
    workers: int = 1  # processes (local) or actors (ray)
    ray_address: str | None = None  # join this Ray cluster; None: start a local Ray

    def validate(self) -> None:
        if self.name not in ENGINES:
            raise P2DError(f"--engine {self.name} is not known: use local or ray")
        if self.workers < 1:
            raise P2DError(f"--workers {self.workers} must be at least 1")
        if self.ray_address and self.name != "ray":
            raise P2DError("--ray-address needs --engine ray")


def map_jobs(jobs: list, make_worker: Callable[[], Callable], engine: Engine,
             shared: Iterable[Path] = ()) -> Iterator:
    """`make_worker()(job)` for every job, in job order. `shared`: the output folder, then the input
    files, which every Ray node must see (checked before any work is sent). A worker with a
    `batch(jobs)` method gets the jobs in lists (see run_batch)."""
    if not jobs:
        return
    if engine.name == "ray":
        from p2d.curate.ray_engine import ray_map  # Ray is an optional extra: imported only when asked for

        yield from ray_map(jobs, make_worker, engine, list(shared))
        return
    per_call = max(1, min(32, len(jobs) // (engine.workers * 8)))
    batches = [jobs[k:k + per_call] for k in range(0, len(jobs), per_call)]
    if engine.workers == 1 or len(jobs) < 2:
        work = make_worker()
        for batch in batches:
            yield from run_batch(work, batch)
        return
    # spawn, not fork: the parent may hold threads (the progress bar) and dlib/OpenCV state.
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(min(engine.workers, len(jobs)), initializer=_init_process, initargs=(make_worker,)) as pool:
        for results in pool.imap(_run_batch, batches):
            yield from results


def run_batch(work: Callable, jobs: list) -> list:
    """`[work(job) for job in jobs]`, in one call where the worker can do many at once (curation's
    worker predicts the landmarks of a whole batch together)."""
    batch = getattr(work, "batch", None)
    return batch(jobs) if batch is not None else [work(job) for job in jobs]


def worker_setup() -> None:
    """Once per worker process or actor: one core each, so OpenCV's own threads would only contend."""
    import cv2

    cv2.setNumThreads(1)


_WORK: Callable | None = None


def _init_process(make_worker: Callable[[], Callable]) -> None:
    global _WORK
    worker_setup()
    _WORK = make_worker()


def _run_batch(jobs: list) -> list:
    return run_batch(_WORK, jobs)
