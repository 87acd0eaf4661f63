"""`bprlab bench gradcache`: peak memory and step time of one training step at the paper's batch (128 questions
+ 128 hard negatives), without gradient caching and with chunks of 8 / 16 / 32 questions.

Each configuration runs in its own process, so its peak memory (RSS on the CPU, torch's peak allocation on a GPU)
is its own. The text is 100-word passages and 10-word questions drawn from a fixed vocabulary (deterministic);
the model is the packaged MiniLM unless --model says otherwise.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from bprlab.errors import StageError

CHUNKS = (None, 32, 16, 8)


def _batch(collator, questions: int, seed: int = 0):
    import random

    from bprlab.data.collate import Sample
    from bprlab.data.records import Passage

    rng = random.Random(seed)
    vocab = collator.tokenizer.get_vocab()  # whole lowercase words: 100 words are ~100 tokens, like real passages
    words = sorted(w for w in vocab if w.isalpha() and w.islower() and len(w) > 2)[:20000]

    def text(n):
        return " ".join(rng.choice(words) for _ in range(n))

    samples = [Sample(text(10), [Passage(title=text(3), text=text(100)), Passage(title=text(3), text=text(100))])
               for _ in range(questions)]
    return collator(samples)


def one_config(model: str, questions: int, chunk: int | None, device: str, steps: int) -> dict:
    """Runs in a fresh process: `steps` optimizer steps of BPR at this chunk size; times the last one."""
    import torch

    from bprlab.bench import memory
    from bprlab.config import load_config
    from bprlab.core.encoder import BiEncoder
    from bprlab.core.losses import BPRLoss
    from bprlab.data.collate import Collator
    from bprlab.lit.grad_cache import cached_backward

    torch.manual_seed(0)
    # BPR's collator at the paper's passage length (256), questions cut at 32 tokens
    collator = Collator.from_config(load_config(None, ["method=bpr", f"model.name={model}",
                                                       "data.max_question_length=32", "data.max_passage_length=256"]))
    batch = _batch(collator, questions)
    model_ = BiEncoder.from_pretrained(model).train().to(device)
    batch = {"question": {k: v.to(device) for k, v in batch["question"].items()},
             "passage": {k: v.to(device) for k, v in batch["passage"].items()},
             "positive_idx": batch["positive_idx"].to(device)}
    optimizer = torch.optim.AdamW(model_.parameters(), lr=2e-5, eps=1e-6)
    loss_fn = BPRLoss()
    memory.reset_peak()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    seconds = 0.0
    for _ in range(steps):
        start = time.perf_counter()
        if chunk is None:
            out = loss_fn(model_.encode_question(**batch["question"]), model_.encode_passage(**batch["passage"]),
                          batch["positive_idx"], beta=1.0)
            out.loss.backward()
        else:
            out, _ = cached_backward(model_, loss_fn, batch, chunk, beta=1.0)
        torch.nn.utils.clip_grad_norm_(model_.parameters(), 2.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else memory.peak_mb()
    return {"chunk": chunk, "questions": questions, "passages": 2 * questions, "device": device,
            "step_seconds": seconds, "peak_mb": peak, "loss": float(out.loss)}


def run_grad_cache_bench(model: str = "minilm", questions: int = 128, device: str | None = None,
                         steps: int = 1, chunks=CHUNKS) -> dict:
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    rows = []
    for chunk in chunks:
        code = ("import json, sys; from bprlab.bench.grad_cache import one_config; "
                f"print(json.dumps(one_config({model!r}, {questions}, {chunk!r}, {device!r}, {steps})))")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        if done.returncode < 0:  # killed by a signal: on a CPU with 24 GB, the full batch's activations
            rows.append({"chunk": chunk, "questions": questions, "passages": 2 * questions, "device": device,
                         "error": f"killed by signal {-done.returncode} (out of memory)"})
            continue
        if done.returncode != 0:
            raise StageError(f"gradcache bench, chunk={chunk}: {done.stderr.strip()[-1500:]}")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return {"model": model, "device": device, "rows": rows}


def markdown(result: dict) -> str:
    rows = result["rows"]
    base = next((r for r in rows if "error" not in r and r["chunk"] is None), None)
    lines = [f"# Gradient caching: one BPR step, {rows[0]['questions']} questions + {rows[0]['questions']} hard "
             f"negatives ({result['model']}, {result['device']})", "",
             "| chunk (questions) | peak memory MB | vs no chunking | step seconds | vs no chunking | loss |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        name = row["chunk"] or "none (full batch)"
        if "error" in row:
            lines.append(f"| {name} | {row['error']} | | | | |")
            continue
        mem = f"{row['peak_mb'] / base['peak_mb']:.2f}x" if base else "-"
        sec = f"{row['step_seconds'] / base['step_seconds']:.2f}x" if base else "-"
        lines.append(f"| {name} | {row['peak_mb']:.0f} | {mem} | {row['step_seconds']:.1f} | {sec} | {row['loss']:.4f} |")
    return "\n".join(lines) + "\n"
