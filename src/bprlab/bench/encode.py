"""`bprlab bench encode`: passages/s of `bprlab encode` against the bare model forward on the same batches.

The bare forward gets its batches tokenised in advance (no data loading, no writing): it is the ceiling. The
stage is timed from Lightning's predict start to its end (data loading, tokenisation in `data.num_workers`
workers, the forward, packing the codes, writing the shards), for several worker counts. Synthetic 100-word
passages (`bench.corpus`), the packaged MiniLM by default.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl


class PredictTimer(pl.Callback):
    def on_predict_start(self, trainer, pl_module):
        self.start = time.perf_counter()

    def on_predict_end(self, trainer, pl_module):
        self.seconds = time.perf_counter() - self.start


def _config(model: str, files: dict, root: Path, workers: int, batch_size: int, name: str):
    from bprlab.config import load_config

    return load_config(None, [f"model.name={model}", "data.dataset=custom", f"data.passages_file={files['passages']}",
                              f"data.train_file={files['train']}", f"data.dev_file={files['dev']}",
                              f"data.test_file={files['test']}", f"runs_root={root}", f"name={name}",
                              "checkpoint=pretrained", "train.accelerator=auto", "train.devices=1",
                              f"data.num_workers={workers}", f"encode.batch_size={batch_size}", "logger=none"])


def bare_forward(cfg) -> float:
    """Seconds of the passage tower's forward over the encode stage's own batches, tokenised beforehand."""
    import torch

    from bprlab.config.loader import to_dict
    from bprlab.data.collate import Collator
    from bprlab.data.ordering import ShardBatchSampler, text_lengths
    from bprlab.data.passage_store import PassageStore
    from bprlab.data.paths import data_paths
    from bprlab.lit.modules import module_class

    store = PassageStore.open(data_paths(cfg.data).passages)
    module = module_class(cfg.method)(to_dict(cfg))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = module.model.to(device).eval()
    collator = Collator.from_config(cfg)
    shards = list(range(-(-len(store) // cfg.encode.shard_size)))
    sampler = ShardBatchSampler(text_lengths(store.table), cfg.encode.shard_size, shards, cfg.encode.batch_size)
    batches = [collator.passages([store[r] for r in rows]) for rows in sampler]
    with torch.inference_mode():
        model.encode_passage(**{k: v[:2].to(device) for k, v in batches[0].items()})  # warm-up
        start = time.perf_counter()
        for batch in batches:
            model.encode_passage(**{k: v.to(device) for k, v in batch.items()})
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start


def run_encode_bench(model: str = "minilm", passages: int = 600, workers=(0, 1, 2), batch_size: int = 64) -> dict:
    from bprlab.bench.corpus import write_corpus
    from bprlab.lit.encode import encode

    with tempfile.TemporaryDirectory(prefix="bprlab-encode-bench-") as tmp:
        root = Path(tmp)
        files = write_corpus(root / "data", passages, num_questions=10, seed=0, words=100)
        base = _config(model, files, root / "runs", 0, batch_size, "bare")
        bare = bare_forward(base)
        rows = [{"what": "bare forward (pre-tokenised batches)", "workers": None, "seconds": bare,
                 "passages_per_second": passages / bare, "of_bare": 1.0}]
        for count in workers:
            timer = PredictTimer()
            encode(_config(model, files, root / "runs", count, batch_size, f"w{count}"), force=True,
                   extra_callbacks=[timer])
            rows.append({"what": "bprlab encode", "workers": count, "seconds": timer.seconds,
                         "passages_per_second": passages / timer.seconds, "of_bare": bare / timer.seconds})
    return {"model": model, "passages": passages, "batch_size": batch_size, "rows": rows}


def markdown(result: dict) -> str:
    lines = [f"# Encoding throughput: {result['passages']} passages of 100 words, {result['model']}, "
             f"batch {result['batch_size']}", "",
             "| what | data.num_workers | seconds | passages/s | share of the bare forward |", "|---|---|---|---|---|"]
    for row in result["rows"]:
        workers = "-" if row["workers"] is None else row["workers"]
        lines.append(f"| {row['what']} | {workers} | {row['seconds']:.1f} | {row['passages_per_second']:.1f} | "
                     f"{100 * row['of_bare']:.0f}% |")
    return "\n".join(lines) + "\n"
