"""The download stage: data/raw <- the four Fashion-MNIST files, decompressed and verified by
SHA-256, from the first of an ordered list of mirrors (folders or http(s) URLs) that serves
each. A mirror that stalls, is too slow or cannot be reached is not asked again in the same
run; a local disk that refuses ends the run at once (LocalDiskError): no mirror can help."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from fmnist.data.http_fetch import (
    CHUNK,
    HttpPolicy,
    LocalDiskError,
    MirrorError,
    fetch_http,
    gz_sink,
    local_error,
    os_reason,
)
from fmnist.params.config import Params
from fmnist.process.errors import DataIntegrityError, DownloadError

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


def run(params: Params, out_dir: Path, env_mirror: str | None) -> dict[str, str]:
    """data/raw: the four decompressed files, verified; returns which mirror served each."""
    cfg = params.download
    policy = HttpPolicy(timeout=cfg.timeout, retries=cfg.retries, min_speed=cfg.min_speed)
    mirrors = dict.fromkeys([env_mirror, *cfg.mirrors] if env_mirror else cfg.mirrors)
    return download_dataset(list(mirrors), out_dir, policy)  # the env mirror first, no repeats


def download_dataset(mirrors: Sequence[str], out_dir: Path, policy: HttpPolicy) -> dict[str, str]:
    """Fill out_dir with the four verified, decompressed files, each from the first mirror that
    serves it; return which mirror served each."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise LocalDiskError(f"{out_dir}: is a file, not a folder for the raw files") from None
    except OSError as exc:
        raise local_error(out_dir, "create the folder", exc) from None
    clear_unverified(out_dir)
    served: dict[str, str] = {}
    dropped: dict[str, str] = {}  # mirror -> why it is not asked again this run
    for name, sha256 in CANONICAL_FILES.items():
        if (out_dir / name).is_file():
            served[name] = "already present"
            continue
        failures = []
        for mirror in mirrors:
            http = mirror.startswith(("http://", "https://"))  # anything else is a folder
            where = f"{mirror.rstrip('/')}/{name}.gz" if http else mirror
            if mirror in dropped:
                failures.append(f"{where}: skipped ({dropped[mirror]})")
                continue
            try:
                if http:
                    fetch_http(where, out_dir / name, sha256, policy)
                else:
                    _from_folder(Path(mirror).expanduser(), name, sha256, out_dir)
                served[name] = mirror
                break
            except (MirrorError, DataIntegrityError) as exc:
                failures.append(f"{where}: {exc}")
                if isinstance(exc, MirrorError) and exc.drop:
                    dropped[mirror] = f"{name}.gz: {exc}"
        else:
            tried = "; ".join(failures)
            raise DownloadError(f"could not get {name}.gz from any mirror: {tried}. {HINT}")
    return served


def clear_unverified(out_dir: Path) -> None:
    """Remove partial files (`.<canonical name>.<random>` as atomic_path makes them, or
    `.<name>.<random>.partial` as earlier versions did) and canonical files that fail
    verification; a folder where a canonical file goes is a LocalDiskError."""
    try:
        paths = list(out_dir.iterdir())
    except OSError as exc:
        raise local_error(out_dir, "list the folder", exc) from None
    for path in paths:
        name, expected = path.name, CANONICAL_FILES.get(path.name)
        if expected is not None and path.is_dir():
            raise LocalDiskError(f"{path}: is a folder, where the verified file goes; remove it")
        partial = name.startswith(".") and (
            name.endswith(".partial") or name[1:].rpartition(".")[0] in CANONICAL_FILES
        )
        if not partial and expected is not None and path.is_file():
            try:
                with path.open("rb") as f:
                    partial = hashlib.file_digest(f, "sha256").hexdigest() != expected
            except OSError as exc:
                raise local_error(path, "read", exc) from None
        try:
            if partial:
                path.unlink()
        except OSError as exc:
            raise local_error(path, "remove an unverified file", exc) from None


def _from_folder(folder: Path, name: str, expected_sha256: str, out_dir: Path) -> None:
    """Decompress folder/name.gz to out_dir/name (gz_sink); the source's faults are MirrorError."""
    gz_path = folder / f"{name}.gz"
    try:
        if not folder.is_dir():  # may raise: an unreadable parent, a stale mount
            raise MirrorError("not a folder" if folder.exists() else "no such folder")
        with (
            gz_path.open("rb") as src,
            gz_sink(out_dir / name, expected_sha256, gz_path.name) as write,
        ):
            while True:
                try:
                    chunk = src.read(CHUNK)
                except OSError as exc:  # named here, else atomic_path names dest
                    exc.filename = exc.filename or name
                    raise
                if not chunk:
                    return
                write(chunk)
    except FileNotFoundError:
        raise MirrorError(f"no file {name}.gz") from None
    except OSError as exc:  # the disk's refusals are LocalDiskError, not OSError
        raise MirrorError(f"cannot read {exc.filename} ({os_reason(exc)})") from None
