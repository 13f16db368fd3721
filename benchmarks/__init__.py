"""Benchmark helpers (the PyTorch reference lives here; torch is optional)."""
