"""Run-directory artifacts: atomic writes and provenance.

A file or directory appears under its final name only once it is complete, so a killed or failed stage never
leaves a half-written artifact that a later stage could mistake for a finished one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

PACKAGES = ("torch", "pytorch-lightning", "transformers", "datasets", "faiss-cpu", "numba", "numpy", "omegaconf", "bm25s")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _publishable(path: Path, directory: bool) -> None:
    """mkstemp/mkdtemp create owner-only entries; give the final artifact the usual permissions."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        _publishable(tmp, directory=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _remove_orphans(path: Path) -> None:
    """Temporary folders of earlier writes of `path` whose process is gone (killed mid-write): `.<name>.<pid>.*`."""
    for stale in path.parent.glob(f".{path.name}.*"):
        pid = stale.name[len(path.name) + 2:].split(".", 1)[0]
        if stale.is_dir() and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary directory beside `path`; it replaces `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphans(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", dir=path.parent))
    try:
        yield tmp
        _publishable(tmp, directory=True)
        old = None
        if path.exists():  # replace, then delete: a kill in between leaves a complete folder under one of the names
            old = path.with_name(f".{path.name}.{os.getpid()}.old")
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


EXPORT_META = "bprlab.json"  # an export's record (bprlab.export): config keys, corpus, metrics

# The command that writes each artifact again, by file name: what a damaged one's error advises
REBUILD = {
    "train.json": "train again: `bprlab train <experiment.yaml> --force`",
    "manifest.json": "encode again: `bprlab encode <experiment.yaml> --force`",
    "index.json": "index again: `bprlab index <experiment.yaml> --force`",
    "metrics.json": "evaluate again: `bprlab evaluate <experiment.yaml> --force`",
    "summary.json": "write it again from the unit records: `bprlab reproduce <table.yaml> --out <its folder> "
                    "--records-only`",
    "table.json": "write it again from the unit records: `bprlab reproduce <table.yaml> --out <its folder> "
                  "--records-only`",
    "bench.json": "run the bench again (its command is at the top of bench.md)",
    EXPORT_META: "export the run again: `bprlab export <experiment.yaml> --to <folder>`",
}


def read_json(path: str | Path, rebuild: str | None = None) -> Any:
    """A JSON artifact; a damaged one (truncated, edited) is a one-line error naming it and the command that writes
    it again (`rebuild`, else by its file name), not a traceback."""
    from bprlab.errors import StageError

    try:
        return json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        advice = rebuild or REBUILD.get(Path(path).name, "run again the command that wrote it")
        raise StageError(f"{path}: damaged ({exc.__class__.__name__}: {str(exc)[:80]}); {advice}") from None


def read_sound_json(path: str | Path, log=None, then: str = "") -> dict | None:
    """A JSON object that callers rebuild when it is unusable: None where the file is missing, damaged or not an
    object (said on `log` with what happens `then`, where given), never an error."""
    from bprlab.errors import StageError

    path = Path(path)
    if not path.is_file():
        return None
    try:
        data = read_json(path)
    except StageError as exc:
        if log is not None:
            log.warning("%s; %s", exc, then)
        return None
    if not isinstance(data, dict):
        if log is not None:
            log.warning("%s: not a JSON object; %s", path, then)
        return None
    return data


def fingerprint(*parts: Any) -> str:
    """A short, stable hash of JSON-serialisable parts (used to decide whether a stage's output is current)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def git_revision(cwd: str | Path | None = None) -> dict:
    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() if out.returncode == 0 else ""

    try:
        return {"commit": git("rev-parse", "HEAD") or None, "dirty": bool(git("status", "--porcelain"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def library_versions() -> dict:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def provenance(config: dict, seed: int) -> dict:
    return {
        "config": config,
        "seed": seed,
        "git": git_revision(Path(__file__).parent),
        "versions": library_versions(),
        "command": sys.argv,
        "host": platform.node(),
    }
