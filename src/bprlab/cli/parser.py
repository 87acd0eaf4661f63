"""The command line's grammar: one sub-command per stage, plus the table, report, sweep, bench, search, export and
download commands (bprlab.cli.main dispatches them)."""

from __future__ import annotations

import argparse

STAGES = {
    "prepare": "build the dataset's derived files (squad: corpus, splits, BM25 negatives) and the passage store",
    "train": "fit DPR or BPR (resumes from <run>/checkpoints/last.ckpt)",
    "encode": "encode the corpus with the passage encoder (Lightning predict, one shard set per rank)",
    "index": "build the index chosen by index.kind from the encoded passages",
    "evaluate": "search the test questions, write metrics.json (top-k, bytes, ms/query)",
    "run": "all of the above, skipping stages whose outputs are current",
}


def build_parser(description: str = "") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bprlab", description=description)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_stages, _reproduce, _config, _report, _sweep, _bench, _search, _export, _download):
        add(sub)
    return parser


def _stages(sub) -> None:
    for stage, help_text in STAGES.items():
        p = sub.add_parser(stage, help=help_text, description=help_text)
        p.add_argument("experiment", help="experiment YAML (deltas over the schema defaults)")
        p.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. train.max_steps=100")
        p.add_argument("--force", action="store_true", help="redo the stage even when its output is current")


def _reproduce(sub) -> None:
    p = sub.add_parser("reproduce", help="run every row of a table file and write <runs>/<table>/summary.{json,md}")
    p.add_argument("table", help="e.g. experiments/tables/demo.yaml")
    p.add_argument("overrides", nargs="*", help="key=value overrides applied to every row")
    p.add_argument("--dataset", choices=["squad", "nq", "trivia"], help="fills {dataset} in the table's rows")
    p.add_argument("--seeds", default=None, help="seeds per trained row (s, s+1, ...; s = the row's seed), "
                                                 "instead of the table's `seeds`")
    p.add_argument("--out", default=None, help="the table's folder (summary, unit records, plots); default "
                                               "<runs_root>/<table>")
    p.add_argument("--records-only", action="store_true",
                   help="summaries again from the recorded units (current by fingerprint), running nothing; a unit "
                        "not recorded is an error")
    p.add_argument("--rows", default=None,
                   help="run only these rows (methods, comma-separated); the summary is written once every unit of "
                        "the table is recorded")


def _config(sub) -> None:
    p = sub.add_parser("config", help="the resolved config with each key's stage and help, or --explain one key")
    p.add_argument("experiment", nargs="?", default=None, help="experiment YAML (none: the schema's defaults)")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides")
    p.add_argument("--explain", metavar="KEY", default=None, help="one key: its type, default, stage and help")
    p.add_argument("--stage", default=None, choices=["prepare", "train", "encode", "index", "search", "eval", "none"],
                   help="only the keys this stage reads")


def _report(sub) -> None:
    p = sub.add_parser("report", help="experiments/RESULTS.md from runs/*/summary.json and experiments/ABLATIONS.md "
                                      "from experiments/ablations/*/summary.json, or one sweep's report")
    p.add_argument("--runs", default="runs")
    p.add_argument("--ablations", default="experiments/ablations", help="the ablation tables' folders")
    p.add_argument("--out", default="experiments")
    p.add_argument("--sweep", default=None, help="report runs/sweeps/<name> instead (plots per swept key)")


def _sweep(sub) -> None:
    p = sub.add_parser("sweep", help="run a W&B sweep (online with credentials, else a resumable local agent)")
    p.add_argument("sweep", help="e.g. sweeps/beta_squad.yaml")
    p.add_argument("--count", type=int, default=None, help="number of trials (grid: the first n)")
    p.add_argument("--seed", type=int, default=0, help="random search seed (local agent)")
    p.add_argument("--local", action="store_true", help="use the local agent even with W&B credentials")
    p.add_argument("--create-only", action="store_true", help="create the W&B sweep and print its agent command")


def _bench(sub) -> None:
    p = sub.add_parser("bench", help="benchmarks that print ratios taken in one run (search: BPR vs DPR speed; "
                                     "report DIR: a search bench's figures again from its stored timings; gpu: the "
                                     "CUDA paths checked on a GPU; gradcache: memory/time of gradient caching; "
                                     "encode: encode vs bare forward; scale: the pipeline on millions of passages)")
    p.add_argument("what", nargs="?", default="search", choices=["search", "report", "gpu", "gradcache", "encode",
                                                                 "scale"])
    p.add_argument("folder", nargs="?", default=None, help="report: the folder of a bench run (its bench.json)")
    p.add_argument("--questions", type=int, default=128, help="gradcache: questions per step (+ as many negatives)")
    p.add_argument("--model", default="minilm", help="gradcache, encode: the encoder")
    p.add_argument("--passages", default=None, help="encode: corpus size (600); scale: sizes, comma-separated "
                                                    "(200000,2000000)")
    p.add_argument("--out", default="runs/bench", help="where bench.{json,md} and the plot go")
    p.add_argument("--quick", action="store_true", help="a small grid that runs in well under a minute")
    p.add_argument("--sizes", default=None, help="float-vector sizes, comma-separated (e.g. 100000,1000000)")
    p.add_argument("--code-sizes", default=None, help="codes-only sizes, comma-separated ('' for none)")
    p.add_argument("--bits", default=None, help="code lengths, comma-separated (e.g. 768,384)")


def _search(sub) -> None:
    p = sub.add_parser("search", help="ask a trained run questions: ranked passages (stdin: one JSON line each)")
    p.add_argument("experiment", help="experiment YAML of the run (its index kind picks the search)")
    p.add_argument("items", nargs="*", help="questions, and key=value overrides")
    p.add_argument("--k", type=int, default=5, help="passages per question")
    p.add_argument("--answers", nargs="*", default=[], help="answer strings to highlight")


def _export(sub) -> None:
    p = sub.add_parser("export", help="a run as Hugging Face towers + faiss index files + model card")
    p.add_argument("experiment")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--to", required=True, help="a new output folder")
    p.add_argument("--force", action="store_true", help="replace an earlier export in that folder (never anything "
                                                        "else)")


def _download(sub) -> None:
    p = sub.add_parser("download", help="fetch DPR's public files for nq or trivia (needs internet)")
    p.add_argument("dataset", choices=["nq", "trivia", "wikipedia"])
    p.add_argument("--root", default="data")


def split_trial(argv: list[str]) -> tuple[list[str], list[str] | None]:
    """`bprlab run exp.yaml [fixed overrides] --trial [swept overrides]`, the form a W&B sweep command takes
    (`--trial ${args_no_hyphens}`): the run is named after the swept overrides and logged to W&B."""
    if "--trial" not in argv:
        return argv, None
    at = argv.index("--trial")
    return argv[:at] + argv[at + 1 :], [a for a in argv[at + 1 :] if "=" in a]


def parse_args(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """argparse stops filling a `nargs="*"` positional at the first option: `bprlab export exp.yaml --to DIR
    key=value` would reject its override. key=value words left over after an option join the overrides (for
    `search`, any word joins its questions); anything else left over is still an error."""
    args, extra = parser.parse_known_args(argv)
    target = "overrides" if hasattr(args, "overrides") else "items" if hasattr(args, "items") else None
    if extra:
        allowed = (lambda w: not w.startswith("-")) if target == "items" else (lambda w: "=" in w and w[0] != "-")
        if target is None or not all(allowed(word) for word in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        setattr(args, target, list(getattr(args, target)) + extra)
    return args
