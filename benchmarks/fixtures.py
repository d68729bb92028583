"""The tests' fixture builders that benchmarks reuse: the CelebA-shaped folder, the trainer's manifests.

tests/ is not a package: pytest runs its modules with their folder on the path, so they import each
other by bare name (`from conftest import DATA`). `tests_module` loads one from its file under that
name, after the modules it imports so, as pytest would; nothing is added to sys.path.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

TESTS = Path(__file__).resolve().parents[1] / "tests"
# What a tests/ module imports from its own folder by bare name (loaded before it).
NEEDS = {"train_helpers": ("conftest",), "test_learning": ("train_helpers",)}


def tests_module(name: str) -> ModuleType:
    """tests/<name>.py as the module `name`, loaded once."""
    if name in sys.modules:
        return sys.modules[name]
    for needed in NEEDS.get(name, ()):
        tests_module(needed)
    spec = importlib.util.spec_from_file_location(name, TESTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module
