"""Benchmark and fault-injection tooling: an S3 sink, the naive baseline, the load driver."""
