"""What changed between two studies' verdicts: ABLATIONS.md's "What changed and why" section.

`bprlab report` writes the primary readings it judged to `<ablations>/verdicts.json`. A study that is replaced
keeps its own as `<ablations>/previous_study.json` ({"study": a name, "commit": ..., "readings": [...]}, the same
records); the section then lists every claim whose verdict moved, with both readings and what differs between them
(the metric, the reference row, the table's rows retrained, the claim's `exercised` statement), so the reason is
read off the readings rather than written by hand.
"""

from __future__ import annotations

from pathlib import Path

from bprlab.artifacts import read_json, write_json
from bprlab.errors import StageError

VERDICTS = "verdicts.json"
PREVIOUS = "previous_study.json"


def verdict_records(readings: list[dict]) -> list[dict]:
    """The primary readings, as the JSON records a later study compares with."""
    out = []
    for r in readings:
        if not r.get("primary") or r.get("test") is None:
            continue
        test = r["test"]
        out.append({"claim": r["claim"], "table": r["table"], "row": r["row"], "baseline": r["baseline"],
                    "metric": r["metric"], "reading": r.get("reading"), "exercised": r.get("exercised", True),
                    "effect": test.get("effect"),
                    "ci": test.get("ci"), "p_holm": r.get("p_holm"), "verdict": r["verdict"],
                    "row_value": test.get("value"), "baseline_value": test.get("baseline_value")})
    return out


def write_verdicts(folder: Path, readings: list[dict]) -> Path:
    path = Path(folder) / VERDICTS
    write_json(path, {"readings": verdict_records(readings)})
    return path


def read_previous(folder: Path) -> dict | None:
    path = Path(folder) / PREVIOUS
    if not path.is_file():
        return None
    study = read_json(path)
    if not isinstance(study, dict) or not isinstance(study.get("readings"), list) or not all(
            isinstance(r, dict) and {"claim", "verdict", "metric", "row", "baseline"} <= set(r)
            for r in study["readings"]):
        raise StageError(f"{path}: expected {{study, commit, readings: [{{claim, row, baseline, metric, verdict, "
                         "...}]}}; restore it from git (`git checkout -- " + str(path) + "`)")
    return study


def _reading(r: dict | None) -> str:
    if r is None:
        return "not in the study"
    ci = r.get("ci")
    interval = f" [{ci[0]:+.1f}, {ci[1]:+.1f}]" if ci and ci[0] is not None else ""
    effect = "" if r.get("effect") is None else f" {r['effect']:+.1f}{interval}"
    return f"{r['row']} − {r['baseline']}, {r['metric']}{effect}: **{r['verdict']}**"


def _differs(before: dict | None, now: dict | None) -> str:
    if before is None:
        return "a claim this study adds"
    if now is None:
        return "no longer read"
    parts = []
    if before["metric"] != now["metric"]:
        parts.append(f"read on {now['metric']} (was {before['metric']})")
    if (before["row"], before["baseline"]) != (now["row"], now["baseline"]):
        parts.append(f"compares {now['row']} with {now['baseline']} (was {before['row']} with {before['baseline']})")
    if before.get("exercised", True) != now.get("exercised", True):
        parts.append("mechanism now exercised" if now.get("exercised", True) else "mechanism declared not exercised")
    if parts and now.get("reading"):
        parts[-1] += f": read at {now['reading']}"
    if not parts:
        moved = [f"{side} {b:.1f} → {a:.1f}" for side, b, a in (
            ("row", before.get("row_value"), now.get("row_value")),
            ("reference", before.get("baseline_value"), now.get("baseline_value")))
            if b is not None and a is not None and abs(a - b) >= 0.05]
        parts.append("the same reading on retrained models" + (f" ({', '.join(moved)})" if moved else "")
                     if moved else "the same reading; the family (Holm) or the test changed")
    return "; ".join(parts)


def changes_markdown(previous: dict, readings: list[dict]) -> str:
    """Every claim whose primary verdict differs from the previous study's, as a markdown section."""
    now = {r["claim"]: r for r in verdict_records(readings)}
    before = {r["claim"]: r for r in previous["readings"]}
    lines = [f"## What changed and why (against {previous.get('study', 'the previous study')}"
             + (f", commit {previous['commit']}" if previous.get("commit") else "") + ")", "",
             "Every claim whose verdict differs from the previous study's, each primary reading as it was and as it "
             "is, and what differs between the two readings (generated from "
             f"`{PREVIOUS}` and this study's `{VERDICTS}`).", "",
             "| claim | before | now | what differs |", "|---|---|---|---|"]
    moved = 0
    for claim in [*before, *(c for c in now if c not in before)]:
        b, a = before.get(claim), now.get(claim)
        if b is not None and a is not None and b["verdict"] == a["verdict"]:
            continue
        moved += 1
        lines.append(f"| {claim} | {_reading(b)} | {_reading(a)} | {_differs(b, a)} |")
    if not moved:
        return "\n".join(lines[:4]) + "\n\nNo verdict moved."
    return "\n".join(lines)
