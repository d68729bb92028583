"""Benchmark `p2d curate celeba`: fast path and full detection, local and Ray engines, marginal rates and stages.

Builds a CelebA-shaped folder (official layout, 178x218 JPEGs with jitter, annotation files) from
the bundled public-domain sample photos, then curates its first SMALL and its first LARGE images
with each engine and mode, all with the same --workers. From the two run times:

    marginal rate = (LARGE - SMALL) / (t_LARGE - t_SMALL)   images/s, start-up excluded
    start-up      = t_SMALL - SMALL / marginal rate          s (models loaded, workers ready)

and Ray's overhead per image against the local engine; also the driver's (the calling process')
marginal CPU per image, which bounds what one command can take from any number of nodes. The per-stage table
comes from inside the workers (RunResult.stage_seconds, wall time per image of the LARGE run), so it explains
the total.

    python -m benchmarks.curate_celeba            # 200 and 2,000 images (~5 min on 2 quiet cores)
    python -m benchmarks.curate_celeba --quick    # 200 and 1,000 images (< 3 min on 2 quiet cores)
    python -m benchmarks.curate_celeba --engines local --repeat 5   # the median of 5 interleaved pairs
"""  # noqa: E501 (the first line is the script's --help description)

from __future__ import annotations

import argparse
import logging
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import p2d
from p2d.curate.celeba import curate_celeba
from p2d.curate.filters import Thresholds
from p2d.curate.pipeline import STAGES, CurateOptions
from p2d.faces import FaceModels
from p2d.images import list_images, read_image
from p2d.shape_predictor import BACKEND_ENV
from p2d.ui import console, table

from benchmarks.fixtures import tests_module

_synth = tests_module("celeba_synth")  # the CelebA-shaped fixture builder lives with the tests
jittered_variants, load_source_faces, write_celeba_folder = (
    _synth.jittered_variants, _synth.load_source_faces, _synth.write_celeba_folder)

# fast path, full detection (--detect), and full detection without the doubled image (--upsample 0:
# enough for faces of CelebA's aligned size; not in the default --modes)
MODES = {"fast": dict(detect=False), "full": dict(detect=True), "full0": dict(detect=True, upsample=0)}
TARGETS = {"fast": 1000.0, "full": 200.0, "full0": 200.0}  # images/s marginal, 2 workers (issue 12)


def build(root: Path, n: int) -> float:
    t0 = time.perf_counter()
    if not (root / "img_align_celeba").is_dir() or len(list((root / "img_align_celeba").iterdir())) < n:
        shutil.rmtree(root, ignore_errors=True)
        samples = Path(p2d.__file__).parent / "samples"
        faces = load_source_faces(list_images(samples / "photos"), FaceModels())
        nonfaces = [read_image(p) for p in list_images(samples / "nonfaces")]
        write_celeba_folder(root, jittered_variants(n, len(faces), len(nonfaces), seed=0), faces, nonfaces)
    return time.perf_counter() - t0


def pair_rate(pair) -> float:
    """The marginal images/s of one (small, large) pair of runs."""
    small, large = pair
    return (large.selected - small.selected) / max(large.seconds - small.seconds, 1e-9)


def machine_cpu_seconds() -> float:
    """CPU seconds every process on this machine has used so far (user, nice, system, interrupts:
    /proc/stat's first line), or NaN off Linux. Ray's own processes (raylet, object store, its
    actors) and the local engine's workers all count, whichever process they belong to."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
    except OSError:
        return float("nan")
    user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in fields[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def timed_run(root: Path, out: Path, n: int, mode: str, workers: int, engine: str):
    """The run's result, with `driver_cpu`: CPU seconds of this process (the driver) alone, and
    `machine_cpu`: of every process on the machine (see machine_cpu_seconds)."""
    shutil.rmtree(out, ignore_errors=True)  # a first run: nothing cached
    cpu, machine = time.process_time(), machine_cpu_seconds()
    options = CurateOptions(drop_smiles=True, drop_outliers=True, workers=workers, engine=engine,
                            upsample=MODES[mode].get("upsample", 1))
    r = curate_celeba(root, out, options, first=n, detect=MODES[mode]["detect"])
    r.driver_cpu = time.process_time() - cpu
    r.machine_cpu = machine_cpu_seconds() - machine
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="LARGE = 1000 images: under 3 minutes on 2 quiet cores")
    ap.add_argument("--small", type=int, default=200, help="images in the small run")
    ap.add_argument("--large", type=int, default=None,
                    help="images in the large run (default 2000, --quick 1000)")
    ap.add_argument("--workers", type=int, default=2, help="processes (local) and actors (ray)")
    ap.add_argument("--engines", default="local,ray", help="comma-separated: local, ray")
    ap.add_argument("--keep", type=Path, default=None,
                    help="build in this folder and keep it (re-runs skip the build)")
    ap.add_argument("--modes", default="fast,full",
                    help="comma-separated: fast (the known face box), full (--detect), full0 (--detect "
                         "--upsample 0)")
    ap.add_argument("--backends", default="",
                    help="comma-separated landmark backends to compare (compiled, numpy; "
                         "$P2D_LANDMARK_BACKEND per run); default: the one p2d picks")
    ap.add_argument("--repeat", type=int, default=1,
                    help="measure each pair of runs this many times, interleaved; the median pair is "
                         "reported, with the range of the marginal rates (this machine's speed drifts by "
                         "tens of percent)")
    args = ap.parse_args()
    large = args.large or (1000 if args.quick else 2000)
    engines = args.engines.split(",")

    work = args.keep or Path(tempfile.mkdtemp(prefix="p2d-bench-"))
    root = work / "celeba"
    seconds = build(root, large)
    console.print(
        f"CelebA-shaped folder: {large} (or more) images of 178x218 in {root} ({seconds:.1f} s to build)")
    load0 = os.getloadavg()[0]
    ray_start = start_ray(args.workers) if "ray" in engines else None

    for engine in engines:  # one-time costs (imports, Ray Data's first plan) land here, not in the timed runs
        timed_run(root, work / f"warm-up-{engine}", 4 * args.workers, "fast", args.workers, engine)
    backends = args.backends.split(",")
    modes = args.modes.split(",")
    pairs = {(mode, engine): [] for mode in modes for engine in engines}
    if args.backends:  # a column per backend: the engine column's name carries it
        engines = [f"{e}/{b}" for e in engines for b in backends]
        pairs = {(mode, e): [] for mode in modes for e in engines}
    for _ in range(args.repeat):  # interleaved: a slow minute of the machine does not hit one setting only
        for mode, column in pairs:
            engine, _, backend = column.partition("/")
            if backend:  # read by every worker process or actor this run starts
                os.environ[BACKEND_ENV] = backend
            pairs[mode, column].append([timed_run(root, work / f"{mode}-{column.replace('/', '-')}-{n}", n,
                                                  mode, args.workers, engine) for n in (args.small, large)])
    results, rows, rates, cpu_ms, spreads = {}, [], {}, {}, {}
    for (mode, engine), runs in pairs.items():
        measured = sorted(((pair_rate((small, big)), small, big) for small, big in runs), key=lambda m: m[0])
        rate, small, big = measured[len(measured) // 2]
        results[mode, engine, args.small], results[mode, engine, large] = small, big
        rates[mode, engine] = rate
        driver_ms = 1000 * (big.driver_cpu - small.driver_cpu) / (large - args.small)
        # the pairs' median, as the marginal rate's: CPU time drifts with the machine less than wall time
        cpu_ms[mode, engine] = statistics.median(1000 * (b.machine_cpu - s.machine_cpu) / (large - args.small)
                                                  for s, b in runs)
        spread = f" ({measured[0][0]:.0f}-{measured[-1][0]:.0f})" if len(measured) > 1 else ""
        spreads[mode, engine] = spread
        rows.append((f"{mode}, {engine}", round(small.seconds, 2),
                     round(big.seconds, 2), round(big.images_per_s), f"{rate:.0f}{spread}",
                     round(small.seconds - args.small / rate, 2), round(1000 * args.workers / rate, 2),
                     round(driver_ms, 3), round(cpu_ms[mode, engine], 2)))
    # compared now: the cached re-run below rewrites the first engine's manifest
    same = {
        mode: len({results[mode, e, large].manifest.read_bytes() for e in engines}) == 1 for mode in modes}
    cached = None if "fast" not in modes else curate_celeba(
        root, work / f"fast-{engines[0].replace('/', '-')}-{large}", CurateOptions(
            drop_smiles=True, drop_outliers=True, workers=args.workers, engine=engines[0].partition("/")[0],
            thresholds=Thresholds(smile_threshold=1.0, max_yaw_deg=25.0)), first=large)

    console.print(table(
        f"p2d curate celeba, {args.workers} workers, {os.cpu_count()} CPUs ({platform.machine()}), load "
        f"average {load0:.1f} at start -> {os.getloadavg()[0]:.1f} at end",
        ["run", f"s {args.small}", f"s {large}", f"img/s {large}",
         "marginal img/s" + (f" (median of {args.repeat}, range)" if args.repeat > 1 else ""), "start-up s",
         "ms/img/core", "driver CPU ms/img", "machine CPU ms/img"], rows))
    console.print("driver CPU ms/image: the calling process' own marginal CPU time (cache, manifest, "
                  "results); one driver takes at most 1000 / that many images/s, however many workers "
                  "or nodes")
    if ray_start is not None:
        console.print(
            f"Ray's own start (ray.init, once per command): {ray_start:.1f} s, not in the start-up column")
    console.print(table(f"inside the workers: ms per image ({large}-image runs, wall time)",
                        ["stage"] + [f"{m}, {e}" for m in modes for e in engines],
                        stage_rows(results, modes, engines, large, args.workers)))
    for mode in modes:
        rate = {e: rates[mode, e] for e in engines}
        line = (f"{mode}: marginal " + ", ".join(
            f"{rate[e]:.0f}{spreads[mode, e]} images/s ({e})" for e in engines)
                + f", target >= {TARGETS[mode]:.0f}")
        if "ray" in rate and "local" in rate:
            extra = 1000 / rate["ray"] - 1000 / rate["local"]
            # each repeat's Ray pair against the local pair measured just before it: drift hits both alike
            per_repeat = sorted(100 * (pair_rate(pl) / pair_rate(pr) - 1)
                                for pl, pr in zip(pairs[mode, "local"], pairs[mode, "ray"]))
            per_repeat_median = statistics.median(per_repeat)
            line += (f"; Ray's overhead {extra:+.3f} ms per image "
                     f"({100 * extra * rate['local'] / 1000:+.1f}%, target < 10%; repeat by repeat: median "
                     f"{per_repeat_median:+.1f}%, range {per_repeat[0]:+.1f}% to {per_repeat[-1]:+.1f}%), in "
                     "CPU of the whole machine "
                     f"{100 * (cpu_ms[mode, 'ray'] / cpu_ms[mode, 'local'] - 1):+.1f}%")
        if len(engines) > 1:
            line += f"; manifests identical: {same[mode]}"
        console.print(line)
    if cached is not None:
        console.print(f"cached re-run (other thresholds, {large} images): {cached.seconds:.2f} s")
    if "local" in args.engines.split(","):
        for mode in modes:
            console.print(f"{mode}: start-up measured directly (local engine, {args.workers} worker "
                          f"processes ready, median of 3): {direct_startup(work, mode, args.workers):.2f} s, "
                          "target < 2 s")


def direct_startup(work: Path, mode: str, workers: int, repeat: int = 3) -> float:
    """Seconds from asking for the local engine's worker processes to every one of them having
    loaded its models (the driver's one-time preparation included), measured rather than inferred
    from two run times; the median of `repeat`."""
    import functools
    import multiprocessing

    from p2d.curate.engine import _init_process
    from p2d.curate.pipeline import RunSettings, _prepare_models, ready_worker

    settings = RunSettings(out_dir=work / "startup", options=CurateOptions(source="celeba", workers=workers),
                           face_box="detect" if MODES[mode]["detect"] else "known")
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        _prepare_models(settings)
        pool = multiprocessing.get_context("spawn").Pool(
            workers, initializer=_init_process, initargs=(functools.partial(ready_worker, settings),))
        with pool:  # a task per worker at least: each answers only once its initializer has run
            pool.map(time.sleep, [0.02] * (4 * workers), chunksize=1)
            times.append(time.perf_counter() - t0 - 0.02 * 4)
    return sorted(times)[len(times) // 2]


def start_ray(workers: int) -> float:
    """One local Ray for every Ray run (as a cluster would be), with one CPU per worker."""
    import ray

    t0 = time.perf_counter()
    ray.init(address="local", num_cpus=workers, include_dashboard=False, logging_level=logging.WARNING,
             log_to_driver=False)
    return time.perf_counter() - t0


def stage_rows(results, modes, engines, large, workers) -> list[tuple]:
    """Each stage's ms per image analysed, then what the stages do not explain: ms per image per
    core of the whole run minus the stages (start-up, the main process, pickling, waiting)."""
    cols = [(m, e) for m in modes for e in engines]
    rows = []
    for stage in STAGES:
        rows.append(
            (stage, *[round(1000 * results[m, e, large].stage_seconds[stage] / large, 3) for m, e in cols]))
    totals = [1000 * sum(results[m, e, large].stage_seconds.values()) / large for m, e in cols]
    per_core = [1000 * workers * results[m, e, large].seconds / large for m, e in cols]
    rows.append(("sum of the stages", *[round(t, 3) for t in totals]))
    rows.append(
        ("rest: start-up, driver, transfer, idle", *[round(p - t, 3) for p, t in zip(per_core, totals)]))
    rows.append(("whole run, per core", *[round(p, 3) for p in per_core]))
    return rows


if __name__ == "__main__":
    main()
