"""The folds, sampling and restyling the drawing models are trained and checked with (drawings/build_cnn.py).

Copies of one drawing in two folds flatter every out-of-fold figure: the four openclipart card sets
draw each design four times, and an aisleriot deck has recoloured or re-lettered twins."""

import numpy as np
import pytest

from p2d.drawings.build_cnn import augmented, design_of, fold_group, fold_of, restyled, sampling_weights

CARD_SET_COPIES = [
    f"recreation/games/cards/{s}/{s}_d_k.png" for s in ("ornamental", "white", "simple", "bordered")]


def test_copies_of_a_design_are_one_design_and_share_a_fold():
    assert {design_of(p) for p in CARD_SET_COPIES} == {"cardset#d_k"}
    assert len({fold_of(p, 5) for p in CARD_SET_COPIES}) == 1
    twins = ["aisleriot/anglo_modern.svgz#heart_king", "aisleriot/anglo_modern_4_color.svgz#heart_king"]
    assert design_of(twins[0]) == design_of(twins[1]) == "aisleriot/anglo_modern#heart_king"
    family = twins + ["aisleriot/anglo.svgz#club_jack", "aisleriot/anglo_poker.svgz#spade_queen"]
    assert {fold_group(p) for p in family} == {"aisleriot/anglo"}
    assert len({fold_of(p, 5) for p in family}) == 1
    # a file name that only looks like a card set's stays its own drawing
    assert design_of("people/white_dress.png") == "people/white_dress.png"
    assert fold_of("people/man_01.png", 5) == fold_of("people/man_01.png", 5) in range(5)


def test_design_sampling_gives_copies_one_share():
    data = [(p, None, [(0, 0, 10, 10, "left")]) for p in CARD_SET_COPIES]
    data += [("people/a.png", None, [(0, 0, 10, 10, "frontal")]),
             ("people/b.png", None, [(0, 0, 10, 10, "frontal")])]
    assert np.allclose(sampling_weights(data, "drawing"), 1 / 6)
    w = sampling_weights(data, "design")
    assert np.allclose(w, [1 / 12] * 4 + [1 / 3] * 2)  # three designs alike; the card's copies share its turn
    v = sampling_weights(data, "design-view")
    assert np.isclose(v[:4].sum(), 0.5) and np.isclose(v[4:].sum(), 0.5)  # turned faces as often as frontal
    with pytest.raises(ValueError, match="design-view"):
        sampling_weights(data, "by-hand")


def test_a_fold_model_from_other_folds_is_refused(tmp_path):
    """Scoring train drawings with a fold model made on other folds would flatter every figure: the
    benchmarks only take fold models that say they left this fold out, on today's folds."""
    import torch

    from p2d.drawings.build_cnn import FOLD_SCHEME, check_fold_model
    from p2d.drawings.cnn import build_network, load_network, save_weights

    widths = (8, 8, 16, 16, 16)
    net = build_network(widths).eval()
    good, old, other = tmp_path / "fold2.npz", tmp_path / "old.npz", tmp_path / "other.npz"
    save_weights(net, good, widths, fold_scheme=FOLD_SCHEME, folds=5, fold=2)
    save_weights(net, old, widths)  # made before models said which fold they left out
    save_weights(net, other, widths, fold_scheme=FOLD_SCHEME, folds=5, fold=3)
    assert check_fold_model(good, 2, 5) == good
    x = torch.zeros(1, 1, 64, 64)
    with torch.no_grad():
        # the notes do not get in the weights' way
        assert torch.equal(load_network(good)(x), load_network(old)(x))
    for path in (old, other):
        with pytest.raises(SystemExit, match="retrain it with"):
            check_fold_model(path, 2, 5)
    with pytest.raises(SystemExit, match="missing"):
        check_fold_model(tmp_path / "none.npz", 2, 5)


def _face_drawing() -> tuple[np.ndarray, list]:
    """A gray drawing: a dark-outlined light disc (the face) on white, with its box."""
    import cv2

    img = np.full((200, 160), 255, np.uint8)
    cv2.circle(img, (80, 90), 40, 200, -1)
    cv2.circle(img, (80, 90), 40, 0, 3)
    return img, [(40.0, 50.0, 80.0, 80.0, "frontal")]


def test_restyled_crops_stay_images_of_the_same_drawing():
    gray, _ = _face_drawing()
    img = gray.astype(np.float32) / 255
    kinds = {}
    for seed in range(40):
        out = restyled(img, np.random.default_rng(seed))
        assert out.shape == img.shape and 0 <= out.min() and out.max() <= 1
        if np.allclose(out, 1 - img):
            kinds["invert"] = out
        elif set(np.unique(out)) <= {0.0, 1.0}:
            kinds["stencil"] = out
        else:
            kinds["lines"] = out
    assert set(kinds) == {"invert", "stencil", "lines"}
    # ink lines: dark along the outline (on both sides of its stroke), white on the flat inside and outside
    lines = kinds["lines"]
    assert lines[90, 34:47].min() < 0.5 and lines[90, 80] > 0.9 and lines[10, 10] > 0.9
    # the stencil keeps the outline dark and the page light
    assert kinds["stencil"][90, 40] == 0 and kinds["stencil"][10, 10] == 1


def test_style_share_zero_draws_what_the_shipped_recipe_drew():
    """--style-share 0 (the default) leaves the random draws, so the shipped model's recipe, as it was."""
    gray, boxes = _face_drawing()
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    img_a, faces_a = augmented(gray, boxes, a, 0.35, 96)
    img_b, faces_b = augmented(gray, boxes, b, 0.35, 96, style_share=0.0)
    assert np.array_equal(img_a, img_b) and faces_a == faces_b
    assert a.bit_generator.state == b.bit_generator.state
    restyled_img, _ = augmented(gray, boxes, np.random.default_rng(3), 0.35, 96, style_share=1.0)
    assert restyled_img.shape == img_a.shape and not np.array_equal(restyled_img, img_a)
