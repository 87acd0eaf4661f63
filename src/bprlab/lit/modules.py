"""LightningModules for DPR and BPR on one shared base. The math lives in `bprlab.core`; this is the glue:
encoders -> cross-device gather -> loss; validation average rank; AdamW with linear warmup and decay;
passage encoding for the index (predict)."""

from __future__ import annotations

import math

import pytorch_lightning as pl
import torch
from transformers import get_linear_schedule_with_warmup

from bprlab.config.enums import Estimator, Method
from bprlab.config.loader import from_dict
from bprlab.config.schema import RunConfig
from bprlab.core.encoder import BiEncoder
from bprlab.core.hashing import hash_beta, pack_codes, sign_code
from bprlab.core.losses import BPRLoss, DPRLoss
from bprlab.core.scoring import gold_ranks
from bprlab.errors import ConfigError
from bprlab.lit.gather import gather_positive_idx, gather_with_local_grad
from bprlab.lit.grad_cache import grad_cache_step
from bprlab.lit.precision import loss_in_fp32

NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight", "projection.1.weight")
RANK_CHUNK = 1024  # questions scored at a time for val/avg_rank (bounds the (Q, N) score matrix)
VAL_TOP_K = (1, 5, 20)  # val/top{k}: share of dev questions whose gold passage ranks in the pool's top k


class RetrieverModule(pl.LightningModule):
    """Shared by DPR and BPR; subclasses choose the loss and how passages are scored at search time."""

    def __init__(self, config: dict):
        super().__init__()
        self.save_hyperparameters({"config": config})  # the resolved config travels inside every checkpoint
        self.cfg: RunConfig = from_dict(config)
        # from_pretrained returns eval mode; training uses the checkpoint's dropout, as DPR and BPR do
        self.model = BiEncoder.from_model_config(self.cfg.model).train()
        _check_lengths(self.cfg, self.model)
        self.loss_fn = self.make_loss()
        self.predict_representation = "emb"  # or "code": set by the encode stage
        self.grad_cache_chunk_size = self.cfg.train.grad_cache_chunk_size
        if self.grad_cache_chunk_size:  # bprlab.lit.grad_cache steps the optimizer itself
            self.automatic_optimization = False
        self._val_batches: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def make_loss(self):
        raise NotImplementedError

    @property
    def beta(self) -> float:
        return 1.0

    def passage_search_repr(self, passage_emb: torch.Tensor) -> torch.Tensor:
        """What a passage looks like to the reranker: e_p for DPR, sign(e_p) for BPR (docs/method.md#hash-layer)."""
        return passage_emb

    # ------------------------------------------------------------------------------------------ training

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor | None:
        if self.grad_cache_chunk_size:
            out, size = grad_cache_step(self, batch, self.grad_cache_chunk_size)
            self._log_loss(out, size)
            return None
        question = self.model.encode_question(**batch["question"])  # (B, D)
        passage = self.model.encode_passage(**batch["passage"])  # (B * (1 + n), D)
        positive_idx = gather_positive_idx(batch["positive_idx"], passage.shape[0])  # (world * B,)
        question, passage = gather_with_local_grad(question), gather_with_local_grad(passage)
        out = loss_in_fp32(self.loss_fn, question, passage, positive_idx, self.beta)
        self._log_loss(out, len(positive_idx))
        return out.loss

    def on_before_optimizer_step(self, optimizer) -> None:
        """Gradient caching steps the optimizer itself (manual optimisation), so Lightning's own clipping is off
        and the clip happens here: Lightning calls this hook after the 16-mixed plugin has unscaled the gradients,
        so the norm is the true one (clipping before `optimizer.step()` would see it times the loss scale)."""
        if self.grad_cache_chunk_size and self.cfg.optim.max_grad_norm:
            self.clip_gradients(optimizer, gradient_clip_val=self.cfg.optim.max_grad_norm,
                                gradient_clip_algorithm="norm")

    def _log_loss(self, out, size: int) -> None:
        self.log("train/loss", out.loss.detach(), prog_bar=True, batch_size=size)
        self.log_dict({f"train/{k}": v for k, v in out.terms.items()}, batch_size=size)

    def configure_optimizers(self):
        optim = self.cfg.optim
        groups: dict[tuple[bool, bool], list] = {}
        for name, param in self.named_parameters():
            if param.requires_grad:  # (a new projection head?, decayed?) -> parameters
                groups.setdefault((".projection." in name, not name.endswith(NO_DECAY)), []).append(param)
        head_lr = optim.projection_lr if optim.projection_lr is not None else optim.lr
        optimizer = torch.optim.AdamW(
            [{"params": params, "weight_decay": optim.weight_decay if decayed else 0.0,
              "lr": head_lr if head else optim.lr} for (head, decayed), params in sorted(groups.items())],
            lr=optim.lr, eps=optim.eps,
        )
        total = max(1, optimizer_steps(self.trainer))
        warmup = optim.warmup_steps if optim.warmup_steps is not None else int(optim.warmup_ratio * total)
        schedule = get_linear_schedule_with_warmup(optimizer, warmup, total)  # as DPR and the official BPR code
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    # ------------------------------------------------------------------------------------------ validation

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        # float32 copies: under bf16 / fp16 autocast the towers (a projection head included) return half
        # precision, and ranks computed from half-precision scores tie and swap
        question = self.model.encode_question(**batch["question"]).float()
        passage = self.passage_search_repr(self.model.encode_passage(**batch["passage"]).float())
        self._val_batches.append((question, passage, batch["positive_idx"]))

    def on_validation_epoch_end(self) -> None:
        if not self._val_batches:
            return
        question, passage, gold = _pool(self._val_batches)
        self._val_batches.clear()
        gold = gather_positive_idx(gold, passage.shape[0])  # one pool over all ranks, as the official BPR code
        question, passage = gather_with_local_grad(question), gather_with_local_grad(passage)
        with torch.autocast(device_type=question.device.type, enabled=False):  # scores in float32
            ranks = torch.cat([gold_ranks(question[i : i + RANK_CHUNK], passage, gold[i : i + RANK_CHUNK])
                               for i in range(0, len(gold), RANK_CHUNK)])  # (Q,)
        self.log("val/avg_rank", ranks.float().mean(), prog_bar=True, sync_dist=False)
        # the same ranks as accuracies in the pool: learning curves read these beside avg_rank
        self.log_dict({f"val/top{k}": 100.0 * (ranks < k).float().mean() for k in VAL_TOP_K}, sync_dist=False)

    # ------------------------------------------------------------------------------------------ encoding

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        emb = self.model.encode_passage(**batch["passage"]).float()  # (B, D)
        values = pack_codes(emb) if self.predict_representation == "code" else emb.cpu().numpy()
        return {"rows": batch["rows"].cpu().numpy(), "values": values}


class DPRModule(RetrieverModule):
    def make_loss(self):
        return DPRLoss()


class BPRModule(RetrieverModule):
    def make_loss(self):
        loss, hashing = self.cfg.loss, self.cfg.hash
        return BPRLoss(estimator=hashing.estimator, candidate_kind=loss.candidate_kind, margin=loss.margin,
                       candidate_weight=loss.candidate_weight, rerank_weight=loss.rerank_weight,
                       fixed_beta=hashing.fixed_beta)

    @property
    def beta(self) -> float:
        """beta = sqrt(1 + gamma * optimizer steps taken); global_step is restored on resume, so is beta."""
        if self.cfg.hash.estimator is Estimator.fixed:
            return self.cfg.hash.fixed_beta
        return hash_beta(self.global_step, self.cfg.hash.gamma)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor | None:
        self.log("train/beta", self.beta, batch_size=len(batch["positive_idx"]))
        return super().training_step(batch, batch_idx)

    def passage_search_repr(self, passage_emb: torch.Tensor) -> torch.Tensor:
        return sign_code(passage_emb)


MODULES = {Method.dpr: DPRModule, Method.bpr: BPRModule}


def _check_lengths(cfg: RunConfig, model: BiEncoder) -> None:
    """A sequence longer than the encoder's position table fails deep inside transformers: say so up front."""
    limit = getattr(model.question_tower.backbone.config, "max_position_embeddings", None)
    for key in ("max_question_length", "max_passage_length"):
        if limit is not None and getattr(cfg.data, key) > limit:
            raise ConfigError(f"config: data.{key}={getattr(cfg.data, key)} exceeds the {limit} positions of "
                              f"model.name={cfg.model.name}; use at most {limit}")


def module_class(method: Method) -> type[RetrieverModule]:
    return MODULES[method]


def _pool(batches) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Concatenate validation batches; each batch's positive columns shift by the passages before it."""
    offsets, shift = [], 0
    for _, passage, _ in batches:
        offsets.append(shift)
        shift += passage.shape[0]
    question = torch.cat([q for q, _, _ in batches])
    passage = torch.cat([p for _, p, _ in batches])
    gold = torch.cat([g + off for (_, _, g), off in zip(batches, offsets)])
    return question, passage, gold


def optimizer_steps(trainer: pl.Trainer) -> int:
    """The run's optimizer steps (the LR schedule's length), counted as Lightning's `estimated_stepping_batches`
    counts them (an epoch's short last accumulation still steps; max_steps caps), from the training set's size
    rather than its loader. Lightning builds the loader to estimate, which happens before a checkpoint's state is
    restored, and then never hands the restored position to that loader: a run resumed part-way through its first
    epoch would start the epoch's order again (Lightning issue 20550)."""
    batches = trainer.datamodule.train_batches(trainer.world_size)  # the one way bprlab fits: lit.train.train
    limit = trainer.limit_train_batches
    batches = min(batches, limit) if isinstance(limit, int) else int(batches * limit)
    total = math.ceil(batches / trainer.accumulate_grad_batches) * max(trainer.max_epochs, 1)
    return min(total, trainer.max_steps) if trainer.max_steps != -1 else total
