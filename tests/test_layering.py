"""The import layering: shared modules below drawings/, drawings/ below curate/ and train/, which never
import each other; read-only commands load without torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "p2d"
# Top-level modules that both curate/ and train/ build on (docs/architecture.md, "Layering").
SHARED = {"errors", "images", "faces", "framing", "manifest", "recipe", "runs", "sheets", "ui", "facecache",
          "inspection", "shape_predictor"}
# Top-level modules used like the shared leaves that are not in SHARED yet (docs/architecture.md).
LEAF_LIKE = {"padding", "landmark_kernel"}
# The drawing-face detector builds on the shared leaves alone; curate/ (crop-drawings) and the review page
# build on it.
DRAWINGS_MAY_IMPORT = SHARED | LEAF_LIKE | {"drawings"}


def p2d_imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) for every `import p2d...` / `from p2d... import names` in a file, at any depth."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "p2d":
            found.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names if a.name.split(".")[0] == "p2d"]
    return found


def module_files() -> list[tuple[str, Path]]:
    return [(".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts), p)
            for p in sorted(PACKAGE.rglob("*.py"))]


def layering_violations(module: str, imports: list[tuple[str, list[str]]]) -> list[str]:
    """What breaks the rules in one module's imports (pure: tested below on made-up modules)."""
    parts = module.split(".")
    bad = []
    for target, names in imports:
        tparts = target.split(".")
        inside = tparts[1] if len(tparts) > 1 else ""
        if len(parts) == 2 and parts[1] in SHARED and inside in ("curate", "train", "drawings"):
            bad.append(f"{module} (shared) imports {target}")
        if parts[1:2] == ["drawings"] and inside not in DRAWINGS_MAY_IMPORT:
            bad.append(f"{module} imports {target}: p2d/drawings builds on the shared leaves alone")
        if parts[1:2] == ["curate"] and inside == "train" or parts[1:2] == ["train"] and inside == "curate":
            bad.append(
                f"{module} imports {target}: curate/ and train/ meet only through manifests and recipes")
        if target != module and any(n.startswith("_") and not n.startswith("__") for n in names):
            bad.append(f"{module} imports private {', '.join(names)} from {target}")
        if parts[1:2] == ["review"] and inside == "train":
            bad.append(f"{module} imports {target}: the review page fixes curation and never loads a model")
        if inside == "curate" and len(tparts) > 2 and tparts[2] == "celeba_synth":
            bad.append(f"{module} imports the test fixture builder {target}")
    return bad


@pytest.mark.parametrize("module, imports, expected", [
    ("p2d.framing", [("p2d.curate.pipeline", ["x"])], 1),
    ("p2d.curate.photos", [("p2d.train.data", ["x"])], 1),
    ("p2d.train.loop", [("p2d.curate.build", ["x"])], 1),
    ("p2d.curate.build", [("p2d.curate.dedup", ["_Private"])], 1),
    ("p2d.report", [("p2d.train.data", ["x"])], 0),  # report sits above both: it may
    ("p2d.review.server", [("p2d.train.loop", ["train"])], 1),
    ("p2d.review.drawings", [("p2d.curate.drawings", ["crop_drawings"])], 0),
    ("p2d.train.loop", [("p2d.recipe", ["TrainConfig"]), ("p2d.manifest", ["manifest_hash"])], 0),
    ("p2d.drawings.learn", [("p2d.curate.drawings", ["read_boxes"])], 1),
    ("p2d.drawings.build_cnn", [("p2d.train.loop", ["x"])], 1),
    ("p2d.drawings.detect", [("p2d.review.server", ["x"])], 1),
    ("p2d.drawings.detect", [("p2d.drawings.cnn", ["DrawingFaceCnn"]), ("p2d.faces", ["Detection"]),
                             ("p2d.padding", ["border_color"])], 0),
    ("p2d.faces", [("p2d.drawings.detect", ["x"])], 1),
    ("p2d.curate.drawings", [("p2d.drawings.detect", ["DrawingDetector"])], 0),
])
def test_rules_catch_made_up_violations(module, imports, expected):
    assert len(layering_violations(module, imports)) == expected


def test_package_follows_the_layering():
    bad = [v for module, path in module_files() for v in layering_violations(module, p2d_imports(path))]
    assert bad == []
    assert not (PACKAGE / "curate" / "celeba_synth.py").exists()  # a test fixture builder, kept in tests/


def outside_imports(path: Path, roots: tuple[str, ...] = ("benchmarks", "research")) -> list[str]:
    """Every `import X...` / `from X... import` in a file, at any depth, whose top-level name is one of
    `roots`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        modules = [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else (
            [a.name for a in node.names] if isinstance(node, ast.Import) else [])
        found += [m for m in modules if m.split(".")[0] in roots]
    return found


def test_package_imports_neither_benchmarks_nor_research():
    """benchmarks/ and research/ sit outside the installed package: p2d runs without them."""
    bad = [
        f"{module} imports {target}" for module, path in module_files() for target in outside_imports(path)]
    assert bad == []


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys; print(' '.join(sorted(sys.modules)))"],
                         capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_read_only_modules_do_not_import_torch():
    # one process for all: if any of them imported torch, it would be in sys.modules
    modules = ["p2d.report", "p2d.manifest", "p2d.recipe", "p2d.runs", "p2d.framing", "p2d.evaluate",
               "p2d.cli", "p2d.curate.build", "p2d.inspection", "p2d.review.server", "p2d.review.sections",
               "p2d.review.drawings", "p2d.curate.overrides"]
    loaded = _modules_after("\n".join(f"import {m}" for m in modules))
    assert set(modules) <= loaded and "torch" not in loaded


def test_read_only_commands_do_not_import_torch(tmp_path):
    """`p2d manifest check` and `p2d report` run end to end without loading torch."""
    from train_helpers import make_manifest

    manifest = make_manifest(tmp_path / "data", photos_train=2, photos_test=1, drawings_train=2,
                             drawings_test=1)
    run = tmp_path / "run"
    run.mkdir()
    (run / "recipe.toml").write_text((manifest.with_suffix(".toml")).read_text())
    (run / "run.json").write_text('{"manifest": "%s"}' % manifest.as_posix())
    (run / "losses.csv").write_text("epoch,steps,seconds,lr,G_total\n1,2,0.5,0.0002,1.5\n")
    code = (
        "from typer.testing import CliRunner\nfrom p2d.cli import app\nr = CliRunner()\n"
        f"a = r.invoke(app, ['manifest', 'check', {str(manifest)!r}])\n"
        f"b = r.invoke(app, ['report', {str(run)!r}, '--out', {str(tmp_path / 'report.html')!r}])\n"
        "assert a.exit_code == 0 and b.exit_code == 0, (a.output, b.output)\n"
    )
    assert "torch" not in _modules_after(code)


def test_a_curation_worker_starts_without_torch(tmp_path, p2d_cache):
    """Photo curation's workers (models loaded, one batch of landmarks done) never import torch: its
    import alone takes seconds of every worker's start-up."""
    code = (
        "import numpy as np\nfrom pathlib import Path\n"
        "from p2d.curate.pipeline import CurateOptions, RunSettings, ready_worker\n"
        f"s = RunSettings(out_dir=Path({str(tmp_path)!r}), options=CurateOptions(source='celeba'))\n"
        "w = ready_worker(s)\n"
        "w.models.landmarks_batch([np.zeros((218, 178, 3), np.uint8)], [(40, 60, 90, 90)])\n"
    )
    assert "torch" not in _modules_after(code)
