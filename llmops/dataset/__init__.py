"""Versioned fine-tuning and evaluation datasets built from a corpus snapshot (`llmops dataset build`).

A regular package (this file): without it the wheel would not ship `llmops.dataset` (setup.py lists
packages with `find_packages`), while an editable install would still import it.
"""
