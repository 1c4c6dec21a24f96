"""Speed, memory and accuracy benchmarks; run each as ``python -m benchmarks.NAME`` (results in BENCHMARKS.md)."""
