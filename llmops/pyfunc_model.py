"""MLflow models-from-code entry point of a registered llmops model: a LoRA adapter on a base model.

`llmops register` logs this file as the `python_model` of an `mlflow.pyfunc` model (MLflow copies it
into the model's artifacts; MLflow 3 refuses pickled python models by default). The adapter is the
model's `adapter` artifact; the base model is referenced by URI in the model config (`base_model`),
never copied. Loading needs the project installed (`airflow-llmops[train]`).

    model = mlflow.pyfunc.load_model("models:/llmops-assistant@champion")
    model.predict(["Question: Which team maintains Larkspur Beacon?\\nAnswer:"])   # -> ["Team ..."]

Generation is greedy, `max_new_tokens` (default 32) per prompt, stopping at the first new line.
"""

from __future__ import annotations

from typing import Any

import mlflow
from mlflow.pyfunc import PythonModel

from llmops.registry import TOKENIZER_FILES, local_model_path


class AdapterTextGenerator(PythonModel):
    """Text generation with a PEFT adapter on its base model."""

    def load_context(self, context) -> None:
        from pathlib import Path

        import torch
        from peft import PeftModel
        from transformers import AutoModelForCausalLM, AutoTokenizer

        config = context.model_config or {}
        adapter = context.artifacts["adapter"]
        base = local_model_path(config["base_model"])
        self.max_new_tokens = int(config.get("max_new_tokens", 32))
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        has_tokenizer = any((Path(adapter) / f).exists() for f in TOKENIZER_FILES)
        self.tokenizer = AutoTokenizer.from_pretrained(adapter if has_tokenizer else base)
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32 if self.device == "cpu" else "auto")
        self.model = PeftModel.from_pretrained(model, adapter).to(self.device).eval()

    @staticmethod
    def _prompts(model_input: Any) -> list[str]:
        try:
            import pandas as pd

            if isinstance(model_input, pd.DataFrame):
                column = "prompt" if "prompt" in model_input.columns else model_input.columns[0]
                return [str(x) for x in model_input[column].tolist()]
            if isinstance(model_input, pd.Series):
                return [str(x) for x in model_input.tolist()]
        except ImportError:  # pandas ships with mlflow; only a defensive fallback
            pass
        if isinstance(model_input, str):
            return [model_input]
        if isinstance(model_input, dict):
            value = model_input.get("prompt", next(iter(model_input.values())))
            return [value] if isinstance(value, str) else [str(x) for x in value]
        return [str(x) for x in model_input]

    # No type hints on predict: MLflow would derive (and enforce) a schema from them.
    def predict(self, context, model_input, params=None):
        import torch

        max_new = int((params or {}).get("max_new_tokens") or self.max_new_tokens)
        outputs = []
        for prompt in self._prompts(model_input):
            enc = self.tokenizer(prompt, return_tensors="pt").to(self.device)
            with torch.no_grad():
                out = self.model.generate(
                    **enc,
                    max_new_tokens=max_new,
                    do_sample=False,
                    pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
                )
            text = self.tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            outputs.append(text.strip().split("\n", 1)[0].strip())
        return outputs


mlflow.models.set_model(AdapterTextGenerator())
