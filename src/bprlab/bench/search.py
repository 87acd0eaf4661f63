"""`bprlab bench search`: BPR against DPR search speed on synthetic data, through the project's index API.

Every number of a row is taken in one run, methods timed round-robin on the same questions, so a ratio holds on
whatever machine made it. Per row: ms/query for dpr-flat (faiss IndexFlatIP) and BPR with each backend, the
native search's split (candidates / rerank / rest), the scan's share of the measured DRAM read bandwidth, index
bytes, recall@k of the planted passages, and the peak RSS of the (size, bits) block. At the codes-only sizes DPR
is not run: its time is extrapolated linearly from the largest float size, and the row says so. At the largest
float size and code length, the scan's two distance loops are timed against each other as well (`bench.loops`).
"""

from __future__ import annotations

import gc
import logging
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from bprlab.bench import memory
from bprlab.bench.derive import derive, ms_per_query
from bprlab.bench.loops import time_loops
from bprlab.bench.synthetic import Synthetic, code_data, float_data
from bprlab.config.enums import IndexKind, SearchBackend
from bprlab.config.schema import IndexConfig
from bprlab.index.base import create_index
from bprlab.index.kernels.jit import available_threads, cpu_name, host_features, read_bandwidth, read_bandwidth_of
from bprlab.index.kernels.layout import BlockedCodes
from bprlab.index.threads import faiss_threads

log = logging.getLogger(__name__)


@dataclass
class SearchPlan:
    float_sizes: list[int] = field(default_factory=lambda: [100_000, 1_000_000])
    code_sizes: list[int] = field(default_factory=lambda: [21_000_000])
    bits: list[int] = field(default_factory=lambda: [768, 384])
    batches: list[int] = field(default_factory=lambda: [1, 32, 1000])
    threads: list[int] = field(default_factory=lambda: [1, 2])
    num_candidates: int = 1000  # l
    k: int = 100
    min_seconds: float = 1.0  # per method and row, at least one batch
    max_batches: int = 16
    max_cell_seconds: float = 90.0  # a skippable method whose next batch would take longer is skipped (and said so)
    skippable: tuple = ("bpr-faiss",)  # the reference backend; DPR and the native search always run
    pause_seconds: float = 0.02  # before each timed call (see _time_row)
    bandwidth_bytes: int = 1 << 30
    probe_passages: int = 100_000  # the GEMM probe's corpus (bprlab.bench.conditions): 1000 questions x 768 x this


QUICK = SearchPlan(float_sizes=[20_000], code_sizes=[200_000], bits=[256], batches=[1, 32], threads=[1, 2],
                   min_seconds=0.05, max_batches=3, bandwidth_bytes=1 << 26, probe_passages=10_000)


@dataclass
class Method:
    name: str
    index: object


def run_search_bench(plan: SearchPlan) -> dict:
    """Every row of the plan; returns {"machine", "conditions", "plan", "rows", "builds"}: each row keeps its raw
    timings, and every figure is derived from them (bprlab.bench.derive)."""
    from bprlab.bench.conditions import clock_mhz, conditions

    threads = [t for t in plan.threads if t <= available_threads()]
    bandwidth = read_bandwidth(plan.bandwidth_bytes, 3, threads)
    log.info("read bandwidth GB/s: %s", bandwidth)
    result = {"machine": {"cpu": cpu_name(), "cores": available_threads(), "simd": host_features(),
                          "bandwidth_gbs": bandwidth, "clock_mhz": clock_mhz()},
              "conditions": conditions(available_threads(), max(threads), plan.probe_passages),
              "plan": asdict(plan), "rows": [], "builds": [], "loops": None}
    for problem in result["conditions"]["baseline_below_machine"]:
        log.warning("the DPR baseline may run below this machine: %s", problem)
    _load_kernels(plan)
    for size, codes_only in [(n, False) for n in plan.float_sizes] + [(n, True) for n in plan.code_sizes]:
        for bits in plan.bits:
            gc.collect()
            # the probe again: the machine's bandwidth drifts over a run (taken before the block's peak-RSS
            # window opens, so that its array is not counted in the block's memory)
            now = read_bandwidth(plan.bandwidth_bytes, 3, threads)
            again = {t: max(bandwidth[t], now[t]) for t in threads}
            memory.reset_peak()
            rows, build, loops = _block(plan, size, bits, codes_only, threads, again)
            peak = memory.peak_mb()
            for row in rows:
                row["block_peak_rss_mb"] = peak
            result["rows"] += rows
            result["builds"].append(build)
            result["loops"] = loops or result["loops"]
    return derive(result)


def _load_kernels(plan: SearchPlan) -> None:
    """Search a tiny index of every code length once, so that loading the compiled kernels (tens of MB) is not
    counted in the first block's build memory."""
    for bits in plan.bits:
        data = code_data(1000, bits, 2, seed=bits)
        for backend in (SearchBackend.native, SearchBackend.faiss):
            index = create_index(IndexConfig(kind=IndexKind.binary_flat, backend=backend, num_candidates=10), bits)
            index.build(data.codes)
            index.search(data.questions, 5)


def _block(plan: SearchPlan, size: int, bits: int, codes_only: bool, threads: list[int], bandwidth: dict):
    need = sum(b * _repeats(plan, b) for b in plan.batches) + 1
    log.info("data: %d %s x %d bits, %d questions", size, "codes" if codes_only else "vectors", bits, need)
    data = (code_data if codes_only else float_data)(size, bits, need, seed=size + bits)
    methods, build = _build(plan, data, bits)
    if codes_only and bits == max(plan.bits):
        build["stage_build"] = stage_build_peak(data.codes)
    rows = []
    for t in threads:
        estimate: dict[str, float] = {}  # ms/query of each method at the previous batch size
        for batch in plan.batches:
            reference = _reference_bandwidth(plan, methods, t, bandwidth) if batch == 1 else bandwidth[t]
            rows.append(_time_row(plan, data, methods, size, bits, t, batch, reference, codes_only, estimate))
            estimate = ms_per_query(rows[-1]["raw"]["calls"])
            log.info("%s", _summary(rows[-1], estimate))
    loops = None
    if not codes_only and size == max(plan.float_sizes) and bits == max(plan.bits):
        loops = _time_loops(plan, data, methods, max(threads))
    del methods, data
    return rows, build, loops


def _time_loops(plan: SearchPlan, data: Synthetic, methods: list[Method], n_threads: int) -> dict:
    """The scan's two distance loops on the native index's own blocked codes (no copy)."""
    native = next(m for m in methods if m.name == "bpr-native").index
    codes = BlockedCodes(native.resident_codes, len(data.codes), data.codes.shape[1])
    loops = time_loops(codes, data.questions, plan.batches, n_threads, plan.num_candidates,
                       lambda batch: max(5, _repeats(plan, batch)), lambda: _pause(plan.pause_seconds))
    log.info("distance loops: %s", "same results" if loops["equal"] else "DIFFERENT RESULTS")
    return loops


def _reference_bandwidth(plan: SearchPlan, methods: list[Method], n_threads: int, bandwidth: dict) -> float:
    """The read bandwidth a batch-1 scan is compared with: the probe's (the larger of the run's first and the
    block's), or a streaming pass over the native index's own code words right before the row, where they are at
    least as large as the probe and that pass is faster. Smaller codes can sit partly in the last-level cache (a
    pass over them then reads faster than DRAM), and the reference is DRAM's bandwidth, not the cache's: a share
    above 100% means the scan read partly cached codes."""
    words = next(m for m in methods if m.name == "bpr-native").index.resident_codes
    own = read_bandwidth_of(words, n_threads) if words.nbytes >= plan.bandwidth_bytes else 0.0
    return max(bandwidth[n_threads], own)


def _build(plan: SearchPlan, data: Synthetic, bits: int) -> tuple[list[Method], dict]:
    methods, build = [], {"num_passages": len(data.codes), "bits": bits, "codes_bytes": data.codes.nbytes}
    if data.passages is not None:
        dpr = create_index(IndexConfig(kind=IndexKind.flat), bits)
        dpr.build(data.passages)
        methods.append(Method("dpr-flat", dpr))
        build["dpr_index_bytes"] = data.passages.nbytes
        data.passages = None  # the index holds its own copy
        gc.collect()
    for backend in (SearchBackend.native, SearchBackend.faiss):
        cfg = IndexConfig(kind=IndexKind.binary_flat, backend=backend, num_candidates=plan.num_candidates)
        before = memory.rss_mb()
        memory.reset_peak()
        index = create_index(cfg, bits)
        index.build(data.codes)
        index.search(data.questions[:1], plan.k)  # builds the search structures, loads the kernels
        extra = (memory.peak_mb() or 0) - (before or 0)
        build[f"bpr-{backend.value}_extra_peak_over_codes"] = extra * 2**20 / data.codes.nbytes
        methods.append(Method(f"bpr-{backend.value}", index))
    build["bpr_index_bytes"] = data.codes.nbytes
    return methods, build


def _repeats(plan: SearchPlan, batch: int) -> int:
    """Batches per method at least: 16 single questions, 2 batches of 32, 1 of 1000."""
    return max(1, min(plan.max_batches, 16 // batch if batch < 8 else 1 if batch >= 100 else 2))


def _pause(seconds: float) -> None:
    """Wait with the calling thread busy. The other threads' OpenMP pools stop spinning meanwhile (they spin for a
    few milliseconds), but the machine is not left idle: after a sleep, a VM can take far longer to start a trivial
    2-thread call than after a busy wait, and a sleep charged that wake-up to whichever method ran next, most of it
    to the fast ones."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def _time_row(plan: SearchPlan, data: Synthetic, methods: list[Method], size: int, bits: int, n_threads: int,
              batch: int, bandwidth_gbs: float, codes_only: bool, estimate: dict) -> dict:
    """Round-robin: each repetition runs every method still timing on the same batch of questions; a method runs
    at least `_repeats` batches and until it has `min_seconds`. The reference backend is skipped where one batch
    would take longer than `max_cell_seconds` (estimated from its ms/query at the previous batch size), and the
    row says so.
    Before each timed call the process pauses briefly (`_pause`): OpenMP pools (faiss's, torch's) spin for a
    while after their last parallel region and would otherwise steal cores from the method timed next."""
    times = {m.name: [] for m in methods}
    skipped = {m.name: estimate[m.name] * batch / 1000.0 for m in methods if m.name in plan.skippable
               and m.name in estimate and estimate[m.name] * batch / 1000.0 > plan.max_cell_seconds}
    timing = [m for m in methods if m.name not in skipped]
    found = {m.name: 0 for m in timing}
    split = {"candidates": [], "rerank": [], "rest": []}  # the native search's parts, per query of each call
    for m in methods:
        m.index.threads = n_threads
    rep = 0
    while timing:
        q0 = 1 + (rep * batch) % max(1, len(data.questions) - batch - 1)
        questions, planted = data.questions[q0 : q0 + batch], data.planted[q0 : q0 + batch]
        for m in timing:
            stats = getattr(m.index, "stats", None)
            before = (stats.candidate_seconds, stats.rerank_seconds) if stats else (0.0, 0.0)
            _pause(plan.pause_seconds)
            with faiss_threads(n_threads):
                start = time.perf_counter()
                result = m.index.search(questions, plan.k)
                times[m.name].append((time.perf_counter() - start) / len(questions))
            found[m.name] += int((result.rows == planted[:, None]).any(axis=1).sum())
            if m.name == "bpr-native":
                parts = [(stats.candidate_seconds - before[0]) / len(questions),
                         (stats.rerank_seconds - before[1]) / len(questions)]
                for part, seconds in zip(split, parts + [max(0.0, times[m.name][-1] - sum(parts))]):
                    split[part].append(seconds)
        rep += 1
        timing = [m for m in timing if rep < plan.max_batches and
                  (rep < _repeats(plan, batch) or sum(times[m.name]) * batch < plan.min_seconds)]
    questions = {name: len(t) * batch for name, t in times.items()}
    return {"num_passages": size, "codes_only": codes_only, "bits": bits, "threads": n_threads, "batch": batch,
            "skipped": {name: f"a batch would take ~{sec:.0f} s (over {plan.max_cell_seconds:.0f} s)"
                        for name, sec in skipped.items()},
            "bandwidth_gbs": bandwidth_gbs,
            # every timed call, kept: the figures are derived from these (bprlab.bench.derive)
            "raw": {"calls": times, "split_calls": split, "found": found, "questions": questions}}


def _summary(row: dict, ms_per_query: dict) -> str:
    ms = " ".join(f"{k}={v:.3f}" for k, v in ms_per_query.items())
    ms += "".join(f" {k}: skipped" for k in row["skipped"])
    return f"N={row['num_passages']} bits={row['bits']} threads={row['threads']} batch={row['batch']}: {ms} ms/query"


def stage_build_peak(codes: np.ndarray, shard_rows: int = 1_000_000) -> dict:
    """`bprlab index` on encoded shards as `bprlab encode` writes them: its peak memory over the codes' bytes."""
    import tempfile
    from pathlib import Path

    from bprlab.artifacts import write_json
    from bprlab.config.schema import RunConfig
    from bprlab.index.build import MANIFEST, build_index
    from bprlab.runs import RunPaths

    with tempfile.TemporaryDirectory(prefix="bprlab-bench-") as tmp:
        cfg = RunConfig(name="bench", runs_root=tmp)
        cfg.index = IndexConfig(kind=IndexKind.binary_flat)
        encoded = RunPaths(cfg).passages("code")
        encoded.mkdir(parents=True)
        for part, start in enumerate(range(0, len(codes), shard_rows)):  # one rank's shards
            rows = np.arange(start, min(len(codes), start + shard_rows))
            np.savez(encoded / f"00000-{part:05d}.npz", rows=rows, values=codes[rows])
        write_json(encoded / MANIFEST, {"weights": "bench", "representation": "code", "num_passages": len(codes),
                                        "dim": codes.shape[1] * 8})
        gc.collect()
        before = memory.rss_mb() or 0.0
        memory.reset_peak()
        start = time.perf_counter()
        out = build_index(cfg)
        seconds = time.perf_counter() - start
        peak = (memory.peak_mb() or 0.0) - before
        size = sum(f.stat().st_size for f in Path(out).iterdir())
    return {"num_passages": len(codes), "seconds": seconds, "peak_over_codes": peak * 2**20 / codes.nbytes,
            "index_bytes": size}
