"""Fetch the four Fashion-MNIST files from an ordered list of mirrors, verified by SHA-256."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import tempfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from fmnist.errors import DataIntegrityError, DownloadError

# SHA-256 of the decompressed files: gzip headers differ between mirrors (Debian rewrites
# them), the content does not.
CANONICAL_FILES: dict[str, str] = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
MIRROR_ENV = "FMNIST_DATA_MIRROR"
HINT = (
    "install Debian's package dataset-fashion-mnist, or set FMNIST_DATA_MIRROR to a folder "
    "or http(s) URL holding the four .gz files"
)
_CHUNK = 1 << 20


@dataclass(frozen=True)
class HttpPolicy:
    """How hard to try an http(s) mirror."""

    timeout: float = 60.0
    retries: int = 3
    progressbar: bool = True


def mirror_order(configured: Sequence[str], env_mirror: str | None) -> list[str]:
    """The env mirror first when set, then the configured ones, without repeats."""
    ordered = [env_mirror] if env_mirror else []
    ordered += [m for m in configured if m not in ordered]
    return ordered


def is_http(mirror: str) -> bool:
    return mirror.startswith(("http://", "https://"))


def verify_into(gz_path: Path, expected_sha256: str, dest: Path) -> None:
    """Decompress gz_path to dest only if its content hashes to expected_sha256.

    The content is written to a hidden temporary file beside dest and renamed over it at
    the end, so dest is either absent or complete and verified, never half-written.
    """
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, gzip.open(gz_path, "rb") as src:
            while chunk := src.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != expected_sha256:
            raise DataIntegrityError(
                f"{gz_path.name}: SHA-256 of the content is {digest.hexdigest()}, "
                f"expected {expected_sha256}"
            )
        os.replace(tmp, dest)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataIntegrityError(f"{gz_path.name}: not a valid gzip file ({exc})") from None
    finally:
        tmp.unlink(missing_ok=True)


def is_verified(path: Path, expected_sha256: str) -> bool:
    """True when path exists and its content hashes to expected_sha256."""
    if not path.is_file():
        return False
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest() == expected_sha256


@contextlib.contextmanager
def fetched(mirror: str, filename: str, policy: HttpPolicy) -> Iterator[Path]:
    """A local path to mirror/filename for the duration of the block (a download is removed)."""
    if not is_http(mirror):
        path = Path(mirror).expanduser() / filename
        if not path.is_file():
            raise FileNotFoundError(f"no file {path}")
        yield path
        return
    import pooch

    with tempfile.TemporaryDirectory(prefix="fmnist-download-") as tmp:
        pup = pooch.create(
            path=tmp,
            base_url=mirror.rstrip("/") + "/",
            registry={filename: None},
            retry_if_failed=policy.retries,
        )
        downloader = pooch.HTTPDownloader(progressbar=policy.progressbar, timeout=policy.timeout)
        yield Path(pup.fetch(filename, downloader=downloader))


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def download_file(
    name: str, expected_sha256: str, mirrors: Sequence[str], out_dir: Path, policy: HttpPolicy
) -> str:
    """Put a verified out_dir/name in place from the first mirror that serves it; return it."""
    failures = []
    for mirror in mirrors:
        try:
            with fetched(mirror, f"{name}.gz", policy) as gz_path:
                verify_into(gz_path, expected_sha256, out_dir / name)
            return mirror
        except Exception as exc:  # any mirror failure moves on to the next mirror
            failures.append(f"{mirror} ({_reason(exc)})")
    raise DownloadError(f"could not get {name}.gz from any mirror: {'; '.join(failures)}. {HINT}")


def download_dataset(mirrors: Sequence[str], out_dir: Path, policy: HttpPolicy) -> dict[str, str]:
    """Fill out_dir with the four verified, decompressed files; return which mirror served each."""
    out_dir.mkdir(parents=True, exist_ok=True)
    clear_unverified(out_dir)
    return {
        name: "already present"
        if (out_dir / name).is_file()
        else download_file(name, sha256, mirrors, out_dir, policy)
        for name, sha256 in CANONICAL_FILES.items()
    }


def clear_unverified(out_dir: Path) -> None:
    """Remove partial files and canonical files that fail verification; leave anything else."""
    if not out_dir.is_dir():
        return
    for path in out_dir.iterdir():
        expected = CANONICAL_FILES.get(path.name)
        leftover = path.name.startswith(".") and path.name.endswith(".partial")
        if leftover or (expected is not None and not is_verified(path, expected)):
            path.unlink()
