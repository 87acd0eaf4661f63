"""`bprlab bench scale`: the whole pipeline on millions of synthetic passages - the rehearsal before Wikipedia.

For each size N: a psgs_w100-format TSV and DPR-format questions (`bench.corpus`; each question is its planted
passage's text, so even an untrained encoder should rank that passage first), then `bprlab prepare`, `encode`
(a tiny random BERT: the pipeline is measured, not the model), `index` and `evaluate`, each in its own process
so that its wall time and peak RSS are its own. The table extrapolates every stage linearly to 21M passages.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

WIKIPEDIA = 21_015_324
STAGES = ("prepare", "encode", "index", "evaluate")
CHILD = ("import json, sys, time; from bprlab.cli.main import main; "
         "from bprlab.bench.memory import AnonPeak, peak_mb, rss_split_mb; "
         "anon = AnonPeak(); t = time.perf_counter(); rc = main(sys.argv[1:]); "
         "print('BENCH ' + json.dumps({'rc': rc, 'seconds': time.perf_counter() - t, 'peak_mb': peak_mb(), "
         "'anon_peak_mb': anon.stop(), **rss_split_mb()}))")


def tiny_bert(out: Path) -> str:
    """A random 2-layer, 64-wide BERT with the packaged MiniLM's tokenizer (what the tests use, a bit wider)."""
    import torch
    from transformers import BertConfig, BertModel

    from bprlab.core.encoder import resolve_model_name

    if (out / "config.json").is_file():
        return str(out)
    out.mkdir(parents=True, exist_ok=True)
    source = Path(resolve_model_name("minilm"))
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (source / name).exists():
            shutil.copy(source / name, out / name)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=128, max_position_embeddings=512, hidden_dropout_prob=0.0)
    BertModel(config, add_pooling_layer=False).save_pretrained(out)
    return str(out)


def _stage(stage: str, overrides: list[str], cwd: Path) -> dict:
    (cwd / "scale.yaml").write_text("{}\n")
    done = subprocess.run([sys.executable, "-c", CHILD, stage, str(cwd / "scale.yaml"), *overrides],
                          capture_output=True, text=True, cwd=cwd)
    line = next((l for l in done.stdout.splitlines() if l.startswith("BENCH ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"scale bench: `bprlab {stage}` failed: {done.stderr.strip()[-2000:]}")
    result = json.loads(line[len("BENCH "):])
    if result["rc"] != 0:
        raise RuntimeError(f"scale bench: `bprlab {stage}` exited {result['rc']}: {done.stderr.strip()[-500:]}")
    return result


def run_scale_bench(sizes: list[int], out: Path, questions: int = 1000, method: str = "dpr") -> dict:
    from bprlab.bench.corpus import write_corpus

    out = out.resolve()  # the stages run with the size's folder as their working directory
    out.mkdir(parents=True, exist_ok=True)
    model = tiny_bert(out / "tiny-bert")
    rows = []
    for size in sizes:
        folder = out / f"n{size}"
        shutil.rmtree(folder, ignore_errors=True)
        start = time.perf_counter()
        files = write_corpus(folder / "data", size, num_questions=questions, seed=0, words=100,
                             question_words=None)
        generate = time.perf_counter() - start
        overrides = [f"model.name={model}", "data.dataset=custom", f"data.passages_file={files['passages']}",
                     f"data.train_file={files['train']}", f"data.dev_file={files['dev']}",
                     f"data.test_file={files['test']}", f"runs_root={folder / 'runs'}", "name=scale",
                     f"method={method}", "checkpoint=pretrained", "index.kind=flat" if method == "dpr" else
                     "index.kind=binary_flat", "train.accelerator=cpu", "train.devices=1", "logger=none",
                     "data.max_question_length=160", "data.max_passage_length=160", "encode.batch_size=256",
                     "data.num_workers=2", "eval.question_batch_size=256"]
        stages = {stage: _stage(stage, overrides, folder) for stage in STAGES}
        metrics = json.loads(next((folder / "runs" / "scale" / "eval").glob("*/metrics.json")).read_text())
        rows.append({"num_passages": size, "generate_seconds": generate, "stages": stages,
                     "recall": {k: v for k, v in metrics.items() if k.startswith("top")},
                     "tsv_bytes": files["passages"].stat().st_size})
        shutil.rmtree(folder / "runs" / "scale" / "passages", ignore_errors=True)  # keep the disk use bounded
    return {"sizes": sizes, "questions": questions, "method": method, "model": "tiny random BERT (2 x 64)",
            "rows": rows}


def markdown(result: dict) -> str:
    lines = [f"# The pipeline at scale: {result['method'].upper()}, {result['model']}, {result['questions']} "
             "planted questions", "",
             "| N | stage | seconds | peak RSS MB | peak anonymous MB | at exit: anon / file-backed MB | "
             "seconds per 1M passages | extrapolated to 21M |",
             "|---|---|---|---|---|---|---|---|"]
    for row in result["rows"]:
        n = row["num_passages"]
        for stage, values in row["stages"].items():
            per_million = values["seconds"] / n * 1e6
            split = (f"{values['anon_mb']:.0f} / {values['file_mb']:.0f}"
                     if values.get("anon_mb") is not None else "-")
            anon = f"{values['anon_peak_mb']:.0f}" if values.get("anon_peak_mb") is not None else "-"
            lines.append(f"| {n:,} | {stage} | {values['seconds']:.1f} | {values['peak_mb']:.0f} | {anon} | {split} | "
                         f"{per_million:.0f} | {per_million * WIKIPEDIA / 1e6 / 60:.0f} min |")
        recall = ", ".join(f"{k} {v:.1f}" for k, v in row["recall"].items())
        lines.append(f"| {n:,} | (evaluation) | | | | | | {recall} |")
    return "\n".join(lines) + "\n"
