"""Numenta Anomaly Benchmark: scoring, a streaming harness and the `vigil eval nab` command."""
