"""The conditions a benchmark ran under, and whether its baseline ran at its best.

A speed ratio against DPR is only as honest as DPR's GEMM. Recorded per run: every BLAS / OpenMP library loaded
(threadpoolctl: internal API, version, architecture, threads), the environment variables that steer them, the
CPU's SIMD flags, and a GEMM probe: the GFLOP/s of faiss's IndexFlatIP on a 1000-question batch (the DPR
baseline's own BLAS) beside numpy's matrix product of the same shape (a second BLAS on the same machine) and a
peak estimate. The baseline is flagged when its BLAS runs a generic kernel, a kernel older than the CPU (an AVX2
kernel on an Intel AVX-512 CPU), or when the probe is below half of numpy's.
"""

from __future__ import annotations

import os
import time

import numpy as np

from bprlab.index.kernels.jit import cpuinfo

# Variables that override which kernel or how many threads a BLAS / OpenMP runtime uses
OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "OPENBLAS_VERBOSE", "GOTO_NUM_THREADS", "OMP_NUM_THREADS",
             "MKL_NUM_THREADS", "MKL_DEBUG_CPU_TYPE", "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS", "BLIS_NUM_THREADS")
GENERIC = {"prescott", "katmai", "core2", "penryn", "dunnington", "nehalem", "atom", "generic", "opteron", "barcelona",
           "bobcat", "sandybridge", "bulldozer", "piledriver", "steamroller", "excavator"}
AVX512_KERNELS = {"skylakex", "cooperlake", "sapphirerapids"}
CLEARED = "BPRLAB_BENCH_CLEARED"  # the overrides a bench re-executed itself without (set for the new process)


def overrides_set() -> dict[str, str]:
    return {name: os.environ[name] for name in OVERRIDES if name in os.environ}


def cpu_flags() -> set[str]:
    return set((cpuinfo("flags") or "").split())


def cpu_vendor() -> str:
    return cpuinfo("vendor_id") or ""


def libraries() -> list[dict]:
    """threadpoolctl's view of every BLAS / OpenMP library loaded in this process."""
    from threadpoolctl import threadpool_info

    keep = ("user_api", "internal_api", "prefix", "version", "architecture", "num_threads", "threading_layer",
            "filepath")
    return [{k: info.get(k) for k in keep if info.get(k) is not None} for info in threadpool_info()]


def faiss_blas(libs: list[dict]) -> dict | None:
    """The BLAS faiss carries (its wheel bundles one), else the first BLAS loaded."""
    blas = [lib for lib in libs if lib.get("user_api") == "blas"]
    inside = [lib for lib in blas if "faiss" in str(lib.get("filepath", ""))]
    return (inside or blas or [None])[0]


def gemm_probe(dim: int = 768, questions: int = 1000, passages: int = 100_000, threads: int | None = None) -> dict:
    """GFLOP/s of a 1000-question flat search (faiss) and of numpy's product of the same shape, best of 3."""
    import faiss

    from bprlab.index.threads import faiss_threads

    rng = np.random.default_rng(0)
    corpus = rng.standard_normal((passages, dim), dtype=np.float32)
    batch = rng.standard_normal((questions, dim), dtype=np.float32)
    flops = 2.0 * questions * passages * dim
    index = faiss.IndexFlatIP(dim)
    index.add(corpus)
    out = {"shape": [questions, dim, passages]}
    with faiss_threads(threads):
        index.search(batch[:8], 10)
        out["faiss_gflops"] = flops / _best(lambda: index.search(batch, 100)) / 1e9
    out["numpy_gflops"] = flops / _best(lambda: batch @ corpus.T) / 1e9
    return out


def _best(call, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


def peak_gflops(cores: int, flags: set[str]) -> float | None:
    """cores x clock x fp32 FLOP per cycle (two FMA units of the widest vector): an upper estimate (AMD's AVX-512
    runs at half that rate, and a VM's clock is what /proc says)."""
    mhz = clock_mhz()
    if not mhz:
        return None
    width = 16 if "avx512f" in flags else 8 if "avx2" in flags else 4
    return cores * mhz / 1000.0 * width * 2 * 2


def clock_mhz() -> float | None:
    """The CPU's highest clock (cpufreq), else the one /proc/cpuinfo reports; None where neither is readable."""
    try:
        with open("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq", encoding="utf-8") as handle:
            return int(handle.read()) / 1000.0
    except (OSError, ValueError):
        pass
    try:
        return float(cpuinfo("cpu MHz") or "")
    except ValueError:
        return None


def verdict(blas: dict | None, flags: set[str], vendor: str, probe: dict) -> list[str]:
    """Why the baseline may run below the machine (empty: it runs at its best as far as this can tell)."""
    problems = []
    arch = str((blas or {}).get("architecture") or "").lower()
    if arch in GENERIC:
        problems.append(f"faiss's BLAS runs the generic '{blas['architecture']}' kernel")
    elif arch and "avx512f" in flags and "intel" in vendor.lower() and arch not in AVX512_KERNELS:
        problems.append(f"faiss's BLAS runs the '{blas['architecture']}' kernel on an AVX-512 Intel CPU")
    if probe.get("faiss_gflops") and probe.get("numpy_gflops") and probe["faiss_gflops"] < 0.5 * probe["numpy_gflops"]:
        problems.append(f"its GEMM probe ({probe['faiss_gflops']:.0f} GFLOP/s) is below half of numpy's "
                        f"({probe['numpy_gflops']:.0f})")
    return problems


def conditions(cores: int, threads: int | None = None, probe_passages: int = 100_000) -> dict:
    """Everything above, for bench.json; `baseline_below_machine` lists what to distrust in the DPR ratios."""
    flags, vendor = cpu_flags(), cpu_vendor()
    probe = gemm_probe(passages=probe_passages, threads=threads)
    libs = libraries()
    blas = faiss_blas(libs)
    return {"libraries": libs, "faiss_blas": blas, "environment": overrides_set(),
            "cleared_for_this_run": [v for v in os.environ.get(CLEARED, "").split(",") if v],
            "simd": sorted(f for f in flags if f.startswith(("avx", "sse4", "fma", "popcnt", "bmi"))),
            "vendor": vendor, "gemm_probe": probe, "peak_gflops_estimate": peak_gflops(cores, flags),
            "baseline_below_machine": verdict(blas, flags, vendor, probe)}


def reexec_without_overrides(argv: list[str]) -> None:
    """Run the bench again in a process without the BLAS / OpenMP overrides (they are read when the libraries
    load, so they cannot be undone in this one); records which were cleared. No-op when none is set."""
    import sys

    found = overrides_set()
    if not found or not argv or os.environ.get(CLEARED) is not None:
        return
    env = {k: v for k, v in os.environ.items() if k not in found}
    env[CLEARED] = ",".join(f"{k}={v}" for k, v in found.items())
    print(f"bprlab bench: running again without {', '.join(env[CLEARED].split(','))} so that the baseline's BLAS "
          "picks its own kernel and threads", file=sys.stderr)
    os.execve(sys.executable, [sys.executable, "-m", "bprlab.cli.main", *argv], env)
