"""The served package stands alone: it imports nothing of fmnist, so a version ships whole."""

from __future__ import annotations

import ast
import subprocess
import sys
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


def test_the_served_package_imports_only_its_declared_requirements() -> None:
    allowed = {"fmnist_model", "numpy", "pandas", "keras", "tensorflow", "mlflow"}
    allowed |= {"__future__", "typing", "hashlib", "re"}  # the standard library it uses
    for path in sorted(PACKAGE.glob("*.py")):
        roots = _imported_roots(path)
        assert "fmnist" not in roots, path.name
        assert roots <= allowed, (path.name, roots - allowed)


@pytest.mark.slow  # a fresh interpreter importing MLflow
def test_the_models_from_code_entry_sets_the_pyfunc_without_fmnist() -> None:
    """What MLflow runs where it loads a version (model_code.py) sets one FashionMnistClassifier
    as the model, in an interpreter where `import fmnist` fails."""
    code = (
        "import runpy, sys\n"
        "sys.modules['fmnist'] = None  # any import of fmnist raises ImportError\n"
        "import mlflow.models\n"
        "models = []\n"
        "mlflow.models.set_model = models.append  # what MLflow's loader would receive\n"
        f"runpy.run_path({str(PACKAGE / 'model_code.py')!r})\n"
        "from fmnist_model.pyfunc import FashionMnistClassifier\n"
        "print(len(models), all(isinstance(m, FashionMnistClassifier) for m in models))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout) == (0, "1 True\n"), done.stderr
