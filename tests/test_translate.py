"""Tests for p2d.train.translate and `p2d translate`: generators from runs, sizes, channels, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from p2d.cli import app
from p2d.images import write_image
from p2d.train.loop import TrainOptions, train
from p2d.train.translate import (TranslateOptions, find_checkpoint, load_generators, pad_to_multiple,
                                 scale_to_size, translate)
from train_helpers import PD_FACES, make_manifest

torch.set_num_threads(1)
runner = CliRunner()


@pytest.fixture(scope="module")
def gray_run(trained_tiny_run):
    """The session's shared tiny run (gray, 32 px, epochs 1 and 2): translate only reads it."""
    return trained_tiny_run


@pytest.fixture(scope="module")
def colour_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("colour")
    manifest = make_manifest(folder, photos_train=2, drawings_train=2)
    recipe = manifest.with_suffix(".toml")
    recipe.write_text(
        recipe.read_text().replace("channels = 1", "channels = 3").replace("size = 32", "size = 24"))
    return train(manifest, out=folder / "run", options=TrainOptions(epochs=1))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Odd sizes on purpose: 45x37 colour, 25x25 gray, a tall drawing, and a corrupt file."""
    folder = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    write_image(folder / "odd.png", rng.integers(0, 256, (37, 45, 3), dtype=np.uint8))
    write_image(folder / "small.jpg", rng.integers(0, 256, (25, 25), dtype=np.uint8))
    Image.open(PD_FACES / "drawings" / "einstein_01.png").save(folder / "einstein.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    return folder


def test_load_generators(gray_run):
    cfg, g_p2d, g_d2p = load_generators(gray_run)
    assert cfg.data.channels == 1 and cfg.data.size == 32 and cfg.model.filters == 8
    assert not g_p2d.training and not g_d2p.training
    ckpt = torch.load(gray_run / "checkpoints" / "epoch_0001.pt", weights_only=True)
    _, g1, _ = load_generators(gray_run, epoch=1)
    assert all(torch.equal(a, b)
               for a, b in zip(g1.state_dict().values(), ckpt["models"]["G_photo2drawing"].values()))
    assert not torch.equal(next(g1.parameters()), next(g_p2d.parameters()))  # latest is epoch 2


@pytest.mark.parametrize("height, width", [(32, 32), (37, 45), (3, 5), (1, 1)])
def test_pad_to_multiple(height, width):
    x = torch.randn(1, 1, height, width)
    padded, size = pad_to_multiple(x)
    assert size == (height, width) and padded.shape[-2] % 4 == 0 and padded.shape[-1] % 4 == 0
    assert torch.equal(padded[..., :height, :width], x)


@pytest.mark.parametrize("shape, size, expected",
                         [((64, 48), 32, (43, 32)), ((25, 25), 32, (32, 32)), ((32, 90, 3), 32, (32, 90, 3))])
def test_scale_to_size(shape, size, expected):
    assert scale_to_size(np.zeros(shape, np.uint8), size).shape == expected


def test_translate_to_drawing_keeps_names_and_uses_the_checkpoint_channels(gray_run, inputs, tmp_path):
    out = tmp_path / "drawn"
    result = runner.invoke(app,
                           ["translate", str(gray_run), str(inputs), "--to", "drawing", "--out", str(out)])
    assert result.exit_code == 0, result.output
    written = {p.name: Image.open(p) for p in out.iterdir()}
    assert set(written) == {"odd.png", "small.jpg", "einstein.png"}
    assert all(im.mode == "L" for im in written.values())  # the checkpoint is gray
    assert written["odd.png"].size == (39, 32) and written["small.jpg"].size == (32, 32)  # shorter side 32
    assert written["einstein.png"].size == (32, 45)
    assert "broken.png" in result.output and "unreadable" in result.output  # reported, not fatal
    assert "images/s" in result.output


def test_a_gif_is_translated_into_a_png(gray_run, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.open(PD_FACES / "drawings" / "einstein_01.png").convert("P").save(folder / "einstein.gif")
    out = tmp_path / "drawn"
    result = runner.invoke(app,
                           ["translate", str(gray_run), str(folder), "--to", "drawing", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert [p.name for p in out.iterdir()] == ["einstein.png"]
    assert Image.open(out / "einstein.png").format == "PNG"


def test_translate_full_size_colour_to_photo(colour_run, inputs, tmp_path):
    result = translate(colour_run, [inputs / "odd.png", inputs / "einstein.png"], to="photo", out=tmp_path,
                       options=TranslateOptions(resize=False))
    assert [p.name for p in result.written] == ["odd.png", "einstein.png"]
    odd = np.asarray(Image.open(tmp_path / "odd.png"))
    assert odd.shape == (37, 45, 3)  # any size: padded to a multiple of 4 and cropped back
    assert np.asarray(Image.open(tmp_path / "einstein.png")).shape == (1123, 794, 3)
    assert result.config.data.channels == 3 and result.images_per_second > 0


def test_translate_with_face_crop(gray_run, tmp_path):
    pytest.importorskip("dlib")
    result = translate(gray_run, [PD_FACES / "photos" / "astronaut.png",
                                  PD_FACES / "nonfaces" / "fire_engine_mimooh_01.png"], to="drawing",
                       out=tmp_path, options=TranslateOptions(crop_faces=True))
    assert [p.name for p in result.written] == ["astronaut.png"]
    assert Image.open(tmp_path / "astronaut.png").size == (32, 32)  # framed at the training size
    assert {r for _, r in result.skipped} == {"no_face"}


def test_translate_fills_a_tight_crop_as_curate_does(gray_run, tmp_path):
    """A tight face crop (LFW) needs its frame filled past the edge: --crop-faces uses curate's blur
    by default, not mirrored eyes and mouths; `pad` is passed through."""
    pytest.importorskip("dlib")
    from p2d.demo import write_lfw_photos

    tight = write_lfw_photos(tmp_path / "lfw", count=1)
    outputs = {}
    for pad in ("blur", "reflect"):
        options = TranslateOptions(crop_faces=True, **({} if pad == "blur" else {"pad": pad}))
        result = translate(gray_run, tight, to="drawing", out=tmp_path / pad, options=options)
        assert [p.name for p in result.written] == ["lfw_000.png"]
        outputs[pad] = np.asarray(Image.open(tmp_path / pad / "lfw_000.png"), dtype=np.int16)
    assert np.abs(outputs["blur"] - outputs["reflect"]).mean() > 1  # the fill reached the model's input


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--to", "sketch"], "--to 'sketch'"),
        (["--to", "drawing", "--epoch", "7"], "no checkpoint for epoch 7 (saved epochs: 1, 2)"),
    ],
)
def test_bad_arguments(gray_run, inputs, tmp_path, args, fragment):
    result = runner.invoke(
        app, ["translate", str(gray_run), str(inputs / "odd.png"), "--out", str(tmp_path), *args])
    assert result.exit_code == 1 and fragment in " ".join(result.output.split())


def test_bad_run_and_inputs(gray_run, tmp_path):
    with pytest.raises(Exception, match="does not exist"):
        find_checkpoint(tmp_path / "nope")
    with pytest.raises(Exception, match="holds no checkpoints"):
        find_checkpoint(tmp_path)
    with pytest.raises(Exception, match="does not exist"):
        translate(gray_run, [tmp_path / "missing.png"], to="drawing", out=tmp_path / "o")
    fake = tmp_path / "fake.pt"
    fake.write_bytes(b"not a checkpoint")
    with pytest.raises(Exception, match="cannot be loaded safely"):
        load_generators(fake)


def test_output_inside_the_input_folder_is_refused(gray_run, inputs):
    with pytest.raises(Exception, match="inside the input folder"):
        translate(gray_run, [inputs], to="drawing", out=inputs / "out")


class _RunsCode:
    """An object whose unpickling would call a function: what weights_only=True must refuse."""

    def __reduce__(self):
        return (print, ("this ran while loading",))


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path, capsys):
    evil = tmp_path / "evil.pt"
    torch.save({"recipe": {}, "models": {}, "payload": _RunsCode()}, evil)
    with pytest.raises(Exception, match="cannot be loaded safely"):
        load_generators(evil)
    assert "this ran while loading" not in capsys.readouterr().out


def test_same_file_name_twice_and_tiny_images_are_skipped_with_reasons(gray_run, inputs, tmp_path):
    other = tmp_path / "other"
    write_image(other / "odd.png", np.zeros((40, 40, 3), np.uint8))
    write_image(tmp_path / "tiny.png", np.zeros((3, 3, 3), np.uint8))
    out = tmp_path / "drawn"
    result = runner.invoke(app, ["translate", str(gray_run), str(inputs / "odd.png"), str(other / "odd.png"),
                                 str(tmp_path / "tiny.png"), "--to", "drawing", "--out", str(out),
                                 "--no-resize"], terminal_width=300)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["odd.png"]
    assert Image.open(out / "odd.png").size == (45, 37)  # the first odd.png, not overwritten by the second
    assert "same output name" in result.output and "too small" in result.output
