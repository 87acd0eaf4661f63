"""Sweep files, the local agent's plan, resumption, and the notebook that reads the results."""

import json
import os
from pathlib import Path

import pytest
import yaml

from bprlab.config import load_config
from bprlab.errors import ConfigError
from bprlab.sweeps import ResultsTable, read_sweep, trial_args, trial_name, trials

REPO = Path(__file__).resolve().parents[1]
SWEEPS = sorted((REPO / "sweeps").glob("*.yaml"))


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.name)
def test_sweep_keys_exist_in_the_schema(path, monkeypatch):
    from bprlab.cli.sweep import check_parameter_keys

    monkeypatch.chdir(REPO)
    sweep = read_sweep(path)
    check_parameter_keys(sweep)  # every value of every key loads into the schema
    assert sweep.metric["name"].startswith("test/")


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.name)
def test_sweep_passes_wandb_validation(path):
    # W&B's own validator lives in its `sweeps` package (wandb[sweeps]); `make install` adds it
    validator = pytest.importorskip("sweeps.config", reason="W&B's sweep validator (`sweeps`) is not installed")
    config = yaml.safe_load(path.read_text())
    assert validator.schema_violations_from_proposed_config(config) == []
    config["method"] = "grd"
    assert validator.schema_violations_from_proposed_config(config)  # and it does reject a bad file


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.name)
def test_sweep_command_is_one_the_wandb_agent_can_run(path):
    from wandb.sdk.launch.sweeps.utils import create_sweep_command

    command = create_sweep_command(yaml.safe_load(path.read_text())["command"])
    assert command[:3] == ["${env}", "bprlab", "run"] and "${args_no_hyphens}" in command and "--trial" in command


def _sweep(tmp_path, method="grid", params=None, extra=""):
    path = tmp_path / "s.yaml"
    params = params or {"hash.gamma": {"values": [0.01, 0.1, 1.0]}, "hash.estimator": {"values": ["scaled_tanh", "ste"]}}
    path.write_text(yaml.safe_dump({
        "name": "s", "method": method, "metric": {"name": "test/top20", "goal": "maximize"}, "parameters": params,
        "command": ["${env}", "bprlab", "run", str(REPO / "experiments/squad/bpr.yaml"), "train.max_steps=3",
                    "--trial", "${args_no_hyphens}"],
    }, sort_keys=False) + extra)
    return read_sweep(path)


def test_grid_plan_is_every_combination_in_file_order(tmp_path):
    sweep = _sweep(tmp_path)
    assert sweep.base_args == ["train.max_steps=3"]
    plan = trials(sweep, count=None)
    assert len(plan) == 6 and plan[0] == {"hash.gamma": 0.01, "hash.estimator": "scaled_tanh"}
    assert plan[1] == {"hash.gamma": 0.01, "hash.estimator": "ste"}
    assert trials(sweep, count=3) == plan[:3]


def test_random_plan_is_seeded_and_stable_in_count(tmp_path):
    sweep = _sweep(tmp_path, "random", {"optim.lr": {"distribution": "log_uniform_values", "min": 1e-6, "max": 1e-4},
                                         "loss.margin": {"values": [0.1, 1.0]}})
    five, three = trials(sweep, 5, seed=7), trials(sweep, 3, seed=7)
    assert five[:3] == three and trials(sweep, 5, seed=8) != five
    assert all(1e-6 <= t["optim.lr"] <= 1e-4 and t["loss.margin"] in (0.1, 1.0) for t in five)


def test_bayes_falls_back_to_random_with_a_warning(tmp_path, caplog):
    sweep = _sweep(tmp_path, "bayes", {"loss.margin": {"values": [0.1, 1.0]}})
    assert len(trials(sweep, 2)) == 2 and "samples at random" in caplog.text


def test_unknown_swept_key_is_rejected_before_any_run(tmp_path):
    from bprlab.cli.sweep import check_parameter_keys

    sweep = _sweep(tmp_path, params={"hash.gama": {"values": [0.1]}})
    with pytest.raises(ConfigError, match="parameters.hash.gama"):
        check_parameter_keys(sweep)


def test_trial_flag_splits_fixed_from_swept_overrides():
    from bprlab.cli.parser import split_trial

    argv, swept = split_trial(["run", "e.yaml", "train.max_steps=30", "--trial", "hash.gamma=0.1", "loss.margin=1"])
    assert argv == ["run", "e.yaml", "train.max_steps=30", "hash.gamma=0.1", "loss.margin=1"]
    assert swept == ["hash.gamma=0.1", "loss.margin=1"]
    assert split_trial(["run", "e.yaml"]) == (["run", "e.yaml"], None)


def test_trial_names_are_readable_and_ignore_logging_keys():
    name = trial_name("squad-bpr", ["hash.gamma=0.01", "hash.estimator=ste", "logger=wandb", "wandb.group=s"])
    assert name == "squad-bpr-gamma0.01-estimatorste"
    assert load_config(None, trial_args({"hash.gamma": 0.01})).hash.gamma == 0.01


def test_results_table_remembers_finished_trials(tmp_path):
    table = ResultsTable(tmp_path, "test/top20")
    table.add({"run": "a", "trial": 1, "params": {"hash.gamma": 0.1}, "metrics": {"top20": 80.0}, "identity": "x"})
    again = ResultsTable(tmp_path, "test/top20")
    assert again.finished("a", "x") and not again.finished("b", "x")
    assert not again.finished("a", "y")  # the same run name from another command is not this trial
    assert "| a | 0.1 | 80.00 |" in (tmp_path / "results.md").read_text()


def test_local_agent_skips_finished_trials_and_resumes(tmp_path, monkeypatch):
    """A killed sweep, rerun, runs only the trials that have no result yet (subprocess replaced by a stub)."""
    import subprocess

    from bprlab.artifacts import write_json
    from bprlab.cli import sweep as sweep_cli
    from bprlab.runs import RunPaths

    monkeypatch.chdir(tmp_path)
    sweep = _sweep(tmp_path, params={"hash.gamma": {"values": [0.01, 0.1, 1.0]}})
    ran = []

    def fake_run(command, env):
        from bprlab.cli.parser import split_trial

        argv, swept = split_trial(command[3:])
        cfg = load_config(sweep.experiment, [c for c in argv if "=" in c])
        cfg.name = trial_name(cfg.name, swept)
        ran.append(cfg.name)
        if len(ran) == 2 and not getattr(fake_run, "rerun", False):
            raise KeyboardInterrupt  # killed during the second trial
        write_json(RunPaths(cfg).eval / "metrics.json", {"top20": 50.0 + len(ran)})
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(sweep_cli.subprocess, "run", fake_run)
    with pytest.raises(KeyboardInterrupt):
        sweep_cli.run_locally(sweep, count=3, seed=0)
    fake_run.rerun = True
    table = sweep_cli.run_locally(sweep, count=3, seed=0)
    assert ran[0] not in ran[2:] and len(ran) == 4  # trial 1 once; trial 2 again; trial 3
    assert [r["params"]["hash.gamma"] for r in table.rows] == [0.01, 0.1, 1.0]
    changed = _sweep(tmp_path, params={"hash.gamma": {"values": [0.01, 0.1, 1.0]}})
    changed.base_args = ["train.max_steps=4"]  # the sweep's fixed arguments changed: every trial runs again
    ran.clear()
    sweep_cli.run_locally(changed, count=3, seed=0)
    assert len(ran) == 3


def test_a_count_below_one_and_an_unlogged_metric_are_refused(tmp_path):
    from bprlab.cli.sweep import sweep as run_sweep

    path = tmp_path / "s.yaml"
    _sweep(tmp_path)
    with pytest.raises(ConfigError, match="--count 0: at least 1 trial"):
        run_sweep(str(path), 0)
    with pytest.raises(ConfigError, match="metric.name 'test/top_20' is not a metric runs log"):
        path.write_text(path.read_text().replace("test/top20", "test/top_20"))
        read_sweep(path)


def test_notebook_reads_results_and_writes_plots(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    rows = [{"run": f"r{i}", "trial": i, "params": {"hash.gamma": g, "hash.estimator": e},
             "metrics": {"top20": 70.0 + i, "top1": 30.0 + i, "top100": 90.0, "bytes_per_passage": 48}}
            for i, (g, e) in enumerate([(0.01, "ste"), (0.1, "scaled_tanh"), (1.0, "ste")])]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    notebook = nbformat.read(REPO / "notebooks" / "ablations.ipynb", as_version=4)
    os.environ["BPRLAB_SWEEP_DIR"] = str(tmp_path)
    try:
        nbclient.NotebookClient(notebook, timeout=120, resources={"metadata": {"path": str(tmp_path)}}).execute()
    finally:
        del os.environ["BPRLAB_SWEEP_DIR"]
    plots = sorted(p.name for p in (tmp_path / "notebook_plots").glob("*.png"))
    assert plots == ["top20_vs_hash_estimator.png", "top20_vs_hash_gamma.png"]
    assert "| r0 | ste | 0.01 | 70.00 |" in (tmp_path / "notebook_plots" / "table.md").read_text()


@pytest.mark.parametrize("seed_spec, message", [
    ({"values": [1, 2.5]}, "parameters.seed: expected a list of integers"),
    ({"values": ["a"]}, "parameters.seed: expected a list of integers"),
    ({"values": [1, 1]}, "parameters.seed: 1 listed more than once"),
    ({"min": 0.5, "max": 3}, "parameters.seed: min and max must be integers"),
])
def test_a_seed_parameter_must_be_whole_numbers(tmp_path, seed_spec, message):
    with pytest.raises(ConfigError, match=message):
        _sweep(tmp_path, params={"hash.gamma": {"values": [0.1]}, "seed": seed_spec})


def test_bad_sweep_files_are_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="parameters.hash.gamma.values: expected a non-empty list"):
        _sweep(tmp_path, params={"hash.gamma": {"values": 0.1}})
    path = tmp_path / "broken.yaml"
    path.write_text("method: grid\nparameters: {a: [\n")
    with pytest.raises(ConfigError, match="broken.yaml: not a valid YAML sweep file"):
        read_sweep(path)


def test_sweep_report_averages_each_setting_over_its_seeds(tmp_path):
    from bprlab.sweep_report import write_sweep_report

    folder = tmp_path / "sweeps" / "s"
    table = ResultsTable(folder, "test/top20")
    for estimator, scores in (("ste", (80.0, 82.0, 84.0)), ("scaled_tanh", (90.0, 90.0, 90.0))):
        for seed, score in zip((42, 43, 44), scores):
            table.add({"run": f"r-{estimator}-{seed}", "trial": 1, "params": {"hash.estimator": estimator, "seed": seed},
                       "metrics": {"top20": score, "top1": score / 2, "top100": 99.0}})
    text = write_sweep_report(folder).read_text()
    # ste: mean 82, sd 2, t(0.975, 2) * 2 / sqrt(3) = 4.97
    assert "| hash.estimator=ste | 42, 43, 44 | 82.0 ± 5.0 |" in text
    assert "| hash.estimator=scaled_tanh | 42, 43, 44 | 90.0 ± 0.0 |" in text


@pytest.mark.parametrize("name, env, expected", [
    ("ablations.ipynb", "BPRLAB_SWEEP_DIR", "run `make sweep"),
    ("results.ipynb", "BPRLAB_RUNS", "run `make demo`"),
])
def test_notebooks_say_what_to_run_when_there_is_nothing_to_read(tmp_path, monkeypatch, name, env, expected):
    from pathlib import Path

    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(Path(__file__).resolve().parents[1] / "notebooks" / name, as_version=4)
    monkeypatch.setenv(env, str(tmp_path / "nothing-here"))
    nbclient.NotebookClient(notebook, timeout=120, resources={"metadata": {"path": str(tmp_path)}}).execute()
    printed = "".join(out.get("text", "") for cell in notebook.cells for out in cell.get("outputs", []))
    assert expected in printed
