"""Search kernels behind the index protocol, in their own modules; faiss stays the reference they are tested against.

- `layout`: packed codes in the blocked word layout the CPU kernels scan (64 rows x 64-bit words per block);
- `hamming`: one pass of XOR + popcount fused with counting top-l selection, multi-threaded (numba JIT);
- `buffers`: the scan's per-question buffers (admit a block's rows, compact by a histogram, merge the chunks);
- `lut`: <e_q, sign(e_p)> by table lookup, for reranking candidates and for scoring every code;
- `nibble`: the rerank's lookups 16 candidates at a time from 4-bit tables in a register (AVX-512 VPERMPS);
- `select`: stable top-k of float scores (the rerank's last step);
- `buckets`: the hash-table lookup (faiss IndexBinaryHash / IndexBinaryMultiHash semantics, codes held once);
- `torch_search`: the same search as torch ops, for a CUDA device (and testable on CPU tensors).

Ties: among equal Hamming distances (and equal rerank scores) the lower row id comes first, in every backend
that this package implements; faiss (the reference backend) leaves the order of ties unspecified.
"""

import functools
import hashlib
import os
import sys
from pathlib import Path


def _prefer_wide_vectors() -> None:
    """Let LLVM use 512-bit vectors where the CPU has AVX-512.

    LLVM tunes recent Intel CPUs to prefer 256-bit vectors (`prefer-256-bit`); the popcount loops then run at half
    the vector width VPOPCNTDQ offers. numba reads its target
    features once, from NUMBA_CPU_FEATURES when set, so this only applies when numba is not imported yet and the
    user has not set the variable; it changes nothing on CPUs without AVX-512.
    """
    if "numba" in sys.modules or os.environ.get("NUMBA_CPU_FEATURES") or os.environ.get("NUMBA_CPU_NAME"):
        return
    try:
        import llvmlite.binding as llvm

        features = llvm.get_host_cpu_features().flatten()
    except Exception:  # an llvmlite without host detection: keep numba's defaults
        return
    if "+avx512f" in features.split(","):
        os.environ["NUMBA_CPU_FEATURES"] = features + ",-prefer-256-bit"


def _sources_digest(directory: Path) -> bytes:
    """One digest of every module's source in `directory` (names and contents, in name order)."""
    stats = [(path, path.stat()) for path in sorted(directory.glob("*.py"))]
    return _digest(tuple((str(path), st.st_mtime_ns, st.st_size) for path, st in stats))


@functools.lru_cache(maxsize=None)
def _digest(files: tuple) -> bytes:  # read again only when a file's time or size changes
    digest = hashlib.sha256()
    for path, _, _ in files:
        digest.update(Path(path).name.encode() + b"\0" + Path(path).read_bytes() + b"\0")
    return digest.digest()


def _stamp_kernels_together() -> None:
    """Make a change to any kernel module invalidate every kernel's on-disk cache.

    numba checks a cached function against the source of the file that defines it only, and the kernels inline
    functions from their neighbours (the scan in `hamming` inlines `buffers.append`): after an edit to
    `buffers.py`, the scan would load its stale machine code from the cache. Each of numba's cache locators is
    extended, for the files of this package only, with a stamp that also covers every module here. numba chooses
    a locator per function from `CacheImpl._locator_classes`; where a numba lacks it, nothing changes."""
    try:
        from numba.core import caching
    except ImportError:
        return
    impl = getattr(caching, "CacheImpl", None) or getattr(caching, "_CacheImpl", None)  # numba >= 0.61 / before
    bases = getattr(impl, "_locator_classes", None)
    if not isinstance(bases, list) or any(getattr(cls, "bprlab_kernels", False) for cls in bases):
        return
    here = Path(__file__).resolve().parent

    def stamped(base):
        class Stamped(base):
            bprlab_kernels = True

            @classmethod
            def from_function(cls, py_func, py_file):
                if Path(py_file).resolve().parent != here:
                    return None
                return super().from_function(py_func, py_file)

            def get_source_stamp(self):
                return super().get_source_stamp(), _sources_digest(here)

        Stamped.__name__ = Stamped.__qualname__ = f"Kernels{base.__name__}"
        return Stamped

    bases[:0] = [stamped(base) for base in bases]


_prefer_wide_vectors()  # before any kernel module imports numba
_stamp_kernels_together()  # before any kernel is compiled (cache=True finds its locator at decoration)
