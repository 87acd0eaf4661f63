"""The evaluate stage: the test questions searched, top-k and qrels metrics scored, per-question outcomes kept."""
