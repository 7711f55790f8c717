"""Evaluation: metrics, eval engines, robustness transforms, reports, benchmarks, explanations."""
