"""Drift monitoring: is recent inference traffic still like the data the model was trained on?

- `inputs`: read either side of a comparison (traffic JSONL/Parquet, fine-tuning rows, a preprocessing
  output's snapshot) as texts, and embed them;
- `coverage`: the verdict: the share of traffic farther from the reference than the reference's own
  documents are from each other, tested against random document splits of the reference, with an
  effect-size floor; and the grouping of the uncovered traffic;
- `stats`: the descriptive two-sample tests (MMD with an RBF kernel, a cross-validated ridge domain
  classifier), both evaluated on the same label permutations and combined by min-P;
- `steer`: the uncovered groups' nearest corpus chunks (the index a preprocessing output names) and the
  `steer.json` the next dataset build reads;
- `signals`: cheap side signals (prompt length, unknown tokens, out-of-vocabulary words);
- `report`: `report.json`, `report.html` with plots, and the MLflow run;
- `monitor`: one drift check end to end (what `llmops drift` runs).

The demo's sample traffic and the calibration benchmark are development tools: `llmops.dev.traffic`,
`llmops.dev.bench.drift`.

Nothing here imports Airflow; the drift DAG runs `llmops drift` as a step.
"""
