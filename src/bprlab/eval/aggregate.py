"""A table's rows from its unit records: each row's metrics over seeds with intervals, and tests against the
table's baseline row (docs/method.md#uncertainty).

A unit record is one (row, seed) evaluation: {"method", "seed", "run", "metrics" (metrics.json), "outcomes"
(bprlab.eval.outcomes)}. A row's seeds must have evaluated the same questions over the same corpus, and a row
is tested against the baseline only on the same questions: anything else is an error, never an average.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from bprlab.errors import StageError
from bprlab.eval.outcomes import outcome_vector
from bprlab.eval.stats import ALPHA, Interval, bootstrap_interval, holm, paired_randomization_test, seed_interval

ANSWER_METRICS = ("top1", "top5", "top20", "top50", "top100")
RELEVANCE_METRICS = ("ndcg@10", "mrr@10", "recall@10", "recall@100", "recall@1000")
TESTED = ("top1", "top5", "top20", "top100", "ndcg@10", "recall@100")  # one table's Holm family: rows x these
SAME_ACROSS_SEEDS = ("code_bits", "bytes_per_passage", "rescore_bytes_per_passage", "index_bytes", "num_passages",
                     "num_questions", "search", "dataset", "data_path", "checkpoint", "pooling", "search_batch_size")
AVERAGED = ("ms_per_query", "scanned_fraction")


def aggregate_row(method: str, units: list[dict]) -> dict:
    """One row: mean of every accuracy metric over seeds with its interval (t over seeds; one seed: bootstrap over
    questions, labelled), costs, and each seed's own numbers."""
    _check_same_evaluation(method, units)
    first = units[0]["metrics"]
    row: dict = {"method": method, "seeds": [u["seed"] for u in units], "runs": [u["run"] for u in units],
                 "run": units[0]["run"], "intervals": {}, "per_seed": {}}
    for key in (*ANSWER_METRICS, *RELEVANCE_METRICS):
        values = [u["metrics"].get(key) for u in units]
        if any(v is None for v in values):
            continue
        row[key], row["intervals"][key] = _interval(key, values, units)
    for key in SAME_ACROSS_SEEDS:
        row[key] = first.get(key)
    for key in AVERAGED:
        values = [u["metrics"].get(key) for u in units if u["metrics"].get(key) is not None]
        row[key] = float(np.mean(values)) if values else None
    row["per_seed"] = {str(u["seed"]): {k: u["metrics"].get(k) for k in (*ANSWER_METRICS, *RELEVANCE_METRICS)
                                        if u["metrics"].get(k) is not None} for u in units}
    row["questions_sha256"], row["corpus_sha256"] = first.get("questions_sha256"), first.get("corpus_sha256")
    return row


def _interval(key: str, values: list[float], units: list[dict]) -> tuple[float, dict]:
    if len(values) > 1:
        interval = seed_interval(values)
        return interval.mean, {**interval.as_dict(), "over": "seeds"}
    vector = outcome_vector(units[0]["outcomes"], key)
    if vector is None:
        return float(values[0]), {"mean": float(values[0]), "low": None, "high": None, "n": 1, "over": "seeds"}
    interval = _percent(bootstrap_interval(vector[~np.isnan(vector)]))
    return float(values[0]), {**interval.as_dict(), "mean": float(values[0]), "over": "questions"}


def compare_rows(rows: dict[str, list[dict]], baseline: str) -> dict[str, dict[str, dict]]:
    """{method: {metric: comparison}} for every row but the baseline and every tested metric both rows have:
    effect (row minus baseline, points) with its bootstrap interval over questions and t-interval over paired
    seeds, the randomization p-value, and Holm's correction over all of the table's comparisons."""
    base_units = rows[baseline]
    found: list[tuple[str, str, dict]] = []
    for method, units in rows.items():
        if method == baseline:
            continue
        _check_comparable(method, units, baseline, base_units)
        for metric in TESTED:
            result = _compare(metric, units, base_units)
            if result is not None:
                found.append((method, metric, result))
    for (_, _, result), adjusted in zip(found, holm([r["p"] for _, _, r in found])):
        result["p_holm"] = adjusted
        result["significant"] = adjusted < ALPHA
    out: dict[str, dict[str, dict]] = defaultdict(dict)
    for method, metric, result in found:
        out[method][metric] = result
    return dict(out)


def _compare(metric: str, units: list[dict], base_units: list[dict]) -> dict | None:
    if any(u["metrics"].get(metric) is None for u in (*units, *base_units)):
        return None  # not evaluated (e.g. top100 beyond eval.top_k: the stored ranks stop at its largest k)
    row = _seed_outcomes(units, metric)
    base = _seed_outcomes(base_units, metric)
    if row is None or base is None:
        return None
    judged = ~np.isnan(row).any(axis=0) & ~np.isnan(base).any(axis=0)  # questions with outcomes on both sides
    x, y = row[:, judged].mean(axis=0), base[:, judged].mean(axis=0)  # (Q,) averaged over seeds
    effect = _percent(bootstrap_interval(x, y))
    result = {"baseline_value": 100.0 * float(y.mean()), "value": 100.0 * float(x.mean()),
              "effect": effect.mean, "ci_questions": [effect.low, effect.high], "questions": int(judged.sum()),
              "p": paired_randomization_test(x, y)}
    pairs = _paired_seeds(units, base_units)
    if len(pairs) >= 2:
        diffs = [100.0 * (row[i, judged].mean() - base[j, judged].mean()) for i, j in pairs]
        seeds = seed_interval(diffs)
        result["ci_seeds"] = [seeds.low, seeds.high]
        result["seed_pairs"] = len(pairs)
    return result


def _seed_outcomes(units: list[dict], metric: str) -> np.ndarray | None:
    vectors = [outcome_vector(u["outcomes"], metric) for u in units]
    if any(v is None for v in vectors):
        return None
    return np.stack(vectors)  # (seeds, Q)


def _paired_seeds(units: list[dict], base_units: list[dict]) -> list[tuple[int, int]]:
    """Seeds paired by number where both rows ran it (the same data order and initialisation), else by position
    (a row that is not trained, e.g. the untrained encoder, has one unit for all)."""
    base_index = {u["seed"]: j for j, u in enumerate(base_units)}
    by_number = [(i, base_index[u["seed"]]) for i, u in enumerate(units) if u["seed"] in base_index]
    if len(by_number) >= 2:
        return by_number
    return list(zip(range(len(units)), range(len(base_units)))) if min(len(units), len(base_units)) >= 2 else []


def _check_same_evaluation(method: str, units: list[dict]) -> None:
    for key, what in (("questions_sha256", "question sets"), ("corpus_sha256", "corpora")):
        seen = {u["metrics"].get(key) for u in units}
        if len(seen) > 1:
            detail = ", ".join(f"seed {u['seed']}: {u['metrics'].get(key)}" for u in units)
            raise StageError(f"row {method}: its seeds were evaluated on different {what} ({detail}); they cannot "
                             "be averaged: evaluate every seed on the same data (rerun the table)")


def _check_comparable(method: str, units: list[dict], baseline: str, base_units: list[dict]) -> None:
    for key, what in (("questions_sha256", "questions"), ("corpus_sha256", "corpus")):
        mine, theirs = units[0]["metrics"].get(key), base_units[0]["metrics"].get(key)
        if mine != theirs:
            raise StageError(f"row {method} and the baseline {baseline} were evaluated on different {what} "
                             f"({mine} vs {theirs}): a paired test needs the same {what}")


def _percent(interval: Interval) -> Interval:
    scale = lambda v: None if v is None else 100.0 * v  # noqa: E731
    return Interval(scale(interval.mean), scale(interval.low), scale(interval.high), interval.n)
