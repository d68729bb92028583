"""Tests for p2d.sheets: contact sheets and box drawing."""

from __future__ import annotations

import numpy as np
import pytest

from p2d.sheets import contact_sheet, draw_box


@pytest.mark.parametrize("n,cols,expect_rows", [(1, 6, 1), (6, 6, 1), (7, 6, 2), (13, 4, 4)])
def test_contact_sheet_grid_size(n, cols, expect_rows):
    images = [np.full((20 + i, 30, 3), i * 10, np.uint8) for i in range(n)]
    sheet = contact_sheet(images, [f"img{i}\nline2" for i in range(n)], cell=64, cols=cols)
    used_cols = min(cols, n)
    assert sheet.dtype == np.uint8 and sheet.shape[2] == 3
    assert sheet.shape[1] == used_cols * 64
    assert sheet.shape[0] == expect_rows * (64 + 2 * 12 + 4)


def test_contact_sheet_draws_images_and_labels():
    black = np.zeros((50, 50), np.uint8)  # gray input is accepted
    sheet = contact_sheet([black], ["label"], cell=64, cols=1)
    assert sheet[32, 32].tolist() == [0, 0, 0]  # the image is in the cell
    assert (sheet[66:76] < 128).any()  # some dark label text under it


def test_contact_sheet_rejects_mismatched_labels():
    with pytest.raises(ValueError):
        contact_sheet([np.zeros((8, 8, 3), np.uint8)], ["a", "b"])


def test_draw_box_outline_only():
    img = np.full((100, 100, 3), 255, np.uint8)
    out = draw_box(img, (10, 20, 50, 40), (255, 0, 0))
    assert out[20, 30].tolist() == [255, 0, 0]  # top edge
    assert out[40, 35].tolist() == [255, 255, 255]  # inside untouched
    assert img[20, 30].tolist() == [255, 255, 255]  # input not modified
