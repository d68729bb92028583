"""The drawing-face detector: the detectors, the vote, facing, --learn, the shipped weights and their rebuild.

    detect.py      the detectors crop-drawings runs on a drawing and the vote that chooses its face
    fhog.py        drawn_hog: p2d's dlib fHOG filters, one per view (weights/*.svm)
    cnn.py         drawn_cnn: p2d's small centre-map network (weights/drawing_face_cnn.npz)
    facing.py      which way a found face looks (weights/drawing_facing.npz)
    learn.py       a user's own fHOG detector from their boxes (--learn, `p2d detector train`)
    weights/       the shipped weights, the hand labels they were trained on, and their README
    labels.py      the label CSV and the drawings it names (Debian packages, never needed at run time)
    build_fhog.py, build_cnn.py, build_facing.py   rebuild the weights: `python -m p2d.drawings.build_cnn`
    build_cnn_folds.sh   the CNN's out-of-fold models at once on a GPU host

It builds on the shared leaves (images, faces, errors, ui) and never imports curate/ or train/
(tests/test_layering.py); crop-drawings (curate/drawings.py) and the review page import it.
"""

from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
