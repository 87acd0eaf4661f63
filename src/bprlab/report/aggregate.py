"""A table's rows from its unit records: each row's metrics over seeds with intervals, and tests against the
table's baseline row (docs/method.md#uncertainty).

A unit record is one (row, seed) evaluation: {"method", "seed", "run", "metrics" (metrics.json), "outcomes"
(bprlab.eval.outcomes)}. A row's seeds must have evaluated the same questions over the same corpus, and a row
is tested against the baseline only on the same questions: anything else is an error, never an average.

A row with one unit in a table of several seeds trains nothing (the untrained encoder, BM25: `reproduce` runs it
once), so it has no training noise and pairs with every seed of the other row. A table of one seed measures no
training noise at all: its intervals and tests hold the question sample only, and say so.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from bprlab.errors import StageError
from bprlab.eval.outcomes import DIGITS, outcome_clusters, outcome_vector
from bprlab.eval.stage import LS, PREFIX
from bprlab.report.signflip import sign_flip_test
from bprlab.report.stats import (
    ALPHA,
    cluster_bootstrap_interval,
    combined,
    holm,
    paired_t_over_seeds,
    seed_interval,
)

ANSWER_METRICS = ("top1", "top5", "top20", "top50", "top100")
RELEVANCE_METRICS = ("ndcg@10", "mrr@10", "recall@10", "recall@100", "recall@1000")
STAGE_METRICS = tuple(f"{PREFIX}{n}" for n in LS)  # the candidate stage, where the search has one
TESTED = ("top1", "top5", "top20", "top100", "ndcg@10", "recall@100")  # a table's exploratory family: rows x these
SAME_ACROSS_SEEDS = ("code_bits", "bytes_per_passage", "rescore_bytes_per_passage", "index_bytes", "num_passages",
                     "num_questions", "search", "dataset", "data_path", "checkpoint", "pooling", "search_batch_size")
AVERAGED = ("ms_per_query", "scanned_fraction")
BOTH = "seeds and questions"
QUESTIONS_ONLY = "questions only"


def stage_means(row: dict) -> dict[int, float]:
    """A table row's candidate stage (bprlab.eval.stage): {l: hamming@l mean} for every l the row swept, in
    increasing l; empty for a row that searches without the stage (float, PQ) or whose stage has no number."""
    means = {int(key[len(PREFIX):]): value for key, value in row.items()
             if key.startswith(PREFIX) and key[len(PREFIX):].isdigit()
             and isinstance(value, (int, float)) and not isinstance(value, bool)}
    return dict(sorted(means.items()))


def aggregate_row(method: str, units: list[dict], table_seeds: int | None = None) -> dict:
    """One row: mean of every accuracy metric over seeds with its interval (training noise and question sample
    together where the row has >= 2 seeds; else the question sample only, labelled), costs, each seed's numbers."""
    _check_same_evaluation(method, units)
    first = units[0]["metrics"]
    row: dict = {"method": method, "seeds": [u["seed"] for u in units], "runs": [u["run"] for u in units],
                 "run": units[0]["run"], "intervals": {}, "per_seed": {},
                 "trained": _trained(units, table_seeds)}
    for key in (*ANSWER_METRICS, *RELEVANCE_METRICS, *STAGE_METRICS):
        values = [u["metrics"].get(key) for u in units]
        if any(v is None for v in values):
            continue
        row[key], row["intervals"][key] = float(np.mean(values)), _interval(key, values, units)
    for key in SAME_ACROSS_SEEDS:
        row[key] = first.get(key)
    for key in AVERAGED:
        values = [u["metrics"].get(key) for u in units if u["metrics"].get(key) is not None]
        row[key] = float(np.mean(values)) if values else None
    accuracy = (*ANSWER_METRICS, *RELEVANCE_METRICS, *STAGE_METRICS)
    row["per_seed"] = {str(u["seed"]): {k: u["metrics"].get(k) for k in accuracy if u["metrics"].get(k) is not None}
                       for u in units}
    row["questions_sha256"], row["corpus_sha256"] = first.get("questions_sha256"), first.get("corpus_sha256")
    row["cluster_unit"] = _cluster_unit(units)
    return row


def _interval(key: str, values: list[float], units: list[dict]) -> dict:
    mean = float(np.mean(values))
    outcomes = _seed_outcomes(units, key)
    if outcomes is None:  # no per-question outcomes recorded: seeds alone
        interval = seed_interval(values)
        return {**interval.as_dict(), "over": "seeds" if len(values) > 1 else QUESTIONS_ONLY}
    judged = ~np.isnan(outcomes).any(axis=0)
    clusters = _clusters(units, judged)
    per_question = 100.0 * outcomes[:, judged].mean(axis=0)
    if len(values) > 1:
        low, high = combined(100.0 * outcomes[:, judged], clusters).interval()
        return {"mean": mean, "low": low, "high": high, "n": len(values), "over": BOTH}
    interval = cluster_bootstrap_interval(per_question, clusters=clusters)
    return {**interval.as_dict(), "mean": mean, "over": QUESTIONS_ONLY}


def compare_rows(rows: dict[str, list[dict]], baseline: str, table_seeds: int | None = None) -> dict[str, dict]:
    """{method: {metric: comparison}} for every row but the baseline and every tested metric both rows have (see
    `compare`), with Holm's correction over the table's comparisons: an exploratory family, labelled as such (the
    claims are tested as their own family, bprlab.report.claims)."""
    base_units = rows[baseline]
    found: list[tuple[str, str, dict]] = []
    for method, units in rows.items():
        if method == baseline:
            continue
        _check_comparable(method, units, baseline, base_units)
        for metric in TESTED:
            result = compare(metric, units, base_units, table_seeds)
            if result is not None:
                found.append((method, metric, result))
    testable = [r for _, _, r in found if r["p"] is not None]
    for result, adjusted in zip(testable, holm([r["p"] for r in testable])):
        result["p_holm"] = adjusted
        result["significant"] = adjusted < ALPHA
    out: dict[str, dict[str, dict]] = defaultdict(dict)
    for method, metric, result in found:
        out[method][metric] = result
    return dict(out)


def compare(metric: str, units: list[dict], base_units: list[dict], table_seeds: int | None = None,
            weight: float = 1.0, offset: float = 0.0) -> dict | None:
    """The row minus the baseline on `metric`, in points: effect; the combined interval and t test (training
    noise and question sample: bprlab.report.stats); beside it the t-interval over paired seeds and `ttest_rel`
    (training noise only), the cluster bootstrap interval and the exact sign-flip test (question sample only).
    `weight` and `offset` test a contrast instead, weight * row - baseline + offset (a closeness margin).
    Where both rows ran several seeds, only the seeds both ran are compared."""
    if any(u["metrics"].get(metric) is None for u in (*units, *base_units)):
        return None  # not evaluated (e.g. top100 beyond eval.top_k: the stored ranks stop at its largest k)
    row, base = _seed_outcomes(units, metric), _seed_outcomes(base_units, metric)
    if row is None or base is None:
        return None
    judged = ~np.isnan(row).any(axis=0) & ~np.isnan(base).any(axis=0)  # questions with outcomes on both sides
    if not judged.any():
        return None
    pairs = _paired_seeds(units, base_units)
    noise = _training_noise(units, base_units, table_seeds, pairs)
    if noise == "measured":
        row, base = row[[i for i, _ in pairs]], base[[j for _, j in pairs]]
    row, base = 100.0 * row[:, judged], 100.0 * base[:, judged]  # points
    clusters = _clusters(units, judged)
    x, y = row.mean(axis=0), base.mean(axis=0)  # (Q,) averaged over seeds
    d = weight * x - y + offset
    result = {"baseline_value": float(y.mean()), "value": float(x.mean()), "training_noise": noise,
              "questions": int(judged.sum()), "cluster_unit": _cluster_unit(units)}
    per_seed = weight * row - base + offset  # (S, Q) paired differences, points
    plain = weight == 1.0 and offset == 0.0  # a difference, not a closeness contrast
    try:
        both = combined(per_seed if noise == "measured" else d, clusters)
    except ValueError as exc:  # one cluster: nothing to estimate a variance from
        return {**result, "effect": float(d.mean()), "p": None, "ci": [None, None], "test": f"not estimable: {exc}",
                "clusters": 1}
    result.update(effect=both.effect, ci=list(both.interval()), se=both.se, df=both.df, var_seeds=both.var_seeds,
                  var_questions=both.var_questions, var_interaction=both.var_interaction, clusters=both.clusters)
    if plain:  # what the question sample says alone (a contrast's test needs only `combined`)
        result["ci_questions"] = _pair(cluster_bootstrap_interval(d, clusters=clusters))
        scale = row.shape[0] * base.shape[0] * (1 if metric.startswith(("top", PREFIX)) else 10 ** DIGITS)
        result["p_questions"] = sign_flip_test(d / 100.0, clusters, scale).as_dict()
    if noise == "measured":
        result["p"], result["test"] = both.p_two_sided(), "t, " + BOTH
        result["seed_pairs"] = len(pairs)
        interval = seed_interval(per_seed.mean(axis=1))
        result["ci_seeds"] = [interval.low, interval.high]
        if plain:
            result["p_seeds"] = paired_t_over_seeds(row.mean(axis=1), base.mean(axis=1))
    else:  # no training noise to measure (untrained rows), or one seed (not measured: labelled)
        flips = result.get("p_questions")
        result["p"] = flips["p"] if flips else both.p_two_sided()
        result["test"] = ("sign flips over clusters, " if flips else "t, ") + QUESTIONS_ONLY
    return result


def _pair(interval) -> list:
    return [interval.low, interval.high]


def _training_noise(units: list[dict], base_units: list[dict], table_seeds: int | None,
                    pairs: list[tuple[int, int]]) -> str:
    """measured (>= 2 seed pairs); none (both rows untrained: nothing to measure); one seed (not measured)."""
    if len(pairs) >= 2:
        return "measured"
    if table_seeds and table_seeds > 1 and len(units) == 1 and len(base_units) == 1:
        return "none"
    return "one seed"


def _trained(units: list[dict], table_seeds: int | None) -> bool | None:
    if table_seeds and table_seeds > 1:
        return len(units) > 1
    return None  # a one-seed table cannot tell


def _seed_outcomes(units: list[dict], metric: str) -> np.ndarray | None:
    vectors = [outcome_vector(u["outcomes"], metric) for u in units]
    if any(v is None for v in vectors):
        return None
    return np.stack(vectors)  # (seeds, Q)


def _clusters(units: list[dict], judged: np.ndarray) -> np.ndarray | None:
    labels = outcome_clusters(units[0]["outcomes"])
    return None if labels is None else np.asarray(labels, dtype=object)[judged]


def _cluster_unit(units: list[dict]) -> str:
    return units[0]["outcomes"].get("cluster_unit") or "question"


def _paired_seeds(units: list[dict], base_units: list[dict]) -> list[tuple[int, int]]:
    """Seeds paired by number where both rows ran it (the same data order and initialisation); a row trained
    once (untrained: one unit) pairs with every seed of the other; else by position."""
    if len(units) == 1 and len(base_units) >= 2:
        return [(0, j) for j in range(len(base_units))]
    if len(base_units) == 1 and len(units) >= 2:
        return [(i, 0) for i in range(len(units))]
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

