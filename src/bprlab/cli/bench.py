"""`bprlab bench search`: build the plan from the flags, run it, write runs/bench/bench.{json,md} + the plot."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from bprlab.errors import ConfigError, StageError


def _sizes(text: str | None, flag: str) -> list[int] | None:
    if text is None:
        return None
    try:
        sizes = [int(float(part)) for part in text.split(",") if part.strip()]
    except (ValueError, OverflowError):
        raise ConfigError(f"command line: {flag}={text!r}: expected comma-separated whole numbers") from None
    bad = [n for n in sizes if n < 1]
    if bad:
        raise ConfigError(f"command line: {flag}={text!r}: sizes must be >= 1, got {bad[0]}")
    return sizes


def _check_out(out: Path) -> None:
    """Where the results go is checked before any work: an existing file there would fail only at the end."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: a file is there; name a folder")


def _check_memory(plan) -> None:
    """The largest block's arrays against this machine's memory, before allocating them."""
    from bprlab.bench.memory import total_mb

    need = max([n * max(plan.bits) * 4 for n in plan.float_sizes] +  # float vectors, one float per bit
               [n * max(plan.bits) // 8 * 2 for n in plan.code_sizes], default=0)  # codes, a copy while building
    have = total_mb()
    if have and need > have * 2**20:
        raise ConfigError(f"command line: the largest size needs ~{need / 2**30:.1f} GiB for its vectors, more than "
                          f"this machine's {have / 1024:.1f} GiB; use smaller --sizes / --code-sizes")


def bench(args: argparse.Namespace) -> Path | None:
    if args.what == "report":
        from bprlab.bench.report import report_from

        if not args.folder:
            raise ConfigError("bench report: name the folder of a bench run, e.g. `bprlab bench report runs/bench`")
        return report_from(Path(args.folder))
    _check_out(Path(args.out))
    if args.what == "gpu":
        return _gpu(args)
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
    _check_memory(plan)
    from bprlab.bench.conditions import reexec_without_overrides

    reexec_without_overrides(getattr(args, "argv", None) or [])
    result = run_search_bench(plan)
    written = write_bench(result, Path(args.out))
    if result["loops"] and not result["loops"]["equal"]:
        raise StageError(f"{written}: the scan's two distance loops returned different results (a kernel bug)")
    return written


def _gpu(args: argparse.Namespace) -> Path | None:
    import sys

    from bprlab.bench.gpu import NoCuda, run_gpu_check

    try:
        return run_gpu_check(Path(args.out))
    except NoCuda as exc:  # skipped cleanly: one line, nothing written
        print(exc, file=sys.stderr)
        return None
