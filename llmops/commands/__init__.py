"""CLI subcommands, one module per domain; each has `register(subparsers)` and may have
`register_bench(bench_subparsers)`. Handlers import heavy libraries lazily."""
