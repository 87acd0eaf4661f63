"""`bprlab <stage> <experiment.yaml> [key=value ...]`: one thin command per stage.

Stages talk through files in the run directory (bprlab.runs). Errors caused by input (a config typo, a malformed
record, a missing stage output) print one line naming the file and key or record, and exit with status 2.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
import warnings
from pathlib import Path

from bprlab import slurm
from bprlab.cli.parser import build_parser, parse_args, split_trial
from bprlab.errors import BprlabError, ConfigError, Requeued, StageError


def main(argv: list[str] | None = None) -> int:
    slurm.install()  # first: under SLURM its warning before the time limit requeues the job (bprlab.slurm)
    argv, trial = split_trial(list(sys.argv[1:] if argv is None else argv))
    args = parse_args(build_parser(__doc__.splitlines()[0]), argv)
    args.trial, args.argv = trial, argv
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _quiet_libraries()
    try:
        return _dispatch(args)
    except Requeued as exc:  # training stopped and saved: SLURM runs the job again, and it resumes
        print(f"bprlab: {exc}", file=sys.stderr)
        if slurm.sweep_trial():  # the agent sees a non-zero exit, and W&B requeues the run marked preempting
            return slurm.PREEMPTED_EXIT
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
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        # the file is named when the error carries it (a write() or flush() on a full disk usually does not)
        full = "no space left on the device" if exc.errno == errno.ENOSPC else "the disk quota is spent"
        print(f"bprlab: error: {full}{' writing ' + str(exc.filename) if exc.filename else ''}. "
              "Finished stages and table units are kept: free space and run the same command again to resume. "
              "Many runs: train.keep_resume_state=false keeps a finished run's weights without its optimizer state",
              file=sys.stderr)
        return 1


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
    handler = COMMANDS.get(args.command, _stage)
    result = handler(args)
    return 0 if result is None else result


def _reproduce(args: argparse.Namespace) -> None:
    from bprlab.cli.reproduce import reproduce

    reproduce(args.table, args.overrides, dataset=args.dataset, seeds=_count(args.seeds, "--seeds"), out=args.out,
              records_only=args.records_only, rows=args.rows.split(",") if args.rows else None)


def _config(args: argparse.Namespace) -> None:
    from bprlab.cli.config_cmd import explain, print_config

    experiment, overrides = args.experiment, list(args.overrides)
    if experiment is not None and "=" in experiment:  # only overrides were given
        experiment, overrides = None, [experiment, *overrides]
    if args.explain:
        explain(args.explain, experiment, overrides)
    else:
        print_config(experiment, overrides, args.stage)


def _sweep(args: argparse.Namespace) -> None:
    from bprlab.cli.sweep import sweep

    sweep(args.sweep, args.count, seed=args.seed, local=args.local, create_only=args.create_only)


def _bench(args: argparse.Namespace) -> None:
    from bprlab.cli.bench import bench

    written = bench(args)
    if written is not None:
        print(f"written: {written}")


def _search(args: argparse.Namespace) -> int:
    from bprlab.cli.search import search_command

    if args.k < 1:
        raise ConfigError("--k: at least 1 passage per question")
    return search_command(args.experiment, args.items, args.k, args.answers)


def _export(args: argparse.Namespace) -> int:
    from bprlab.cli.search import export_command

    return export_command(args.experiment, args.overrides, args.to, force=args.force)


def _download(args: argparse.Namespace) -> None:
    from bprlab.data.download import download

    download(args.dataset, args.root)


def _stage(args: argparse.Namespace) -> None:
    """One pipeline stage (bprlab.cli.parser.STAGES) on one run, under the run's lock."""
    from bprlab.cli import stages
    from bprlab.config import load_config
    from bprlab.runs import RunPaths, run_lock

    cfg = load_config(args.experiment, args.overrides)
    if args.trial is not None:
        from bprlab.config.enums import LoggerKind
        from bprlab.sweeps import trial_name

        cfg.name = trial_name(cfg.name, args.trial)
        cfg.logger = LoggerKind.wandb
        cfg.wandb.group = cfg.wandb.group or os.environ.get("WANDB_SWEEP_ID")
    with run_lock(RunPaths(cfg).root):
        try:
            with slurm.stoppable():
                getattr(stages, args.command)(cfg, force=args.force)
        except Requeued:
            if slurm.sweep_trial():
                from bprlab.tracking import mark_preempted

                mark_preempted(cfg, RunPaths(cfg).root)
            raise


COMMANDS = {"reproduce": _reproduce, "report": _report, "config": _config, "sweep": _sweep, "bench": _bench,
            "search": _search, "export": _export, "download": _download}


if __name__ == "__main__":
    sys.exit(main())
