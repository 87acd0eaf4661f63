import json

from bprlab.eval.results import write_results


def test_results_md_puts_paper_ours_and_delta_beside_the_command(tmp_path):
    table = tmp_path / "runs" / "main-nq"
    table.mkdir(parents=True)
    row = {"method": "bpr-linear", "top1": 40.0, "top5": 60.0, "top20": 78.0, "top100": 85.0, "bytes_per_passage": 96,
           "index_bytes": 2_000_000_000, "ms_per_query": 85.0, "scanned_fraction": 1.0, "run": "nq-bpr",
           "search": "binary_flat-l1000", "paper": {"top1": 41.1, "top20": 77.9, "top100": 85.7}}
    (table / "summary.json").write_text(json.dumps([row, {**row, "method": "bpr-hash", "paper": {}}]))
    (table / "table.json").write_text(json.dumps({"table": "main", "dataset": "nq", "note": "n",
                                                  "command": "bprlab reproduce experiments/tables/main.yaml --dataset nq"}))
    out = write_results(tmp_path / "runs", tmp_path / "experiments")
    text = out.read_text()
    assert "`bprlab reproduce experiments/tables/main.yaml --dataset nq`" in text
    assert "| bpr-linear | 41.10 | 40.0 | -1.1 | 60.0 | 77.90 | 78.0 | +0.1 | 85.70 | 85.0 | -0.7 |" in text
    assert "| bpr-hash |  | 40.0 |  | 60.0 |" in text  # blank where the paper gives no number
    plots = sorted(p.name for p in (tmp_path / "experiments" / "plots").glob("*.png"))
    assert plots == ["frontier_nq.png", "main-nq.png"]
