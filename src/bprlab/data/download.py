"""`bprlab download nq|trivia|wikipedia`: DPR's public files, for users with internet.

Each file is streamed (gunzipped where needed) to a temporary name and renamed only when complete.
"""

from __future__ import annotations

import gzip
import logging
import shutil
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from bprlab.artifacts import atomic_path
from bprlab.data.paths import DOWNLOADS
from bprlab.errors import StageError

log = logging.getLogger(__name__)


# SQuAD v1.1 dev, the embedded default's source (docs/method.md#the-squad-task): fetched once where the data
# folder beside a checkout (../shared/data) is absent.
SQUAD_DEV = {"url": "https://rajpurkar.github.io/SQuAD-explorer/dataset/dev-v1.1.json", "bytes": 4_854_279,
             "sha256": "95aa6a52d5d6a735563366753ca50492a658031da74f301ac5238b03966972c9"}


def fetch_verified(url: str, target: str | Path, sha256: str, size: int, timeout: float = 30.0) -> Path:
    """Download `url` to `target` once; the file is renamed into place only when its size and sha256 match."""
    import hashlib

    target = Path(target)
    if target.is_file():
        return target
    log.info("fetching %s -> %s (once)", url, target)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, atomic_path(target) as tmp:
            digest = hashlib.sha256()
            with open(tmp, "wb") as out:
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    digest.update(chunk)
                    out.write(chunk)
            got = tmp.stat().st_size
            if got != size or digest.hexdigest() != sha256:
                raise StageError(f"{url}: got {got:,} bytes with sha256 {digest.hexdigest()[:16]}..., expected "
                                 f"{size:,} bytes and {sha256[:16]}...; not using it")
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise StageError(f"{url}: download failed ({exc}). Offline? Copy the file to {target} by hand "
                         f"(sha256 {sha256}), or point data.squad.source at a copy") from None
    return target


def download(dataset: str, root: str | Path = "data", timeout: float = 30.0) -> list[Path]:
    folder = Path(root) / dataset
    written = []
    for name, url in DOWNLOADS[dataset].items():
        target = folder / name.removesuffix(".gz")
        if target.is_file():
            log.info("%s exists", target)
            written.append(target)
            continue
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, atomic_path(target) as tmp:
                total = int(response.headers.get("Content-Length") or 0) or None
                with open(tmp, "wb") as out, tqdm.wrapattr(response, "read", total=total, desc=name) as stream:
                    shutil.copyfileobj(gzip.GzipFile(fileobj=stream) if name.endswith(".gz") else stream, out)
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise StageError(
                f"{url}: download failed ({exc}); this needs internet access to dl.fbaipublicfiles.com. "
                f"Copy DPR's files into {folder}/ by hand, or use the offline default dataset `squad`"
            ) from None
        written.append(target)
    return written
