"""The Unicode-name fix the served model carries: TensorFlow-valid, stable, distinct names."""

from __future__ import annotations

import pytest

from fmnist_model.unicode_names import tf_scope_name


@pytest.mark.parametrize("name", ["패션 MNIST 모델", " x", "_a", "a b", "모델"])
def test_tf_scope_name_is_valid_and_distinct(name: str) -> None:
    import re

    scoped = tf_scope_name(name)
    assert re.match(r"^[A-Za-z0-9.][A-Za-z0-9_.\\/>-]*$", scoped)
    assert tf_scope_name(name) == scoped  # stable
    assert tf_scope_name(name + "2") != scoped


def test_valid_names_pass_through() -> None:
    assert tf_scope_name("dense_1") == "dense_1"
