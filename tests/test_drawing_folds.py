"""The folds and sampling the drawing models are trained and checked with (benchmarks/train_drawing_cnn.py).

Copies of one drawing in two folds flatter every out-of-fold figure: the four openclipart card sets
draw each design four times, and an aisleriot deck has recoloured or re-lettered twins."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from train_drawing_cnn import design_of, fold_group, fold_of, sampling_weights  # noqa: E402

CARD_SET_COPIES = [f"recreation/games/cards/{s}/{s}_d_k.png" for s in ("ornamental", "white", "simple", "bordered")]


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
    data += [("people/a.png", None, [(0, 0, 10, 10, "frontal")]), ("people/b.png", None, [(0, 0, 10, 10, "frontal")])]
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

    from p2d.drawing_cnn import build_network, load_network, save_weights
    from train_drawing_cnn import FOLD_SCHEME, check_fold_model

    widths = (8, 8, 16, 16, 16)
    net = build_network(widths).eval()
    good, old, other = tmp_path / "fold2.npz", tmp_path / "old.npz", tmp_path / "other.npz"
    save_weights(net, good, widths, fold_scheme=FOLD_SCHEME, folds=5, fold=2)
    save_weights(net, old, widths)  # made before models said which fold they left out
    save_weights(net, other, widths, fold_scheme=FOLD_SCHEME, folds=5, fold=3)
    assert check_fold_model(good, 2, 5) == good
    x = torch.zeros(1, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(load_network(good)(x), load_network(old)(x))  # the notes do not get in the weights' way
    for path in (old, other):
        with pytest.raises(SystemExit, match="retrain it with"):
            check_fold_model(path, 2, 5)
    with pytest.raises(SystemExit, match="missing"):
        check_fold_model(tmp_path / "none.npz", 2, 5)
