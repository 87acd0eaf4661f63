"""The run folder as a user meets it: one process per run, artifacts checked by content, damaged or stale files
named with the command that rebuilds them, writes that never leave half an artifact, bad inputs as one line."""

from __future__ import annotations

import pytest

from bprlab.cli import stages
from bprlab.cli.main import main
from bprlab.config import load_config
from bprlab.errors import StageError
from bprlab.runs import RunPaths, run_lock


def _empty(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("{}\n")
    return path


def test_a_second_process_on_the_same_run_is_refused(tiny_overrides, tmp_path, capsys):
    cfg = load_config(None, [*tiny_overrides, "name=busy", "method=dpr", "index.kind=flat"])
    with run_lock(RunPaths(cfg).root):  # another bprlab holds the run folder
        code = main(["run", str(_empty(tmp_path)), *tiny_overrides, "name=busy", "method=dpr", "index.kind=flat"])
    err = capsys.readouterr().err
    assert code == 2 and "is in use by another bprlab process" in err
    assert not RunPaths(cfg).checkpoints.exists()  # it did nothing


def test_evaluate_refuses_an_index_from_weights_retrained_since(tiny_overrides):
    base = [*tiny_overrides, "name=retrained", "method=dpr", "index.kind=flat", "checkpoint=last"]
    cfg = load_config(None, base)
    stages.run(cfg)
    stages.train(load_config(None, [*base, "optim.lr=1e-3"]), force=True)  # new weights, same run
    with pytest.raises(StageError, match="encoded with other weights .* run `bprlab encode` and `bprlab index`"):
        stages.evaluate(cfg)
    assert stages.run(cfg)["num_questions"] == 8  # run brings encoding and index up to date


def test_an_edited_corpus_with_the_same_row_count_is_encoded_again(tiny_overrides, tiny_data):
    cfg = load_config(None, [*tiny_overrides, "name=edited", "method=dpr", "index.kind=flat", "checkpoint=pretrained"])
    stages.run(cfg)
    encoded = RunPaths(cfg).passages("emb") / "manifest.json"
    before = encoded.read_text()
    text = tiny_data["passages"].read_text().replace("Madrid is the capital", "Madrid is the largest city")
    tiny_data["passages"].write_text(text)
    stages.run(cfg)
    assert encoded.read_text() != before  # a new corpus fingerprint: encoded again, index rebuilt


def test_damaged_artifacts_are_named_with_the_command_that_rebuilds_them(tiny_overrides, tmp_path, capsys):
    args = [*tiny_overrides, "name=damaged", "method=dpr", "index.kind=flat"]
    cfg = load_config(None, args)
    stages.run(cfg)
    paths = RunPaths(cfg)
    faiss_file = paths.index / "faiss.index"
    faiss_file.write_bytes(faiss_file.read_bytes()[:50])  # truncated
    err = _last_err(tmp_path, args, capsys, "evaluate")
    assert "damaged or missing" in err and "bprlab index <experiment.yaml> --force" in err
    assert main(["index", str(_empty(tmp_path)), *args, "--force"]) == 0
    assert main(["evaluate", str(_empty(tmp_path)), *args]) == 0
    best = paths.checkpoint()
    best.write_bytes(best.read_bytes()[:1000])  # a corrupt checkpoint
    err = _last_err(tmp_path, args, capsys, "evaluate")
    assert "damaged or not a checkpoint" in err and "bprlab train <experiment.yaml> --force" in err
    paths.train_summary.write_text('{"best_checkpoint": ')  # a truncated train.json
    assert "train.json: damaged" in _last_err(tmp_path, args, capsys, "evaluate")


def _last_err(tmp_path, args, capsys, command) -> str:
    capsys.readouterr()
    assert main([command, str(_empty(tmp_path)), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


def test_best_checkpoint_is_weights_only_and_loads_without_unpickling_objects(tiny_overrides):
    import torch

    cfg = load_config(None, [*tiny_overrides, "name=small", "method=bpr"])
    stages.train(cfg)
    paths = RunPaths(cfg)
    best, last = torch.load(paths.checkpoint(), weights_only=True), torch.load(paths.last_checkpoint, weights_only=True)
    assert "optimizer_states" not in best and "optimizer_states" in last  # last resumes; best is the model
    assert paths.checkpoint().stat().st_size < paths.last_checkpoint.stat().st_size


def test_custom_data_needs_training_files_only_to_train(tiny_overrides, tmp_path, capsys):
    drop = ("data.train_file=", "data.dev_file=")
    args = [o for o in tiny_overrides if not o.startswith(drop)] + ["name=zs", "method=dpr", "index.kind=flat",
                                                                     "checkpoint=pretrained"]
    assert stages.run(load_config(None, args))["num_questions"] == 8  # encode + index + evaluate, no train files
    code = main(["train", str(_empty(tmp_path)), *[a for a in args if a != "checkpoint=pretrained"]])
    err = capsys.readouterr().err
    assert code == 2 and "training needs data.train_file and data.dev_file" in err


def test_training_files_without_a_usable_record_say_why(tiny_overrides, tmp_path, capsys):
    empty = tmp_path / "train.json"
    empty.write_text("[]")
    code = main(["train", str(_empty(tmp_path)), *tiny_overrides, "name=t", f"data.train_file={empty}"])
    err = capsys.readouterr().err
    assert code == 2 and "train.json: 0 records read, none usable for training: the file holds no records" in err


def test_a_misspelt_model_name_is_one_line(tiny_overrides, tmp_path, capsys, monkeypatch):
    import transformers

    def hub(name, *args, **kwargs):  # what the hub answers offline or for a name it does not know
        raise OSError(f"We couldn't connect to 'https://huggingface.co' to load the files of {name}.")

    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", hub)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", hub)
    args = [*tiny_overrides, "name=typo", "method=dpr", "index.kind=flat", "checkpoint=pretrained",
            "model.name=bert-base-uncasd"]
    code = main(["run", str(_empty(tmp_path)), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "model.name='bert-base-uncasd'" in err[0] and "minilm" in err[0]


def test_a_read_only_run_folder_is_one_line(tiny_overrides, tmp_path, capsys):
    import os

    runs = tmp_path / "ro-runs"
    runs.mkdir()
    os.chmod(runs, 0o555)
    try:
        if os.access(runs, os.W_OK):
            pytest.skip("running as a user who can write anywhere (root)")
        code = main(["run", str(_empty(tmp_path)), *tiny_overrides, f"runs_root={runs}", "name=ro"])
        err = capsys.readouterr().err
        assert code == 2 and "permission denied" in err and "Traceback" not in err
    finally:
        os.chmod(runs, 0o755)


def test_a_full_disk_is_one_line_naming_the_file_and_other_os_errors_are_not_hidden(tmp_path, capsys, monkeypatch):
    import errno

    import bprlab.cli.main as cli

    def full(args):
        raise OSError(errno.ENOSPC, "No space left on device", "runs/x/checkpoints/last.ckpt")

    monkeypatch.setattr(cli, "_dispatch", full)
    code = main(["train", str(_empty(tmp_path))])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "no space left" in err[0] and "last.ckpt" in err[0]

    def quota(args):  # a cluster's per-user quota: the same remedy
        raise OSError(errno.EDQUOT, "Disk quota exceeded")

    monkeypatch.setattr(cli, "_dispatch", quota)
    code = main(["train", str(_empty(tmp_path))])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "quota" in err[0] and "same command" in err[0]

    def broken(args):
        raise OSError(errno.EIO, "Input/output error", "x")

    monkeypatch.setattr(cli, "_dispatch", broken)
    with pytest.raises(OSError, match="Input/output"):
        main(["train", str(_empty(tmp_path))])


def test_a_validation_interval_beyond_the_epoch_is_a_config_error(tiny_overrides, tmp_path, capsys):
    code = main(["train", str(_empty(tmp_path)), *tiny_overrides, "name=vci", "train.val_check_interval=50"])
    err = capsys.readouterr().err
    assert code == 2 and "train.val_check_interval=50" in err


def test_a_truncated_resume_checkpoint_or_shard_names_the_file_and_the_command(tiny_overrides, tmp_path, capsys):
    args = [*tiny_overrides, "name=trunc", "method=dpr", "index.kind=flat"]
    cfg = load_config(None, args)
    stages.run(cfg)
    paths = RunPaths(cfg)
    shard = next((paths.passages("emb")).glob("*.npz"))
    shard.write_bytes(shard.read_bytes()[:40])
    capsys.readouterr()
    assert main(["index", str(_empty(tmp_path)), *args, "--force"]) == 2
    err = capsys.readouterr().err
    assert f"{shard.name}: damaged" in err and "bprlab encode <experiment.yaml> --force" in err
    paths.last_checkpoint.write_bytes(b"")
    paths.train_summary.unlink()  # so that training runs (and would resume)
    assert main(["train", str(_empty(tmp_path)), *args]) == 2
    err = capsys.readouterr().err
    assert "last.ckpt: damaged (truncated or empty)" in err and "--force" in err
    import zipfile

    with zipfile.ZipFile(paths.last_checkpoint, "w") as archive:  # a zip whose pickle is not one
        archive.writestr("last/data.pkl", b"not a pickle")
    assert main(["train", str(_empty(tmp_path)), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "last.ckpt: damaged (" in err[0] and "--force" in err[0]


def test_a_write_killed_midway_leaves_no_folder_behind_after_the_next_write(tmp_path):
    import subprocess
    import sys

    from bprlab.artifacts import atomic_dir

    target = tmp_path / "index"
    code = f"""
import os
from bprlab.artifacts import atomic_dir
with atomic_dir({str(target)!r}) as tmp:
    (tmp / "half").write_text("x")
    os._exit(9)  # killed mid-write
"""
    assert subprocess.run([sys.executable, "-c", code]).returncode == 9
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".index.")]  # the dead writer's folder
    with atomic_dir(target) as tmp:
        (tmp / "whole").write_text("y")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index"]
    assert (target / "whole").is_file()


def test_a_moved_project_keeps_its_encodings_and_indexes(tiny_overrides, tiny_data, tmp_path, caplog):
    import shutil

    args = [*tiny_overrides, "name=moved", "method=dpr", "index.kind=flat"]
    stages.run(load_config(None, args))
    moved = tmp_path / "elsewhere"
    shutil.copytree(tmp_path / "runs", moved / "runs")
    shutil.copytree(tiny_data["root"], moved / "data")
    new_args = [a.replace(str(tmp_path / "runs"), str(moved / "runs")).replace(str(tiny_data["root"]),
                                                                               str(moved / "data")) for a in args]
    with caplog.at_level("INFO"):
        metrics = stages.run(load_config(None, new_args))
    assert "already trained" in caplog.text and caplog.text.count("is current") >= 2  # encoding and index reused
    assert "building the passage store" not in caplog.text and metrics["num_questions"] == 8


def test_run_with_an_encoding_part_says_how_parts_are_run(tiny_overrides):
    from bprlab.errors import ConfigError

    cfg = load_config(None, [*tiny_overrides, "encode.part=0/1"])
    with pytest.raises(ConfigError, match="encode.part=0/1 encodes one part .* `bprlab run` without encode.part"):
        stages.run(cfg)
    assert not RunPaths(cfg).root.exists()  # refused before anything ran
