"""`bprlab bench search`: build the plan from the flags, run it, write runs/bench/bench.{json,md} + the plot."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from bprlab.errors import ConfigError


def _sizes(text: str | None, flag: str) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(float(part)) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"command line: {flag}={text!r}: expected comma-separated integers") from None


def bench(args: argparse.Namespace) -> Path:
    if args.what == "gradcache":
        return _grad_cache(args)
    if args.what == "encode":
        return _encode(args)
    if args.what == "scale":
        return _scale(args)
    return _search(args)


def _encode(args: argparse.Namespace) -> Path:
    from bprlab.artifacts import write_json, write_text
    from bprlab.bench.encode import markdown, run_encode_bench

    sizes = _sizes(args.passages, "--passages") or [200 if args.quick else 600]
    result = run_encode_bench(args.model, sizes[0], workers=(0, 1) if args.quick else (0, 1, 2))
    out = Path(args.out)
    write_json(out / "encode.json", result)
    write_text(out / "encode.md", markdown(result))
    return out / "encode.md"


def _scale(args: argparse.Namespace) -> Path:
    from bprlab.artifacts import write_json, write_text
    from bprlab.bench.scale import markdown, run_scale_bench

    sizes = _sizes(args.passages, "--passages") or ([20_000] if args.quick else [200_000, 2_000_000])
    result = run_scale_bench(sizes, Path(args.out) / "scale")
    out = Path(args.out)
    write_json(out / "scale.json", result)
    write_text(out / "scale.md", markdown(result))
    return out / "scale.md"


def _grad_cache(args: argparse.Namespace) -> Path:
    from bprlab.artifacts import write_json, write_text
    from bprlab.bench.grad_cache import markdown, run_grad_cache_bench

    if args.questions < 1:
        raise ConfigError(f"command line: --questions={args.questions}: at least 1")
    result = run_grad_cache_bench(args.model, args.questions, chunks=(None, 8) if args.quick else (None, 32, 16, 8))
    out = Path(args.out)
    write_json(out / "gradcache.json", result)
    write_text(out / "gradcache.md", markdown(result))
    return out / "gradcache.md"


def _search(args: argparse.Namespace) -> Path:
    from bprlab.bench.report import write_bench
    from bprlab.bench.search import QUICK, SearchPlan, run_search_bench

    plan = dataclasses.replace(QUICK) if args.quick else SearchPlan()
    for name, flag, value in (("float_sizes", "--sizes", args.sizes), ("code_sizes", "--code-sizes", args.code_sizes),
                              ("bits", "--bits", args.bits)):
        parsed = _sizes(value, flag)
        if parsed is not None:
            setattr(plan, name, parsed)
    if any(b <= 0 or b % 8 for b in plan.bits):
        raise ConfigError(f"command line: --bits: positive multiples of 8, got {plan.bits}")
    if plan.code_sizes and not plan.float_sizes:
        raise ConfigError("command line: codes-only sizes extrapolate DPR from a float size: give --sizes too")
    return write_bench(run_search_bench(plan), Path(args.out))
