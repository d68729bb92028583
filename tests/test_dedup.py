"""Tests for p2d.curate.dedup: indexed near-pair search, grouping, keep rule, planted duplicates, the
command."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import DATA
from p2d.cli import app
from conftest import LFW_COPY_KINDS
from p2d.curate.dedup import (DEFAULT_MIN_SIMILARITY, choose_keepers, confirmed_keepers, find_duplicates,
                              group_labels, hex_to_uint64, near_pairs, thumb_similarity)
from p2d.curate.hashing import output_hashes, phash_hex, thumb_b64, thumbs_from_b64
from p2d.images import list_images, read_image, write_image
from p2d.manifest import new_rows, read_manifest, write_manifest



def brute_pairs(h, m, d):
    out = set()
    for i in range(len(h)):
        for j in range(i + 1, len(h)):
            dist = min(bin(int(h[i]) ^ int(h[j])).count("1"), bin(int(h[i]) ^ int(m[j])).count("1"),
                       bin(int(m[i]) ^ int(h[j])).count("1"))
            if dist <= d:
                out.add((i, j))
    return out


@pytest.mark.parametrize("max_hamming", [0, 3, 8, 11])
def test_near_pairs_equals_brute_force(max_hamming):
    rng = np.random.default_rng(max_hamming)
    n = 300
    h = rng.integers(0, 2**63, n, dtype=np.int64).astype(np.uint64)
    m = rng.integers(0, 2**63, n, dtype=np.int64).astype(np.uint64)
    for k in range(0, 60, 2):  # plant copies at 0..12 bits, some against the mirror hash
        bits = rng.choice(64, size=k % 13, replace=False)
        flip = np.uint64(sum(1 << int(b) for b in bits))
        h[k + 1] = (m[k] if k % 4 else h[k]) ^ flip
    got = {tuple(p) for p in near_pairs(h, m, max_hamming).tolist()}
    assert got == brute_pairs(h, m, max_hamming)


def test_group_labels_and_keepers():
    labels = group_labels(5, np.array([[0, 1], [1, 2]]))
    assert labels[0] == labels[1] == labels[2] and len(set(labels.tolist())) == 3
    keepers = choose_keepers(labels, np.array([10, 50, 50, 1, 1]))
    assert keepers.tolist()[:3] == [1, 1, 1]  # most pixels, then first
    assert keepers[3] == 3 and keepers[4] == 4


def test_popcount_byte_table_matches_builtin():
    from p2d.curate import dedup

    x = np.array([0, 1, 2**64 - 1, 0x8000000000000001, 0xF0F0], dtype=np.uint64)
    expected = [0, 1, 64, 2, 8]
    assert dedup.popcount(x).tolist() == expected
    assert dedup._BYTE_BITS[x.view(np.uint8)].reshape(5, 8).sum(axis=1).tolist() == expected


def test_hex_to_uint64():
    assert hex_to_uint64(["ffffffffffffffff", "0000000000000001"]).tolist() == [2**64 - 1, 1]


def _jpeg(a, q=40):
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=q)
    return np.asarray(Image.open(buf).convert("RGB"))


def _resize(a, size):
    return np.asarray(Image.fromarray(a).resize((size, size), Image.LANCZOS))


def make_manifest(folder: Path, images: dict[str, np.ndarray], domain="drawing", split="train") -> Path:
    rows = []
    for name, img in images.items():
        write_image(folder / name, img)
        rows.append({"path": name, "domain": domain, "source": folder.name, "split": split, "crop": "center",
                     "width": img.shape[1], "height": img.shape[0], "phash": phash_hex(img), "keep": True,
                     "reason": ""})
    write_manifest(new_rows(rows), folder / "manifest.csv")
    return folder / "manifest.csv"


@pytest.fixture()
def planted(tmp_path):
    """Distinct drawings (128 px) in A; in B resized, JPEG, mirrored and 2%-cropped copies of A's,
    in the photo domain and the test split (so the report must flag them)."""
    # boy_astrid_graeber_ is left out: it is a near-identical variant of adult_astrid_graeber_01
    # (same artist, same face, 8 bits apart), i.e. a true near duplicate, not a distinct drawing.
    files = [p for p in list_images(DATA / "drawings") if not p.name.startswith("boy_astrid")][:8]
    originals = [_resize(read_image(p), 128) for p in files]
    a = {f"d{i}.png": img for i, img in enumerate(originals)}
    o = originals
    b = {"resized.png": _resize(_resize(o[0], 64), 128), "jpeg.jpg": _jpeg(o[1]),
         "mirror.png": np.ascontiguousarray(o[2][:, ::-1]), "crop.png": _resize(o[3][3:-3, 3:-3], 128),
         "big.png": _resize(o[4], 256)}
    (tmp_path / "A").mkdir()
    (tmp_path / "B").mkdir()
    return make_manifest(tmp_path / "A", a), make_manifest(tmp_path / "B", b, domain="photo", split="test")


def test_planted_duplicates_found_and_distinct_kept(planted, tmp_path):
    ma, mb = planted
    sheet = tmp_path / "dups.png"
    r = CliRunner().invoke(app, ["dedup", str(ma), str(mb), "--sheet", str(sheet)])
    assert r.exit_code == 0, r.output
    a, b = read_manifest(ma), read_manifest(mb)
    reasons_b = dict(zip(b["path"], b["reason"]))
    assert reasons_b["resized.png"] == "dup_of:../A/d0.png"
    assert reasons_b["jpeg.jpg"] == "dup_of:../A/d1.png"
    assert reasons_b["mirror.png"] == "dup_of:../A/d2.png"
    assert reasons_b["crop.png"] == "dup_of:../A/d3.png"
    # the larger image is kept, the 128 px original is the duplicate
    assert bool(b.loc[b["path"] == "big.png", "keep"].iloc[0])
    assert dict(zip(a["path"], a["reason"]))["d4.png"] == "dup_of:../B/big.png"
    assert a.loc[a["path"] != "d4.png", "keep"].all()  # distinct drawings all kept
    assert "groups across domains" in r.output and "group 1 across domains" in r.output
    assert sheet.is_file() and read_image(sheet).shape[0] > 100
    # re-running gives the same manifests
    before = ma.read_bytes(), mb.read_bytes()
    assert CliRunner().invoke(app, ["dedup", str(ma), str(mb)]).exit_code == 0
    assert (ma.read_bytes(), mb.read_bytes()) == before


def test_lower_threshold_on_rerun_restores_rows(planted):
    ma, mb = planted
    assert CliRunner().invoke(app, ["dedup", str(ma), str(mb)]).exit_code == 0
    assert CliRunner().invoke(app, ["dedup", str(ma), str(mb), "--max-hamming", "0"]).exit_code == 0
    b = read_manifest(mb)
    assert bool(b.loc[b["path"] == "crop.png", "keep"].iloc[0])  # no longer within 0 bits


def test_unreadable_file_recorded(planted):
    ma, _ = planted
    (ma.parent / "d5.png").write_bytes(b"garbage")
    df = read_manifest(ma)
    df.loc[df["path"] == "d5.png", "phash"] = ""  # force a re-read
    write_manifest(df, ma)
    assert CliRunner().invoke(app, ["dedup", str(ma)]).exit_code == 0
    assert read_manifest(ma).set_index("path").loc["d5.png", "reason"].startswith("unreadable:")


def test_bad_threshold_is_clear(planted):
    r = CliRunner().invoke(app, ["dedup", str(planted[0]), "--max-hamming", "40"])
    assert r.exit_code == 1 and "--max-hamming" in r.output
    r = CliRunner().invoke(app, ["dedup", str(planted[0]), "--min-similarity", "1.5"])
    assert r.exit_code == 1 and "--min-similarity" in r.output


def test_no_rows_no_pairs():
    empty = np.zeros(0, dtype=np.uint64)
    keepers, rejected, candidates = find_duplicates(empty, empty, np.zeros((0, 256), np.float32), np.zeros(0))
    assert keepers.size == 0 and rejected == candidates == 0


def test_the_same_manifest_twice_is_refused(planted):
    ma = planted[0]
    before = ma.read_bytes()
    r = CliRunner().invoke(app, ["dedup", str(ma), str(ma.parent / "." / ma.name)])
    assert r.exit_code == 1 and "more than once" in r.output
    assert ma.read_bytes() == before


def test_duplicate_whose_file_was_deleted_stays_dropped(planted):
    ma, mb = planted
    assert CliRunner().invoke(app, ["dedup", str(ma), str(mb)]).exit_code == 0
    (mb.parent / "resized.png").unlink()  # the user deletes a duplicate's file, then re-runs
    r = CliRunner().invoke(app, ["dedup", str(ma), str(mb), "--max-hamming", "0"])
    assert r.exit_code == 0, r.output
    b = read_manifest(mb).set_index("path")
    assert b.loc["resized.png", "reason"] == "unreadable:missing" and not b.loc["resized.png", "keep"]


# ----------------------------------------------------------------------------- confirmation


def _thumbs(images):
    return thumbs_from_b64([thumb_b64(a) for a in images])[0]


def test_every_distinct_lfw_pair_is_rejected(lfw_faces):
    t = _thumbs(lfw_faces)
    i, j = np.triu_indices(len(t), 1)
    assert len(i) == 4950
    sim = thumb_similarity(t[i], t[j])
    assert sim.max() < DEFAULT_MIN_SIMILARITY, (i[sim.argmax()], j[sim.argmax()], sim.max())
    # the phash alone offers many of them at --max-hamming 14: confirmation is what keeps them apart
    h, m = (hex_to_uint64([phash_hex(np.ascontiguousarray(x)) for x in imgs])
            for imgs in (lfw_faces, [a[:, ::-1] for a in lfw_faces]))
    assert len(near_pairs(h, m, 14)) > 10


@pytest.mark.parametrize("kind", sorted(LFW_COPY_KINDS))
def test_every_planted_copy_kind_is_confirmed(lfw_faces, kind):
    copies = [LFW_COPY_KINDS[kind](a) for a in lfw_faces]
    sim = thumb_similarity(_thumbs(lfw_faces), _thumbs(copies))
    assert sim.min() >= DEFAULT_MIN_SIMILARITY, (kind, sim.argmin(), sim.min())


def test_thumb_similarity_is_symmetric_and_flat_images_never_confirm(lfw_faces):
    t = _thumbs(lfw_faces[:10] + [LFW_COPY_KINDS["crop_3pct"](a) for a in lfw_faces[:10]])
    a, b = t[:10], t[10:]
    assert np.allclose(thumb_similarity(a, b), thumb_similarity(b, a), atol=1e-5)
    full, quick = thumb_similarity(a, b), thumb_similarity(a, b, enough=0.999)
    assert ((full >= 0.999) == (quick >= 0.999)).all() and np.allclose(
        quick[quick < 0.999], full[quick < 0.999])
    flat = np.full((2, 256), 128, dtype=np.float32)
    assert (thumb_similarity(flat, flat) < DEFAULT_MIN_SIMILARITY).all()


def test_groups_never_chain_through_a_failed_pair():
    # 0-1 and 1-2 confirmed, 0-2 not: 0 (largest) keeps 1; 2 does not confirm against 0, so it stays
    good = {(0, 1), (1, 2), (3, 4)}

    def confirm(i, j):
        return np.array([(min(a, b), max(a, b)) in good for a, b in zip(i, j)])

    pairs = np.array(sorted(good))
    labels = group_labels(5, pairs)
    keepers = confirmed_keepers(labels, np.array([9.0, 4, 1, 1, 5]), pairs, confirm)
    assert keepers.tolist() == [0, 0, 2, 4, 4]


def test_pairs_kept_apart_never_join(lfw_faces):
    """A face with two copies is one group; listing copy 1 against the other two (a split on the
    review page) leaves it alone, and the rest stays a group."""
    face = lfw_faces[0]
    images = [face, LFW_COPY_KINDS["resized"](face), LFW_COPY_KINDS["jpeg_q40"](face), lfw_faces[1]]
    h = hex_to_uint64([phash_hex(a) for a in images])
    m = hex_to_uint64([phash_hex(np.ascontiguousarray(a[:, ::-1])) for a in images])
    px = np.array([4.0, 1, 1, 1])
    keepers, _, _ = find_duplicates(h, m, _thumbs(images), px)
    assert keepers.tolist() == [0, 0, 0, 3]
    keepers, _, _ = find_duplicates(h, m, _thumbs(images), px, apart=np.array([[1, 0], [1, 2]]))
    assert keepers.tolist() == [0, 1, 0, 3]


def test_max_hamming_widens_the_search_not_the_verdict(lfw_faces):
    faces = lfw_faces[:40]
    copies = [LFW_COPY_KINDS[k](faces[n]) for n, k in enumerate(sorted(LFW_COPY_KINDS))]
    images = faces + copies
    h = hex_to_uint64([phash_hex(a) for a in images])
    m = hex_to_uint64([phash_hex(np.ascontiguousarray(a[:, ::-1])) for a in images])
    px = np.array([a.shape[0] * a.shape[1] for a in images])
    for max_hamming in (8, 14, 20):
        keepers, rejected, candidates = find_duplicates(h, m, _thumbs(images), px, max_hamming)
        dropped = np.flatnonzero(keepers != np.arange(len(images)))
        assert dropped.tolist() == list(range(40, 40 + len(copies))), max_hamming
        assert keepers[40:].tolist() == list(range(len(copies)))
        assert candidates - rejected == len(copies)  # exactly the copy-original pairs are confirmed
    assert rejected > 0  # at 20 bits the phash offers distinct faces; confirmation refuses them


def test_old_manifest_without_thumbnails_reads_the_images(planted):
    ma, mb = planted
    assert "thumb" not in read_manifest(ma).columns  # written like an older curation run
    r = CliRunner().invoke(app, ["dedup", str(ma), str(mb)])
    assert r.exit_code == 0, r.output
    assert "image read" in r.output
    a = read_manifest(ma)
    assert a["thumb"].str.len().eq(344).all()  # stored now: the next run reads no image
    r = CliRunner().invoke(app, ["dedup", str(ma), str(mb)])
    assert "image read" not in r.output and "rejected by confirmation" in r.output


def test_curation_stores_the_thumbnail():
    image = np.zeros((40, 30, 3), dtype=np.uint8)
    image[10:20, 5:25] = 200
    t, ok = thumbs_from_b64([thumb_b64(image), "", None, "x" * 344])
    assert ok.tolist() == [True, False, False, False] and t.shape == (4, 256)
    assert t[0].max() > 100 and (t[1:] == 0).all()


def test_output_hashes_are_the_three_calls(lfw_faces):
    """Curation's one-pass hashes equal phash_hex of the image and of its mirror, and thumb_b64: on
    real faces and on noise, at the output sizes a user can ask for, gray and colour."""
    rng = np.random.default_rng(0)
    photos = [read_image(p) for p in list_images(DATA / "photos")]
    images = [np.asarray(Image.fromarray(face).resize((size, size), Image.BICUBIC))
              for face in list(lfw_faces[:20]) + photos for size in (128, 64, 100, 256)]
    images += [
        rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for size in (128, 97, 33) for _ in range(20)]
    assert any(im.ndim == 2 for im in images) and any(im.ndim == 3 for im in images)
    for image in images:
        mirror = np.ascontiguousarray(image[:, ::-1])
        assert output_hashes(image) == (phash_hex(image), phash_hex(mirror), thumb_b64(image))
