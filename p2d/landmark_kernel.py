"""dlib's 68-point shape-predictor cascade compiled by numba: p2d.shape_predictor's batched
predictor without numpy's per-operation cost. Imported only when numba is installed; the numpy
version in p2d.shape_predictor gives the same points and is what runs without it.

The arithmetic is dlib's, operation for operation (see p2d.shape_predictor): the similarity from
the mean shape in double, cast to float; feature positions in float, mapped into the box in double
and floored after + 0.5; gray values (r + g + b) // 3; each tree's leaf added to the shape in float,
one tree after another. numba compiles without fast-math, so nothing is reordered or fused.

Faces are walked tree by tree across the whole batch (not face by face): the 16 leaves of one tree
(8.7 KB) are then read from memory once for all faces of the batch, where one face alone pays a
cache miss for every one of its 7,500 leaves. The compiled code is cached on disk (numba's cache,
beside this file or in the user's cache folder), so only the first use on a machine compiles it
(a few seconds); later processes load it in well under a second.
"""

from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def predict_batch(flat, starts, dims, boxes, initial, mean_centred, mean_spread, anchors, dx, dy,
                  idx1, idx2, thresh, leaves, depth):
    """The 68 points (n, 68, 2) int64 of n faces.

    flat: every image's uint8 pixels, one after another; starts (n,): where each begins; dims (n, 3):
    rows, columns, channels (1 or 3) of each; boxes (n, 4): dlib rectangles (left, top, right,
    bottom). The rest is the model as p2d.shape_predictor.parse_dat reads it (deltas split in dx,
    dy; mean_centred and mean_spread: the mean shape about its centroid, and its mean squared norm)."""
    cascades, trees, splits = idx1.shape
    n = boxes.shape[0]
    shapes = np.empty((n, initial.shape[0]), np.float32)
    for f in range(n):
        shapes[f] = initial
    values = np.empty((n, dx.shape[1]), np.float32)
    for c in range(cascades):
        for f in range(n):
            _read_features(values[f], shapes[f], flat, starts[f], dims[f], boxes[f], mean_centred,
                           mean_spread, anchors[c], dx[c], dy[c])
        for t in range(trees):
            first_leaf = t * (splits + 1) - splits
            for f in range(n):
                node = 0
                for _ in range(depth):
                    if values[f, idx1[c, t, node]] - values[f, idx2[c, t, node]] > thresh[c, t, node]:
                        node = 2 * node + 1
                    else:
                        node = 2 * node + 2
                _add(shapes[f], leaves[c, first_leaf + node])
    out = np.empty((n, initial.shape[0] // 2, 2), np.int64)
    for f in range(n):
        for p in range(out.shape[1]):
            out[f, p, 0] = _to_pixel(shapes[f, 2 * p], boxes[f, 0], boxes[f, 2])
            out[f, p, 1] = _to_pixel(shapes[f, 2 * p + 1], boxes[f, 1], boxes[f, 3])
    return out


@numba.njit(cache=True, nogil=True, inline="always")
def _add(shape, leaf):
    for j in range(shape.shape[0]):
        shape[j] += leaf[j]


@numba.njit(cache=True, nogil=True, inline="always")
def _to_pixel(unit, low, high):
    """A box coordinate (float) as a whole pixel, in double: dlib's rounding half up."""
    return int(math.floor(float(unit) * float(high - low) + (low + 0.5)))


@numba.njit(cache=True, nogil=True)
def _read_features(values, shape, flat, start, dim, box, mean_centred, mean_spread, anchors, dx, dy):
    """One face's feature pixels of one cascade, as float gray values (0 outside its image): each
    is an offset from an anchor point, carried by the similarity that maps the mean shape onto the
    current one."""
    points = shape.shape[0] // 2
    mx = 0.0
    my = 0.0
    for p in range(points):
        mx += float(shape[2 * p])
        my += float(shape[2 * p + 1])
    mx /= points
    my /= points
    c00 = 0.0
    c01 = 0.0
    c10 = 0.0
    c11 = 0.0
    for p in range(points):
        x = float(shape[2 * p]) - mx
        y = float(shape[2 * p + 1]) - my
        c00 += x * mean_centred[p, 0]
        c01 += x * mean_centred[p, 1]
        c10 += y * mean_centred[p, 0]
        c11 += y * mean_centred[p, 1]
    a = np.float32((c00 / points + c11 / points) / mean_spread)
    b = np.float32((c10 / points - c01 / points) / mean_spread)
    minus_b = -b
    rows, cols, channels = dim[0], dim[1], dim[2]
    for k in range(values.shape[0]):
        anchor = anchors[k]
        px = (a * dx[k] + minus_b * dy[k]) + shape[2 * anchor]
        py = (b * dx[k] + a * dy[k]) + shape[2 * anchor + 1]
        x = _to_pixel(px, box[0], box[2])
        y = _to_pixel(py, box[1], box[3])
        if 0 <= x < cols and 0 <= y < rows:
            at = start + (y * cols + x) * channels
            if channels == 3:
                values[k] = np.float32(
                    (np.int32(flat[at]) + np.int32(flat[at + 1]) + np.int32(flat[at + 2])) // 3)
            else:
                values[k] = np.float32(flat[at])
        else:
            values[k] = np.float32(0)
