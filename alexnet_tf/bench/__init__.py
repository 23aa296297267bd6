"""Benchmarks: model throughput and input-pipeline rate."""
