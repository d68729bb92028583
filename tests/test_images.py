"""Tests for p2d.images: every format, every bad file, atomic writes, output-folder safety."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from PIL import Image

from conftest import DATA
from p2d.errors import P2DError
from p2d.images import (
    BadImage,
    atomic_path,
    check_output_dir,
    left_out_notes,
    list_images,
    output_stems,
    read_image,
    try_read_image,
    write_image,
)

PHOTO = DATA / "photos" / "astronaut.png"


def _gradient(h: int = 40, w: int = 30) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 8 % 256, y * 6 % 256, (x + y) * 3 % 256], axis=-1).astype(np.uint8)


@pytest.mark.parametrize(
    "suffix,save_kwargs",
    [(".png", {}), (".jpg", {"quality": 95}), (".bmp", {}), (".webp", {"lossless": True}), (".tif", {})],
)
def test_reads_common_formats(tmp_path, suffix, save_kwargs):
    rgb = _gradient()
    path = tmp_path / f"img{suffix}"
    Image.fromarray(rgb).save(path, **save_kwargs)
    out = read_image(path)
    assert out.shape == (40, 30, 3) and out.dtype == np.uint8
    tolerance = 12 if suffix == ".jpg" else 0
    assert np.abs(out.astype(int) - rgb.astype(int)).mean() <= tolerance


def test_gray_and_rgb_modes(tmp_path):
    path = tmp_path / "gray.png"
    Image.fromarray(np.full((10, 12), 77, np.uint8), "L").save(path)
    assert read_image(path).shape == (10, 12, 3)
    assert read_image(path, mode="L").shape == (10, 12)
    assert read_image(PHOTO, mode="L").ndim == 2


def test_16bit_png_is_scaled_not_clipped(tmp_path):
    path = tmp_path / "deep.png"
    values = np.array([[0, 32768, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(path)
    out = read_image(path, mode="L")
    assert out.tolist() == [[0, 128, 255]]


def test_rgba_composited_on_background(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:2, :, 3] = 255  # top half opaque red, bottom half fully transparent
    path = tmp_path / "alpha.png"
    Image.fromarray(rgba, "RGBA").save(path)
    white = read_image(path)
    assert white[0, 0].tolist() == [200, 0, 0]
    assert white[3, 0].tolist() == [255, 255, 255]
    green = read_image(path, background=(0, 255, 0))
    assert green[3, 0].tolist() == [0, 255, 0]


def test_palette_cmyk_and_gray_alpha(tmp_path):
    Image.fromarray(_gradient()).convert("P").save(tmp_path / "p.png")
    Image.fromarray(_gradient()).convert("CMYK").save(tmp_path / "c.jpg")
    Image.fromarray(_gradient()).convert("LA").save(tmp_path / "la.png")
    for name in ("p.png", "c.jpg", "la.png"):
        assert read_image(tmp_path / name).shape == (40, 30, 3)


def test_exif_orientation_applied(tmp_path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    Image.fromarray(_gradient(40, 30)).save(path, exif=exif, quality=95)
    assert read_image(path).shape == (30, 40, 3)


@pytest.mark.parametrize(
    "name,content,reason",
    [
        ("empty.jpg", b"", "unreadable:empty_file"),
        ("text.jpg", b"this is not an image at all\n" * 4, "unreadable:not_an_image"),
    ],
)
def test_bad_files_give_reasons(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    image, why = try_read_image(path)
    assert image is None and why == reason
    with pytest.raises(BadImage):
        read_image(path)


def test_truncated_file_gives_reason(tmp_path):
    whole = tmp_path / "whole.jpg"
    Image.fromarray(_gradient(200, 200)).save(whole, quality=90)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    image, why = try_read_image(cut)
    assert image is None and why.startswith("unreadable:")


def test_missing_file_and_pixel_limit(tmp_path):
    assert try_read_image(tmp_path / "nope.png") == (None, "unreadable:missing")
    image, why = try_read_image(PHOTO, max_pixels=1000)
    assert image is None and why.startswith("unreadable:too_large")


def test_source_never_modified():
    before = hashlib.sha256(PHOTO.read_bytes()).hexdigest()
    read_image(PHOTO, mode="L")
    assert hashlib.sha256(PHOTO.read_bytes()).hexdigest() == before


def test_write_roundtrip_and_no_temp_left(tmp_path):
    rgb = _gradient()
    write_image(tmp_path / "sub" / "out.png", rgb)
    assert np.array_equal(read_image(tmp_path / "sub" / "out.png"), rgb)
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["out.png"]


def test_atomic_path_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "keep.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_list_images_recursive_sorted(tmp_path):
    (tmp_path / "b").mkdir()
    for rel in ("b/z.PNG", "a.jpg", "notes.txt", "b/y.webp"):
        (tmp_path / rel).write_bytes(b"x")
    assert [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)] == [
        "a.jpg", "b/y.webp", "b/z.PNG"]
    assert [p.name for p in list_images(tmp_path, recursive=False)] == ["a.jpg"]
    with pytest.raises(P2DError, match="does not exist"):
        list_images(tmp_path / "missing")


def test_a_broken_link_is_an_image_row_not_lost(tmp_path):
    """Data sets are often folders of symbolic links; one whose target is gone must become a row with
    a reason, like any bad file, not vanish from the run (a link to a folder is not followed twice)."""
    (tmp_path / "ok.png").write_bytes(b"x")
    (tmp_path / "gone.png").symlink_to(tmp_path / "nowhere.png")
    (tmp_path / "gone.txt").symlink_to(tmp_path / "nowhere.txt")
    assert [p.name for p in list_images(tmp_path)] == ["gone.png", "ok.png"]
    assert try_read_image(tmp_path / "gone.png") == (None, "unreadable:broken_link")
    assert try_read_image(tmp_path / "nowhere.png") == (None, "unreadable:missing")
    assert left_out_notes(tmp_path)[0].startswith("1 file(s)")  # gone.txt: named, not read


def test_a_gif_is_read_as_its_first_frame(tmp_path):
    """Clip art often comes as GIF: palette, a transparent index, several frames."""
    rgb = _gradient()
    frames = [Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE),
              Image.fromarray(255 - rgb).convert("P")]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    assert [p.name for p in list_images(tmp_path)] == ["anim.gif"]
    out = read_image(tmp_path / "anim.gif")
    assert out.shape == (40, 30, 3)
    # the first frame, through a 256-colour palette
    assert np.abs(out.astype(int) - rgb.astype(int)).mean() < 12


def test_left_out_files_are_named_by_extension(tmp_path):
    (tmp_path / "sub").mkdir()
    for rel in ("a.png", "b.svg", "sub/c.svg", "sub/d.heic", "README", ".DS_Store", "sub/.hidden.txt"):
        (tmp_path / rel).write_bytes(b"x")
    [note] = left_out_notes(tmp_path)
    assert note.startswith(f"4 file(s) under {tmp_path} left out")
    assert "(2 .svg, 1 (no extension), 1 .heic)" in note and "gif" in note
    assert left_out_notes(tmp_path, recursive=False)[0].startswith("2 file(s)")
    (tmp_path / "only").mkdir()
    (tmp_path / "only" / "x.jpg").write_bytes(b"x")
    assert left_out_notes(tmp_path / "only") == []
    assert left_out_notes(tmp_path / "only" / "x.jpg") == []  # an input that is one file


def test_output_inside_input_is_refused(tmp_path):
    with pytest.raises(P2DError, match="inside the input folder"):
        check_output_dir(tmp_path, tmp_path / "out")
    with pytest.raises(P2DError):
        check_output_dir(tmp_path, tmp_path)
    check_output_dir(tmp_path / "raw", tmp_path / "out")  # siblings are fine


def test_input_inside_output_is_refused(tmp_path):
    with pytest.raises(P2DError, match="inside the output folder"):
        check_output_dir(tmp_path / "data" / "images", tmp_path / "data")


def test_atomic_writes_get_the_usual_file_mode(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        write_image(tmp_path / "x.png", _gradient())
    finally:
        os.umask(old)
    assert (tmp_path / "x.png").stat().st_mode & 0o777 == 0o644


def test_output_stems_keep_colliding_names_apart(tmp_path):
    files = [tmp_path / "a.jpg", tmp_path / "a.png", tmp_path / "b.png", tmp_path / "sub" / "c.JPG",
             tmp_path / "sub" / "c.jpg"]
    assert output_stems(files, tmp_path) == ["a_jpg", "a_png", "b", "sub/c_JPG", "sub/c_jpg"]


@pytest.mark.parametrize("shape,reason", [((1, 1), "too_small:1x1"), ((500, 1), "too_small:1x500"),
                                          ((3, 5000), "too_small:5000x3"), ((16, 16), ""), ((16, 900), "")])
def test_too_small_names_the_size(shape, reason):
    from p2d.images import too_small

    assert too_small(np.zeros(shape + (3,), np.uint8)) == reason


def test_error_reason_keeps_the_last_line():
    from p2d.images import error_reason

    exc = RuntimeError(
        "\nError detected at line 2957.\nFailing expression was x.\nFilter windows must fit.\n")
    assert error_reason(exc) == "error:RuntimeError: Filter windows must fit."
    assert error_reason(ValueError("")) == "error:ValueError:"
    assert len(error_reason(ValueError("x" * 500))) == 120
