"""POST /invocations bodies -> pixel arrays: MLflow's forms, kinds kept, one-line refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fmnist.serving.invocations import RequestRefused, read_pixels
from tests.conftest import synthetic_images

JSON = "application/json"
IMAGES = synthetic_images(3, seed=3)[0]  # (3, 28, 28) uint8


def _json(body: object, content_type: str = JSON) -> np.ndarray:
    return read_pixels(content_type, json.dumps(body).encode())


def _refused(content_type: str | None, body: bytes) -> RequestRefused:
    with pytest.raises(RequestRefused) as caught:
        read_pixels(content_type, body)
    refusal = caught.value
    assert "\n" not in refusal.message and len(refusal.message) < 200, refusal.message
    return refusal


def _csv(rows: np.ndarray, header: str | None = None, newline: str = "\n") -> bytes:
    lines = [",".join(map(str, row)) for row in rows.reshape(len(rows), -1)]
    return newline.join([header, *lines] if header else lines).encode()


@pytest.mark.parametrize(
    "body",
    [
        {"inputs": IMAGES.tolist()},  # (n, 28, 28)
        {"inputs": IMAGES.reshape(3, 784).tolist()},  # (n, 784)
        {"instances": IMAGES.tolist()},
        {"dataframe_split": {"columns": list(range(784)), "data": IMAGES.reshape(3, 784).tolist()}},
        {"dataframe_split": {"data": IMAGES.reshape(3, 784).tolist()}},
    ],
    ids=["inputs-28x28", "inputs-784", "instances", "dataframe_split", "split-no-columns"],
)
def test_json_forms_give_the_pixels(body: dict) -> None:
    pixels = _json(body)
    assert pixels.dtype.kind == "i"
    assert np.array_equal(pixels.reshape(3, 28, 28), IMAGES)


def test_a_charset_parameter_is_fine_and_floats_stay_floats() -> None:
    pixels = _json({"inputs": IMAGES.astype(float).tolist()}, "Application/JSON; charset=utf-8")
    assert pixels.dtype == np.float64 and np.array_equal(pixels, IMAGES)


def test_booleans_among_numbers_are_refused_not_coerced() -> None:
    row = [0] * 783 + [True]  # NumPy alone would make this an int row
    refusal = _refused(JSON, json.dumps({"inputs": [row]}).encode())
    assert refusal.status == 400 and refusal.error_code == "INVALID_PARAMETER_VALUE"
    assert refusal.message == "pixels must be numbers 0-255, got boolean values"
    floats = _refused(JSON, json.dumps({"inputs": [[0.0] * 27 + [False]] * 28}).encode())
    assert "boolean" in floats.message


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        ([[True] * 784], "b"),
        ([["12"] * 784], "U"),
        ([[1] * 783 + ["12"]], "U"),
        ([[None] * 784], "O"),
    ],
)
def test_other_non_numbers_keep_their_kind_for_the_model_to_refuse(values: list, kind: str) -> None:
    assert _json({"inputs": values}).dtype.kind == kind  # check_pixels refuses each kind


def test_integers_too_large_for_numpy_stay_numbers() -> None:
    pixels = _json({"inputs": [[10**30] * 784]})  # the model then says: outside 0-255
    assert pixels.dtype == np.float64


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b'{"inputs": [[1, 2,', "malformed JSON: Expecting value at line 1, column 19"),
        (b'{"inputs": [[1, 2]]}\n{"x": 1}', "malformed JSON: Extra data at line 2, column 1"),
        (b"", "malformed JSON: Expecting value at line 1, column 1"),
        (b'{"inputs": [[1, \xff]]}', "malformed JSON: the body is not UTF-8 text"),
        (b"[" * 200_000, "malformed JSON: nested too deeply"),
        (b"[[1, 2]]", 'must be an object with one key: "inputs", "instances" or'),
        (b'{"inputs": [[1]], "params": {}}', "must be an object with one key"),
        (b'{"rows": [[1]]}', "must be an object with one key"),
        (b'{"inputs": {"pixels": [1]}}', '"inputs" must be an array of images'),
        (b'{"dataframe_split": [[1]]}', '"dataframe_split" must be an object with "data"'),
        (b'{"dataframe_split": {"columns": ["a"], "data": [[1, 2]]}}', "names 1 columns but"),
        (b'{"dataframe_split": {"columns": "a", "data": [[1]]}}', '"columns" must be an array'),
    ],
)
def test_malformed_requests_are_one_line_saying_where(body: bytes, says: str) -> None:
    refusal = _refused(JSON, body)
    assert refusal.status == 400 and refusal.error_code == "MALFORMED_REQUEST"
    assert says in refusal.message


@pytest.mark.parametrize(
    "body",
    [{"inputs": [[0] * 784, [0] * 783]}, {"inputs": []}],
    ids=["ragged", "empty"],
)
def test_ragged_or_empty_inputs_are_refused(body: dict) -> None:
    refusal = _refused(JSON, json.dumps(body).encode())
    assert refusal.status == 400 and refusal.error_code == "INVALID_PARAMETER_VALUE"
    assert "ragged" in refusal.message or "no pixel values" in refusal.message


@pytest.mark.parametrize(
    "content_type", [None, "", "text/plain", "application/x-www-form-urlencoded"]
)
def test_other_content_types_get_415_naming_the_forms_that_work(content_type: str | None) -> None:
    refusal = _refused(content_type, json.dumps({"inputs": IMAGES.tolist()}).encode())
    assert refusal.status == 415 and refusal.error_code == "UNSUPPORTED_MEDIA_TYPE"
    assert "application/json" in refusal.message and "text/csv" in refusal.message


@pytest.mark.parametrize(
    ("header", "newline"),
    [(None, "\n"), (",".join(f"pixel{i}" for i in range(784)), "\n"),
     (",".join(map(str, range(784))), "\r\n")],
    ids=["no-header", "named-header", "pandas-header-crlf"],
)  # fmt: skip
def test_csv_lines_are_images(header: str | None, newline: str) -> None:
    pixels = read_pixels("text/csv", _csv(IMAGES, header, newline))
    assert pixels.shape == (3, 784) and np.array_equal(pixels.reshape(3, 28, 28), IMAGES)


@pytest.mark.parametrize(
    ("body", "status_code", "says"),
    [
        (b"1,2,3\n4,True,6\n", "INVALID_PARAMETER_VALUE", "CSV line 2, value 2: not a number"),
        (b'1,2,3\n4,"5",6\n', "INVALID_PARAMETER_VALUE", "CSV line 2, value 2: not a number"),
        (b"a,b,c\n1,2,3\n4,5\n", "MALFORMED_REQUEST", "line 3 has 2 values, line 2 3"),
        (b"1,2\xff\n", "MALFORMED_REQUEST", "malformed CSV: the body is not UTF-8 text"),
        (b"a,b,c\n", "INVALID_PARAMETER_VALUE", "the request holds no pixel values"),
    ],
)
def test_bad_csv_is_one_line_saying_where(body: bytes, status_code: str, says: str) -> None:
    refusal = _refused("text/csv", body)
    assert refusal.status == 400 and refusal.error_code == status_code
    assert says in refusal.message


def test_a_refusal_never_echoes_the_request() -> None:
    secret = "SECRET-PAYLOAD-" * 1000
    for content_type, body in [
        (JSON, json.dumps({"inputs": [[secret] * 3]})[:-3].encode()),  # cut: malformed
        (JSON, json.dumps({secret: [[1]]}).encode()),
        ("text/csv", f"1,2,3\n{secret},2,3\n".encode()),
        (f"text/{secret}", b"1"),
    ]:
        assert "SECRET" not in _refused(content_type, body).message
