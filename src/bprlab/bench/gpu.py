"""`bprlab bench gpu` (`make gpu-check`): every CUDA path the README promises, checked on one GPU in minutes.

1. training: a few BPR and DPR steps in fp32, bf16-mixed and 16-mixed, with and without gradient caching: the loss
   finite and the weights moved by a similar amount in every precision (a step that barely moves them, as an fp16
   clip before unscaling did, fails);
2. passage encoding in bf16 and fp16 against fp32: the largest difference, and the share of code bits that flip;
3. the GPU Hamming search (torch kernels; faiss-gpu where installed) equal to the CPU search on the same codes;
4. search speed at 1M codes, GPU against the CPU kernels.
It prints one table, writes gpu.{json,md}, and fails (exit 2) on any mismatch. Without CUDA it says so in one line
and checks nothing. `device="cpu"` runs the same code on the CPU (the precisions the CPU has), as the tests do.
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

import numpy as np

from bprlab.errors import BprlabError

PRECISIONS = ("32-true", "bf16-mixed", "16-mixed")
MOVE_RATIO = (0.5, 2.0)  # weights moved in a precision / in fp32: outside this range the step is wrong
MIN_SIGN_AGREEMENT = 0.99  # code bits equal under bf16 / fp16 encoding


class GpuCheckFailed(BprlabError):
    """A check found a mismatch (the table says which)."""


class NoCuda(BprlabError):
    """No CUDA device: nothing to check here."""


def run_gpu_check(out: Path, device: str | None = None, model: str = "minilm", sizes: tuple[int, int] = (100_000,
                  1_000_000)) -> Path:
    import torch

    if device is None:
        if not torch.cuda.is_available():
            raise NoCuda("bprlab bench gpu: no CUDA device is visible here; nothing was checked")
        device = "cuda"
    precisions = PRECISIONS if device == "cuda" else ("32-true", "bf16-mixed")
    rows: list[dict] = []
    rows += training_checks(device, model, precisions)
    rows += encoding_checks(device, model, precisions)
    rows += search_checks(device, sizes)
    return write(out, rows, device)


def _row(check: str, value: str, ok: bool, detail: str = "") -> dict:
    return {"check": check, "value": value, "ok": bool(ok), "detail": detail}


def training_checks(device: str, model: str, precisions) -> list[dict]:
    """Three steps per (method, precision, chunking) on a small synthetic task; weight movement vs fp32."""
    import torch

    from bprlab.bench.corpus import write_corpus
    from bprlab.config import load_config
    from bprlab.lit.train import train
    from bprlab.runs import RunPaths

    rows = []
    with tempfile.TemporaryDirectory(prefix="bprlab-gpu-") as tmp:
        files = write_corpus(Path(tmp) / "data", 300, num_questions=64, seed=3, words=40)
        for method in ("bpr", "dpr"):
            moved = {}
            for precision in precisions:
                for chunk in (None, 4):
                    name = f"{method}-{precision}-{chunk}"
                    cfg = load_config(None, [
                        f"method={method}", f"model.name={model}", f"name={name}", f"runs_root={tmp}/runs",
                        "data.dataset=custom", f"data.train_file={files['train']}", f"data.dev_file={files['dev']}",
                        f"data.test_file={files['test']}", f"data.passages_file={files['passages']}",
                        "data.max_question_length=32", "data.max_passage_length=64", "data.max_val_questions=8",
                        "data.val_hard_negatives=1", "data.val_other_negatives=0", "train.batch_size=8",
                        f"train.accelerator={'gpu' if device == 'cuda' else 'cpu'}", "train.devices=1",
                        f"train.precision={precision}", "train.epochs=1", "train.max_steps=3",
                        "train.val_check_interval=3", "train.select_from_epoch=0", "optim.warmup_ratio=0",
                        "optim.lr=1e-4", "logger=none",
                        f"train.grad_cache_chunk_size={'null' if chunk is None else chunk}"])
                    start = _start_weights(cfg)
                    train(cfg)
                    state = torch.load(RunPaths(cfg).last_checkpoint, map_location="cpu", weights_only=False)
                    delta = math.sqrt(sum(float(((state["state_dict"][k].float() - v.float()) ** 2).sum())
                                          for k, v in start.items()))
                    finite = all(torch.isfinite(v.float()).all() for v in state["state_dict"].values())
                    moved[(precision, chunk)] = delta
                    reference = moved.get(("32-true", None)) or delta
                    ratio = delta / reference if reference else 0.0
                    ok = finite and delta > 0 and MOVE_RATIO[0] <= ratio <= MOVE_RATIO[1]
                    rows.append(_row(f"train {method} {precision} chunks={chunk or 'off'}",
                                     f"weights moved {delta:.3g} ({ratio:.2f}x fp32)", ok,
                                     "" if ok else "weights not finite, or moved unlike fp32"))
    return rows


def _start_weights(cfg) -> dict:
    import pytorch_lightning as pl

    from bprlab.config.loader import to_dict
    from bprlab.lit.modules import module_class

    pl.seed_everything(cfg.seed)
    return {k: v.clone() for k, v in module_class(cfg.method)(to_dict(cfg)).state_dict().items()}


def encoding_checks(device: str, model: str, precisions) -> list[dict]:
    """The passage tower on 256 synthetic passages in each precision against fp32."""
    import torch

    from bprlab.config import load_config
    from bprlab.core.encoder import BiEncoder
    from bprlab.data.collate import Collator
    from bprlab.data.records import Passage

    cfg = load_config(None, ["method=bpr", f"model.name={model}", "data.max_passage_length=128"])
    tower = BiEncoder.from_model_config(cfg.model).passage_tower.to(device).eval()
    collator = Collator.from_config(cfg)
    rng = np.random.default_rng(0)
    vocab = ["river", "city", "war", "king", "music", "science", "football", "island", "church", "film"]
    passages = [Passage(title=f"T{i}", text=" ".join(rng.choice(vocab, 60))) for i in range(256)]
    batch = {k: v.to(device) for k, v in collator.passages(passages).items()}
    outputs = {}
    with torch.inference_mode():
        for precision in precisions:
            dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)
            with torch.autocast(device_type=device, dtype=dtype, enabled=dtype is not None):
                outputs[precision] = tower(**batch).float().cpu()
    rows = []
    for precision in precisions[1:]:
        diff = float((outputs[precision] - outputs["32-true"]).abs().max())
        agree = float(((outputs[precision] >= 0) == (outputs["32-true"] >= 0)).float().mean())
        rows.append(_row(f"encode passages {precision} vs fp32", f"max |diff| {diff:.3g}, code bits equal {agree:.4f}",
                         agree >= MIN_SIGN_AGREEMENT))
    return rows


def search_checks(device: str, sizes: tuple[int, int]) -> list[dict]:
    """The GPU search against the CPU kernels on the same codes, then their speed at the larger size."""
    from bprlab.bench.synthetic import code_data
    from bprlab.config.enums import IndexKind, SearchBackend, SearchDevice
    from bprlab.config.schema import IndexConfig
    from bprlab.index.base import create_index

    rows = []
    small, large = sizes
    data = code_data(small, 768, 64, seed=5)
    cpu = create_index(IndexConfig(kind=IndexKind.binary_flat, device=SearchDevice.cpu), 768)
    cpu.build(data.codes)
    expected = cpu.search(data.questions, 100)
    kinds = [("torch", SearchBackend.native)] + ([("faiss-gpu", SearchBackend.faiss)] if _faiss_gpus() else [])
    for label, backend in kinds:
        other = create_index(IndexConfig(kind=IndexKind.binary_flat, backend=backend,
                                         device=SearchDevice.cuda if device == "cuda" else SearchDevice.cpu), 768)
        other.build(data.codes)
        got = other.search(data.questions, 100)
        same_rows = bool(np.array_equal(got.rows, expected.rows))
        score_gap = float(np.abs(got.scores - expected.scores).max())
        rows.append(_row(f"search {label} ({device}) vs CPU kernels, {small:,} codes",
                         f"rows equal: {same_rows}, max score gap {score_gap:.2g}", same_rows and score_gap < 1e-3))
    data = code_data(large, 768, 1000, seed=6)
    timings = {}
    for label, dev in (("cpu", SearchDevice.cpu), (device, SearchDevice.cuda if device == "cuda" else SearchDevice.cpu)):
        index = create_index(IndexConfig(kind=IndexKind.binary_flat, device=dev), 768)
        index.build(data.codes)
        index.search(data.questions[:2], 100)
        for batch in (1, 1000):
            start = time.perf_counter()
            index.search(data.questions[:batch], 100)
            timings[(label, batch)] = 1000.0 * (time.perf_counter() - start) / batch
    for batch in (1, 1000):
        rows.append(_row(f"search speed, {large:,} codes, batch {batch}",
                         f"{device} {timings[(device, batch)]:.3f} ms/query, cpu {timings[('cpu', batch)]:.3f}", True))
    return rows


def _faiss_gpus() -> int:
    import faiss

    return faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0


def write(out: Path, rows: list[dict], device: str) -> Path:
    from bprlab.artifacts import write_json, write_text

    failed = [r for r in rows if not r["ok"]]
    lines = [f"# GPU check (`bprlab bench gpu`, device {device})", "", "| check | value | ok |", "|---|---|---|"]
    lines += [f"| {r['check']} | {r['value']} | {'yes' if r['ok'] else '**NO** ' + r['detail']} |" for r in rows]
    text = "\n".join(lines) + "\n"
    write_json(out / "gpu.json", {"device": device, "rows": rows})
    write_text(out / "gpu.md", text)
    print(text)
    if failed:
        raise GpuCheckFailed(f"{len(failed)} GPU check(s) failed: {', '.join(r['check'] for r in failed)} "
                             f"(see {out / 'gpu.md'})")
    return out / "gpu.md"
