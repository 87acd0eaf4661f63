"""`bprlab bench search` on a tiny plan: every method finds the planted passages, and the files are written."""

import json

from bprlab.bench.report import write_bench
from bprlab.bench.search import SearchPlan, run_search_bench


def test_tiny_search_bench_finds_every_planted_passage(tmp_path):
    plan = SearchPlan(float_sizes=[3000], code_sizes=[6000], bits=[64], batches=[1, 8], threads=[1],
                      min_seconds=0.0, max_batches=2, bandwidth_bytes=1 << 22, pause_seconds=0.0,
                      num_candidates=100, k=10)
    result = run_search_bench(plan)
    assert len(result["rows"]) == 4
    for row in result["rows"]:
        assert all(value == 1.0 for value in row["recall@10"].values()), row  # a broken search shows here
        assert set(row["ms_per_query"]) == {"dpr-flat", "bpr-native", "bpr-faiss"}
        assert row["speedup_vs_dpr"]["bpr-native"] > 0
        split, total = row["native_split_ms"], row["ms_per_query"]["bpr-native"]
        assert all(part >= 0 for part in split.values())
        assert split["candidates"] <= total and split["rerank"] <= total  # medians of parts of the same calls
    codes_rows = [r for r in result["rows"] if r["codes_only"]]
    assert codes_rows and all(r["dpr_extrapolated_from"] == 3000 for r in codes_rows)
    assert "dpr-flat" not in codes_rows[0]["recall@10"]  # DPR is not run on codes-only data
    write_bench(result, tmp_path)
    assert json.loads((tmp_path / "bench.json").read_text())["machine"]["cores"] >= 1
    assert "| 6,000* | 64 |" in (tmp_path / "bench.md").read_text()
    assert (tmp_path / "ms_per_query.png").stat().st_size > 0


def test_scan_share_reference_ignores_a_pass_over_cached_codes(monkeypatch):
    """A batch-1 scan is compared with DRAM's bandwidth: the pass over the index's own codes counts only where they
    are at least as large as the probe (smaller ones can sit in the last-level cache and read faster)."""
    from types import SimpleNamespace

    import numpy as np

    from bprlab.bench import search

    monkeypatch.setattr(search, "read_bandwidth_of", lambda words, n: 30.0)

    def methods(nbytes):
        words = np.zeros(nbytes // 8, np.uint64)
        return [SimpleNamespace(name="bpr-native", index=SimpleNamespace(resident_codes=words))]

    plan = SearchPlan(bandwidth_bytes=1 << 20)
    assert search._reference_bandwidth(plan, methods(1 << 19), 2, {2: 18.0}) == 18.0  # cached: the probe
    assert search._reference_bandwidth(plan, methods(1 << 21), 2, {2: 18.0}) == 30.0  # larger: its own pass
    assert search._reference_bandwidth(plan, methods(1 << 21), 2, {2: 35.0}) == 35.0  # the probe, when faster
