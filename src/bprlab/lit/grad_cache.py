"""Gradient caching: the loss of a large global batch with the activation memory of one chunk of it.

Gao, Zhang, Han and Callan, "Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup"
(RepL4NLP 2021). A contrastive loss couples every question with every passage, so the batch cannot simply be
split into micro-batches (each would only see its own negatives: gradient accumulation is not a substitute).
Instead, for one optimizer step:

1. encode every chunk (C questions and their passages) without a graph, remembering each chunk's random state;
2. gather the representations across devices (the local slot differentiable, as in `gather`) and compute the
   loss of the global batch and its gradient with respect to this rank's representations;
3. re-encode each chunk with the random state it had in (1) - the same dropout masks - and backpropagate the
   cached representation gradients through it; only the last chunk's backward synchronises gradients across
   devices, so DDP all-reduces once per step;
4. step the optimizer and the learning-rate schedule (manual optimisation); gradients are clipped just before
   the step, after the fp16 loss scale has been taken out (`RetrieverModule.on_before_optimizer_step`).

The loss functions in `bprlab.core.losses` are called once, on the full batch's representations, unchanged.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from bprlab.lit.gather import gather_positive_idx, gather_with_local_grad
from bprlab.lit.precision import at_least_fp32, loss_in_fp32


def chunks(batch: dict, size: int) -> list[dict]:
    """Split a collated batch into chunks of `size` questions (the last may be smaller) with their passages;
    padding beyond each chunk's longest sequence is trimmed."""
    positive_idx = batch["positive_idx"]
    num_questions, num_passages = len(positive_idx), batch["passage"]["input_ids"].shape[0]
    out = []
    for start in range(0, num_questions, size):
        stop = min(num_questions, start + size)
        p0 = int(positive_idx[start])
        p1 = int(positive_idx[stop]) if stop < num_questions else num_passages
        out.append({"question": _trim(batch["question"], start, stop), "passage": _trim(batch["passage"], p0, p1)})
    return out


def _trim(encoded: dict, start: int, stop: int) -> dict:
    mask = encoded["attention_mask"][start:stop]
    length = int(mask.sum(dim=1).max()) if len(mask) else 0
    return {key: value[start:stop, :length] for key, value in encoded.items()}


class RandomState:
    """The CPU and CUDA generator states at construction; `replay()` runs a block from them again."""

    def __init__(self, device: torch.device):
        self.devices = [device] if device.type == "cuda" else []
        self.cpu = torch.get_rng_state()
        self.cuda = [torch.cuda.get_rng_state(d) for d in self.devices]

    @contextlib.contextmanager
    def replay(self) -> Iterator[None]:
        with torch.random.fork_rng(devices=self.devices):
            torch.set_rng_state(self.cpu)
            for device, state in zip(self.devices, self.cuda):
                torch.cuda.set_rng_state(state, device)
            yield


def encode_chunk(model, chunk: dict) -> tuple[torch.Tensor, torch.Tensor]:
    return model.encode_question(**chunk["question"]), model.encode_passage(**chunk["passage"])


def cached_backward(model, loss_fn, batch: dict, chunk_size: int, beta: float, backward=None, no_sync=None):
    """Steps (1)-(3): the parameters' .grad receive the gradient of the global-batch loss, a chunk at a time.

    `backward(tensor)` runs a backward pass (Lightning's `manual_backward` in training) and `no_sync()` is the
    context that defers gradient synchronisation across devices; both default to plain autograd."""
    backward = backward or torch.Tensor.backward
    no_sync = no_sync or contextlib.nullcontext
    parts = chunks(batch, chunk_size)
    device = batch["positive_idx"].device
    states, questions, passages = [], [], []
    with torch.no_grad():  # (1) representations without graph
        for part in parts:
            states.append(RandomState(device))
            question, passage = encode_chunk(model, part)
            questions.append(question)
            passages.append(passage)
    question = at_least_fp32(torch.cat(questions).detach()).requires_grad_()  # (B, D)
    passage = at_least_fp32(torch.cat(passages).detach()).requires_grad_()  # (B * (1 + n), D)
    # (2) the global loss and its gradient with respect to this rank's representations
    positive_idx = gather_positive_idx(batch["positive_idx"], passage.shape[0])
    out = loss_in_fp32(loss_fn, gather_with_local_grad(question), gather_with_local_grad(passage), positive_idx, beta)
    question_grad, passage_grad = torch.autograd.grad(out.loss, [question, passage])
    # (3) re-encode each chunk with its random state and backpropagate the cached gradients; sync on the last
    q_at = p_at = 0
    for i, (part, state) in enumerate(zip(parts, states)):
        with state.replay():
            chunk_question, chunk_passage = encode_chunk(model, part)
        q_grad = question_grad[q_at : q_at + len(chunk_question)]
        p_grad = passage_grad[p_at : p_at + len(chunk_passage)]
        q_at, p_at = q_at + len(chunk_question), p_at + len(chunk_passage)
        surrogate = (chunk_question * q_grad).sum() + (chunk_passage * p_grad).sum()
        with contextlib.nullcontext() if i == len(parts) - 1 else no_sync():
            backward(surrogate)
    return out, len(positive_idx)


def grad_cache_step(module, batch: dict, chunk_size: int):
    """One optimizer step of `module` (a RetrieverModule with manual optimisation) on `batch`; returns the loss
    output and the global number of questions, for logging."""
    optimizer = module.optimizers()
    out, size = cached_backward(module.model, module.loss_fn, batch, chunk_size, module.beta,
                                backward=module.manual_backward, no_sync=lambda: _no_sync(module))
    # (4) step (the module clips in `on_before_optimizer_step`, which the precision plugin calls after it has
    # unscaled fp16 gradients: clipping here would see them still multiplied by the loss scale), schedule
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    module.lr_schedulers().step()
    return out, size


def _no_sync(module):
    """Defer DDP's gradient all-reduce (Lightning's own context for accumulation); nothing without DDP."""
    strategy = module.trainer.strategy
    block = getattr(strategy, "block_backward_sync", None)
    return block() if block is not None else contextlib.nullcontext()
