"""The served package stands alone: it imports nothing of fmnist, so a version ships whole."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import fmnist_model

PACKAGE = Path(fmnist_model.__file__).parent


def _imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.partition(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.partition(".")[0])
    return roots


@pytest.mark.slow  # Keras/TensorFlow
def test_the_served_package_imports_only_its_declared_requirements() -> None:
    allowed = {"fmnist_model", "numpy", "pandas", "keras", "tensorflow", "mlflow"}
    allowed |= {"__future__", "typing", "hashlib", "re"}  # the standard library it uses
    for path in sorted(PACKAGE.glob("*.py")):
        roots = _imported_roots(path)
        assert "fmnist" not in roots, path.name
        assert roots <= allowed, (path.name, roots - allowed)


@pytest.mark.slow  # Keras/TensorFlow
def test_the_models_from_code_entry_sets_the_pyfunc() -> None:
    source = (PACKAGE / "model_code.py").read_text(encoding="utf-8")
    assert "mlflow.models.set_model(FashionMnistClassifier())" in source
