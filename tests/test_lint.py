"""The tests' CI run also checks style and types (STYLE.md: ruff and mypy on src/) and the
architecture (import-linter's contracts in pyproject.toml: layers, no cycles, pure logic)."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", "src", "flows", "tests", "bench"],
        ["ruff", "format", "--check", "src", "flows", "tests", "bench"],
        ["mypy"],
        ["lint-imports", "--no-cache"],
    ],
    ids=["ruff-check", "ruff-format", "mypy", "import-linter"],
)
def test_clean(command: list[str]) -> None:
    result = subprocess.run(
        [str(BIN / command[0]), *command[1:]], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
