"""Reporting: a table's rows over seeds with intervals and tests, the claims and their verdicts, plots, and
RESULTS.md / ABLATIONS.md (`bprlab report`; the summaries `bprlab reproduce` writes)."""
