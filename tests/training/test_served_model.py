"""How the served model is logged: pinned requirements, no uv project copied into it."""

from __future__ import annotations

import os

import pytest


def test_the_served_requirements_pin_this_environment_and_nothing_of_fmnist() -> None:
    from importlib.metadata import version

    from fmnist.training.served_model import TENSORFLOW_BUILDS, served_requirements

    reqs = served_requirements()
    assert f"keras=={version('keras')}" in reqs and f"mlflow=={version('mlflow')}" in reqs
    tf_lines = [r for r in reqs if r.startswith("tensorflow")]
    assert len(tf_lines) == len(TENSORFLOW_BUILDS)  # one per platform, each with its marker
    assert all(";" in r and r.split("==")[1].split(";")[0] for r in tf_lines)
    assert not any(r.startswith(("fmnist", "scikit-learn", "jax")) for r in reqs)


def test_uv_project_detection_is_off_only_while_a_model_is_logged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from fmnist.training.served_model import UV_DETECT_ENV, _uv_project_detection_off

    monkeypatch.setenv(UV_DETECT_ENV, "true")
    with _uv_project_detection_off():
        assert os.environ[UV_DETECT_ENV] == "false"
    assert os.environ[UV_DETECT_ENV] == "true"
    monkeypatch.delenv(UV_DETECT_ENV)
    with _uv_project_detection_off():
        pass
    assert UV_DETECT_ENV not in os.environ
