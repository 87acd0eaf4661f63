"""Gradient caching: the same loss and the same update as the full batch, alone, under 2 gloo processes, and
through `bprlab train`; the random state replay; chunk sizes that do not divide the batch."""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import PASSAGES, QUESTIONS
from torch import nn

from bprlab.config import load_config
from bprlab.core.encoder import BiEncoder, load_tokenizer
from bprlab.core.losses import BPRLoss, DPRLoss
from bprlab.data.collate import Collator, Sample
from bprlab.data.records import Passage
from bprlab.lit.grad_cache import RandomState, cached_backward, chunks, encode_chunk


def batch_for(model_dir: str) -> dict:
    collator = Collator(load_tokenizer(model_dir), 32, 48, passage_text_token_type=1)
    n = len(PASSAGES)
    samples = [Sample(q, [_passage(i), _passage((i + 3) % n)])
               for i, (q, _) in enumerate(QUESTIONS)]
    return collator(samples)


def _passage(i: int) -> Passage:
    title, text = PASSAGES[i]
    return Passage(title=title, text=text)


def full_batch_grads(model, loss_fn, batch, beta):
    model.zero_grad()
    question = model.encode_question(**batch["question"])
    passage = model.encode_passage(**batch["passage"])
    out = loss_fn(question, passage, batch["positive_idx"], beta=beta)
    out.loss.backward()
    return out.loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("loss_fn", [DPRLoss(), BPRLoss(margin=0.5)], ids=["dpr", "bpr"])
@pytest.mark.parametrize("chunk", [1, 3, 8, 50])  # 3 does not divide 8 questions; 50 exceeds the batch
def test_cached_gradients_equal_the_full_batch(tiny_bert_no_dropout, loss_fn, chunk):
    """In float64: the tiny random model's parameter gradients are sums that nearly cancel, so float32 rounding
    (which differs with the chunk's shapes and the machine's GEMM kernels) moves them by up to a few percent; in
    float64 both ways agree to rounding, on every machine."""
    torch.manual_seed(0)
    model = BiEncoder.from_pretrained(tiny_bert_no_dropout).train().double()
    batch = batch_for(tiny_bert_no_dropout)
    want_loss, want = full_batch_grads(model, loss_fn, batch, beta=2.0)
    model.zero_grad()
    out, size = cached_backward(model, loss_fn, batch, chunk, beta=2.0)
    assert size == len(QUESTIONS)
    assert out.loss.dtype == torch.float64  # the loss keeps the model's precision where it is wider than float32
    assert torch.allclose(out.loss.detach(), want_loss, rtol=1e-12, atol=0)
    got = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert got.keys() == want.keys()
    for name in want:
        assert torch.allclose(got[name], want[name], rtol=1e-9, atol=1e-14), name


def test_chunks_keep_each_question_with_its_passages(tiny_bert_no_dropout):
    batch = batch_for(tiny_bert_no_dropout)
    parts = chunks(batch, 3)
    assert [len(p["question"]["input_ids"]) for p in parts] == [3, 3, 2]
    assert [len(p["passage"]["input_ids"]) for p in parts] == [6, 6, 4]  # 1 positive + 1 negative each
    lengths = [p["passage"]["input_ids"].shape[1] for p in parts]
    assert max(lengths) == batch["passage"]["input_ids"].shape[1]  # padding trimmed per chunk, never cut


def test_random_state_replay_reproduces_dropout(tiny_bert):
    torch.manual_seed(0)
    model = BiEncoder.from_pretrained(tiny_bert).train()  # dropout 0.1
    part = chunks(batch_for(tiny_bert), 4)[0]
    state = RandomState(torch.device("cpu"))
    first = encode_chunk(model, part)
    with state.replay():
        again = encode_chunk(model, part)
    fresh = encode_chunk(model, part)  # the generator continued from where the first pass left it
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[0], fresh[0])


# ---------------------------------------------------------------------------------------- 2 gloo processes

WORLD, B, PER_Q, D_IN, D = 2, 4, 2, 6, 8


class Towers(nn.Module):
    """Linear towers with the encoder interface (input_ids carry float features; the mask is all ones)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.question, self.passage = nn.Linear(D_IN, D), nn.Linear(D_IN, D)

    def encode_question(self, input_ids, attention_mask):
        return self.question(input_ids)

    def encode_passage(self, input_ids, attention_mask):
        return self.passage(input_ids)

    def forward(self, batch, chunk):
        from pytorch_lightning.overrides.distributed import prepare_for_backward

        ddp = self.ddp

        def backward(tensor):  # what Lightning's manual_backward does under DDP
            prepare_for_backward(ddp, tensor)
            tensor.backward()

        return cached_backward(self, LOSS, batch, chunk, beta=2.0, backward=backward, no_sync=ddp.no_sync)[0].loss


LOSS = BPRLoss(margin=0.5)


def _features(rows: torch.Tensor) -> dict:
    return {"input_ids": rows, "attention_mask": torch.ones(rows.shape, dtype=torch.long)}


def global_batch():
    g = torch.Generator().manual_seed(1)
    return torch.randn(WORLD * B, D_IN, generator=g), torch.randn(WORLD * B * PER_Q, D_IN, generator=g)


def _worker(rank, init_file, out_dir, chunk):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    towers = Towers()
    ddp = nn.parallel.DistributedDataParallel(towers)
    towers.ddp = ddp
    q_all, p_all = global_batch()
    batch = {"question": _features(q_all[rank * B : (rank + 1) * B]),
             "passage": _features(p_all[rank * B * PER_Q : (rank + 1) * B * PER_Q]),
             "positive_idx": torch.arange(B) * PER_Q}
    loss = ddp(batch, chunk)  # gradients synchronise once, on the last chunk's backward
    grads = {n: p.grad.clone() for n, p in towers.named_parameters() if not n.startswith("ddp")}
    torch.save({"loss": loss.detach(), "grads": grads}, os.path.join(out_dir, f"{rank}.pt"))
    dist.barrier()  # no rank tears the gloo group down while the other still talks to it (tests/test_ddp.py)
    dist.destroy_process_group()


def test_cached_gradients_under_two_processes_equal_one_process(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path), 3), nprocs=WORLD, join=True)
    model = Towers()
    q_all, p_all = global_batch()
    out = LOSS(model.question(q_all), model.passage(p_all), torch.arange(WORLD * B) * PER_Q, beta=2.0)
    out.loss.backward()
    for rank in range(WORLD):
        got = torch.load(tmp_path / f"{rank}.pt")
        assert torch.allclose(got["loss"], out.loss.detach(), atol=1e-6)  # each rank's loss is the global one
        for name, param in model.named_parameters():
            assert torch.allclose(got["grads"][name] * WORLD, param.grad, atol=1e-5), name  # DDP averages


# ---------------------------------------------------------------------------------------- through `bprlab train`

@pytest.mark.parametrize("method", ["dpr", "bpr"])
def test_training_with_gradient_caching_gives_the_same_weights(tiny_overrides, tiny_bert_no_dropout, method):
    from bprlab.lit.train import train
    from bprlab.runs import RunPaths

    weights = {}
    for chunk in (None, 3):
        cfg = load_config(None, [*tiny_overrides, f"model.name={tiny_bert_no_dropout}", f"method={method}",
                                 f"name=gc-{method}-{chunk}", "train.max_steps=2", "train.batch_size=8",
                                 # eps=1: Adam's step is then proportional to the gradient, so float noise in a
                                 # near-zero gradient cannot flip a whole step (as it can with eps=1e-8)
                                 "train.epochs=2", "optim.lr=1e-2", "optim.eps=1.0", "optim.max_grad_norm=0.5",
                                 "hash.gamma=0.5",
                                 f"train.grad_cache_chunk_size={'null' if chunk is None else chunk}"])
        summary = train(cfg)
        assert summary["global_step"] == 2  # optimizer steps are counted the same way
        state = torch.load(RunPaths(cfg).last_checkpoint, map_location="cpu", weights_only=False)
        weights[chunk] = state["state_dict"]
        assert state["lr_schedulers"][0]["last_epoch"] == 2  # the schedule stepped once per optimizer step
    for name, value in weights[None].items():
        assert torch.allclose(weights[3][name], value, atol=1e-6, rtol=1e-5), name


def test_gradient_caching_with_accumulation_is_a_config_error(tiny_overrides):
    from bprlab.errors import ConfigError

    with pytest.raises(ConfigError, match="accumulate_grad_batches=1"):
        load_config(None, [*tiny_overrides, "train.grad_cache_chunk_size=2", "train.accumulate_grad_batches=2"])
    with pytest.raises(ConfigError, match="grad_cache_chunk_size"):
        load_config(None, [*tiny_overrides, "train.grad_cache_chunk_size=0"])


def test_a_chunked_run_killed_mid_way_resumes_where_it_stopped(tiny_overrides):
    import pytorch_lightning as pl

    from bprlab.core.hashing import hash_beta
    from bprlab.lit.train import train

    class Crash(pl.Callback):
        def __init__(self, at=None):
            self.at, self.seen = at, []

        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            if trainer.global_step == self.at:
                raise RuntimeError("simulated crash")
            self.seen.append((trainer.global_step, module.beta))

    cfg = load_config(None, [*tiny_overrides, "name=gc-resume", "method=bpr", "train.grad_cache_chunk_size=3",
                             "train.epochs=3", "hash.gamma=0.5"])
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg, extra_callbacks=[Crash(at=3)])
    again = Crash()
    summary = train(cfg, extra_callbacks=[again])
    assert summary["resumed_from"].endswith("last.ckpt") and summary["global_step"] == 6
    assert again.seen[0] == (3, pytest.approx(hash_beta(3, 0.5)))  # optimizer steps and beta continue


def test_fp16_loss_scaling_and_clipping_move_chunked_and_unchunked_steps_alike(tiny_overrides, tiny_bert_no_dropout):
    """Under 16-mixed the gradients carry the loss scale until the precision plugin unscales them inside the
    optimizer step; a clip before that point sees them ~65536x too large and shrinks the step to nothing. Run on
    the CPU with Lightning's MixedPrecision plugin and a GradScaler (the CUDA recipe's stand-in), clipping active:
    the chunked step must move the weights as the unchunked one does."""
    from pytorch_lightning.plugins.precision import MixedPrecision

    from bprlab.lit.train import train
    from bprlab.runs import RunPaths

    moved = {}
    for chunk in (None, 3):
        cfg = load_config(None, [*tiny_overrides, f"model.name={tiny_bert_no_dropout}", "method=bpr",
                                 f"name=fp16-{chunk}", "train.max_steps=1", "train.batch_size=8", "train.epochs=1",
                                 "optim.lr=1e-2", "optim.eps=1.0", "optim.max_grad_norm=0.05", "optim.warmup_ratio=0",
                                 "train.checkpoint_every_n_steps=null",
                                 f"train.grad_cache_chunk_size={'null' if chunk is None else chunk}"])
        start = {k: v.clone() for k, v in load_start(cfg).items()}
        plugin = MixedPrecision("16-mixed", device="cpu", scaler=torch.amp.GradScaler("cpu", init_scale=2.0 ** 16))
        train(cfg, trainer_options={"precision": None, "plugins": [plugin]})
        state = torch.load(RunPaths(cfg).last_checkpoint, map_location="cpu", weights_only=False)["state_dict"]
        moved[chunk] = torch.sqrt(sum(((state[k].float() - v.float()) ** 2).sum() for k, v in start.items()))
    assert moved[None] > 0
    assert moved[3] == pytest.approx(float(moved[None]), rel=0.05)  # without the fix: ~5 orders of magnitude less


def load_start(cfg):
    """The weights a run starts from (the module built from its config, before any step)."""
    import pytorch_lightning as pl

    from bprlab.config.loader import to_dict
    from bprlab.lit.modules import module_class

    pl.seed_everything(cfg.seed)
    return module_class(cfg.method)(to_dict(cfg)).state_dict()
