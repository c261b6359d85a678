"""Evaluation and the promotion gate.

- `harness`: run lm-eval-harness (the project's local domain tasks in `tasks/`, or standard task names)
  on a base model, an adapter or a registered model version; keep per-sample scores beside the
  aggregate metrics and their standard errors; log both to MLflow.
- `stats`: the paired tests (McNemar / exact binomial, seeded paired bootstrap) and Holm's correction.
- `gate`: the gate policy and the decision, with a JSON and a Markdown report.
"""
