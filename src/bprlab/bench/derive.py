"""Every figure of a search benchmark, derived from the timings it stored (ann-benchmarks' way): a new figure or
a corrected formula never needs the run again (`bprlab bench report DIR`).

A row stores `raw`: each method's seconds per question for every timed call (`calls`), the native search's parts
per call (`split_calls`: candidates, rerank, rest), the planted passages found and the questions timed. From them:
ms/query (median over calls), the native split (each part's median), the batch-1 scan's read bandwidth and its
share of the measured DRAM bandwidth, recall@k, DPR's time at codes-only sizes (extrapolated linearly from the
largest float size), the ratios against DPR, and the scan's core-cycles per (question, passage) pair beside the
instruction limits of the SIMD the kernels compiled for; and the distance loops' table (`bench.loops`).
"""

from __future__ import annotations

import numpy as np

from bprlab.bench.loops import derive_loops

DERIVED = ("ms_per_query", "batches_timed", "native_split_ms", "scan_gbs", "scan_share_of_bandwidth",
           "speedup_vs_dpr", "dpr_extrapolated_from", "scan_cycles_per_pair")


def popcount_limits(bits: int, simd: str) -> dict[str, float]:
    """Core-cycles per (question, code) pair that the scan's instructions cannot go below, W = words per code:
    with VPOPCNTDQ, 8 codes' words per 512-bit vector and one vector popcount per cycle gives W / 8
    (popcount-bound), and xor + popcount + add on two vector ports 3W / 16 (issue-bound); with AVX2, the nibble
    lookup popcount (vpshufb: ~6 operations per 4 words, and the xor and add) on two ports gives 8W / 8 = W."""
    words = -(-bits // 64)
    if "avx512vpopcntdq" in simd:
        return {"avx512-vpopcntdq popcount-bound": words / 8, "avx512-vpopcntdq issue-bound": 3 * words / 16}
    if "avx2" in simd:
        return {"avx2 nibble-lookup issue-bound": float(words)}
    return {"scalar popcnt": float(words)}


def ms_per_query(calls: dict[str, list[float]]) -> dict[str, float]:
    """Each method's median over its timed calls (seconds per question) in ms/query."""
    return {name: 1000.0 * float(np.median(t)) for name, t in calls.items() if t}


def derive_row(row: dict, k: int, clock_mhz: float | None) -> dict:
    raw = row["raw"]
    calls, split = raw["calls"], raw["split_calls"]
    row["ms_per_query"] = ms_per_query(calls)
    row["batches_timed"] = {name: len(t) for name, t in calls.items()}
    # each part's median over the same calls (a mean let one disturbed call put the scan above the row's median)
    row["native_split_ms"] = {part: 1000.0 * float(np.median(v)) if v else 0.0 for part, v in split.items()}
    scan_seconds = row["native_split_ms"]["candidates"] / 1000.0
    size, bits = row["num_passages"], row["bits"]
    row["scan_gbs"] = size * bits / 8 / scan_seconds / 1e9 if scan_seconds else None
    row["scan_share_of_bandwidth"] = row["scan_gbs"] / row["bandwidth_gbs"] if row["scan_gbs"] else None
    row["scan_cycles_per_pair"] = (scan_seconds * row["threads"] * clock_mhz * 1e6 / size
                                   if scan_seconds and clock_mhz else None)
    row[f"recall@{k}"] = {name: raw["found"][name] / raw["questions"][name] for name in raw["found"]
                          if raw["questions"].get(name)}
    return row


def derive(result: dict) -> dict:
    """All derived fields of every row, in place, from `raw` (older fields are replaced)."""
    plan, machine = result["plan"], result["machine"]
    k, clock = plan["k"], machine.get("clock_mhz")
    largest_float = max(plan["float_sizes"], default=None)
    dpr_at: dict[tuple, float] = {}  # (bits, threads, batch) -> DPR ms/query at the largest float size
    for row in result["rows"]:
        for key in DERIVED:
            row.pop(key, None)
        derive_row(row, k, clock)
        key = (row["bits"], row["threads"], row["batch"])
        if row["num_passages"] == largest_float and "dpr-flat" in row["ms_per_query"]:
            dpr_at[key] = row["ms_per_query"]["dpr-flat"]
    for row in result["rows"]:
        key = (row["bits"], row["threads"], row["batch"])
        if row["codes_only"] and key in dpr_at:
            row["ms_per_query"]["dpr-flat"] = dpr_at[key] * row["num_passages"] / largest_float
            row["dpr_extrapolated_from"] = largest_float
        ms = row["ms_per_query"]
        if "dpr-flat" in ms:
            row["speedup_vs_dpr"] = {m: ms["dpr-flat"] / v for m, v in ms.items() if m != "dpr-flat" and v > 0}
    result["popcount_limits"] = {str(bits): popcount_limits(bits, machine.get("simd", ""))
                                 for bits in plan["bits"]}
    if result.get("loops"):
        derive_loops(result["loops"], clock)
    return result
