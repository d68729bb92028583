"""`--engine ray`: curation's per-image work on Ray Data actors, on a local Ray or a running cluster.

The calling process keeps all the bookkeeping (cache, skip-already-done, manifest), exactly as with
the local engine; Ray Data only maps the same per-image callable over the jobs: a callable class
whose constructor builds it (loading the dlib models) once per actor, `--workers` actors of one CPU
each, results streamed back in job order. Jobs travel in rows of up to JOBS_PER_ROW pickled jobs, so
Ray's per-task cost is shared by many images.

Every node reads the input files and writes the output images itself, so both must be on storage
that every node mounts at the same path. Before any work is sent, one probe per node checks it: the
node must see a marker file just written into the output folder, and the first and last input file
at their sizes. Paths are sent absolute (a relative path would mean another folder on another node).
"""

from __future__ import annotations

import logging
import os
import pickle
import socket
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from p2d.curate.engine import Engine, run_batch, worker_setup
from p2d.errors import P2DError

RAY_INSTALL = 'pip install "p2d[ray]"'
# Most jobs in one Ray task: its ~10 ms of Ray's and the driver's CPU shared by up to 256 images (at
# 64, the driver took 0.38 ms of CPU per image, at 256 0.22-0.24; 4,000 images, 2 actors). Every
# actor still gets 8 rows at least (see ray_map), so the last row's wait stays short.
JOBS_PER_ROW = 256


def import_ray():
    """Ray and Ray Data, or a P2DError naming the install command."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise P2DError(f"--engine ray needs Ray Data, an optional extra: {RAY_INSTALL}") from exc
    return ray


class PerImageActor:
    """Ray Data's callable class: the per-image worker is built once per actor (the dlib models load
    here), then each call runs it on one row of pickled jobs."""

    def __init__(self, make_worker: Callable[[], Callable]):
        worker_setup()
        self.work = make_worker()

    def __call__(self, batch: dict) -> dict:
        return {"results": [pickle.dumps(run_batch(self.work, pickle.loads(blob))) for blob in batch["jobs"]]}


def ray_map(jobs: list, make_worker: Callable[[], Callable], engine: Engine, shared: list[Path]) -> Iterator:
    """`make_worker()(job)` for every job on `engine.workers` Ray actors, in job order."""
    ray = import_ray()
    with connected(ray, engine):
        cpus = int(ray.cluster_resources().get("CPU", 0))
        if engine.workers > cpus:  # Ray Data would wait for actors that never get a CPU
            raise P2DError(f"--workers {engine.workers} is more than the {cpus} CPUs of the Ray cluster: "
                           f"give at most {cpus} (one actor per CPU), or add nodes")
        check_shared_storage(ray, shared)
        per_row = max(1, min(JOBS_PER_ROW, len(jobs) // (engine.workers * 8)))
        rows = [{"jobs": pickle.dumps(jobs[k:k + per_row])} for k in range(0, len(jobs), per_row)]
        logging.getLogger("ray.data").setLevel(logging.ERROR)  # its per-dataset INFO lines and notices
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True  # results in job order, as the local engine gives them
        ctx.enable_progress_bars = False  # the command's own progress bar counts the results
        ctx.print_on_execution_start = False
        ds = ray.data.from_items(rows, override_num_blocks=len(rows)).map_batches(
            PerImageActor, fn_constructor_args=(make_worker,), batch_size=1, batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=min(engine.workers, len(rows))), num_cpus=1)
        for row in ds.iter_rows():
            yield from pickle.loads(row["results"])


@contextmanager
def connected(ray, engine: Engine):
    """Use the Ray this process already joined (tests share one), else join `engine.ray_address`, else
    start a local Ray with one CPU per worker; a Ray started here is shut down afterwards."""
    if ray.is_initialized():
        yield
        return
    quiet = dict(logging_level=logging.WARNING, configure_logging=True, include_dashboard=False)
    if engine.ray_address:
        try:
            ray.init(address=engine.ray_address, **quiet)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise P2DError(f"could not join the Ray cluster at {engine.ray_address}: {exc}; start one with "
                           "`ray start --head` and give the address it prints (e.g. 10.0.0.1:6379). A "
                           "cluster with token authentication (Ray's default) also needs RAY_AUTH_MODE=token "
                           "here and the head's token in ~/.ray/auth_token") from exc
    else:
        ray.init(address="local", num_cpus=engine.workers, log_to_driver=False, **quiet)
    try:
        yield
    finally:
        ray.shutdown()


def _probe(marker: str, token: str, files: list[tuple[str, int]]) -> tuple[str, list[str]]:
    """On one node: the paths it cannot see as the driver does (runs as a Ray task)."""
    missing = []
    try:
        if Path(marker).read_text() != token:
            missing.append(str(Path(marker).parent))
    except OSError:
        missing.append(str(Path(marker).parent))
    for path, size in files:
        try:
            if os.stat(path).st_size != size:
                missing.append(path)
        except OSError:
            missing.append(path)
    return socket.gethostname(), missing


def check_shared_storage(ray, shared: list[Path]) -> None:
    """Every node with CPUs must see the output folder (shared[0]) and the input files (shared[1:], a
    few of them), the same files at the same absolute paths; else a P2DError that says which node
    misses what."""
    if not shared:
        return
    out_dir, inputs = Path(shared[0]), [Path(p) for p in shared[1:]]
    out_dir.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    marker = out_dir / f".p2d-ray-check-{token}"
    marker.write_text(token)
    sample = [(str(p), p.stat().st_size) for p in dict.fromkeys(inputs) if p.is_file()]
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe = ray.remote(num_cpus=0)(_probe)
    nodes = [n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) > 0]
    try:
        refs = [probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                .remote(str(marker), token, sample) for n in nodes]
        answers = ray.get(refs)
    except ray.exceptions.RayError as exc:
        raise P2DError(f"a Ray node could not run p2d's code ({type(exc).__name__}): install the same p2d "
                       f"version on every node ({RAY_INSTALL})") from exc
    finally:
        marker.unlink(missing_ok=True)
    blind = [(host, missing) for host, missing in answers if missing]
    if blind:
        host, missing = blind[0]
        raise P2DError(f"Ray node {host} (and {len(blind) - 1} more) cannot see {', '.join(missing[:3])}: "
                       "with --engine ray every node reads the inputs and writes the output folder itself, "
                       "so put both on storage every node mounts at the same path (e.g. NFS) and give "
                       "those paths")
