"""`bprlab bench search` on a tiny plan: every method finds the planted passages, and the files are written."""

import json

import pytest

from bprlab.bench.report import write_bench
from bprlab.bench.search import SearchPlan, run_search_bench


@pytest.mark.slow  # the whole search bench end to end (every search, size and batch, the loops, the report)
def test_tiny_search_bench_finds_every_planted_passage(tmp_path):
    plan = SearchPlan(float_sizes=[3000], code_sizes=[6000], bits=[64], batches=[1, 8], threads=[1],
                      min_seconds=0.0, max_batches=2, bandwidth_bytes=1 << 22, pause_seconds=0.0,
                      num_candidates=100, k=10, probe_passages=2000)
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
    loops = result["loops"]  # the two distance loops, at the largest float size and code length
    assert loops["equal"] and loops["compiled_for_width"] and loops["num_passages"] == 3000
    assert [r["batch"] for r in loops["rows"]] == [1, 8] and all(r["speedup"] > 0 for r in loops["rows"])
    write_bench(result, tmp_path)
    assert json.loads((tmp_path / "bench.json").read_text())["machine"]["cores"] >= 1
    live = (tmp_path / "bench.md").read_text()
    assert "| 6,000* | 64 |" in live and "Baseline conditions: faiss's BLAS" in live
    assert "## The scan's distance loop" in live and "Both loops returned the same" in live
    assert (tmp_path / "ms_per_query.png").stat().st_size > 0
    # every figure again from the stored timings alone: the same report
    from bprlab.bench.report import report_from

    (tmp_path / "bench.md").unlink()
    report_from(tmp_path)
    assert (tmp_path / "bench.md").read_text() == live
    assert all(len(c) == n for r in result["rows"] for c, n in
               zip(r["raw"]["calls"].values(), r["batches_timed"].values()))
    assert all(len(t) == 5 for r in loops["rows"] for t in r["raw"].values())


def test_a_baseline_blas_below_the_machine_is_flagged_first():
    from bprlab.bench.conditions import verdict
    from bprlab.bench.report import conditions_lines

    avx512 = {"avx512f", "avx2"}
    probe = {"faiss_gflops": 190.0, "numpy_gflops": 200.0, "shape": [1000, 768, 100000]}
    assert verdict({"architecture": "Prescott"}, avx512, "AuthenticAMD", probe) == [
        "faiss's BLAS runs the generic 'Prescott' kernel"]
    assert verdict({"architecture": "Haswell"}, avx512, "GenuineIntel", probe) == [
        "faiss's BLAS runs the 'Haswell' kernel on an AVX-512 Intel CPU"]
    assert verdict({"architecture": "Zen"}, avx512, "AuthenticAMD", probe) == []  # Zen 4's AVX-512 is half rate
    slow = {**probe, "faiss_gflops": 60.0}
    assert "below half of numpy's" in verdict({"architecture": "SkylakeX"}, avx512, "GenuineIntel", slow)[0]
    lines = conditions_lines({"conditions": {"baseline_below_machine": ["faiss's BLAS runs the generic 'Prescott' "
                                                                        "kernel"], "faiss_blas": {}, "gemm_probe": probe}})
    assert lines[0].startswith("**The DPR baseline ran below this machine")


@pytest.mark.parametrize("args, message", [
    (["--sizes", "0"], "sizes must be >= 1"), (["--sizes", "-5"], "sizes must be >= 1"),
    (["--code-sizes", "abc"], "expected comma-separated whole numbers"), (["--bits", "12"], "multiples of 8"),
    (["--sizes", "1e12"], "more than this machine's"), (["--sizes", "1e400"], "whole numbers"),
])
def test_bad_bench_input_is_one_line_before_any_work(tmp_path, capsys, args, message):
    from bprlab.cli.main import main

    assert main(["bench", "search", "--out", str(tmp_path / "b"), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "b").exists()


def test_bench_outputs_and_reports_are_checked_first(tmp_path, capsys):
    from bprlab.cli.main import main

    a_file = tmp_path / "taken"
    a_file.write_text("x")
    for argv, message in ((["bench", "search", "--quick", "--out", str(a_file)], "a file is there"),
                          (["bench", "scale", "--passages", "0"], "sizes must be >= 1"),
                          (["bench", "encode", "--passages", "-1"], "sizes must be >= 1"),
                          (["bench", "report", str(tmp_path)], "bench.json: not found"),
                          (["bench", "report"], "name the folder")):
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err
    for text, message in (('{"rows": [{"bits": 64}]}', "no stored timings"), ("[]", "no stored timings"),
                          ('{"rows": [1, 2]}', "no stored timings"),
                          ('{"rows": [{"raw": 7}]}', "not in the shape `bprlab bench` writes"),
                          ("{trunc", "damaged (JSONDecodeError")):
        (tmp_path / "bench.json").write_text(text)
        assert main(["bench", "report", str(tmp_path)]) == 2, text
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "Traceback" not in err, (text, err)
    assert "run the bench again" in err  # the advice names the command that writes it, not `bprlab train`


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


def test_the_gpu_check_runs_its_checks_on_the_cpu_and_skips_without_cuda(tiny_bert, tmp_path, capsys, monkeypatch):
    """Every check's code path, on the CPU stand-in (fp32 and bf16; fp16 and faiss-gpu need CUDA); without CUDA
    `bprlab bench gpu` is one line, exit 0, nothing written."""
    import json

    import torch

    from bprlab.bench.gpu import run_gpu_check
    from bprlab.cli.main import main

    path = run_gpu_check(tmp_path / "cpu", device="cpu", model=tiny_bert, sizes=(3000, 6000))
    rows = json.loads((tmp_path / "cpu" / "gpu.json").read_text())["rows"]
    assert path.is_file() and all(r["ok"] for r in rows), rows
    assert any(r["check"].startswith("train bpr bf16-mixed chunks=4") for r in rows)
    assert any(r["check"].startswith("encode passages bf16-mixed") for r in rows)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    capsys.readouterr()
    assert main(["bench", "gpu", "--out", str(tmp_path / "none")]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["bprlab bench gpu: no CUDA device is visible here; nothing was checked"]
    assert not (tmp_path / "none" / "gpu.md").exists()


def test_the_bench_runs_again_without_blas_overrides_and_says_so(tmp_path):
    """OPENBLAS_CORETYPE=Prescott would give DPR a generic kernel: the bench clears it for its own process."""
    import os
    import subprocess
    import sys

    inherited = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}  # a test worker's own
    env = {**inherited, "OPENBLAS_CORETYPE": "Prescott", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "bprlab.cli.main", "bench", "search", "--quick", "--sizes", "3000",
                          "--code-sizes", "", "--bits", "64", "--out", str(tmp_path)], env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "running again without OPENBLAS_CORETYPE=Prescott, OMP_NUM_THREADS=1" in out.stderr
    cond = json.loads((tmp_path / "bench.json").read_text())["conditions"]
    assert cond["cleared_for_this_run"] == ["OPENBLAS_CORETYPE=Prescott", "OMP_NUM_THREADS=1"]
    assert cond["environment"] == {} and "Prescott" not in str(cond["faiss_blas"])
