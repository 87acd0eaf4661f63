"""`bprlab <stage> <experiment.yaml> [key=value ...]`: one thin command per stage.

Stages talk through files in the run directory (bprlab.runs). Errors caused by input (a config typo, a malformed
record, a missing stage output) print one line naming the file and key or record, and exit with status 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from pathlib import Path

from bprlab import slurm
from bprlab.errors import BprlabError, ConfigError, Requeued, StageError

STAGES = {
    "prepare": "build the dataset's derived files (squad: corpus, splits, BM25 negatives) and the passage store",
    "train": "fit DPR or BPR (resumes from <run>/checkpoints/last.ckpt)",
    "encode": "encode the corpus with the passage encoder (Lightning predict, one shard set per rank)",
    "index": "build the index chosen by index.kind from the encoded passages",
    "evaluate": "search the test questions, write metrics.json (top-k, bytes, ms/query)",
    "run": "all of the above, skipping stages whose outputs are current",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bprlab", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for stage, help_text in STAGES.items():
        p = sub.add_parser(stage, help=help_text, description=help_text)
        p.add_argument("experiment", help="experiment YAML (deltas over the schema defaults)")
        p.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. train.max_steps=100")
        p.add_argument("--force", action="store_true", help="redo the stage even when its output is current")
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
    p = sub.add_parser("config", help="the resolved config with each key's stage and help, or --explain one key")
    p.add_argument("experiment", nargs="?", default=None, help="experiment YAML (none: the schema's defaults)")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides")
    p.add_argument("--explain", metavar="KEY", default=None, help="one key: its type, default, stage and help")
    p.add_argument("--stage", default=None, choices=["prepare", "train", "encode", "index", "search", "eval", "none"],
                   help="only the keys this stage reads")
    p = sub.add_parser("report", help="experiments/RESULTS.md from runs/*/summary.json and experiments/ABLATIONS.md "
                                      "from experiments/ablations/*/summary.json, or one sweep's report")
    p.add_argument("--runs", default="runs")
    p.add_argument("--ablations", default="experiments/ablations", help="the ablation tables' folders")
    p.add_argument("--out", default="experiments")
    p.add_argument("--sweep", default=None, help="report runs/sweeps/<name> instead (plots per swept key)")
    p = sub.add_parser("sweep", help="run a W&B sweep (online with credentials, else a resumable local agent)")
    p.add_argument("sweep", help="e.g. sweeps/beta_squad.yaml")
    p.add_argument("--count", type=int, default=None, help="number of trials (grid: the first n)")
    p.add_argument("--seed", type=int, default=0, help="random search seed (local agent)")
    p.add_argument("--local", action="store_true", help="use the local agent even with W&B credentials")
    p.add_argument("--create-only", action="store_true", help="create the W&B sweep and print its agent command")
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
    p = sub.add_parser("search", help="ask a trained run questions: ranked passages (stdin: one JSON line each)")
    p.add_argument("experiment", help="experiment YAML of the run (its index kind picks the search)")
    p.add_argument("items", nargs="*", help="questions, and key=value overrides")
    p.add_argument("--k", type=int, default=5, help="passages per question")
    p.add_argument("--answers", nargs="*", default=[], help="answer strings to highlight")
    p = sub.add_parser("export", help="a run as Hugging Face towers + faiss index files + model card")
    p.add_argument("experiment")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--to", required=True, help="a new output folder")
    p.add_argument("--force", action="store_true", help="replace an earlier export in that folder (never anything "
                                                        "else)")
    p = sub.add_parser("download", help="fetch DPR's public files for nq or trivia (needs internet)")
    p.add_argument("dataset", choices=["nq", "trivia", "wikipedia"])
    p.add_argument("--root", default="data")
    return parser


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


def main(argv: list[str] | None = None) -> int:
    argv, trial = split_trial(list(sys.argv[1:] if argv is None else argv))
    args = parse_args(build_parser(), argv)
    args.trial, args.argv = trial, argv
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _quiet_libraries()
    slurm.install()  # under SLURM: its warning before the time limit requeues the job (bprlab.slurm)
    try:
        return _dispatch(args)
    except Requeued as exc:  # training stopped and saved: SLURM runs the job again, and it resumes
        print(f"bprlab: {exc}", file=sys.stderr)
        slurm.requeue()
        return 0
    except BprlabError as exc:
        print(f"bprlab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: every write is atomic, so nothing half-written stays behind
        print("bprlab: interrupted", file=sys.stderr)
        return 130
    except PermissionError as exc:  # a read-only run folder or data folder
        print(f"bprlab: error: {exc.filename or exc}: permission denied (bprlab writes runs/ and data/ beside the "
              "experiment; run it where you can write, or set runs_root= / data.root=)", file=sys.stderr)
        return 2


def _quiet_libraries() -> None:
    """transformers 5 prints a load report per model (our towers drop the unused pooler on purpose)."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    for name in ("pytorch_lightning.utilities.rank_zero", "lightning.pytorch.utilities.rank_zero"):
        logging.getLogger(name).addFilter(_LightningNoise())
    for message in NOISE_WARNINGS:  # library notices about choices bprlab makes on purpose (README: Layout)
        warnings.filterwarnings("ignore", message=message)


NOISE_WARNINGS = (
    r".*isinstance\(treespec, LeafSpec\).*",  # a Lightning-internal deprecation, nothing a user can change
    r"You are using a custom batch sampler .*",  # encode's ShardBatchSampler returns every row (tested)
    r"Checkpoint directory .* exists and is not empty.*",  # bprlab sets stale checkpoints aside itself
)


class _LightningNoise(logging.Filter):
    """Lightning's per-Trainer hardware lines and product tips: one of each per stage otherwise."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not (text.startswith(("GPU available", "TPU available", "HPU available")) or "litlogger" in text
                    or "LitLogger" in text)


def _count(value: str | None, option: str) -> int | None:
    """A positive integer option, checked here so that a bad one is one line (argparse prints its usage too)."""
    if value is None:
        return None
    try:
        count = int(value)
    except ValueError:
        raise ConfigError(f"{option}: expected a whole number >= 1, got {value!r}") from None
    if count < 1:
        raise ConfigError(f"{option}: expected a whole number >= 1, got {count}")
    return count


def _report(args: argparse.Namespace) -> int:
    """One sweep's report, or both documents; one with nothing to report is left as it is (and said so)."""
    from bprlab.report.ablations import write_ablations
    from bprlab.report.results import NothingToReport, write_results
    from bprlab.sweep_report import write_sweep_report

    if args.sweep:
        print(f"written: {write_sweep_report(Path(args.runs) / 'sweeps' / args.sweep)}")
        return 0
    if Path(args.out).exists() and not Path(args.out).is_dir():  # before any summary is read
        raise ConfigError(f"--out {args.out}: a file, not a folder (RESULTS.md and ABLATIONS.md are written into it)")
    written, skipped = [], []
    for write, source in ((write_results, args.runs), (write_ablations, args.ablations)):
        try:
            written.append(write(source, args.out))
        except NothingToReport as exc:  # a damaged table is not skipped: it stops the report
            skipped.append(str(exc))
    if not written:
        raise StageError(" / ".join(skipped))
    for path in written:
        print(f"written: {path}")
    for reason in skipped:
        print(f"skipped: {reason}")
    return 0


def _dispatch(args: argparse.Namespace) -> int:
    from bprlab.cli import stages

    if args.command == "reproduce":
        from bprlab.cli.reproduce import reproduce

        reproduce(args.table, args.overrides, dataset=args.dataset, seeds=_count(args.seeds, "--seeds"), out=args.out,
                  records_only=args.records_only, rows=args.rows.split(",") if args.rows else None)
        return 0
    if args.command == "report":
        return _report(args)
    if args.command == "config":
        from bprlab.cli.config_cmd import explain, print_config

        experiment, overrides = args.experiment, list(args.overrides)
        if experiment is not None and "=" in experiment:  # only overrides were given
            experiment, overrides = None, [experiment, *overrides]
        if args.explain:
            explain(args.explain, experiment, overrides)
        else:
            print_config(experiment, overrides, args.stage)
        return 0
    if args.command == "sweep":
        from bprlab.cli.sweep import sweep

        sweep(args.sweep, args.count, seed=args.seed, local=args.local, create_only=args.create_only)
        return 0
    if args.command == "bench":
        from bprlab.cli.bench import bench

        written = bench(args)
        if written is not None:
            print(f"written: {written}")
        return 0
    if args.command == "search":
        from bprlab.cli.search import search_command

        if args.k < 1:
            raise ConfigError("--k: at least 1 passage per question")
        return search_command(args.experiment, args.items, args.k, args.answers)
    if args.command == "export":
        from bprlab.cli.search import export_command

        return export_command(args.experiment, args.overrides, args.to, force=args.force)
    if args.command == "download":
        from bprlab.data.download import download

        download(args.dataset, args.root)
        return 0
    from bprlab.config import load_config

    cfg = load_config(args.experiment, args.overrides)
    if args.trial is not None:
        from bprlab.config.schema import LoggerKind
        from bprlab.sweeps import trial_name

        cfg.name = trial_name(cfg.name, args.trial)
        cfg.logger = LoggerKind.wandb
        cfg.wandb.group = cfg.wandb.group or os.environ.get("WANDB_SWEEP_ID")
    from bprlab.runs import RunPaths, run_lock

    with run_lock(RunPaths(cfg).root):
        getattr(stages, args.command)(cfg, force=args.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
