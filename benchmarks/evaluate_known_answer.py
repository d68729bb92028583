"""Known-answer check of `p2d evaluate`'s best-epoch rule: small CycleGANs trained on tasks whose
right answer is known, and how well the rule's score ranks the saved epochs.

Each task: scikit-image's 100 LFW face crops (shipped in its wheel, offline) and their mirror
images, scaled to the task's size. Photos are 50 of the faces, drawings are a fixed filter
applied to the other 50 (dealt alternately by brightness, `deal_faces`), so the true drawing of
every photo is known: the true error of an epoch is the mean L1 between G_photo2drawing(photo)
and filter(photo), in units of full intensity, over the 30 test photos and the 100 drawing-side
images given as photos (`unseen_faces`: G_photo2drawing never took any of them in); columns
headed `30 photos:` are the same over the test photos alone, the truth before issue 15's eighth
session. Tasks cover three filters (a pencil sketch by colour dodge, a gamma-bright negative,
ink lines where the image has edges), sizes from 28 to 56 px and two kinds of training:
converging (the usual decaying learning rate, cycle 10, identity 5) and drifting (a high constant
learning rate, weak cycle, no identity: the late-epoch drift the experiments saw). Tasks marked
held_out were added after the rule was last changed and are reported apart.

Printed per task: Spearman of the rule's score with the true error over the evaluated epochs, the
suggested epoch and its tie set, the truly best epoch, the regret (true error at the pick / true
best; 1.0 = picked the best; `regret 95%`: its interval over resampled photos). Targets: regret <= 1.10
and Spearman >= 0.8 on every task. Beside
them, what the true error itself is worth:
- its 95% interval per epoch (bootstrap over the test photos), its `true ceiling` (median
  Spearman between the true ranking on a resample of the test photos and on all of them: how
  far the ranking is set by which photos were drawn) and `spearman sep.`, the Spearman over a
  chain of epochs each separable from the next beyond that noise (paired: the same photos);
- `gray`, the error of a constant gray image, and `learned` (some epoch beats it): where no epoch
  does, the model never learned the filter and the true error only ranks kinds of failure;
  `corr`, the pixel correlation of output and true drawing at the true best (negative: tones
  mapped the wrong way round);
- the Spearman of each measured column with the true error (which measure tracks it).

Where it stands (all 42 cached runs in /work/data/t15/ka2 re-scored with `--phase evaluate` on
2026-11-27, this 2-core VM; the rule unchanged since issue 15's seventh session). The tasks: 26 at
training seed 0 (the first 8 the rule was developed on; the rest marked held out: not used for the
rules before they were added, docs/evaluate_known_answer.md says which rule each group first met), and
8 of them again at seeds 1 and 2 (`-seed1`, `-seed2`: written down before they were trained). Both targets on
36 of the 42 runs: on 36 of the 39 runs of the two filters the models learn (sketch, negative), on none of the
3 lines tasks. Spearman and regret on 130 photos, then on the 30 test photos alone; the suggested epoch and
the truly best (130 photos); `learned`: some epoch beats a constant gray image:

    task                   Spearman  regret   30 photos: Spearman  regret  suggested  true best  learned
    sketch32-converge         0.903   1.000                 0.886   1.000         13         13  yes
    sketch48-drift            0.969   1.000                 0.982   1.000         14         14  yes
    negative32-drift          0.969   1.021                 0.982   1.003         12         14  yes
    negative48-converge       0.868   1.023                 0.820   1.020         22         28  yes
    lines40-drift             0.068   1.173                 0.064   1.192          7          1  no
    lines32-converge         -0.468   1.117                -0.468   1.119          8          1  no
    sketch40-drift            0.947   1.000                 0.943   1.000         14         14  yes
    negative40-drift          0.947   1.027                 0.943   1.014          5         14  yes
    held out:
    sketch36-converge         0.930   1.007                 0.938   1.006         11         13  yes
    negative44-drift          0.881   1.059                 0.789   1.053          3         11  yes
    sketch44-drift            0.908   1.104                 0.943   1.099          8         14  yes
    negative36-converge       0.974   1.017                 0.912   1.015         24         26  yes
    sketch52-drift            0.930   1.000                 0.916   1.000         14         14  yes
    sketch56-converge         0.895   1.015                 0.908   1.011         11         14  yes
    negative52-drift          0.938   1.000                 0.890   1.000         14         14  yes
    negative56-converge       0.930   1.056                 0.912   1.001         20         28  yes
    sketch28-drift            0.890   1.056                 0.930   1.065         14          7  yes
    lines56-drift             0.525   1.021                 0.604   1.029         42         15  yes
    sketch60-drift            0.908   1.000                 0.925   1.000         14         14  yes
    negative60-drift          0.969   1.000                 0.960   1.000         14         14  yes
    sketch24-converge         0.908   1.003                 0.178   1.011         11         13  yes
    negative28-converge       0.868   1.017                 0.952   1.000         22         26  yes
    sketch64-converge         0.952   1.011                 0.952   1.011         11         14  yes
    negative64-drift          0.881   1.000                 0.899   1.000         14         14  yes
    sketch36-drift            0.965   1.058                 0.952   1.052          8         14  yes
    negative44-converge       0.908   1.033                 0.855   1.029         22         28  yes
    sketch44-drift-seed1      0.943   1.048                 0.956   1.054         10         14  yes
    negative44-drift-seed1    0.956   1.000                 0.987   1.000         10         10  yes
    sketch32-converge-seed1   0.886   1.029                 0.868   1.022         10         14  yes
    negative32-drift-seed1    0.736   1.000                 0.745   1.000         11         11  yes
    sketch48-drift-seed1      0.916   1.080                 0.921   1.059         10         13  yes
    negative48-converge-seed1 0.947   1.014                 0.947   1.002         26         28  yes
    sketch40-drift-seed1      0.807   1.067                 0.785   1.080         10         14  yes
    negative40-drift-seed1    0.741   1.027                 0.723   1.016         11         12  yes
    sketch44-drift-seed2      0.908   1.067                 0.873   1.065          8         10  yes
    negative44-drift-seed2    0.947   1.000                 0.908   1.000         12         12  yes
    sketch32-converge-seed2   0.815   1.000                 0.820   1.000         12         12  yes
    negative32-drift-seed2    0.982   1.000                 0.974   1.000          9          9  yes
    sketch48-drift-seed2      0.859   1.011                 0.859   1.006         13         12  yes
    negative48-converge-seed2 0.930   1.016                 0.960   1.008         24         26  yes
    sketch40-drift-seed2      0.916   1.000                 0.921   1.000         11         11  yes
    negative40-drift-seed2    0.974   1.000                 0.921   1.000          6          6  yes

The misses. The lines tasks: lines40-drift and lines32-converge learn nothing, so their true error
only ranks kinds of failure; lines56-drift barely learns (its best epoch 0.170 against the gray
image's 0.173) and ranks at 0.525. Of the learned filters: sketch44-drift (seed 0) takes epoch 8 of the
stable stretch 8-9 over the truly best 14, tied with them on the score but alone, the last epoch after
a worse 13 (regret 1.104, inside its own 95% interval 1.095-1.112: `regret 95%` in the printed table,
the 130 photos resampled, paired); negative32-drift-seed1 (0.736 / 1.000) and negative40-drift-seed1
(0.741 / 1.027) pick at or next to the truly best epoch but rank below 0.8, their later epochs within
0.013 of each other in true error. None of the three recurs at the other seeds of the same task (the
same two negative tasks rank at 0.97 and 0.95 at seed 0, 0.98 and 0.97 at seed 2): which run misses
moves with the training seed.
docs/evaluate_known_answer.md keeps how the rule, the tasks and the deal of the faces came about,
session by session, with each step's figures and the measures that were tried.

Usage: python -m benchmarks.evaluate_known_answer [--work /tmp/p2d_known_answer] [--tasks a,b]
       [--phase all|train|evaluate] [--threads 1] [--every 1]
Runs are cached in --work: a second call re-trains nothing and re-evaluates only changed epochs
(re-scoring the 42 cached runs unchanged: 105 s on this VM). A cached run trained with
another recipe than its task's, or a task folder made with another deal of the faces, is refused
(delete it to make it again). The runs behind the figures (on the machine that made them, not in
the repository): /work/data/t15/ka2 (dealt by brightness) and /work/data/t15/ka (the split before). The lines
tasks also did not learn as lines32 with 32 filters and 4 blocks, nor with cycle 1 at lr 0.0005 (14 epochs
each, all worse than gray).
"""

from __future__ import annotations

import argparse
import functools
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from p2d.curate.hashing import phash_hex
from p2d.images import write_image
from p2d.manifest import new_rows, write_manifest

TEST_FACES = 15  # of each domain's 50 faces (30 test images with the mirrors)


@dataclass(frozen=True)
class Task:
    name: str
    filter: str  # "sketch" | "negative"
    size: int
    drift: bool
    epochs: int
    held_out: bool = False  # not looked at while the rule was developed: reported apart
    save_every: int = 1  # a longer run keeps every N-th epoch, so every task has ~14 to compare
    lr: float | None = None  # None: the kind's default (converge 0.0004, drift 0.002)
    identity: float | None = None  # None: the kind's default (converge 5, drift 0)
    seed: int = 0  # the training seed (the faces and their deal do not change with it)


_SEED0 = (
    Task("sketch32-converge", "sketch", 32, False, 14),
    Task("sketch48-drift", "sketch", 48, True, 14),
    Task("negative32-drift", "negative", 32, True, 14),
    # No identity loss: it asks G_photo2drawing to leave a real drawing unchanged, while a negative
    # turns a drawing back into a photo-like image, so it pulls against the filter (at identity 5,
    # lr 0.0004 and 14 epochs the model kept the photo's tones: correlation -0.47 with the true
    # drawing, every epoch worse than a gray image). Learned from epoch 2 this way.
    Task("negative48-converge", "negative", 48, False, 28, save_every=2, lr=0.001, identity=0.0),
    # Added after the rule was revised (issue 15, second session) and only run on that rule:
    # another filter and another size. Held out until the fifth session, which looked at these four
    # too when it chose the agreement measure, so they count as developed-on since.
    Task("lines40-drift", "lines", 40, True, 14),
    Task("lines32-converge", "lines", 32, False, 14),
    # Neither lines task learned its filter (every epoch worse than a constant gray image; nor with
    # 42 epochs at lr 0.001, nor with lines blurred twice as wide after 6 epochs: see the docstring),
    # so two more held-out tasks at a size not used before, with filters these small models learn.
    Task("sketch40-drift", "sketch", 40, True, 14),
    Task("negative40-drift", "negative", 40, True, 14),
    # Added when the rule gained the agreement of the epochs (issue 15, fifth session), which was
    # chosen looking at all eight tasks above: new sizes, both kinds, run only on the final rule.
    Task("sketch36-converge", "sketch", 36, False, 14, held_out=True),
    Task("negative44-drift", "negative", 44, True, 14, held_out=True),
    Task("sketch44-drift", "sketch", 44, True, 14, held_out=True),
    # Two more, added after the three above had been scored (same session, the rule unchanged): the
    # negative filter with converging training (as negative48-converge, which needs it to learn) and
    # the largest size yet.
    Task("negative36-converge", "negative", 36, False, 28, held_out=True, save_every=2, lr=0.001,
         identity=0.0),
    Task("sketch52-drift", "sketch", 52, True, 14, held_out=True),
    # Added in the seventh session after the faces were dealt by brightness, before they were run,
    # to test a change of the rule chosen on the 13 above: sizes not used before, both filters the
    # models learn, both kinds of training.
    Task("sketch56-converge", "sketch", 56, False, 14, held_out=True),
    Task("negative52-drift", "negative", 52, True, 14, held_out=True),
    Task("negative56-converge", "negative", 56, False, 28, held_out=True, save_every=2, lr=0.001,
         identity=0.0),
    Task("sketch28-drift", "sketch", 28, True, 14, held_out=True),
    # The lines filter at a larger size learns slowly under drifting training (tried before it was
    # scored: 28 epochs at 56 px, correlation with the true drawing rising from 0.05 to 0.42, epoch
    # 24 the first under the gray image's error); 42 epochs, every 3rd kept.
    Task("lines56-drift", "lines", 56, True, 42, held_out=True, save_every=3),
    # Added in the ninth session to check the rule as it stood, unchanged (written down before they
    # were trained): sizes not used before, the two filters these models learn, both kinds.
    Task("sketch60-drift", "sketch", 60, True, 14, held_out=True),
    Task("negative60-drift", "negative", 60, True, 14, held_out=True),
    Task("sketch24-converge", "sketch", 24, False, 14, held_out=True),
    Task("negative28-converge", "negative", 28, False, 28, held_out=True, save_every=2, lr=0.001,
         identity=0.0),
    # Added on 2026-11-27 after the split of p2d/evaluate into a package (the rule unchanged since the
    # seventh session; written down before they were trained): a size not used before, and the two
    # sizes used for one kind only run with the other.
    Task("sketch64-converge", "sketch", 64, False, 14, held_out=True),
    Task("negative64-drift", "negative", 64, True, 14, held_out=True),
    Task("sketch36-drift", "sketch", 36, True, 14, held_out=True),
    Task("negative44-converge", "negative", 44, False, 28, held_out=True, save_every=2, lr=0.001,
         identity=0.0),
)

_SEED1 = (
    # Another training seed for four tasks (twelfth session, written down before they were trained):
    # the two whose regret interval crosses 1.10, and the first task of each learned filter.
    Task("sketch44-drift-seed1", "sketch", 44, True, 14, held_out=True, seed=1),
    Task("negative44-drift-seed1", "negative", 44, True, 14, held_out=True, seed=1),
    Task("sketch32-converge-seed1", "sketch", 32, False, 14, held_out=True, seed=1),
    Task("negative32-drift-seed1", "negative", 32, True, 14, held_out=True, seed=1),
    # and the next four tasks of the learned filters in this list's order, added after those were scored
    Task("sketch48-drift-seed1", "sketch", 48, True, 14, held_out=True, seed=1),
    Task("negative48-converge-seed1", "negative", 48, False, 28, held_out=True, save_every=2, lr=0.001,
         identity=0.0, seed=1),
    Task("sketch40-drift-seed1", "sketch", 40, True, 14, held_out=True, seed=1),
    Task("negative40-drift-seed1", "negative", 40, True, 14, held_out=True, seed=1),
)
TASKS = (
    *_SEED0,
    *_SEED1,
    # The same eight at training seed 2 (thirteenth session, written down before they were trained).
    *(replace(t, name=t.name.replace("-seed1", "-seed2"), seed=2) for t in _SEED1),
)


def apply_filter(gray: np.ndarray, name: str) -> np.ndarray:
    """The task's 'drawing' of a uint8 gray image (the known answer)."""
    from scipy.ndimage import gaussian_filter

    x = gray.astype(np.float64) / 255.0
    if name == "sketch":  # pencil sketch: colour-dodge the image with its blurred negative
        blurred = gaussian_filter(1.0 - x, sigma=max(1.0, gray.shape[0] / 24))
        y = np.clip(x / np.maximum(1.0 - blurred, 1e-3), 0, 1) ** 2.0
    elif name == "negative":
        y = (1.0 - x) ** 0.6
    elif name == "lines":  # ink lines: dark where the lightly blurred image has strong edges
        gy, gx = np.gradient(gaussian_filter(x, sigma=max(0.5, gray.shape[0] / 64)))
        y = 1.0 - np.clip(np.hypot(gx, gy) * gray.shape[0] / 8, 0, 1)
    else:
        raise ValueError(f"unknown filter {name}")
    return np.round(y * 255).astype(np.uint8)


def lfw_faces(size: int) -> list[np.ndarray]:
    """The 100 LFW faces, each scaled to size x size (bicubic), uint8 gray."""
    from skimage.data import lfw_subset

    faces = (lfw_subset()[:100] * 255).round().astype(np.uint8)
    return [np.asarray(Image.fromarray(f).resize((size, size), Image.BICUBIC)) for f in faces]


def recipe_text(task: Task) -> str:
    if task.drift:
        lr, decay, cycle, identity = 0.002, task.epochs + 1, 2.0, 0.0
    else:
        lr, decay, cycle, identity = 0.0004, max(1, task.epochs // 2), 10.0, 5.0
    lr = task.lr if task.lr is not None else lr
    identity = task.identity if task.identity is not None else identity
    return f"""[meta]
name = "{task.name}"
[data]
channels = 1
size = {task.size}
augment = ["hflip"]
sample_rows = 2
[model]
filters = 16
blocks = 2
disc_filters = 16
disc_layers = 2
[train]
epochs = {task.epochs}
batch_size = 4
lr = {lr}
decay_from_epoch = {decay}
cycle_weight = {cycle}
identity_weight = {identity}
save_every = {task.save_every}
seed = {task.seed}
[speed]
tensorboard = false
"""


# How the 100 faces are dealt (written to each task folder; a folder made with another is refused).
# "stratified" since issue 15's seventh session: before, photos were faces 0-49 and drawings faces
# 50-99, whose filtered tones are not the filtered tones of the photos: the negative of the test
# drawings was 0.037 darker than the true drawings of the test photos, as far as the epochs drift,
# and the true ranking followed that gap, which no unpaired measure sees (the unpaired ceiling was
# 0.57-0.86). Dealt alternately by mean brightness, the gap is 0.003 (sketch: 0.004 before, 0.003).
SPLIT = "stratified"


def deal_faces(faces: list[np.ndarray]) -> dict[int, tuple[str, str]]:
    """Face index -> (domain, split): the faces sorted by mean intensity are dealt alternately to
    photos and drawings, so both sides are one population of faces, as in a dataset of hundreds;
    on each side the TEST_FACES test faces are spread evenly over that order."""
    order = [int(i) for i in np.argsort([float(f.mean()) for f in faces], kind="stable")]
    out = {}
    for domain, side in (("photo", order[0::2]), ("drawing", order[1::2])):
        test = {side[int(k)] for k in np.round(np.linspace(0, len(side) - 1, TEST_FACES))}
        out.update({i: (domain, "test" if i in test else "train") for i in side})
    return out


def make_task(task: Task, folder: Path) -> Path:
    """Image files, manifest and recipe of one task; returns the manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / f"{task.name}.csv"
    manifest.with_suffix(".toml").write_text(recipe_text(task))
    dealt = folder / "split.txt"
    if manifest.is_file():
        if not dealt.is_file() or dealt.read_text().strip() != SPLIT:
            raise SystemExit(f"{folder} was made with another split of the faces than {SPLIT!r}: "
                             f"delete the folder (or give another --work) to make the task again")
        return manifest
    faces = lfw_faces(task.size)
    sides = deal_faces(lfw_faces(25))  # at LFW's own 25 px: the same deal at every task size
    rows = []
    for i, face in enumerate(faces):
        domain, split = sides[i]
        for mirror in (False, True):
            img = face[:, ::-1] if mirror else face
            if domain == "drawing":
                img = apply_filter(img, task.filter)
            path = folder / domain / f"lfw_{i:03d}{'_m' if mirror else ''}.png"
            write_image(path, np.ascontiguousarray(img))
            rows.append({"path": str(path.resolve()), "domain": domain, "source": "lfw", "split": split,
                         "crop": "center", "width": task.size, "height": task.size,
                         "phash": phash_hex(np.ascontiguousarray(img)), "keep": True, "reason": ""})
    write_manifest(new_rows(rows), manifest)
    dealt.write_text(SPLIT + "\n")
    return manifest


def train_task(task: Task, work: Path) -> Path:
    from p2d.recipe import load_recipe
    from p2d.runs import RECIPE_FILE, list_checkpoints
    from p2d.train.loop import TrainOptions, train

    manifest = make_task(task, work / task.name)
    run = work / task.name / "run"
    if (run / RECIPE_FILE).is_file():  # a cached run trained with another recipe is not this task
        was, now = load_recipe(run / RECIPE_FILE).train, load_recipe(manifest.with_suffix(".toml")).train
        if was != now:
            raise SystemExit(f"{run} was trained with another recipe than {task.name}'s ({was} vs {now}): "
                             f"delete that run folder to train the task again")
    if max(list_checkpoints(run), default=0) >= task.epochs:
        return run
    start = time.perf_counter()
    train(manifest, out=run, options=TrainOptions(device="cpu"),
          resume=(run / "checkpoints" / "latest.pt").is_file())
    print(f"{task.name}: trained {task.epochs} epochs in {time.perf_counter() - start:.0f} s", flush=True)
    return run


@functools.lru_cache(maxsize=4)
def unseen_faces(size: int) -> tuple[np.ndarray, ...]:
    """The drawing side's 50 faces and their mirrors as photos (uint8 gray, size x size), in face
    order: G_photo2drawing never took them in (it saw only their filtered versions, through D), so
    with the test photos they are 130 photos whose true drawing is known."""
    sides = deal_faces(lfw_faces(25))
    out = []
    for i, face in enumerate(lfw_faces(size)):
        if sides[i][0] == "drawing":
            out += [face, np.ascontiguousarray(face[:, ::-1])]
    return tuple(out)


def true_errors(run: Path, manifest: Path, filter_name: str, epochs: list[int],
                drawn: dict[int, list] | None = None
                ) -> tuple[dict[int, np.ndarray], dict[int, float], float]:
    """Per saved epoch: the L1 of G_photo2drawing(photo) to filter(photo), one value per photo,
    for the test photos first and then the `unseen_faces` (since issue 15's eighth session the true
    error is the mean over all of them; the test photos' mean is kept beside it); the mean pixel
    correlation of the two over the test photos (negative: the model maps tones the wrong way
    round); and the L1 of a constant gray image (the real test drawings' mean intensity) to the
    filter's outputs of all those photos: the error of a model that learned nothing about the photo.
    `drawn`, where given, receives each epoch's drawings of the test photos."""
    from p2d.evaluate import l1_error, load_test_image, torch_translator
    from p2d.manifest import manifest_images
    from p2d.train.translate import load_generators

    out, corr = {}, {}
    for epoch in epochs:
        cfg, g, _ = load_generators(run, epoch)
        photos = [load_test_image(p, 1, cfg.data.size) for p in manifest_images(manifest, "photo", "test")]
        every = photos + list(unseen_faces(cfg.data.size))
        fakes = torch_translator(g, 1)(every)
        if drawn is not None:
            drawn[epoch] = fakes[:len(photos)]
        truth = [apply_filter(p, filter_name) for p in every]
        out[epoch] = np.array([l1_error(f, t) for f, t in zip(fakes, truth)])
        corr[epoch] = float(np.nanmean([np.corrcoef(f.ravel(), t.ravel())[0, 1]
                                        for f, t in zip(fakes[:len(photos)], truth)]))
    drawings = [load_test_image(p, 1, cfg.data.size) for p in manifest_images(manifest, "drawing", "test")]
    gray = float(np.mean(drawings)) / 255.0
    baseline = float(np.mean([np.abs(apply_filter(p, filter_name) / 255.0 - gray).mean() for p in every]))
    return out, corr, baseline


def data_answer_errors(manifest: Path, filter_name: str, size: int,
                       drawn: dict[int, list]) -> dict[int, float] | None:
    """For a pointwise filter (the negative), the answer the training data itself gives: the
    decreasing histogram match of the train photos' pixels onto the train drawings' (the best
    pointwise tone map a model can learn from unpaired images), applied to the test photos; per
    epoch of `drawn` (its drawings of the test photos, as `true_errors` made them) the mean L1 to it. Its
    Spearman with the true error is how far any measure that sees only unpaired images can rank the epochs:
    where the drawings are other faces than the photos, their pixels are not the filter of the photos' pixels,
    and the epochs' true ranking partly follows that difference, which no such measure sees. None
    for filters that are not a tone map of the pixel (sketch, lines)."""
    from p2d.evaluate import load_test_image
    from p2d.manifest import manifest_images

    if filter_name != "negative":
        return None
    load = lambda domain, split: np.array(  # noqa: E731
        [load_test_image(p, 1, size) for p in manifest_images(manifest, domain, split)], np.float64)
    train_photos, train_drawings, photos = (load("photo", "train"), load("drawing", "train"),
                                            load("photo", "test"))
    below = np.searchsorted(np.sort(train_photos.ravel()), photos.ravel(), side="right") / train_photos.size
    answer = np.quantile(train_drawings.ravel(), np.clip(1.0 - below, 0, 1)).reshape(photos.shape)
    return {epoch: float(np.abs(np.array(fakes, np.float64) - answer).mean() / 255.0)
            for epoch, fakes in drawn.items()}


def true_error_noise(per_image: dict[int, np.ndarray], n_boot: int = 1000, seed: int = 0) -> dict:
    """How much of the true error's ranking of epochs is test-image noise. The same test photos
    are resampled (with replacement) for every epoch, so epochs are compared pairwise on the
    same images. Returns per epoch the 95% interval of its mean; `ceiling`: the median Spearman
    between a resample's ranking and the full sample's (1.0: the ranking does not depend on which
    test photos were drawn; a score cannot be expected to rank better than this); `separable`: a
    chain of epochs, best first, each worse than the one before beyond the noise (the 95% interval
    of their paired difference above 0), over which a Spearman means something."""
    from scipy.stats import spearmanr

    epochs = sorted(per_image)
    errors = np.array([per_image[e] for e in epochs])  # epochs x test photos
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, errors.shape[1], (n_boot, errors.shape[1]))
    boot = errors[:, draws].mean(axis=2)  # epochs x resamples
    mean = errors.mean(axis=1)
    lo, hi = np.percentile(boot, [2.5, 97.5], axis=1)
    ceiling = float(np.median([spearmanr(boot[:, j], mean).statistic for j in range(min(n_boot, 300))]))
    chain = []
    for i in np.argsort(mean, kind="stable"):
        if not chain or np.percentile(boot[i] - boot[chain[-1]], 2.5) > 0:
            chain.append(int(i))
    return {"interval": {e: (float(a), float(b)) for e, a, b in zip(epochs, lo, hi)}, "ceiling": ceiling,
            "separable": sorted(epochs[i] for i in chain)}


def regret_interval(per_image: dict[int, np.ndarray], pick: int, n_boot: int = 1000,
                    seed: int = 0) -> tuple[float, float]:
    """The 95% interval of the regret of `pick` (its true error over the best epoch's), the test
    photos resampled as in true_error_noise (paired: the same photos for every epoch, the best epoch
    found anew in each resample): how far a regret near the 1.10 target is set by which photos were drawn."""
    epochs = sorted(per_image)
    errors = np.array([per_image[e] for e in epochs])
    draws = np.random.default_rng(seed).integers(0, errors.shape[1], (n_boot, errors.shape[1]))
    boot = errors[:, draws].mean(axis=2)
    regret = boot[epochs.index(pick)] / boot.min(axis=0)
    lo, hi = np.percentile(regret, [2.5, 97.5])
    return float(lo), float(hi)


# evaluate.csv columns whose Spearman with the true error is printed (lower = better for each,
# the gaps by their size); the score's terms first.
TRACKED = ("cross_cycle_drawing", "identity_drawing", "agreement_drawing", "cycle_l1_drawing",
           "kid_tone_drawing", "kid_drawing", "brightness_gap_drawing", "contrast_gap_drawing",
           "cycle_l1_photo", "identity_cycle", "kid_photo", "kid_tone_photo", "landmark_nme")
SIGNED = ("brightness_gap_drawing", "contrast_gap_drawing")


def evaluate_task(task: Task, work: Path, every: int) -> dict:
    from scipy.stats import spearmanr

    from p2d.evaluate import AGREES_WITH_THE_RUN, EvalSettings, evaluate_run, suggest_best
    from p2d.runs import list_checkpoints, read_losses

    run = work / task.name / "run"
    manifest = work / task.name / f"{task.name}.csv"
    start = time.perf_counter()
    epochs = sorted(list_checkpoints(run))[every - 1::every]
    result = evaluate_run(run, epochs=epochs, device="cpu", settings=EvalSettings(kid_subsets=50))
    drawn: dict[int, list] = {}
    per_image, corr, baseline = true_errors(run, manifest, task.filter, epochs, drawn)
    n_test = len(next(iter(drawn.values())))
    truth = {e: float(v.mean()) for e, v in per_image.items()}
    # the truth before the eighth session
    truth_test = {e: float(v[:n_test].mean()) for e, v in per_image.items()}
    noise, noise_test = (true_error_noise(per_image),
                         true_error_noise({e: v[:n_test] for e, v in per_image.items()}))
    answer = data_answer_errors(manifest, task.filter, task.size, drawn)
    score = result.why.set_index("epoch")["score"]

    def rho(among: list[int]) -> float:
        s = score.loc[among].to_numpy(float)
        return (spearmanr(s, [truth[e] for e in among]).statistic if np.isfinite(s).all() and len(among) > 2
                else float("nan"))

    epochs = sorted(truth)
    err = [truth[e] for e in epochs]
    table = result.table.set_index("epoch").loc[epochs]
    measures = {  # which measure tracks the true error: Spearman of each (its size for the gaps)
        col: spearmanr(table[col].abs() if col in SIGNED else table[col], err).statistic
        for col in TRACKED if col in table and table[col].notna().all() and table[col].nunique() > 1
    }
    best_true, best_test = min(epochs, key=truth.get), min(epochs, key=truth_test.get)
    err_test = [truth_test[e] for e in epochs]
    pick = result.best_epoch
    sep = noise["separable"]
    # the rule before the cross cycle (the epoch's own drawing cycle scored), on the same measured rows
    own_cycle = (("cycle_l1_drawing", False), ("identity_drawing", False))
    before, why_before = suggest_best(table.reset_index(), groups=(own_cycle, AGREES_WITH_THE_RUN))
    s_before = why_before.set_index("epoch")["score"].loc[epochs].to_numpy(float)
    return {
        "task": task.name + (" (held out)" if task.held_out else ""), "held out": task.held_out,
        "epochs": len(epochs), "spearman": rho(epochs), "true ceiling": noise["ceiling"],
        "30 photos: spearman": spearmanr(score.loc[epochs].to_numpy(float), err_test).statistic,
        "30 photos: regret": truth_test[pick] / truth_test[best_test] if pick is not None else float("nan"),
        "30 photos: ceiling": noise_test["ceiling"], "30 photos: sep.": len(noise_test["separable"]),
        "unpaired ceiling": (
            spearmanr([answer[e] for e in epochs], err).statistic if answer else float("nan")),
        "spearman sep.": rho(sep), "sep.": len(sep),
        "suggested": pick, "ties": ",".join(map(str, result.tie_set)), "true best": best_true,
        "regret": truth[pick] / truth[best_true] if pick is not None else float("nan"),
        "regret 95%": ("{:.3f}-{:.3f}".format(*regret_interval(per_image, pick)) if pick is not None else ""),
        "before: spearman": (spearmanr(s_before, err).statistic if np.isfinite(s_before).all()
                             else float("nan")),
        "before: regret": truth[before] / truth[best_true] if before is not None else float("nan"),
        "err best": truth[best_true], "gray": baseline, "learned": truth[best_true] < baseline,
        "corr": corr[best_true],
        "warned": "not_learned" in result.why.attrs,  # `p2d evaluate` says no epoch is good
        "flags": "; ".join(f"{e}: {f}" for e, f in result.drift_flags.items()),
        "train s": round(sum(float(r["seconds"]) for r in read_losses(run))),
        "eval s": round(time.perf_counter() - start),
        "true errors": " ".join(f"{e}:{truth[e]:.4f} [{noise['interval'][e][0]:.4f}, "
                                f"{noise['interval'][e][1]:.4f}]"
                                for e in epochs),
        "separable epochs": ",".join(map(str, sep)),
        "measures": measures,
    }


def print_table(rows: list[dict]) -> None:
    """The per-task table (developed-on tasks, then held-out ones apart), true errors and flags."""
    pd.set_option("display.width", 200)
    table = pd.DataFrame(rows)
    for held, title in ((False, "tasks the rule was developed on"),
                        (True, "held-out tasks (not used to develop the rule)")):
        part = table[table["held out"] == held]
        if len(part):
            print(f"\n{title}:\n" + part.drop(
                columns=["true errors", "flags", "held out", "separable epochs", "measures"])
                  .to_string(index=False, float_format="%.3f"))
    print("\nSpearman of each measure with the true error (score terms first):\n"
          + pd.DataFrame({r["task"]: r["measures"] for r in rows}).to_string(float_format="%.2f"))
    for r in rows:
        learned = ("" if r["err best"] < r["gray"]
                   else "  NO epoch beats the constant gray image: the model never learned the filter")
        print(f"\n{r['task']}: true error per epoch [95% interval over test photos]\n  {r['true errors']}"
              f"\n  separable chain (best first, each beyond the noise of the next): {r['separable epochs']}"
              f"\n  constant gray image: {r['gray']:.4f}{learned}"
              f"\n  correlation of output and true drawing at the true best: {r['corr']:.2f}\n  drift flags: "
              f"{r['flags'] or 'none'}")
    for truth, prefix in (("the true error on 130 photos", ""), ("the 30 test photos alone", "30 photos: ")):
        ok = (table[prefix + "regret"] <= 1.10) & (table[prefix + "spearman"] >= 0.8)
        for held, name in ((False, "developed-on"), (True, "held-out")):
            part, learned = ok[table["held out"] == held], table["learned"][table["held out"] == held]
            print(f"{truth}: targets (regret <= 1.10 and Spearman >= 0.8) met on {int(part.sum())} of "
                  f"{len(part)} {name} tasks; on {int(part[learned].sum())} of {int(learned.sum())} where "
                  "some epoch beats a constant gray image")


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/p2d_known_answer"))
    ap.add_argument("--tasks", default="", help="comma-separated task names (default: all)")
    ap.add_argument("--phase", default="all", choices=("all", "train", "evaluate"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--every", type=int, default=1,
                    help="evaluate every N-th saved epoch (dlib's descriptor costs ~0.25 s of CPU an image)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tasks = [t for t in TASKS if not args.tasks or t.name in args.tasks.split(",")]
    rows = []
    for task in tasks:
        if args.phase in ("all", "train"):
            train_task(task, args.work)
        if args.phase in ("all", "evaluate"):
            rows.append(evaluate_task(task, args.work, args.every))
            r = rows[-1]
            print(f"{r['task']}: Spearman {r['spearman']:.3f}, suggested {r['suggested']}, true best "
                  f"{r['true best']}, regret {r['regret']:.3f} ({r['eval s']} s)", flush=True)
    if rows:
        print_table(rows)


if __name__ == "__main__":
    main()
