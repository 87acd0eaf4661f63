"""The Lightning path on a tiny BERT: train -> encode -> index -> evaluate, resume, and CLI errors."""

import json
from pathlib import Path

import pytest
import pytorch_lightning as pl

from bprlab.cli import stages
from bprlab.cli.main import main
from bprlab.config import load_config
from bprlab.core.hashing import hash_beta
from bprlab.eval.metrics import METRICS_KEYS
from bprlab.lit.train import train
from bprlab.runs import RunPaths


@pytest.mark.parametrize("method, kind, bytes_per_passage", [("bpr", "binary_flat", 4), ("dpr", "flat", 128)])
def test_pipeline_end_to_end(tiny_overrides, method, kind, bytes_per_passage):
    cfg = load_config(None, [*tiny_overrides, f"name=e2e-{method}", f"method={method}", f"index.kind={kind}"])
    metrics = stages.run(cfg)
    assert set(METRICS_KEYS) - {"top20", "top50", "top100"} <= set(metrics) | {"top1", "top5"}
    assert {"top1", "top2", "top5"} <= set(metrics) and 0 <= metrics["top1"] <= metrics["top5"] <= 100
    assert metrics["bytes_per_passage"] == bytes_per_passage  # 32-d tiny BERT: 32 bits = 4 bytes vs 128
    assert metrics["num_passages"] == 8 and metrics["num_questions"] == 8
    paths = RunPaths(cfg)
    assert json.loads((paths.eval / "metrics.json").read_text())["top1"] == metrics["top1"]
    assert (paths.root / "provenance.json").is_file() and (paths.root / "config.yaml").is_file()
    summary = json.loads(paths.train_summary.read_text())
    assert summary["global_step"] == 4 and summary["best_checkpoint"]  # 8 questions / 4 per step x 2 epochs


class Recorder(pl.Callback):
    def __init__(self, crash_at=None):
        self.seen, self.crash_at = [], crash_at

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.global_step == self.crash_at:
            raise RuntimeError("simulated crash")
        self.seen.append((trainer.global_step, module.beta))


def test_killed_run_resumes_from_last_with_beta_continuing(tiny_overrides):
    cfg = load_config(None, [*tiny_overrides, "name=resume", "method=bpr", "train.epochs=3", "hash.gamma=0.5"])
    first = Recorder(crash_at=3)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg, extra_callbacks=[first])
    assert [s for s, _ in first.seen] == [0, 1, 2]
    assert RunPaths(cfg).last_checkpoint.is_file() and not RunPaths(cfg).train_summary.exists()
    second = Recorder()
    summary = train(cfg, extra_callbacks=[second])
    assert summary["resumed_from"].endswith("last.ckpt")
    assert summary["resumes"] == [{"step": 3, "epoch": 1, "world_size": 1}]  # 2 steps an epoch
    assert second.seen[0] == (3, pytest.approx(hash_beta(3, 0.5)))  # beta is not reset by the resume
    assert [s for s, _ in second.seen] == [3, 4, 5] and summary["global_step"] == 6


def test_a_finished_run_can_keep_only_its_weights_and_then_refuses_to_resume_by_name(tiny_overrides):
    import torch

    from bprlab.errors import StageError

    kept = load_config(None, [*tiny_overrides, "name=kept", "method=bpr"])
    lean = load_config(None, [*tiny_overrides, "name=lean", "method=bpr", "train.keep_resume_state=false"])
    train(kept)
    summary = train(lean)
    full = torch.load(RunPaths(kept).last_checkpoint, map_location="cpu", weights_only=False)
    weights = torch.load(RunPaths(lean).last_checkpoint, map_location="cpu", weights_only=False)
    assert "optimizer_states" in full and "optimizer_states" not in weights
    assert all(torch.equal(full["state_dict"][k], v) for k, v in weights["state_dict"].items())  # same seed, same run
    assert set(weights["state_dict"]) == set(full["state_dict"])
    assert train(lean) == summary  # finished: nothing resumes, nothing trains
    RunPaths(lean).train_summary.unlink()
    with pytest.raises(StageError, match="keep_resume_state=false.*--force"):
        train(lean)


class Batches(Recorder):
    """What each step trained on (its question token ids)."""

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        super().on_train_batch_start(trainer, module, batch, batch_idx)
        self.seen[-1] = (trainer.global_step, batch["question"]["input_ids"].tolist())


def _weights(cfg):
    import torch

    return torch.load(RunPaths(cfg).last_checkpoint, map_location="cpu", weights_only=False)["state_dict"]


@pytest.mark.parametrize("crash_at, extra", [
    (1, []),  # part-way through the first epoch (the whole of a one-epoch run such as the ablations')
    (3, []),  # mid-epoch: 2 steps an epoch, step 3 is the second batch of epoch 1
    (2, []),  # at an epoch's start: the checkpoint is the previous epoch's last step, validation came after it
    (3, ["train.val_check_interval=1"]),  # a validation after every step, the saved one's included
])
def test_a_killed_run_resumes_to_the_weights_of_an_uninterrupted_one(tiny_overrides, crash_at, extra):
    """Killed part-way (dropout on): the resumed run trains on the rest of that epoch's order, with the random state
    it had, and ends with the uninterrupted run's weights, bit for bit."""
    import torch

    base = [*tiny_overrides, "method=bpr", "train.epochs=3", "train.select_from_epoch=0", *extra]
    straight_cfg = load_config(None, [*base, "name=straight"])
    straight = Batches()
    train(straight_cfg, extra_callbacks=[straight])
    resumed_cfg = load_config(None, [*base, "name=resumed"])
    first = Batches(crash_at=crash_at)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(resumed_cfg, extra_callbacks=[first])
    second = Batches()
    train(resumed_cfg, extra_callbacks=[second])
    assert first.seen + second.seen == straight.seen  # the same batches, in the same order
    ours, theirs = _weights(resumed_cfg), _weights(straight_cfg)
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_a_run_killed_again_between_the_batches_of_one_accumulated_step_still_resumes_exactly(tiny_overrides):
    """Gradient accumulation over 2 batches (4 batches an epoch, 2 optimizer steps): killed after step 3, resumed,
    then killed again between the two batches of step 4. The resumed run must not have saved last.ckpt after the
    first of them (that batch's gradient is in no checkpoint), so the second resume starts step 4 again and the run
    ends with the uninterrupted run's weights."""
    import torch

    class SecondBatchOfStep4(pl.Callback):
        def __init__(self):
            self.seen = 0

        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            self.seen += trainer.global_step == 3
            if self.seen == 2:
                raise RuntimeError("simulated crash")

    base = [*tiny_overrides, "method=bpr", "train.epochs=3", "train.select_from_epoch=0", "train.batch_size=2",
            "train.accumulate_grad_batches=2"]
    straight_cfg = load_config(None, [*base, "name=straight"])
    train(straight_cfg)
    cfg = load_config(None, [*base, "name=twice"])
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg, extra_callbacks=[Recorder(crash_at=3)])
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg, extra_callbacks=[SecondBatchOfStep4()])
    summary = train(cfg)
    ours, theirs = _weights(cfg), _weights(straight_cfg)
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    # one resume on the path to the final weights: the first resumed session saved nothing before it was killed, so
    # the second went on from the same step-3 checkpoint, as if the first had never started
    assert summary["resumes"] == [{"step": 3, "epoch": 1, "world_size": 1}]
    assert json.loads(RunPaths(straight_cfg).train_summary.read_text())["resumes"] == []


@pytest.mark.parametrize("extra", [
    [],  # 3 epochs of 2 batches
    ["train.epochs=1", "train.max_steps=1"],  # one epoch cut short (the trainer's limit_train_batches)
    ["train.accumulate_grad_batches=3", "train.epochs=2"],  # an epoch's short last accumulation still steps
    ["train.max_steps=5"],
])
def test_the_schedule_is_as_long_as_lightnings_count_without_building_the_loader_first(tiny_overrides, extra):
    """The LR schedule's length comes from the training set's size (lit.modules.optimizer_steps), not from
    Lightning's estimate, which builds the train loader before a checkpoint is restored; it must count the same."""
    from bprlab.lit.modules import optimizer_steps

    class Count(pl.Callback):
        def on_train_start(self, trainer, module):  # the loader exists by now: Lightning's estimate builds nothing
            self.ours, self.lightnings = optimizer_steps(trainer), trainer.estimated_stepping_batches

    count = Count()
    cfg = load_config(None, [*tiny_overrides, "method=dpr", "train.epochs=3", "name=count", *extra])
    train(cfg, extra_callbacks=[count])
    assert count.ours == count.lightnings > 0


def test_config_typo_exits_2_with_one_line(capsys, tmp_path):
    exp = tmp_path / "exp.yaml"
    exp.write_text("train:\n  max_stepz: 3\n")
    assert main(["train", str(exp)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(exp) in err and "train.max_stepz" in err


def test_malformed_passages_exit_2_without_partial_store(capsys, tiny_overrides, tiny_data):
    with open(tiny_data["passages"], "a") as f:
        f.write("99\tno title field\n")
    cfg_file = tiny_data["root"] / "exp.yaml"
    cfg_file.write_text("name: bad-passages\n")
    assert main(["prepare", str(cfg_file), *tiny_overrides]) == 2
    err = capsys.readouterr().err
    assert f"{tiny_data['passages']}: record line 10: expected 3 tab-separated fields" in err
    assert not any(p.name.endswith(".arrow") for p in tiny_data["root"].iterdir())


def test_answer_field_not_a_list_exits_2(capsys, tiny_overrides, tiny_data):
    tiny_data["test"].write_text("What is the capital of France?\t'Paris'\n")
    cfg_file = tiny_data["root"] / "exp.yaml"
    cfg_file.write_text("name: bad-answers\nmethod: dpr\ncheckpoint: pretrained\nindex:\n  kind: flat\n")
    assert main(["run", str(cfg_file), *tiny_overrides]) == 2
    err = capsys.readouterr().err
    assert f"{tiny_data['test']}: record line 1: field 'answers' must be a list of strings, got str" in err


def test_wandb_offline_run_gets_training_and_evaluation(tiny_overrides, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = load_config(None, [*tiny_overrides, "name=wb", "method=bpr", "index.kind=binary_flat", "logger=wandb",
                             "wandb.group=g", "train.epochs=1"])
    stages.run(cfg)
    root = RunPaths(cfg).root
    run_id = (root / "wandb_run_id.txt").read_text().strip()
    offline = list((root / "wandb").glob(f"offline-run-*-{run_id}"))
    assert offline, "training and evaluation log to one offline W&B run, named by the run's id"
    assert any(p.suffix == ".wandb" for p in offline[0].iterdir())


def test_validation_ranks_in_float32_under_bf16_autocast(tiny_overrides):
    """A projection head under CPU bf16 autocast returns bfloat16; the pool is scored from float32 copies."""
    import torch

    from bprlab.config.loader import to_dict
    from bprlab.data.collate import Collator, Sample
    from bprlab.data.records import Passage
    from bprlab.lit.modules import module_class

    cfg = load_config(None, [*tiny_overrides, "method=bpr", "model.projection_dim=16"])
    module = module_class(cfg.method)(to_dict(cfg)).eval()
    samples = [Sample(f"question {i}", [Passage(title=f"t{i}", text=f"passage {i} {j}") for j in range(3)])
               for i in range(4)]
    batch = Collator.from_config(cfg)(samples)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert module.model.encode_question(**batch["question"]).dtype == torch.bfloat16  # what the towers give
        module.validation_step(batch, 0)
    question, passage, _ = module._val_batches[0]
    assert question.dtype == passage.dtype == torch.float32


@pytest.mark.parametrize("stage", ["encode", "run"])
def test_a_file_that_is_not_a_checkpoint_is_one_clear_error(tiny_overrides, tmp_path, capsys, stage):
    fake = tmp_path / "notes.ckpt"
    fake.write_bytes(b"these are my notes, not weights\n" * 10)
    config = tmp_path / "empty.yaml"
    config.write_text("{}\n")
    code = main([stage, str(config), *tiny_overrides, "name=foreign", "index.kind=flat", f"checkpoint={fake}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and f"{fake}: damaged or not a checkpoint" in err[0], err


def _trained(tiny_overrides, *extra):
    cfg = load_config(None, [*tiny_overrides, "name=kept", "index.kind=flat", *extra])
    stages.train(cfg)
    return cfg


def test_evaluation_inputs_never_retrain_a_finished_run(tiny_overrides, tiny_data, tmp_path, monkeypatch):
    cfg = _trained(tiny_overrides)
    other_test = tmp_path / "other.qa.csv"
    other_test.write_text("Where is Oslo?\t['Norway']\n")
    beir = tmp_path / "beir"
    from bprlab.data.beir_export import write_beir
    from bprlab.data.readers import iter_passages, read_biencoder

    write_beir(beir, iter_passages(tiny_data["passages"]), read_biencoder(tiny_data["train"]))
    monkeypatch.setattr("bprlab.lit.train.pl.Trainer.fit", lambda *a, **k: pytest.fail("retrained"))
    for extra in ([f"data.test_file={other_test}"], ["data.dataset=beir", f"data.path={beir}"],
                  ["index.kind=binary_flat", "eval.top_k=[1]", "data.answer_match=regex"]):
        assert stages.train(load_config(None, [*tiny_overrides, "name=kept", "index.kind=flat", *extra])) is None
    assert (RunPaths(cfg).root / "train.json").is_file()


def test_a_run_trained_under_stamp_format1_stays_trained_and_its_encodings_and_index_current(tiny_overrides,
                                                                                              monkeypatch):
    """train.json's stamp is upgraded in place; the encoding and the index keep their format-1 stamps and are
    current as they are (nothing is encoded or built again)."""
    from bprlab.data.passage_store import PassageStore
    from bprlab.stamps import format1_encode_stamp as encode_stamp
    from bprlab.stamps import format1_index_stamp as index_stamp
    from bprlab.stamps import format1_train_stamp as format1_train
    from bprlab.stamps import train_stamp, training_files, weights_stamp

    cfg = _trained(tiny_overrides)
    stages.encode(cfg)
    stages.index(cfg)
    paths = RunPaths(cfg)
    summary = json.loads(paths.train_summary.read_text())
    paths.train_summary.write_text(json.dumps({**summary, "fingerprint": format1_train(cfg, training_files(cfg))}))
    manifest_path = paths.passages("emb") / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    store = PassageStore.open(Path(cfg.data.passages_file))
    weights = weights_stamp(paths.checkpoint(), cfg)  # a checkpoint's: the same in both formats
    manifest["stamp"] = encode_stamp(cfg, weights, "emb", store)
    assert manifest["stamp"] == {"weights": weights, "representation": "emb", "corpus": store.fingerprint(),
                                 "num_passages": 8, "shard_size": cfg.encode.shard_size,
                                 "precision": cfg.encode.precision}  # format 1's layout, as its manifests hold it
    manifest_path.write_text(json.dumps(manifest))
    meta_path = paths.index / "index.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "source": index_stamp(cfg, manifest)}))
    before = {p: p.stat().st_mtime_ns for p in (manifest_path, meta_path)}
    monkeypatch.setattr("bprlab.lit.train.pl.Trainer.fit", lambda *a, **k: pytest.fail("retrained"))
    monkeypatch.setattr("bprlab.lit.encode.pl.Trainer.predict", lambda *a, **k: pytest.fail("encoded again"))
    assert train(cfg)["fingerprint"] == train_stamp(cfg)
    assert json.loads(paths.train_summary.read_text())["fingerprint"] == train_stamp(cfg)  # upgraded in place
    stages.encode(cfg)
    stages.index(cfg)
    assert {p: p.stat().st_mtime_ns for p in (manifest_path, meta_path)} == before


def test_a_bad_training_file_on_a_finished_run_touches_nothing(tiny_overrides, tiny_data, tmp_path, capsys):
    cfg = _trained(tiny_overrides)
    root = RunPaths(cfg).root
    before = sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))
    broken = tmp_path / "broken.json"
    broken.write_text("[{\"question\": \"q\"")
    config = tmp_path / "empty.yaml"
    config.write_text("{}\n")
    code = main(["train", str(config), *tiny_overrides, "name=kept", "index.kind=flat", f"data.train_file={broken}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and str(broken) in err[0], err
    after = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.name != ".lock")  # the CLI's run lock
    assert after == before  # checkpoints and train.json where they were
