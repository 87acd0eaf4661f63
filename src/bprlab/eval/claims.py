"""The paper's claims, each answered by one comparison of an ablation table: effect, intervals, Holm-corrected
p-value and a verdict (docs/method.md#uncertainty).

A table states its claims (table files, `claims:`), each naming a row compared with the table's baseline, a
metric, and what the claim expects of the row minus the baseline:

    - claim: reranking the Hamming candidates with the continuous question helps
      source: "§4"
      row: bpr-no-rerank
      metric: top20
      expect: lower          # lower | higher: a difference; at_most: m, an equivalence within m points
      qrels_metric: ndcg@10  # where the table is judged by qrels only (a BEIR folder); this is the default

Verdicts, with both 95% intervals (over questions, and over seeds where a row has >= 2):
- lower / higher: "holds" when the Holm-corrected p < 0.05 and both intervals lie on the expected side of 0;
  "contradicted" when p < 0.05 and both lie on the other side; otherwise "not shown at this budget".
- at_most m: "holds" when both intervals lie below m; "contradicted" when both lie above m; otherwise "not shown".
"""

from __future__ import annotations

from bprlab.errors import ConfigError
from bprlab.eval.stats import ALPHA

EXPECTATIONS = ("lower", "higher")
CLAIM_KEYS = {"claim", "source", "row", "metric", "qrels_metric", "expect", "at_most"}
QRELS_METRIC = "ndcg@10"  # the metric a claim is read on where a table has qrels and no answer strings


def check_claims(table_path, claims: list, methods: list[str], baseline: str | None) -> None:
    """A table's claims are well formed and name its rows (checked when the table is read)."""
    for i, claim in enumerate(claims):
        where = f"{table_path}: claims[{i}]"
        if not isinstance(claim, dict) or set(claim) - CLAIM_KEYS or not {"claim", "row", "metric"} <= set(claim):
            raise ConfigError(f"{where}: expected claim, row, metric, expect (lower|higher) or at_most, "
                              "and optionally source")
        if baseline is None:
            raise ConfigError(f"{where}: a claim compares a row with the table's baseline; the table names none")
        if claim["row"] not in methods or claim["row"] == baseline:
            raise ConfigError(f"{where}: row {claim['row']!r} is not a non-baseline row of this table")
        if ("expect" in claim) == ("at_most" in claim) or claim.get("expect", "lower") not in EXPECTATIONS:
            raise ConfigError(f"{where}: give either expect: lower|higher or at_most: <points>")


def verdict(claim: dict, comparison: dict | None) -> str:
    if comparison is None:
        return "not run"
    bounds = [comparison["ci_questions"]] + ([comparison["ci_seeds"]] if comparison.get("ci_seeds") else [])
    if any(b[0] is None for b in bounds):
        return "not shown at this budget"
    if "at_most" in claim:
        margin = float(claim["at_most"])
        if all(high < margin for _, high in bounds):
            return "holds"
        if all(low > margin for low, _ in bounds):
            return "contradicted"
        return "not shown at this budget"
    sign = -1.0 if claim["expect"] == "lower" else 1.0
    significant = comparison.get("p_holm", 1.0) < ALPHA
    if significant and all(sign * low > 0 and sign * high > 0 for low, high in bounds):
        return "holds"
    if significant and all(sign * low < 0 and sign * high < 0 for low, high in bounds):
        return "contradicted"
    return "not shown at this budget"


def claim_rows(tables: list[dict], order: tuple[str, ...] = ()) -> list[dict]:
    """Every claim of every table with its comparison and verdict: tables in `order` (names; a table's twin on
    another dataset, `<name>-...`, right after it), then the rest. A claim that a qrels-judged table answers on the
    same comparison as an earlier claim (two metrics of an answer table, one nDCG@10 here) is listed once."""
    def rank(table: dict) -> tuple:
        name = table["run_name"]
        at = next((i for i, base in enumerate(order) if name == base or name.startswith(base + "-")), len(order))
        return at, name

    out = []
    for table in sorted(tables, key=rank):
        by_method = {row["method"]: row for row in table["rows"]}
        seen = set()
        for claim in table.get("claims") or []:
            tested = by_method.get(claim["row"], {}).get("vs_baseline") or {}
            # a table judged by qrels only (a BEIR folder) answers the claim on nDCG@10
            metric = claim["metric"] if claim["metric"] in tested or not tested else claim.get("qrels_metric", QRELS_METRIC)
            key = (claim["row"], metric, claim.get("at_most"), claim.get("expect"))
            if key in seen:
                continue
            seen.add(key)
            comparison = tested.get(metric)
            out.append({**claim, "metric": metric, "table": table["run_name"], "baseline": table.get("baseline"),
                        "comparison": comparison, "verdict": verdict(claim, comparison)})
    return out


def claims_markdown(rows: list[dict]) -> str:
    head = ["claim", "paper", "comparison", "expects", "effect (points)", "95% CI, questions", "95% CI, seeds",
            "p (Holm)", "verdict"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        c = row["comparison"] or {}
        expects = f"Δ ≤ {row['at_most']}" if "at_most" in row else f"Δ {'<' if row['expect'] == 'lower' else '>'} 0"
        ci = lambda pair: "-" if not pair or pair[0] is None else f"[{pair[0]:+.1f}, {pair[1]:+.1f}]"  # noqa: E731
        p = c.get("p_holm")
        lines.append("| " + " | ".join([
            row["claim"], row.get("source", ""), f"{row['row']} − {row['baseline']}, {row['metric']} ({row['table']})",
            expects, "-" if not c else f"{c['effect']:+.1f}", ci(c.get("ci_questions")), ci(c.get("ci_seeds")),
            "-" if p is None else ("< 0.0001" if p < 1e-4 else f"{p:.4f}"), f"**{row['verdict']}**"]) + " |")
    return "\n".join(lines)
