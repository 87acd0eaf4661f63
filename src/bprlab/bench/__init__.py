"""Benchmarks that print ratios taken in one run (never timed tests): `bprlab bench search`."""
