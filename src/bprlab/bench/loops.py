"""The scan's two distance loops against each other (`make bench`'s loop table): the loop compiled for the code's
width (`distance.fixed_width`) and the loop over a run-time width, on the same blocked codes and questions.

Both are timed round-robin in one process on the largest float size's codes at its largest code length and thread
count, and each call's seconds per question are stored (`raw`), as the search rows store theirs; `derive_loops`
takes the medians, the ratio and the cycles per pair from them. The two loops must return the same distances and
rows: a mismatch is recorded (`equal`) and fails the bench.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from bprlab.core.hashing import pack_codes
from bprlab.index.kernels.distance import fixed_width
from bprlab.index.kernels.hamming import hamming_top_l
from bprlab.index.kernels.layout import BlockedCodes, to_words

LOOPS = {"fixed width": True, "run-time width": False}


def time_loops(codes: BlockedCodes, questions: np.ndarray, batches: list[int], n_threads: int, l: int,
               calls: Callable[[int], int], pause: Callable[[], None]) -> dict:
    """Per batch size, `calls(batch)` timed calls of each loop, alternating, on consecutive question batches."""
    words = to_words(pack_codes(questions))
    width = codes.width
    result = {"num_passages": codes.ntotal, "bits": codes.code_bytes * 8, "threads": n_threads, "l": l,
              "compiled_for_width": len(fixed_width(width)) == width, "equal": True, "rows": []}
    for batch in batches:
        raw = {name: [] for name in LOOPS}
        for rep in range(calls(batch)):
            q0 = (rep * batch) % max(1, len(words) - batch)
            found = []
            for name, fixed in LOOPS.items():
                pause()
                start = time.perf_counter()
                found.append(hamming_top_l(codes, words[q0 : q0 + batch], l, n_threads, fixed=fixed))
                raw[name].append((time.perf_counter() - start) / batch)
            same = all(np.array_equal(a, b) for a, b in zip(found[0], found[1]))
            result["equal"] = result["equal"] and same
        result["rows"].append({"batch": batch, "raw": raw})
    return result


def derive_loops(loops: dict, clock_mhz: float | None) -> dict:
    """ms/query (median over calls), cycles per (question, passage) pair and the fixed loop's speed-up, in place."""
    for row in loops["rows"]:
        row["ms_per_query"] = {name: 1000.0 * float(np.median(t)) for name, t in row["raw"].items() if t}
        row["cycles_per_pair"] = ({name: ms / 1000.0 * loops["threads"] * clock_mhz * 1e6 / loops["num_passages"]
                                   for name, ms in row["ms_per_query"].items()} if clock_mhz else {})
        ms = row["ms_per_query"]
        row["speedup"] = ms["run-time width"] / ms["fixed width"] if ms.get("fixed width") else None
    return loops


def markdown_lines(loops: dict | None) -> list[str]:
    if not loops:
        return []
    lines = ["", "## The scan's distance loop: compiled for the code's width vs a run-time width", "",
             f"{loops['num_passages']:,} codes x {loops['bits']} bits, {loops['threads']} threads, l = {loops['l']}, "
             "candidate generation only (`hamming_top_l`), the two loops timed round-robin in one process; "
             "`speed-up` is the run-time loop's ms/query over the fixed one's. The fixed loop serves questions two "
             "at a time; a lone question (batch 1, and a batch's odd last one) runs the run-time loop in both rows, "
             "which reads a block's lines in the order a memory-bound scan prefers (`distance.distances`). "
             + ("Both loops returned the same distances and rows." if loops["equal"] else
                "**The two loops returned different results.**")
             + ("" if loops["compiled_for_width"] else
                " This code length is past the widths that get their own loop: both rows ran the run-time loop."),
             "", "| batch | fixed width ms/q | run-time width ms/q | speed-up | cycles/pair fixed / run-time |",
             "|---|---|---|---|---|"]
    for row in loops["rows"]:
        ms, cycles = row["ms_per_query"], row["cycles_per_pair"]
        cyc = " / ".join(f"{cycles[name]:.2f}" for name in LOOPS) if cycles else "-"
        lines.append(f"| {row['batch']} | {ms['fixed width']:.3f} | {ms['run-time width']:.3f} | "
                     f"{row['speedup']:.3f} | {cyc} |")
    return lines
