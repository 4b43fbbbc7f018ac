"""The download stage on synthetic files: local and http mirrors (a real server on 127.0.0.1)."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from fmnist.data import download as dl
from fmnist.data.download import HttpPolicy, download_dataset, mirror_order, verify_into
from fmnist.data.idx import encode_idx
from fmnist.errors import DataIntegrityError, DownloadError
from tests.conftest import synthetic_images, write_gz

FAST = HttpPolicy(timeout=5, retries=0, progressbar=False)


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


class _Server(http.server.ThreadingHTTPServer):
    fail_first: int = 0  # answer 503 to this many requests first
    corrupt: bool = False  # serve other bytes than the mirror folder holds
    requests: int = 0


@pytest.fixture
def http_mirror(mirror: Path) -> Iterator[_Server]:
    """A real HTTP server on a free loopback port serving the mirror folder."""

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            super().__init__(*args, directory=str(mirror), **kwargs)

        def do_GET(self) -> None:
            server: _Server = self.server  # type: ignore[assignment]
            server.requests += 1
            if server.requests <= server.fail_first:
                self.send_error(503, "flaky mirror")
                return
            if server.corrupt:
                body = gzip.compress(b"\x00\x00\x08\x01" + b"\x00" * 8)
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            super().do_GET()

        def log_message(self, *args: object) -> None:
            pass

    server = _Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def url(server: _Server) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/"


def test_mirror_order_puts_env_first_without_repeats() -> None:
    assert mirror_order(["a", "b"], "b") == ["b", "a"]
    assert mirror_order(["a", "b"], None) == ["a", "b"]


def test_local_mirror_round_trip(tmp_path: Path, mirror: Path, contents: dict[str, bytes]) -> None:
    out = tmp_path / "raw"
    served = download_dataset([str(mirror)], out, FAST)
    assert set(served.values()) == {str(mirror)}
    assert sorted(p.name for p in out.iterdir()) == sorted(contents)
    for name, data in contents.items():
        assert (out / name).read_bytes() == data


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
    assert "train-labels-idx1-ubyte" not in {p.name for p in out.iterdir()}
    assert not [p for p in out.iterdir() if p.name.endswith(".partial")]


def test_corrupt_gzip(tmp_path: Path) -> None:
    gz = tmp_path / "x.gz"
    gz.write_bytes(b"this is not gzip")
    with pytest.raises(DataIntegrityError, match="not a valid gzip file"):
        verify_into(gz, "0" * 64, tmp_path / "x")
    assert list(tmp_path.iterdir()) == [gz]


def test_truncated_gzip(tmp_path: Path) -> None:
    gz = write_gz(tmp_path / "x.gz", b"abc" * 10_000)
    gz.write_bytes(gz.read_bytes()[:-50])
    with pytest.raises(DataIntegrityError, match="not a valid gzip file"):
        verify_into(gz, "0" * 64, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_unverified_leftovers_are_removed(tmp_path: Path, mirror: Path) -> None:
    out = tmp_path / "raw"
    out.mkdir()
    (out / "train-images-idx3-ubyte").write_bytes(b"half a file")
    (out / ".t10k-images-idx3-ubyte.abc.partial").write_bytes(b"interrupted")
    download_dataset([str(mirror)], out, FAST)
    assert not [p for p in out.iterdir() if p.name.endswith(".partial")]
    assert len(list(out.iterdir())) == 4


def test_http_mirror(tmp_path: Path, http_mirror: _Server, contents: dict[str, bytes]) -> None:
    served = download_dataset([url(http_mirror)], tmp_path / "raw", FAST)
    assert set(served.values()) == {url(http_mirror)}
    assert (tmp_path / "raw" / "train-images-idx3-ubyte").read_bytes() == contents[
        "train-images-idx3-ubyte"
    ]


def test_flaky_http_mirror_is_retried(tmp_path: Path, http_mirror: _Server) -> None:
    http_mirror.fail_first = 2
    policy = HttpPolicy(timeout=5, retries=2, progressbar=False)
    download_dataset([url(http_mirror)], tmp_path / "raw", policy)
    assert http_mirror.requests == 4 + 2


def test_failing_http_mirror_without_retries_names_the_error(
    tmp_path: Path, http_mirror: _Server
) -> None:
    http_mirror.fail_first = 100
    with pytest.raises(DownloadError, match="503"):
        download_dataset([url(http_mirror)], tmp_path / "raw", FAST)


def test_http_mirror_serving_wrong_bytes(
    tmp_path: Path, http_mirror: _Server, mirror: Path
) -> None:
    http_mirror.corrupt = True
    out = tmp_path / "raw"
    with pytest.raises(DownloadError, match="SHA-256"):
        download_dataset([url(http_mirror)], out, FAST)
    assert list(out.iterdir()) == []
    # ... and a good mirror after it still serves everything
    download_dataset([url(http_mirror), str(mirror)], out, FAST)
    assert len(list(out.iterdir())) == 4
