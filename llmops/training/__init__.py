"""Fine-tuning: the tiny local base model, the LoRA training loop, checkpoints, benchmarks.

Heavy libraries (torch, transformers, peft, mlflow) are imported inside functions, so importing this
package (the CLI does, to register its subcommands) stays cheap.
"""
