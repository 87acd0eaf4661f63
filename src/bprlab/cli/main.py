"""`bprlab <stage> <experiment.yaml> [key=value ...]`: one thin command per stage.

Stages talk through files in the run directory (bprlab.runs). Errors caused by input (a config typo, a malformed
record, a missing stage output) print one line naming the file and key or record, and exit with status 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from bprlab.errors import BprlabError

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
    p = sub.add_parser("download", help="fetch DPR's public files for nq or trivia (needs internet)")
    p.add_argument("dataset", choices=["nq", "trivia", "wikipedia"])
    p.add_argument("--root", default="data")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _quiet_libraries()
    try:
        return _dispatch(args)
    except BprlabError as exc:
        print(f"bprlab: error: {exc}", file=sys.stderr)
        return 2


def _quiet_libraries() -> None:
    """transformers 5 prints a load report per model (our towers drop the unused pooler on purpose)."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)


def _dispatch(args: argparse.Namespace) -> int:
    from bprlab.cli import stages

    if args.command == "reproduce":
        from bprlab.cli.reproduce import reproduce

        reproduce(args.table, args.overrides)
        return 0
    if args.command == "download":
        from bprlab.data.download import download

        download(args.dataset, args.root)
        return 0
    from bprlab.config import load_config

    cfg = load_config(args.experiment, args.overrides)
    getattr(stages, args.command)(cfg, force=args.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
