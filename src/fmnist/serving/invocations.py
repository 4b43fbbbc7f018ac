"""The body of `POST /invocations` -> raw pixels, in MLflow's scoring-server formats: JSON
`inputs`/`instances`/`dataframe_split`, or CSV of 784 values a line (maybe under a header).
Booleans and text stay what they are, for the model to refuse; a refusal never quotes the request.
"""

from __future__ import annotations

import functools
import io
import itertools
import json
import warnings
from typing import Any

import numpy as np

from fmnist_model.images import FLAT_SIZE

JSON_FORMS = ("inputs", "instances", "dataframe_split")
ACCEPTED = (
    'application/json ({"inputs": ...}, {"instances": ...} or {"dataframe_split": ...}) '
    "or text/csv (784 values per line)"
)
_PANDAS_HEADER = [str(i) for i in range(FLAT_SIZE)]


class RequestRefused(Exception):
    """A request the server refuses: its HTTP status, error code and one-line message."""

    def __init__(self, status: int, error_code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error_code, self.message = status, error_code, message


# 400s: a body of no form this server takes; a fine form holding bad pixels (the model's code)
malformed = functools.partial(RequestRefused, 400, "MALFORMED_REQUEST")
bad_pixels = functools.partial(RequestRefused, 400, "INVALID_PARAMETER_VALUE")


def read_pixels(content_type: str | None, body: bytes | bytearray) -> np.ndarray:
    """The request's images as an array the model checks: (n, 784) or (n, 28, 28) if valid."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media == "application/json":
        pixels = json_pixels(body)
    elif media == "text/csv":
        pixels = csv_pixels(body)
    else:
        raise RequestRefused(415, "UNSUPPORTED_MEDIA_TYPE", f"Content-Type must be {ACCEPTED}")
    if pixels.size == 0:
        raise bad_pixels("the request holds no pixel values")
    return pixels


def json_pixels(body: bytes | bytearray) -> np.ndarray:
    """An MLflow JSON request -> its images as an array of the kinds the JSON held."""
    try:
        request = json.loads(body)
    except json.JSONDecodeError as exc:  # msg is the parser's few words, never the text
        raise malformed(
            f"malformed JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from None
    except UnicodeDecodeError:
        raise malformed("malformed JSON: the body is not UTF-8 text") from None
    except RecursionError:
        raise malformed("malformed JSON: nested too deeply") from None
    if not (isinstance(request, dict) and len(request) == 1 and next(iter(request)) in JSON_FORMS):
        raise malformed(
            'the JSON body must be an object with one key: "inputs", "instances" or '
            '"dataframe_split"'
        )
    ((form, value),) = request.items()
    if form == "dataframe_split":
        value = _split_rows(value)
    if not isinstance(value, list):
        raise malformed(f'"{form}" must be an array of images: (n, 784) or (n, 28, 28) pixels')
    return pixel_array(value)


def _split_rows(split: Any) -> Any:
    """dataframe_split's rows (its columns only counted: the model takes them in order)."""
    if not (isinstance(split, dict) and "data" in split):
        raise malformed('"dataframe_split" must be an object with "data": rows of 784 values')
    rows, columns = split["data"], split.get("columns")
    if columns is not None and not isinstance(columns, list):
        raise malformed('"dataframe_split": "columns" must be an array of names')
    first = rows[0] if isinstance(rows, list) and rows else None
    if columns and isinstance(first, list) and len(columns) != len(first):
        raise malformed(
            f'"dataframe_split" names {len(columns)} columns but its first row holds '
            f"{len(first)} values"
        )
    return rows


def pixel_array(value: list[Any]) -> np.ndarray:
    """Nested JSON arrays -> an array whose dtype is what they held (NumPy would turn
    `[1, true]` into integers: booleans among numbers are refused here, in the model's words)."""
    try:
        array = np.array(value)
    except (ValueError, TypeError):  # ragged: rows of different lengths
        raise bad_pixels("pixels must be an array of numbers (ragged or mixed input)") from None
    if array.dtype.kind in "iuf" and bool in _leaf_types(value, array.ndim):
        raise bad_pixels("pixels must be numbers 0-255, got boolean values")
    if array.dtype == object and _leaf_types(value, array.ndim) <= {int, float}:
        try:  # integers too large for int64: numbers all the same, out of range
            return array.astype(np.float64)
        except OverflowError:
            raise bad_pixels("pixel values must lie in 0-255 (raw, unscaled)") from None
    return array


def _leaf_types(value: list[Any], ndim: int) -> set[type]:
    """The types of the values at depth ndim of rectangular nested lists (C loops only)."""
    leaves: Any = value
    for _ in range(ndim - 1):
        leaves = itertools.chain.from_iterable(leaves)
    return set(map(type, leaves))


def csv_pixels(body: bytes | bytearray) -> np.ndarray:
    """CSV lines of 784 numbers -> (n, 784) float64; a header line is skipped."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise malformed("malformed CSV: the body is not UTF-8 text") from None
    header = _is_header(text.partition("\n")[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "input contained no data": said below
        try:
            return np.loadtxt(
                io.StringIO(text), delimiter=",", dtype=np.float64, ndmin=2,
                skiprows=int(header), comments=None,
            )  # fmt: skip
        except ValueError:
            raise _csv_fault(text, header) from None


def _is_number(field: str) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return "_" not in field  # Python's float takes 1_000, NumPy's parser does not


def _is_header(line: str) -> bool:
    fields = [field.strip() for field in line.rstrip("\r").split(",")]
    return fields == _PANDAS_HEADER or not all(_is_number(field) for field in fields)


def _csv_fault(text: str, header: bool) -> RequestRefused:
    """Where a CSV body stops being rows of numbers, in one line (found only on error)."""
    width, first = 0, 0  # values on the first data line, and its number
    for number, line in enumerate(text.splitlines(), start=1):
        if (number == 1 and header) or not line.strip():
            continue
        fields = line.split(",")
        if not width:
            width, first = len(fields), number
        if len(fields) != width:
            return malformed(
                f"malformed CSV: line {number} has {len(fields)} values, line {first} {width}"
            )
        for column, field in enumerate(fields, start=1):
            if not _is_number(field):
                return bad_pixels(f"CSV line {number}, value {column}: not a number 0-255")
    return malformed("malformed CSV: expected lines of comma-separated numbers")
