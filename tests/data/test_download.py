"""The download stage on synthetic files: folder mirrors, the mirror order, what is kept."""

from __future__ import annotations

import gzip
import hashlib
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from fmnist.data import download as dl
from fmnist.data.download import (
    HINT,
    LocalDiskError,
    download_dataset,
    run,
)
from fmnist.data.http_fetch import HttpPolicy, MirrorError
from fmnist.params.config import parse_params
from fmnist.process.errors import DataIntegrityError, DownloadError
from tests.conftest import encode_idx, synthetic_images, write_gz

FAST = HttpPolicy(timeout=5, retries=0, progressbar=False)
FIRST = "train-images-idx3-ubyte"
HTTP = "http://mirror.invalid/fmnist/"  # never asked: fetch_http is replaced where it matters
Fetches = Callable[[Exception | None], list[str]]  # the fetches fixture


@pytest.fixture
def contents(monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    """Four small IDX files standing in for the real ones, their hashes made canonical."""
    train, test = synthetic_images(40, seed=3), synthetic_images(20, seed=4)
    files = {
        "train-images-idx3-ubyte": encode_idx(train[0]),
        "train-labels-idx1-ubyte": encode_idx(train[1]),
        "t10k-images-idx3-ubyte": encode_idx(test[0]),
        "t10k-labels-idx1-ubyte": encode_idx(test[1]),
    }
    hashes = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    monkeypatch.setattr(dl, "CANONICAL_FILES", hashes)
    return files


@pytest.fixture
def mirror(tmp_path: Path, contents: dict[str, bytes]) -> Path:
    folder = tmp_path / "mirror"
    folder.mkdir()
    for name, data in contents.items():
        write_gz(folder / f"{name}.gz", data)
    return folder


@pytest.fixture
def fetches(monkeypatch: pytest.MonkeyPatch) -> Fetches:
    """Replace fetch_http: each call is recorded (its URL) and raises the given error, if any."""

    def install(error: Exception | None) -> list[str]:
        urls: list[str] = []

        def fake(url: str, dest: Path, expected_sha256: str, policy: HttpPolicy) -> None:
            urls.append(url)
            if error is not None:
                raise error

        monkeypatch.setattr(dl, "fetch_http", fake)
        return urls

    return install


def failure_line(exc: pytest.ExceptionInfo[DownloadError], where: str, reason: str) -> None:
    """The exact line: the file, the one mirror tried and its reason (a regex), the hint."""
    expected = f"could not get {FIRST}.gz from any mirror: {re.escape(where)}: {reason}\\. "
    assert re.fullmatch(expected + re.escape(HINT), str(exc.value)), str(exc.value)


def test_run_puts_the_env_mirror_first_without_repeats(tmp_path: Path, fetches: Fetches) -> None:
    other = "http://other.invalid/"
    params = parse_params({"download": {"mirrors": [HTTP, other]}})
    for env_mirror, order in ((other, [other, HTTP]), (None, [HTTP, other])):
        urls = fetches(MirrorError("HTTP 404 no such file"))
        with pytest.raises(DownloadError):
            run(params, tmp_path / "raw", env_mirror)
        assert urls == [f"{mirror}{FIRST}.gz" for mirror in order]


def test_run_asks_the_env_mirror_first(tmp_path: Path, mirror: Path, fetches: Fetches) -> None:
    urls = fetches(None)
    params = parse_params({"download": {"mirrors": [HTTP]}})
    served = run(params, tmp_path / "raw", str(mirror))
    assert served == dict.fromkeys(dl.CANONICAL_FILES, str(mirror))
    assert urls == []


def test_run_passes_the_download_params(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    policies: list[tuple[str, HttpPolicy]] = []
    monkeypatch.setattr(dl, "fetch_http", lambda url, dest, sha, p: policies.append((url, p)))
    params = parse_params({"download": {"mirrors": [HTTP], "timeout": 3, "retries": 1,
                                        "min_speed": 1000}})  # fmt: skip
    served = run(params, tmp_path / "raw", None)
    assert served == dict.fromkeys(dl.CANONICAL_FILES, HTTP)
    policy = HttpPolicy(timeout=3, retries=1, progressbar=True, min_speed=1000)
    assert policies == [(f"{HTTP}{name}.gz", policy) for name in dl.CANONICAL_FILES]


def test_local_mirror_round_trip(tmp_path: Path, mirror: Path, contents: dict[str, bytes]) -> None:
    out = tmp_path / "raw"
    served = download_dataset([str(mirror)], out, FAST)
    assert set(served.values()) == {str(mirror)}
    assert sorted(p.name for p in out.iterdir()) == sorted(contents)
    for name, data in contents.items():
        assert (out / name).read_bytes() == data
    assert download_dataset([str(mirror)], out, FAST) == dict.fromkeys(contents, "already present")


def test_debian_style_gzip_header_is_accepted(tmp_path: Path, contents: dict[str, bytes]) -> None:
    """Debian rewrites the gzip headers (name, mtime, level): the content hash still matches."""
    folder = tmp_path / "debian"
    folder.mkdir()
    for name, data in contents.items():
        with gzip.GzipFile(filename=name, mode="wb", fileobj=(folder / f"{name}.gz").open("wb"),
                           compresslevel=9, mtime=1_600_000_000) as gz:  # fmt: skip
            gz.write(data)
    download_dataset([str(folder)], tmp_path / "raw", FAST)
    assert (tmp_path / "raw" / "t10k-labels-idx1-ubyte").read_bytes() == contents[
        "t10k-labels-idx1-ubyte"
    ]


def test_absent_mirror_falls_through_to_the_next(tmp_path: Path, mirror: Path) -> None:
    served = download_dataset([str(tmp_path / "nowhere"), str(mirror)], tmp_path / "raw", FAST)
    assert set(served.values()) == {str(mirror)}


def test_all_mirrors_failing_is_one_message_naming_each(tmp_path: Path, contents: dict) -> None:
    out = tmp_path / "raw"
    mirrors = [str(tmp_path / "nowhere"), "http://127.0.0.1:9/"]  # port 9: nothing listens
    with pytest.raises(DownloadError) as err:
        download_dataset(mirrors, out, FAST)
    message = str(err.value)
    assert "\n" not in message
    assert all(m in message for m in mirrors)
    assert "dataset-fashion-mnist" in message and "FMNIST_DATA_MIRROR" in message
    assert list(out.iterdir()) == []


def test_checksum_mismatch_leaves_nothing(tmp_path: Path, mirror: Path) -> None:
    write_gz(mirror / "train-labels-idx1-ubyte.gz", encode_idx(np.zeros(40, np.uint8)))
    out = tmp_path / "raw"
    with pytest.raises(DownloadError, match="SHA-256 of the content"):
        download_dataset([str(mirror)], out, FAST)
    assert sorted(p.name for p in out.iterdir()) == ["train-images-idx3-ubyte"]


def test_corrupt_gzip_names_the_file(tmp_path: Path, mirror: Path) -> None:
    (mirror / f"{FIRST}.gz").write_bytes(b"this is not gzip")
    out = tmp_path / "raw"
    with pytest.raises(DownloadError) as err:
        download_dataset([str(mirror)], out, FAST)
    failure_line(err, str(mirror), re.escape(f"{FIRST}.gz: not a valid gzip file (") + ".*")
    assert list(out.iterdir()) == []


def test_unverified_leftovers_are_removed(tmp_path: Path, mirror: Path) -> None:
    out = tmp_path / "raw"
    out.mkdir()
    (out / "train-images-idx3-ubyte").write_bytes(b"half a file")
    (out / ".t10k-images-idx3-ubyte.abc.partial").write_bytes(b"interrupted, earlier versions")
    (out / ".t10k-labels-idx1-ubyte.0a1b2c3d").write_bytes(b"interrupted")
    (out / "notes.txt").write_text("someone else's")
    (out / ".t10k-labels-idx1-ubyte").write_text("not a leftover's name")
    download_dataset([str(mirror)], out, FAST)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [*dl.CANONICAL_FILES, "notes.txt", ".t10k-labels-idx1-ubyte"]
    )


# ---------------------------------------------------------------- http mirrors, fetch replaced


def test_failed_mirror_is_not_asked_again(tmp_path: Path, mirror: Path, fetches: Fetches) -> None:
    """A mirror whose failure drops it costs the first file only; the next serves all four."""
    urls = fetches(MirrorError("stalled (no answer in 1 s)", drop=True))
    served = download_dataset([HTTP, str(mirror)], tmp_path / "raw", FAST)
    assert served == dict.fromkeys(dl.CANONICAL_FILES, str(mirror))
    assert urls == [f"{HTTP}{FIRST}.gz"]


@pytest.mark.parametrize(
    "error",
    [MirrorError("HTTP 404 Not Found"), DataIntegrityError("SHA-256 of the content is ...")],
    ids=["missing-file", "wrong-bytes"],
)
def test_mirror_failing_one_file_is_asked_for_the_next(
    tmp_path: Path, mirror: Path, fetches: Fetches, error: Exception
) -> None:
    urls = fetches(error)
    served = download_dataset([HTTP, str(mirror)], tmp_path / "raw", FAST)
    assert served == dict.fromkeys(dl.CANONICAL_FILES, str(mirror))
    assert urls == [f"{HTTP}{name}.gz" for name in dl.CANONICAL_FILES]


def test_http_failure_line(tmp_path: Path, contents: dict, fetches: Fetches) -> None:
    fetches(MirrorError("stalled (no answer in 1 s)", drop=True))
    with pytest.raises(DownloadError) as err:
        download_dataset([HTTP], tmp_path / "raw", FAST)
    failure_line(err, f"{HTTP}{FIRST}.gz", re.escape("stalled (no answer in 1 s)"))


def test_dropped_mirror_is_named_as_skipped(tmp_path: Path, fetches: Fetches, mirror: Path) -> None:
    """A mirror dropped for one file is not asked for the next ones, and the line says why."""
    urls = fetches(MirrorError("stalled (no answer in 1 s)", drop=True))
    (mirror / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DownloadError) as err:
        download_dataset([HTTP, str(mirror)], tmp_path / "raw", FAST)
    where = f"{HTTP}train-labels-idx1-ubyte.gz"
    assert f"{where}: skipped ({FIRST}.gz: stalled (no answer in 1 s)); " in str(err.value)
    assert urls == [f"{HTTP}{FIRST}.gz"]


def test_min_speed_is_validated() -> None:
    from fmnist.process.errors import ConfigError

    assert parse_params({"download": {"min_speed": 1000}}).download.min_speed == 1000
    with pytest.raises(ConfigError, match=r"download\.min_speed: Input should be greater than 0"):
        parse_params({"download": {"min_speed": 0}})


# ---------------------------------------------------------------- folder mirrors


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: None, "no such folder"),
        (lambda p: p.write_text("a file"), "not a folder"),
        (lambda p: p.mkdir(), f"no file {FIRST}.gz"),
        (lambda p: (p / f"{FIRST}.gz").mkdir(parents=True),
         f"cannot read {{folder}}/{FIRST}.gz (Is a directory, EISDIR)"),
    ],
    ids=["absent", "a-file", "empty", "unreadable"],
)  # fmt: skip
def test_bad_mirror_folder_is_named(tmp_path: Path, contents: dict, make, reason: str) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "mirror"
    make(folder)
    with pytest.raises(DownloadError) as err:
        download_dataset([str(folder)], tmp_path / "raw", FAST)
    failure_line(err, str(folder), re.escape(reason.format(folder=folder)))


# ---------------------------------------------------------------- local faults: never the mirrors'


def test_out_dir_under_a_file(tmp_path: Path, mirror: Path) -> None:
    (tmp_path / "file").write_text("")
    out = tmp_path / "file" / "raw"
    with pytest.raises(LocalDiskError) as err:
        download_dataset([str(mirror)], out, FAST)
    assert str(err.value) == f"{out}: cannot create the folder (Not a directory, ENOTDIR)"
    assert err.value.exit_code == 9


def test_out_dir_is_a_file(tmp_path: Path, mirror: Path) -> None:
    out = tmp_path / "raw"
    out.write_text("")
    with pytest.raises(LocalDiskError) as err:
        download_dataset([str(mirror)], out, FAST)
    assert str(err.value) == f"{out}: is a file, not a folder for the raw files"


def test_folder_where_a_raw_file_goes(tmp_path: Path, mirror: Path) -> None:
    out = tmp_path / "raw"
    (out / "t10k-labels-idx1-ubyte").mkdir(parents=True)
    with pytest.raises(LocalDiskError) as err:
        download_dataset([str(mirror)], out, FAST)
    path = out / "t10k-labels-idx1-ubyte"
    assert str(err.value) == f"{path}: is a folder, where the verified file goes; remove it"
    assert [p.name for p in out.iterdir()] == [path.name]  # found before downloading anything
