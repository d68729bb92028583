"""The drawing-face CNN p2d trains and ships: a small network that marks where drawn faces are.

The fHOG filters (`p2d.drawings.fhog`) and the photo detectors miss drawn faces whose parts are
only suggested (small figures, three-quarter heads, caricatures): a fixed window of gradients is
too narrow a description. This network is fully convolutional and tiny (five stride-2 stages,
one top-down merge, ~0.7 M weights, ~20 ms per 320 px drawing and its mirror on one core): for every cell of a
grid at 1/8 of the input it predicts how likely a face centre lies there and how large that face
is, as CenterNet does ("Objects as Points", Zhou et al. 2019): a face is a peak of the centre map,
its box the predicted size around it, and no anchor boxes or non-maximum suppression over boxes
are needed (a peak must be the maximum of its 3x3 neighbourhood). There is one centre map per
view (`VIEWS`: frontal, looking left, looking right; three-quarter views count as left or right,
as crop-drawings' `facing` column says them): a face's score is its best view's, and that view is
which way it looks.

Every drawing is read gray, scaled so its longer side is `input_side_px` and padded white to a
multiple of 32. The network sees the drawing and its mirror; every map is the mean of the two (the
mirror's maps mirrored back, its left and right views swapped), so a drawing and its mirror image
get mirrored faces that look the mirrored way.

The weights (`p2d/drawings/weights/drawing_face_cnn.npz`, float16, ~1.3 MB) were trained from scratch by
`python -m p2d.drawings.build_cnn` on the label CSV's train split (`drawing_faces_labels.csv`:
public-domain clip art and the face cards of free card decks, the face-free drawings included as
negatives), with random scale, placement, small rotations, mirroring and tone changes. Nothing
is downloaded: there are no pretrained weights in it.
"""

from __future__ import annotations

import math
from functools import cached_property
from pathlib import Path

import numpy as np

from p2d.drawings import WEIGHTS_DIR
from p2d.errors import ModelFileMissing
from p2d.images import MIN_SIDE_PX, too_small

MODEL_FILE = WEIGHTS_DIR / "drawing_face_cnn.npz"
STRIDE = 8  # input pixels per cell of the centre map
INPUT_SIDE_PX = 320  # the longer side a drawing is scaled to at detection
TRAIN_SIDE_PX = 256  # the square crops the network is trained on
WIDTHS = (16, 32, 64, 96, 128)  # channels of the five stages (1/2 .. 1/32)
PAD_MULTIPLE = 32  # the coarsest stage's stride: inputs are padded to a multiple of it
INPUT_MEAN, INPUT_STD = 0.5, 0.25  # gray in [0, 1] -> network input
MIN_FACE_PX = 10  # training: a face smaller than this (in input pixels) is not a target
VIEWS = ("frontal", "left", "right")  # the centre maps, in order; "left": the nose points to the image left
MIRRORED_VIEW = {"frontal": "frontal", "left": "right", "right": "left"}
# the head's outputs: a centre logit per view, x and y offset logits, log width and height
MAPS = len(VIEWS) + 4


# ----------------------------------------------------------------------------- pure numpy parts


def to_input(gray: np.ndarray, side_px: int = INPUT_SIDE_PX) -> tuple[np.ndarray, float]:
    """(the network's input HxW float32, the scale from the image to it): the gray uint8 image
    scaled so its longer side is `side_px`, padded white at the right and bottom to a multiple of
    `PAD_MULTIPLE`."""
    import cv2

    s = side_px / max(gray.shape[:2])
    size = (max(1, round(gray.shape[1] * s)), max(1, round(gray.shape[0] * s)))
    scaled = cv2.resize(gray, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    h, w = (-(-n // PAD_MULTIPLE) * PAD_MULTIPLE for n in scaled.shape[:2])
    canvas = np.full((h, w), 255, np.uint8)
    canvas[: scaled.shape[0], : scaled.shape[1]] = scaled
    return normalise(canvas), s


def normalise(gray: np.ndarray) -> np.ndarray:
    """uint8 gray (or float gray in [0, 1]) -> the network's input scale, float32."""
    g = gray.astype(np.float32) / 255 if gray.dtype == np.uint8 else gray.astype(np.float32)
    return (g - INPUT_MEAN) / INPUT_STD


def centre_targets(faces: list[tuple[float, float, float, float, str]], height: int, width: int,
                   min_face_px: float = MIN_FACE_PX) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training targets for (x, y, w, h, view) faces on a `height` x `width` input: the centre
    maps (len(VIEWS), h/8, w/8), in the face's view's map 1 at its centre cell and a Gaussian
    around it (its width grows with the face) that lowers the penalty near a centre; the
    regression targets (4, h/8, w/8): the centre's offset within its cell (0..1, x and y) and
    log(face width, height in cells); and the mask (h/8, w/8) of the cells those hold for. Faces
    whose centre lies outside the input, or smaller than `min_face_px`, are not targets."""
    gh, gw = height // STRIDE, width // STRIDE
    heat = np.zeros((len(VIEWS), gh, gw), np.float32)
    reg = np.zeros((4, gh, gw), np.float32)
    mask = np.zeros((gh, gw), np.float32)
    ys, xs = np.mgrid[0:gh, 0:gw]
    for x, y, w, h, view in faces:
        cx, cy = (x + w / 2) / STRIDE, (y + h / 2) / STRIDE
        ix, iy = math.floor(cx), math.floor(cy)
        if not (0 <= ix < gw and 0 <= iy < gh) or min(w, h) < min_face_px:
            continue
        k = VIEWS.index(view)
        sigma = max(0.6, min(w, h) / STRIDE / 5)
        heat[k] = np.maximum(heat[k], np.exp(-((xs + 0.5 - cx) ** 2 + (ys + 0.5 - cy) ** 2) / (2 * sigma**2)))
        heat[k, iy, ix] = 1.0
        reg[:, iy, ix] = (cx - ix, cy - iy, math.log(w / STRIDE), math.log(h / STRIDE))
        mask[iy, ix] = 1.0
    return heat, reg, mask


def centre_peaks(heat: np.ndarray, min_score: float, max_faces: int) -> list[tuple[int, int, float]]:
    """(row, column, score) of the cells of a centre map that are the maximum of their 3x3
    neighbourhood and score at least `min_score`, best first, at most `max_faces`."""
    padded = np.pad(heat, 1, constant_values=-np.inf)
    neighbourhood = np.max([padded[dy:dy + heat.shape[0], dx:dx + heat.shape[1]]
                            for dy in range(3) for dx in range(3)], axis=0)
    rows, cols = np.nonzero((heat >= neighbourhood) & (heat >= min_score))
    order = np.argsort(-heat[rows, cols], kind="stable")[:max_faces]
    return [(int(rows[i]), int(cols[i]), float(heat[rows[i], cols[i]])) for i in order]


def boxes_from_peaks(peaks: list[tuple[int, int, float]], offset: np.ndarray, log_size: np.ndarray,
                     scale: float) -> list[tuple[float, float, float, float, float]]:
    """(x, y, w, h, score) in image pixels from centre-map peaks, the predicted offsets (2, h, w:
    0..1 within a cell) and log sizes (2, h, w: in cells); `scale` is image -> input."""
    out = []
    for r, c, score in peaks:
        cx, cy = (c + offset[0, r, c]) * STRIDE, (r + offset[1, r, c]) * STRIDE
        w, h = math.exp(log_size[0, r, c]) * STRIDE, math.exp(log_size[1, r, c]) * STRIDE
        out.append((float((cx - w / 2) / scale), float((cy - h / 2) / scale), float(w / scale),
                    float(h / scale), score))
    return out


def merge_mirrored(plain: np.ndarray, mirrored: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(centre maps per view in 0..1, the 4 regression maps) from the network's raw outputs
    (MAPS, h, w) on an input and on its mirror: the mirror's maps are mirrored back, its left
    and right views swapped and its x offsets o turned into 1 - o (a centre at o in a cell of the
    mirror lies at 1 - o in the mirrored-back cell); then the two are averaged."""
    back = mirrored[:, :, ::-1]
    n = len(VIEWS)
    swap = [VIEWS.index(MIRRORED_VIEW[v]) for v in VIEWS]
    heat = (_sigmoid(plain[:n]) + _sigmoid(back[:n])[swap]) / 2
    offset_x = (_sigmoid(plain[n]) + 1 - _sigmoid(back[n])) / 2
    offset_y = (_sigmoid(plain[n + 1]) + _sigmoid(back[n + 1])) / 2
    log_size = (plain[n + 2:] + back[n + 2:]) / 2
    return heat, np.stack([offset_x, offset_y, *log_size])


# ----------------------------------------------------------------------------- the network (torch)


def build_network(widths: tuple[int, ...] = WIDTHS):
    """The network: five stride-2 stages of 3x3 convolutions (BatchNorm, ReLU), the 1/16 and 1/32
    stages merged top-down into the 1/8 one, and a 1x1 head of MAPS maps: a centre logit per view,
    x and y offset logits, log width and log height."""
    import torch.nn as nn
    import torch.nn.functional as F

    def conv(i: int, o: int, stride: int = 1) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(i, o, 3, stride, 1, bias=False), nn.BatchNorm2d(o),
                             nn.ReLU(inplace=True))

    class CentreNet(nn.Module):
        def __init__(self):
            super().__init__()
            a, b, c, d, e = widths
            self.s2 = conv(1, a, 2)
            self.s4 = nn.Sequential(conv(a, b, 2), conv(b, b))
            self.s8 = nn.Sequential(conv(b, c, 2), conv(c, c))
            self.s16 = nn.Sequential(conv(c, d, 2), conv(d, d))
            self.s32 = nn.Sequential(conv(d, e, 2), conv(e, e), conv(e, e))
            self.l16, self.l32 = nn.Conv2d(d, c, 1), nn.Conv2d(e, c, 1)
            self.fuse = conv(c, c)
            self.head = nn.Conv2d(c, MAPS, 1)
            # a face centre is rare: start near p = 0.007
            nn.init.constant_(self.head.bias[: len(VIEWS)], -5.0)

        def forward(self, x):
            x8 = self.s8(self.s4(self.s2(x)))
            x16 = self.s16(x8)
            x32 = self.s32(x16)
            p16 = self.l16(x16) + F.interpolate(self.l32(x32), size=x16.shape[-2:], mode="nearest")
            return self.head(self.fuse(x8 + F.interpolate(p16, size=x8.shape[-2:], mode="nearest")))

    return CentreNet()


def training_loss(out, heat, reg, mask):
    """(total, {part: value}) for a batch: the penalty-reduced focal loss on the centre maps
    (CenterNet's, alpha 2, beta 4, per face), and L1 on offsets and log sizes at face centres."""
    import torch

    n_views = len(VIEWS)
    p = torch.sigmoid(out[:, :n_views]).clamp(1e-4, 1 - 1e-4)
    pos = heat.eq(1).float()
    faces = pos.sum().clamp(min=1)
    focal = -(torch.log(p) * (1 - p) ** 2 * pos
              + torch.log(1 - p) * p**2 * (1 - heat) ** 4 * (1 - pos)).sum() / faces
    m = mask[:, None]
    n = mask.sum().clamp(min=1)
    offset = (torch.abs(torch.sigmoid(out[:, n_views:n_views + 2]) - reg[:, :2]) * m).sum() / n
    size = (torch.abs(out[:, n_views + 2:] - reg[:, 2:]) * m).sum() / n
    total = focal + offset + 0.5 * size
    return total, {"centre": focal.item(), "offset": offset.item(), "size": size.item()}


def save_weights(net, path: Path | str, widths: tuple[int, ...] = WIDTHS, **notes) -> None:
    """The network's weights as float16 arrays in an .npz (no pickle), with its widths and any
    `notes` (plain values, e.g. which training fold a model left out; `load_network` ignores them)."""
    arrays = {k: v.detach().cpu().numpy().astype(np.float16) for k, v in net.state_dict().items()
              if v.dtype.is_floating_point}
    np.savez_compressed(path, widths=np.array(widths), **{f"note_{k}": np.array(v) for k, v in notes.items()},
                        **arrays)


def load_network(path: Path | str = MODEL_FILE):
    """The network from `save_weights`' file, in eval mode."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise ModelFileMissing(
            f"drawing-face CNN weights missing: {path}. They ship with p2d; reinstall it "
            "(`pip install -e .`), or rebuild them with `python -m p2d.drawings.build_cnn` in a checkout "
            "of p2d."
        )
    with np.load(path) as f:
        net = build_network(tuple(int(v) for v in f["widths"]))
        state = net.state_dict()
        for k in state:
            if k in f.files:
                state[k] = torch.from_numpy(f[k].astype(np.float32))
    net.load_state_dict(state)
    return net.eval()


class DrawingFaceCnn:
    """The shipped network, loaded on first use; `detect(image)` -> (x, y, w, h, score, view), best first."""

    def __init__(self, model_file: Path | str = MODEL_FILE, input_side_px: int = INPUT_SIDE_PX,
                 min_side_px: int = MIN_SIDE_PX, threads: int = 1):
        if input_side_px < PAD_MULTIPLE or min_side_px < 1 or threads < 1:
            raise ValueError(f"input_side_px must be >= {PAD_MULTIPLE}, min_side_px >= 1, threads >= 1")
        self.model_file = Path(model_file)
        self.input_side_px = input_side_px
        self.min_side_px = min_side_px
        self.threads = threads

    @cached_property
    def net(self):
        return load_network(self.model_file)

    def centre_maps(self, gray: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """(centre maps per view, len(VIEWS) x h x w in 0..1; the 4 regression maps: x and y offset,
        log width and height; image -> input scale) for a gray uint8 image, the image's and its
        mirror's merged (`merge_mirrored`)."""
        import torch

        x, s = to_input(gray, self.input_side_px)
        batch = torch.from_numpy(np.stack([x, x[:, ::-1].copy()]))[:, None]
        before = torch.get_num_threads()
        torch.set_num_threads(self.threads)  # one core per curation worker; restored for the caller
        try:
            with torch.inference_mode():
                out = self.net(batch).numpy()
        finally:
            torch.set_num_threads(before)
        heat, reg = merge_mirrored(out[0], out[1])
        return heat, reg, s

    def detect(self, image: np.ndarray, min_score: float = 0.1, max_faces: int = 10) -> list[tuple]:
        """Faces in an RGB or gray uint8 image scoring at least `min_score` (the best view's centre
        map at the face's centre), best first, at most `max_faces`, as (x, y, w, h, score, view) in
        its pixels. An image below `min_side_px` on either side gives none."""
        import cv2

        if too_small(image, self.min_side_px):
            return []
        gray = cv2.cvtColor(image[..., :3], cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
        heat, reg, s = self.centre_maps(gray)
        peaks = centre_peaks(heat.max(axis=0), min_score, max_faces)
        views = [VIEWS[int(np.argmax(heat[:, r, c]))] for r, c, _ in peaks]
        return [(*box, view) for box, view in zip(boxes_from_peaks(peaks, reg[:2], reg[2:], s), views)]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))
