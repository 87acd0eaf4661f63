"""Slow tier: the gradient-caching, encoding and scale benchmarks run end to end on tiny settings."""

from pathlib import Path

import pytest


@pytest.mark.slow
def test_grad_cache_bench_reports_every_chunk(tiny_bert):
    from bprlab.bench.grad_cache import markdown, run_grad_cache_bench

    result = run_grad_cache_bench(tiny_bert, questions=8, device="cpu", chunks=(None, 3))
    assert [r["chunk"] for r in result["rows"]] == [None, 3]
    assert all(r["peak_mb"] > 0 and r["step_seconds"] > 0 for r in result["rows"])
    assert "| 3 |" in markdown(result)


@pytest.mark.slow
def test_scale_bench_finds_the_planted_passages(tmp_path):
    from bprlab.bench.scale import STAGES, markdown, run_scale_bench

    result = run_scale_bench([3000], tmp_path / "scale", questions=100)
    row = result["rows"][0]
    assert set(row["stages"]) == set(STAGES) and all(s["peak_mb"] > 0 for s in row["stages"].values())
    assert row["recall"]["top100"] >= 90.0  # the whole chain: corpus -> store -> encode -> index -> has_answer
    assert "| 3,000 | encode |" in markdown(result)
    assert not (Path(tmp_path) / "scale" / "n3000" / "runs" / "scale" / "passages").exists()  # disk kept bounded
