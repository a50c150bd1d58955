"""Benchmarks: HTTP throughput and latency next to the in-process ceiling, in one run."""
