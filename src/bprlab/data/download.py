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
from bprlab.data.registry import DOWNLOADS
from bprlab.errors import StageError

log = logging.getLogger(__name__)


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
