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
best; 1.0 = picked the best). Targets: regret <= 1.10 and Spearman >= 0.8 on every task. Beside
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

The true error on 130 photos (eighth session; decided and written down before it was computed,
to be reported whatever it gave, the rule unchanged): on 30 test photos negative44-drift's epochs
were separable beyond the noise in a chain of 3 only. The same 18 cached runs re-scored
(`--phase evaluate`, 2026-11-27, this VM), Spearman / regret on 130 photos (on the 30 test photos):
sketch32-converge 0.903 / 1.000 (0.886 / 1.000), sketch48-drift 0.969 / 1.000 (0.982 / 1.000),
negative32-drift 0.969 / 1.021 (0.982 / 1.003), negative48-converge 0.868 / 1.023 (0.820 / 1.020),
lines40-drift 0.068 / 1.173, lines32-converge -0.468 / 1.117 (neither learned), sketch40-drift
0.947 / 1.000, negative40-drift 0.947 / 1.027, sketch36-converge 0.930 / 1.007, negative44-drift
0.881 / 1.059 (0.789 / 1.053), sketch44-drift 0.908 / 1.104 (0.943 / 1.099), negative36-converge
0.974 / 1.017, sketch52-drift 0.930 / 1.000, sketch56-converge 0.895 / 1.015, negative52-drift
0.938 / 1.000, negative56-converge 0.930 / 1.056, sketch28-drift 0.890 / 1.056 (0.930 / 1.065),
lines56-drift 0.525 / 1.021 (0.604 / 1.029; its best epoch 0.1696 against the gray image's 0.1732).
Both targets on 14 of 18 either way: negative44-drift now meets them, sketch44-drift misses by its
regret (it picks epoch 8 of the stable stretch 8-9 over 14, the truly best, tied with them on the
score and alone: the last epoch, after a worse 13).

Four more held-out tasks (ninth session; written down before they were trained, to check the rule
as it stood, nothing chosen from them): sizes not used before, the two filters the models learn,
both kinds of training. Trained and evaluated on 2026-11-27 (this VM, training 12-86 s, evaluation
115-184 s), Spearman / regret on 130 photos (on the 30 test photos): sketch60-drift 0.908 / 1.000
(0.925 / 1.000), negative60-drift 0.969 / 1.000 (0.960 / 1.000), sketch24-converge 0.908 / 1.003
(0.178 / 1.011: on 30 photos the truth itself separates only 2 of its epochs, its ceiling 0.798),
negative28-converge 0.868 / 1.017 (0.952 / 1.000). Both targets on all 4, so on 18 of the 22 tasks:
every task of the two filters the models learn but sketch44-drift (regret 1.104).

The rule since issue 15's seventh session asks three questions: the cross cycle
(`cross_cycle_drawing`: real test drawings turned into photos by other epochs and redrawn by this
one) in place of the epoch's own drawing cycle, beside identity; the agreement of the epochs; and
realism again (KID in both feature spaces, the brightness and contrast gaps). And the faces are
dealt to the two sides alternately by brightness (`deal_faces`, below). All 18 tasks trained and
evaluated on 2026-11-27 (this 2-core VM; training 9-54 s a task, evaluation 111-172 s), every
saved epoch, 30 test photos a task (the true error on them alone); "before" is last stop's score (the own drawing cycle,
identity; agreement) replayed on the same measured rows:

    task                      Spearman  unpaired ceiling  suggested  true best  regret  learned   before: Spearman  regret
    sketch32-converge            0.886                           13         13   1.000  yes               0.908    1.000
    sketch48-drift               0.982                           14         14   1.000  yes               0.965    1.028
    negative32-drift             0.982             0.996         12         14   1.003  yes               0.960    1.023
    negative48-converge          0.820             0.996         22         18   1.020  yes               0.837    1.009
    lines40-drift                0.064                            7          1   1.192  no                0.165    1.192
    lines32-converge            -0.468                            8          1   1.119  no               -0.477    1.119
    sketch40-drift               0.943                           14         14   1.000  yes               0.987    1.000
    negative40-drift             0.943             0.978          5         14   1.014  yes               0.908    1.014
    held out:
    sketch36-converge            0.938                           11         13   1.006  yes               0.921    1.006
    negative44-drift             0.789             0.974          3         14   1.053  yes               0.719    1.053
    sketch44-drift               0.943                            8         14   1.099  yes               0.969    1.099
    negative36-converge          0.912             0.987         24         26   1.015  yes               0.899    1.015
    sketch52-drift               0.916                           14         14   1.000  yes               0.925    1.000
    sketch56-converge            0.908                           11         14   1.011  yes               0.930    1.011
    negative52-drift             0.890             0.991         14         14   1.000  yes               0.930    1.085
    negative56-converge          0.912             0.974         20         26   1.001  yes               0.912    1.001
    sketch28-drift               0.930                           14          7   1.065  yes               0.903    1.000
    lines56-drift                0.604                           42         15   1.029  yes               0.600    1.029

Both targets on 14 of 18 tasks, 14 of the 16 that learn: negative44-drift ranks at 0.789, and
lines56-drift, the one lines task that learns at all (best epoch 0.168 against the gray image's
0.172; added last, after the rule was fixed), at 0.604; the other two lines tasks learn nothing.
Last stop's score meets them on the same 14 (mean Spearman over the 16 tasks that learn: 0.894
now, 0.892 then); on the old deal of the faces (below) the cross cycle met
them on one task more. How the rule came about, in order: the cross cycle was chosen looking at all
13 first tasks' runs on the old deal (the held-out ones included: "held out" now says only that a
task was not used for the rules before it); then the deal was changed, set from the faces' tones
alone before any task was trained on it; on the 13 tasks dealt anew, the score with the cross cycle
and without realism met the targets on 10 (mean Spearman 0.89 on the 11 that learn), realism added
back looked better replayed on the same rows (a choice made on all 13), so four tasks of new sizes
were added (the last four) and run before the change, and the change was kept by a rule written
down before they were scored (targets met on as many, mean Spearman not lower by more than 0.02):
on those four, 4 of 4 either way, mean Spearman 0.91 with realism against 0.86 without. The cross
cycle alone tracks the true error about as well as the own cycle on the new deal (mean Spearman
0.90 both on the first 13, ranges 0.67-0.96 and 0.79-0.98).

Why the faces are now dealt by brightness. Before, photos were faces 0-49 and drawings faces
50-99; run on that split the same morning (the same tasks, recipes and seeds), the score with the
cross cycle and without realism met both targets on 6 of 13 (every sketch task; last stop's score,
5: sketch40 at 0.798), the negative tasks at 0.41-0.74:

    task                      Spearman  unpaired ceiling  regret    before: Spearman  regret
    sketch32-converge            0.868                     1.022               0.877    1.016
    sketch48-drift               0.881                     1.001               0.886    1.000
    negative32-drift             0.415             0.565   1.146               0.486    1.146
    negative48-converge          0.508             0.859   1.109               0.495    1.109
    lines40-drift                0.112                     1.270               0.011    1.112
    lines32-converge            -0.363                     1.178              -0.477    1.178
    sketch40-drift               0.864                     1.015               0.798    1.015
    negative40-drift             0.741             0.859   1.010               0.710    1.010
    sketch36-converge            0.938                     1.000               0.921    1.028
    negative44-drift             0.622             0.675   1.016               0.609    1.026
    sketch44-drift               0.930                     1.041               0.903    1.041
    negative36-converge          0.411             0.833   1.075               0.424    1.075
    sketch52-drift               0.965                     1.037               0.930    1.037

There the cross cycle alone tracked the true error better than the own cycle on the sketch tasks
(0.93-0.96 against 0.67-0.97). `unpaired ceiling` (`data_answer_errors`) showed why the negative
tasks could not be met: the negative is a tone map of each pixel, so the best answer the training
images themselves give is the histogram match of the train photos onto the train drawings, and
ranking the epochs by their distance to it (a measure that knows the filter is a tone map and sees
the training images) tracked the true error at only 0.57-0.86. Faces 50-99 are darker than faces
0-49: the negative of the test drawings was 0.037 darker than the true drawings of the test photos,
as far as the epochs drift, and the true ranking followed that gap, which no unpaired measure
sees: a known answer the data did not determine. A dataset of hundreds of faces a side has no such
gap; dealt alternately by brightness, 50 a side have 0.003 (the ceiling is now 0.97-1.00).

Usage: python benchmarks/evaluate_known_answer.py [--work /tmp/p2d_known_answer] [--tasks a,b]
       [--phase all|train|evaluate] [--threads 1] [--every 1]
Runs are cached in --work: a second call re-trains nothing and re-evaluates only changed epochs
(re-scoring the 13 cached runs with a changed rule: ~1-2 min). A cached run trained with another
recipe than its task's, or a task folder made with another deal of the faces, is refused (delete
it to make it again). This session's runs: /work/data/t15/ka2 (dealt by brightness) and
/work/data/t15/ka (the split before). The lines tasks also did not learn as lines32 with 32
filters and 4 blocks, nor with cycle 1 at lr 0.0005 (14 epochs each, all worse than gray).

Earlier sessions' notes follow, kept for their reasons; their figures are of the split before.

Tasks changed in issue 15's third session, because a task the model never learns tests nothing
about which good epoch to keep: negative48-converge trains without identity loss, at lr 0.001,
for 28 epochs (every 2nd saved): at identity 5, lr 0.0004 and 14 epochs every epoch was worse
than a constant gray image (tones kept, correlation -0.47); now every epoch beats it (0.056-0.086
vs 0.116, correlation 0.86-0.94). The lines tasks were tried and left as they were: lines32 for
42 epochs at lr 0.001 stayed worse than gray (0.189-0.220 vs 0.158, correlation -0.07..+0.01;
616 s of training), and with lines blurred twice as wide it showed no sign of learning after 6
epochs (0.134-0.140 vs 0.111), so it was stopped for time; they remain tasks the model does not
learn, reported with `learned` False. Every saved epoch is now evaluated (14 per task), not every
2nd: 7 points let one swapped pair move Spearman by ~0.07 and hid the drift epochs (5, 7, 9) of
negative32, where the rule scored 0.857 on even epochs and 0.684 on all.

Measured on a shared 2-core CPU (busy: load 8-11 from other jobs), every saved epoch, 30 test
photos and 30 test drawings; training 82-888 s a task (`train s`), evaluation 35-100 s an epoch
(dlib dominates). Cached runs: /work/data/t15/ka (the second session's: /work/data/s15/ka).

    task                      Spearman  sep.  ceiling  suggested  tie set              true best  regret  learned
    sketch32-converge            0.837  0.86     0.99         14  7-14                        13   1.007  yes
    sketch48-drift               0.495  0.86     0.98          9  7-12,14                     11   1.152  yes
    negative32-drift             0.701  0.89     0.98         12  6,8,10-14                   13   1.049  yes
    negative48-converge          0.077 -0.30     0.96         22  6-28 (even)                 12   1.133  yes
    held out:
    lines40-drift               -0.547 -0.62     0.99         14  11,14                        2   1.327  no
    lines32-converge            -0.675 -0.82     0.99         12  7-14                         1   1.212  no
    sketch40-drift               0.103 -0.43     0.99         14  11,14                       13   1.090  yes
    negative40-drift             0.235  0.10     0.95         12  8-14                         5   1.099  yes

The rule as changed in this session (decided on the four developed-on tasks, then run once on the
held-out ones): gates hold an epoch against the edge of the best epoch's interval (the best value
is the luckiest; sketch32's epochs 12-14 were excluded by a face-found share of 0.42 vs a lucky
0.71 on 24 faces); the score weighs "looks like a drawing" (4 measures) and "keeps the photo"
(drawing cycle, identity) half each; a brightness/contrast gap counts only beyond its noise; the
suggestion is the lowest-scoring tied, unflagged epoch with a tied neighbour. Against the
previous rule on the same every-epoch data, developed-on: Spearman 0.79 -> 0.84, 0.31 -> 0.50,
0.68 -> 0.70, -0.03 -> 0.08; regret 1.019 -> 1.007, 1.152 -> 1.152, 1.344 -> 1.049, 1.109 ->
1.133. Held-out: Spearman -0.59 -> -0.55, -0.75 -> -0.68, 0.07 -> 0.10, 0.17 -> 0.24; regret
1.327 -> 1.327, 1.176 -> 1.212, 1.090 -> 1.090, 1.107 -> 1.099.

What it says. (1) The true ranking is not test-photo noise (ceiling 0.95-0.99), so the target
stands. (2) Both targets hold on 1 of 8 tasks (sketch32); regret <= 1.10 on 4 of the 6 that
learned (sketch32, negative32, sketch40, negative40; sketch48 1.152 and negative48 1.133 miss).
(3) No measure orders epochs of a model that has learned: the drawing cycle tracks the true error
best (0.90, 0.67, 0.79, 0.23 developed-on), the realism measures settle within their noise after
a few epochs. (4) On the negative tasks the true error follows the brightness of the outputs
(darker epochs are the worst: negative48's 10, negative32's 5, 7, 14), but the measures compare
with the real test drawings, other people's faces, whose mean is 0.037 below the true drawings
of the test photos (0.004 for the sketch tasks): with 15 faces a side the unpaired reference
itself is off by as much as the drift, so the brightness gap rewards the darker epochs. A larger
test split narrows that gap as 1/sqrt(n). (5) `p2d evaluate`'s "no epoch is good" warning fires
on none of the 8 tasks: on the lines tasks the outputs became drawing-like (realism fell beyond
the noise) without being drawings of the photo; the warning catches training that changes
nothing, not a wrong mapping, which needs paired data to see.
"""

from __future__ import annotations

import argparse
import functools
import time
from dataclasses import dataclass
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


TASKS = (
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
    Task("negative36-converge", "negative", 36, False, 28, held_out=True, save_every=2, lr=0.001, identity=0.0),
    Task("sketch52-drift", "sketch", 52, True, 14, held_out=True),
    # Added in the seventh session after the faces were dealt by brightness, before they were run,
    # to test a change of the rule chosen on the 13 above: sizes not used before, both filters the
    # models learn, both kinds of training.
    Task("sketch56-converge", "sketch", 56, False, 14, held_out=True),
    Task("negative52-drift", "negative", 52, True, 14, held_out=True),
    Task("negative56-converge", "negative", 56, False, 28, held_out=True, save_every=2, lr=0.001, identity=0.0),
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
    Task("negative28-converge", "negative", 28, False, 28, held_out=True, save_every=2, lr=0.001, identity=0.0),
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
seed = 0
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
    from p2d.train.loop import train

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
    train(manifest, out=run, device="cpu", resume=(run / "checkpoints" / "latest.pt").is_file())
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
                drawn: dict[int, list] | None = None) -> tuple[dict[int, np.ndarray], dict[int, float], float]:
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


def data_answer_errors(manifest: Path, filter_name: str, size: int, drawn: dict[int, list]) -> dict[int, float] | None:
    """For a pointwise filter (the negative), the answer the training data itself gives: the
    decreasing histogram match of the train photos' pixels onto the train drawings' (the best
    pointwise tone map a model can learn from unpaired images), applied to the test photos; per
    epoch of `drawn` (its drawings of the test photos, as `true_errors` made them) the mean L1 to it. Its Spearman with the true error is
    how far any measure that sees only unpaired images can rank the epochs: where the drawings
    are other faces than the photos, their pixels are not the filter of the photos' pixels, and
    the epochs' true ranking partly follows that difference, which no such measure sees. None
    for filters that are not a tone map of the pixel (sketch, lines)."""
    from p2d.evaluate import load_test_image
    from p2d.manifest import manifest_images

    if filter_name != "negative":
        return None
    load = lambda domain, split: np.array(  # noqa: E731
        [load_test_image(p, 1, size) for p in manifest_images(manifest, domain, split)], np.float64)
    train_photos, train_drawings, photos = load("photo", "train"), load("drawing", "train"), load("photo", "test")
    below = np.searchsorted(np.sort(train_photos.ravel()), photos.ravel(), side="right") / train_photos.size
    answer = np.quantile(train_drawings.ravel(), np.clip(1.0 - below, 0, 1)).reshape(photos.shape)
    return {epoch: float(np.abs(np.array(fakes, np.float64) - answer).mean() / 255.0) for epoch, fakes in drawn.items()}


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


# evaluate.csv columns whose Spearman with the true error is printed (lower = better for each,
# the gaps by their size); the score's terms first.
TRACKED = ("cross_cycle_drawing", "identity_drawing", "agreement_drawing", "cycle_l1_drawing", "kid_tone_drawing", "kid_drawing",
           "brightness_gap_drawing", "contrast_gap_drawing", "cycle_l1_photo", "identity_cycle", "kid_photo",
           "kid_tone_photo", "landmark_nme")
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
    truth_test = {e: float(v[:n_test].mean()) for e, v in per_image.items()}  # the truth before the eighth session
    noise, noise_test = true_error_noise(per_image), true_error_noise({e: v[:n_test] for e, v in per_image.items()})
    answer = data_answer_errors(manifest, task.filter, task.size, drawn)
    score = result.why.set_index("epoch")["score"]

    def rho(among: list[int]) -> float:
        s = score.loc[among].to_numpy(float)
        return spearmanr(s, [truth[e] for e in among]).statistic if np.isfinite(s).all() and len(among) > 2 else float("nan")

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
        "unpaired ceiling": (spearmanr([answer[e] for e in epochs], err).statistic if answer else float("nan")),
        "spearman sep.": rho(sep), "sep.": len(sep),
        "suggested": pick, "ties": ",".join(map(str, result.tie_set)), "true best": best_true,
        "regret": truth[pick] / truth[best_true] if pick is not None else float("nan"),
        "before: spearman": spearmanr(s_before, err).statistic if np.isfinite(s_before).all() else float("nan"),
        "before: regret": truth[before] / truth[best_true] if before is not None else float("nan"),
        "err best": truth[best_true], "gray": baseline, "learned": truth[best_true] < baseline,
        "corr": corr[best_true],
        "warned": "not_learned" in result.why.attrs,  # `p2d evaluate` says no epoch is good
        "flags": "; ".join(f"{e}: {f}" for e, f in result.drift_flags.items()),
        "train s": round(sum(float(r["seconds"]) for r in read_losses(run))),
        "eval s": round(time.perf_counter() - start),
        "true errors": " ".join(f"{e}:{truth[e]:.4f} [{noise['interval'][e][0]:.4f}, {noise['interval'][e][1]:.4f}]"
                                for e in epochs),
        "separable epochs": ",".join(map(str, sep)),
        "measures": measures,
    }


def print_table(rows: list[dict]) -> None:
    """The per-task table (developed-on tasks, then held-out ones apart), true errors and flags."""
    pd.set_option("display.width", 200)
    table = pd.DataFrame(rows)
    for held, title in ((False, "tasks the rule was developed on"), (True, "held-out tasks (not used to develop the rule)")):
        part = table[table["held out"] == held]
        if len(part):
            print(f"\n{title}:\n" + part.drop(columns=["true errors", "flags", "held out", "separable epochs", "measures"])
                  .to_string(index=False, float_format="%.3f"))
    print("\nSpearman of each measure with the true error (score terms first):\n"
          + pd.DataFrame({r["task"]: r["measures"] for r in rows}).to_string(float_format="%.2f"))
    for r in rows:
        learned = "" if r["err best"] < r["gray"] else "  NO epoch beats the constant gray image: the model never learned the filter"
        print(f"\n{r['task']}: true error per epoch [95% interval over test photos]\n  {r['true errors']}"
              f"\n  separable chain (best first, each beyond the noise of the next): {r['separable epochs']}"
              f"\n  constant gray image: {r['gray']:.4f}{learned}"
              f"\n  correlation of output and true drawing at the true best: {r['corr']:.2f}\n  drift flags: {r['flags'] or 'none'}")
    for truth, prefix in (("the true error on 130 photos", ""), ("the 30 test photos alone", "30 photos: ")):
        ok = (table[prefix + "regret"] <= 1.10) & (table[prefix + "spearman"] >= 0.8)
        for held, name in ((False, "developed-on"), (True, "held-out")):
            part, learned = ok[table["held out"] == held], table["learned"][table["held out"] == held]
            print(f"{truth}: targets (regret <= 1.10 and Spearman >= 0.8) met on {int(part.sum())} of {len(part)} "
                  f"{name} tasks; on {int(part[learned].sum())} of {int(learned.sum())} where some epoch beats a "
                  f"constant gray image")


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
