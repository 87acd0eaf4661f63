"""Search kernels behind the index protocol (DESIGN: "kernels in their own module, faiss stays the reference").

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

import os
import sys


def _prefer_wide_vectors() -> None:
    """Let LLVM use 512-bit vectors where the CPU has AVX-512.

    LLVM tunes recent Intel CPUs to prefer 256-bit vectors (`prefer-256-bit`); for the popcount loops that costs
    ~1.5x here (measured: 6.9 vs 11.3 G words/s per core on a Xeon with AVX512_VPOPCNTDQ). numba reads its target
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


_prefer_wide_vectors()  # before any kernel module imports numba
