"""Benchmarks behind `llmops bench ...`, one module per area; each prints JSON figures."""
