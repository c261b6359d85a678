"""Fine-tuning: the LoRA training loop, checkpoints, launch (the tiny base model is `llmops.dev.base_model`).

Heavy libraries (torch, transformers, peft, mlflow) are imported inside functions, so importing this
package (the CLI does, to register its subcommands) stays cheap.
"""
