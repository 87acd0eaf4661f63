"""Bench results as files: bench.json (everything), bench.md (the table), ms_per_query.png (log-log vs N)."""

from __future__ import annotations

from pathlib import Path

from bprlab.artifacts import atomic_path, write_json, write_text
from bprlab.bench.loops import markdown_lines as loops_lines

METHODS = ("dpr-flat", "bpr-native", "bpr-faiss")


def _fmt(value, digits: int = 2) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if value < 100 else f"{value:.0f}"


def _size(nbytes: int) -> str:
    return f"{nbytes / (1 << 30):g} GB" if nbytes >= 1 << 30 else f"{nbytes / (1 << 20):g} MB"


def conditions_lines(result: dict) -> list[str]:
    """The baseline's conditions, first: what ran DPR's GEMM and whether it ran at its best."""
    cond = result.get("conditions")
    if not cond:
        return ["Conditions: not recorded by this run (a bench from before they were)."]
    problems = cond.get("baseline_below_machine") or []
    blas = cond.get("faiss_blas") or {}
    probe = cond.get("gemm_probe") or {}
    lines = []
    if problems:
        lines += [f"**The DPR baseline ran below this machine: {'; '.join(problems)}. Its ratios overstate BPR.**", ""]
    peak = cond.get("peak_gflops_estimate")
    lines.append(
        f"Baseline conditions: faiss's BLAS {blas.get('internal_api', '?')} {blas.get('version', '?')} running its "
        f"'{blas.get('architecture', '?')}' kernel on {blas.get('num_threads', '?')} threads; GEMM probe "
        f"(IndexFlatIP, {' x '.join(map(str, probe.get('shape', [])))}) {probe.get('faiss_gflops', 0):.0f} GFLOP/s "
        f"against numpy's BLAS {probe.get('numpy_gflops', 0):.0f}"
        + (f" and a peak estimate of {peak:.0f}" if peak else "") + "; CPU SIMD: "
        + " ".join(cond.get("simd", [])) + "; BLAS/OpenMP environment: "
        + (", ".join(f"{k}={v}" for k, v in cond.get("environment", {}).items()) or "none set")
        + (f"; cleared for this run: {', '.join(cond['cleared_for_this_run'])}" if cond.get("cleared_for_this_run")
           else "") + ".")
    libs = "; ".join(f"{lib.get('internal_api')} {lib.get('version') or ''} {lib.get('architecture') or ''} "
                     f"({lib.get('num_threads')} threads, {str(lib.get('filepath', '')).split('/')[-1]})"
                     for lib in cond.get("libraries", []))
    return lines + [f"Libraries loaded (threadpoolctl): {libs}."]


def markdown(result: dict) -> str:
    machine = result["machine"]
    bw = ", ".join(f"{t} thread{'s' if int(t) > 1 else ''}: {v:.1f} GB/s" for t, v in machine["bandwidth_gbs"].items())
    below = (result.get("conditions") or {}).get("baseline_below_machine")
    limits = "; ".join(f"{bits} bits: " + ", ".join(f"{name} {value:.2f}" for name, value in lim.items())
                       for bits, lim in (result.get("popcount_limits") or {}).items())
    lines = [
        "# Search benchmark: BPR vs DPR (`bprlab bench search`)",
        "",
        *conditions_lines(result),
        "",
        f"Scan core-cycles per (question, passage) pair at {machine.get('clock_mhz') or '?'} MHz (the clock the OS "
        f"reports; a VM's turbo may run faster), against the instruction limits: {limits or '-'}.",
        "",
        f"CPU: {machine['cpu']} ({machine['cores']} cores; SIMD the kernels compiled for: {machine['simd']}). "
        f"Measured DRAM read bandwidth (best streaming pass over {_size(result['plan']['bandwidth_bytes'])}): "
        f"{bw}. The batch-1 scan's share is taken against the largest of that, the same pass again before the "
        "row's (size, bits) block, and (where the codes are at least as large, so not held in the last-level cache) "
        "a streaming pass over the index's own codes right before the row; above 100%, the scan read partly cached "
        "codes.",
        f"Synthetic data with a planted passage per question; l = {result['plan']['num_candidates']} candidates, "
        f"top-{result['plan']['k']}. Times are search only (no question encoding), methods timed round-robin on the "
        "same questions in one process; `x DPR` is dpr-flat's ms/query over bpr-native's from the same row. "
        "Rows marked * have codes only: DPR there is extrapolated linearly from the largest float size, not run. "
        "ms/query is the median over the batches timed, and so is each part of the native search's split "
        "(scan / rerank / rest); `-` where a method was skipped because one batch would have taken longer than "
        "the plan's per-cell limit (estimated from its previous batch size).",
        "",
        "| N | bits | threads | batch | dpr-flat ms/q" + (" (baseline below the machine)" if below else "")
        + " | bpr-native ms/q | bpr-faiss ms/q | x DPR (native) | native: scan / rerank / rest ms/q | "
        "batch-1 scan GB/s (share of bw) | scan cycles/pair | recall@k dpr / native / faiss | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        ms, split = row["ms_per_query"], row["native_split_ms"]
        recall = row[f"recall@{result['plan']['k']}"]
        star = "*" if row.get("dpr_extrapolated_from") else ""
        share = f"{_fmt(row['scan_gbs'], 1)} ({100 * row['scan_share_of_bandwidth']:.0f}%)" \
            if row["scan_gbs"] and row["batch"] == 1 else "-"  # a batch reads each code once for many questions
        lines.append(
            f"| {row['num_passages']:,}{star} | {row['bits']} | {row['threads']} | {row['batch']} | "
            f"{_fmt(ms.get('dpr-flat'))} | {_fmt(ms['bpr-native'], 3)} | {_fmt(ms.get('bpr-faiss'), 3)} | "
            f"{_fmt(row.get('speedup_vs_dpr', {}).get('bpr-native'), 1)} | "
            f"{_fmt(split['candidates'], 3)} / {_fmt(split['rerank'], 3)} / {_fmt(split['rest'], 3)} | {share} | "
            f"{_fmt(row.get('scan_cycles_per_pair'))} | "
            f"{_fmt(recall.get('dpr-flat'))} / {_fmt(recall['bpr-native'])} / {_fmt(recall.get('bpr-faiss'))} | "
            f"{_fmt(row['block_peak_rss_mb'], 0)} |")
    lines += loops_lines(result.get("loops"))
    lines += ["", "## Index sizes and build memory", "",
              "| N | bits | DPR index bytes | BPR index bytes | native build: extra peak / codes | "
              "faiss build: extra peak / codes | `bprlab index` stage: peak / codes, seconds |",
              "|---|---|---|---|---|---|---|"]
    for build in result["builds"]:
        stage = build.get("stage_build")
        stage_text = f"{stage['peak_over_codes']:.2f}x, {stage['seconds']:.1f} s" if stage else "-"
        dpr_bytes = f"{build['dpr_index_bytes']:,}" if "dpr_index_bytes" in build else "-"
        lines.append(f"| {build['num_passages']:,} | {build['bits']} | {dpr_bytes} | {build['bpr_index_bytes']:,} | "
                     f"{build['bpr-native_extra_peak_over_codes']:.2f}x | "
                     f"{build['bpr-faiss_extra_peak_over_codes']:.2f}x | {stage_text} |")
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    """ms/query against N, log-log: one line per method and batch size, at the largest thread count and bits."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    threads, bits = max(r["threads"] for r in rows), max(r["bits"] for r in rows)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for batch, style in zip(sorted({r["batch"] for r in rows}), ("-", "--", ":")):
        picked = sorted((r for r in rows if r["threads"] == threads and r["bits"] == bits and r["batch"] == batch),
                        key=lambda r: r["num_passages"])
        for method, colour in zip(METHODS, ("tab:red", "tab:blue", "tab:green")):
            points = [(r["num_passages"], r["ms_per_query"][method]) for r in picked if method in r["ms_per_query"]]
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, style, color=colour, marker="o", label=f"{method}, batch {batch}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("passages (N)")
    ax.set_ylabel("ms / query")
    ax.set_title(f"search time, {bits} bits, {threads} threads (DPR beyond its last float size: extrapolated)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def write_bench(result: dict, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "bench.json", result)
    return write_report(result, out)


def write_report(result: dict, out: Path) -> Path:
    """bench.md and the plot from a result whose figures are derived."""
    write_text(out / "bench.md", markdown(result))
    plot(result, out / "ms_per_query.png")
    return out / "bench.md"


def report_from(folder: Path) -> Path:
    """`bprlab bench report DIR`: bench.md and the plot again from DIR/bench.json's stored timings."""
    from bprlab.artifacts import read_json
    from bprlab.bench.derive import derive
    from bprlab.errors import StageError

    path = Path(folder) / "bench.json"
    if not path.is_file():
        raise StageError(f"{path}: not found; run `bprlab bench search --out {folder}` first")
    result = read_json(path)
    rows = result.get("rows") if isinstance(result, dict) else None
    if not isinstance(rows, list) or not rows or any(not isinstance(row, dict) or "raw" not in row for row in rows):
        raise StageError(f"{path}: holds no stored timings (a bench from before they were kept, empty, or not a "
                         "bench's record); run the bench again")
    try:
        derived = derive(result)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:  # edited or truncated by hand
        raise StageError(f"{path}: its timings are not in the shape `bprlab bench` writes ({type(exc).__name__}: "
                         f"{str(exc)[:60]}); run the bench again") from None
    return write_report(derived, Path(folder))
