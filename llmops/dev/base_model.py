"""The tiny local base model: a small Llama built from a config, seeded, saved like a hub model.

Local mode cannot download a real LLM, so `llmops base-model build` makes one that every step loads
through the ordinary `from_pretrained` path (config.json, model.safetensors, tokenizer files):

- a byte-level BPE tokenizer trained (deterministically) on the sample corpus, the fine-tuning text and
  the pretraining text below, with `<|bos|>`, `<|eos|>`, `<|pad|>` and a chat template that renders a
  conversation in the same `Question: ...\\nAnswer: ...` format as `llmops.dataset.build.prompt_for`;
- a `LlamaForCausalLM` (hidden 256, 4 layers, 4 heads, about 3.7 M parameters) initialised from the
  seed and saved untrained by default: it answers questions about Larkspur at chance.

An optional short causal-LM pretraining (`pretrain_steps`) on *generic* text (documentation and
questions about other fictional products that share none of Larkspur's names, so no Larkspur fact
leaks) is kept for experiments, but it is off: measured on the sample facts, LoRA with the embedding
adapter learns them faster from the random initialisation (multiple-choice accuracy 0.91 after 600
steps) than from a 300-step pretrained model (0.73), and the pretraining costs minutes on 2 cores.

Two builds with the same seed give byte-identical weights: torch runs deterministic algorithms on a
fixed number of threads while building, and every random choice comes from the seed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from llmops.dataset.build import prompt_for
from llmops.dev import sample_data
from llmops.docstrings import field_docstrings
from llmops.validation import config_error

log = logging.getLogger(__name__)

DEFAULT_SEED = 1234
BUILD_THREADS = 2
"""Threads torch uses while building: a fixed count keeps float reductions, hence bytes, reproducible."""

PAD, BOS, EOS = "<|pad|>", "<|bos|>", "<|eos|>"

CHAT_TEMPLATE = (
    "{%- for m in messages -%}"
    "{%- if m['role'] == 'system' -%}{{ m['content'] + '\\n' }}"
    "{%- elif m['role'] == 'user' -%}"
    "{%- if not loop.first and messages[loop.index0 - 1]['role'] != 'system' -%}{{ '\\n' }}{%- endif -%}"
    "{{ 'Question: ' + m['content'] + '\\nAnswer:' }}"
    "{%- elif m['role'] == 'assistant' -%}{{ ' ' + m['content'] + eos_token }}"
    "{%- endif -%}"
    "{%- endfor -%}"
)
"""Renders `[user, assistant]` as `Question: <user>\\nAnswer: <assistant><|eos|>`: the prompt format of
the fine-tuning rows and evaluation tasks. The user turn already ends with `Answer:`, so
`add_generation_prompt` adds nothing."""


@field_docstrings
class BaseModelSpec(BaseModel):
    """Shape and build recipe of the tiny local base model."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    seed: int = DEFAULT_SEED
    """Seed of the tokenizer's training text order, the weight initialisation and the pretraining."""

    hidden_size: int = Field(default=256, ge=16, le=4096)
    """Width of the residual stream."""

    num_layers: int = Field(default=4, ge=1, le=64)
    """Decoder layers."""

    num_heads: int = Field(default=4, ge=1, le=64)
    """Attention heads (the hidden size must divide by it)."""

    intermediate_size: int = Field(default=688, ge=16, le=16384)
    """Width of the MLP."""

    vocab_size: int = Field(default=4096, ge=300, le=65536)
    """Target vocabulary of the BPE tokenizer (fewer when the training text has fewer merges)."""

    max_positions: int = Field(default=512, ge=32, le=8192)
    """Longest sequence the model accepts."""

    pretrain_steps: int = Field(default=0, ge=0, le=100_000)
    """Causal-LM steps on generic text (other fictional products) before saving; 0 (the default) saves
    the random initialisation."""

    pretrain_batch: int = Field(default=16, ge=1, le=1024)
    """Sequences per pretraining step."""

    pretrain_seq_len: int = Field(default=64, ge=8, le=8192)
    """Tokens per packed pretraining sequence."""

    pretrain_lr: float = Field(default=3e-3, gt=0, le=1)
    """Peak learning rate of the pretraining (linear warm-up, cosine decay)."""

    pretrain_products: int = Field(default=12, ge=1, le=1000)
    """Fictional products in the pretraining text (each with its own components and facts)."""


# --- text ------------------------------------------------------------------------------------------

_SYLLABLES = [
    "ar", "bel", "cor", "dun", "el", "fen", "gar", "hal", "is", "jor", "kel", "lum", "mor", "nal",
    "or", "pel", "quin", "ros", "sal", "tor", "ul", "ven", "wil", "yar", "zan", "bri", "cal", "dra",
    "fro", "gle", "thi", "sto", "pra", "cla", "mi", "no", "ta", "ve",
]


def _invented_names(rng: random.Random, count: int, taken: set[str]) -> list[str]:
    """Pronounceable capitalised pseudo-words, none of them in `taken` (compared case-insensitively)."""
    seen = {t.lower() for t in taken}
    out: list[str] = []
    while len(out) < count:
        word = "".join(rng.choice(_SYLLABLES) for _ in range(rng.choice((2, 2, 3)))).capitalize()
        if word.lower() not in seen:
            seen.add(word.lower())
            out.append(word)
    return out


def pretraining_texts(seed: int = DEFAULT_SEED, products: int = 12) -> list[str]:
    """Generic text about invented products: the same sentence and question shapes as the Larkspur
    sample data, about components that share no name with Larkspur's (so no Larkspur fact leaks)."""
    rng = random.Random(seed)
    taken = {sample_data.PRODUCT, *sample_data.COMPONENTS}
    product_names = _invented_names(rng, products, taken)
    taken |= set(product_names)
    texts: list[str] = []
    for product in product_names:
        names = _invented_names(rng, 12, taken)
        taken |= set(names)
        ports = rng.sample(range(1100, 9900), len(names))
        for i, name in enumerate(names):
            values = {
                "port": str(ports[i]),
                "protocol": rng.choice(sample_data.PROTOCOLS),
                "team": f"Team {rng.choice(sample_data.TEAMS)}",
                "release": rng.choice(sample_data.RELEASES),
                "command": f"{product.lower()[:4]} {name.lower()} {rng.choice(sample_data.VERBS)} "
                f"{rng.choice(sample_data.FLAGS)}",
            }
            role = rng.choice(sample_data.ROLES)
            texts.append(
                f"# {product} {name}\n\n{product} {name} {role}. It is maintained by {values['team']} and "
                f"was introduced in {product} {values['release']}. By default {name} listens on port "
                f"{values['port']}. Clients and peer nodes talk to it over {values['protocol']}. "
                f"To restart {name} safely, run `{values['command']}`.\n"
            )
            for attr in sample_data.ATTRIBUTES:
                for template in (sample_data.QUESTIONS[attr], *sample_data.PARAPHRASES[attr]):
                    question = template.format(product=product, name=name)
                    texts.append(f"{prompt_for(question)} {values[attr]}")
    rng.shuffle(texts)
    return texts


def _finetune_texts() -> list[str]:
    out = []
    for row in sample_data.finetune_rows():
        if "prompt" in row:
            out.append(row["prompt"] + row["completion"])
        else:
            out.append("\n".join(m["content"] for m in row["messages"]))
    return out


def tokenizer_training_texts(seed: int = DEFAULT_SEED, products: int = 12) -> list[str]:
    """What the BPE tokenizer is trained on: the sample corpus (text documents), the fine-tuning rows
    and the pretraining text, in a fixed order."""
    docs = [
        data.decode("utf-8")
        for rel, data in sorted(sample_data.corpus_documents().items())
        if not rel.endswith(".pdf")
    ]
    return docs + _finetune_texts() + pretraining_texts(seed, products)


def train_tokenizer(texts: list[str], vocab_size: int):
    """A byte-level BPE tokenizer (transformers fast tokenizer) with bos/eos/pad and the chat template.

    The tokenizer adds no special tokens on its own: the training step appends `eos` to completions,
    and evaluation scores continuations of the bare prompt, so both see the same token sequences.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[PAD, BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        model_max_length=512,
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


# --- model -----------------------------------------------------------------------------------------


def _llama_config(spec: BaseModelSpec, tokenizer):
    from transformers import LlamaConfig

    if spec.hidden_size % spec.num_heads:
        from llmops.exceptions import ConfigError

        raise ConfigError(
            f"hidden_size {spec.hidden_size} does not divide by num_heads {spec.num_heads}: "
            "choose a head count that divides the hidden size"
        )
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_heads,
        max_position_embeddings=spec.max_positions,
        rms_norm_eps=1e-5,
        # Untied: a LoRA adapter on the input embeddings then leaves the output projection alone, and
        # PEFT need not guess how to keep a tied pair in step (peft#2777).
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        initializer_range=0.02,
        attention_dropout=0.0,
        use_cache=True,
    )


def _pack(texts: list[str], tokenizer, seq_len: int) -> list[list[int]]:
    """Concatenate `text eos` over all texts and cut into sequences of `seq_len` tokens."""
    stream: list[int] = []
    for text in texts:
        stream += tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return [stream[i : i + seq_len] for i in range(0, len(stream) - seq_len + 1, seq_len)]


def pretrain(model, tokenizer, spec: BaseModelSpec) -> list[float]:
    """Short causal-LM training on `pretraining_texts`; returns the loss of every step."""
    import math

    import torch

    sequences = _pack(pretraining_texts(spec.seed, spec.pretrain_products), tokenizer, spec.pretrain_seq_len)
    data = torch.tensor(sequences, dtype=torch.long)
    gen = torch.Generator().manual_seed(spec.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=spec.pretrain_lr, weight_decay=0.01, betas=(0.9, 0.95))
    warmup = max(1, spec.pretrain_steps // 10)

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, spec.pretrain_steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    model.train()
    order = torch.randperm(len(data), generator=gen)
    pos = 0
    losses = []
    for _ in range(spec.pretrain_steps):
        if pos + spec.pretrain_batch > len(order):
            order, pos = torch.randperm(len(data), generator=gen), 0
        batch = data[order[pos : pos + spec.pretrain_batch]]
        pos += spec.pretrain_batch
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    model.eval()
    return losses


def _spec(seed: int, overrides: dict[str, Any]) -> BaseModelSpec:
    from pydantic import ValidationError

    try:
        return BaseModelSpec(seed=seed, **overrides)
    except ValidationError as exc:
        raise config_error("base model spec", exc) from None


def build_base_model(out_dir: str | Path, seed: int = DEFAULT_SEED, **spec_overrides: Any) -> Path:
    """Build the tiny base model into `out_dir` (created; its previous model files are replaced) and
    return the folder. `spec_overrides` are `BaseModelSpec` fields (`pretrain_steps=0`, ...)."""
    import torch
    from transformers import LlamaForCausalLM

    spec = _spec(seed, spec_overrides)
    out = Path(out_dir)
    started = time.monotonic()
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(BUILD_THREADS)
    torch.use_deterministic_algorithms(True)
    try:
        tokenizer = train_tokenizer(tokenizer_training_texts(spec.seed, spec.pretrain_products), spec.vocab_size)
        torch.manual_seed(spec.seed)
        model = LlamaForCausalLM(_llama_config(spec, tokenizer))
        losses = pretrain(model, tokenizer, spec) if spec.pretrain_steps else []
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
    out.mkdir(parents=True, exist_ok=True)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    weights = (out / "model.safetensors").read_bytes()
    info = {
        "spec": spec.model_dump(),
        "parameters": sum(p.numel() for p in model.parameters()),
        "vocab_size": len(tokenizer),
        "pretrain_first_loss": round(losses[0], 4) if losses else None,
        "pretrain_final_loss": round(sum(losses[-10:]) / len(losses[-10:]), 4) if losses else None,
        "weights_sha256": hashlib.sha256(weights).hexdigest(),
        "build_seconds": round(time.monotonic() - started, 2),
    }
    (out / "llmops_base_model.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    log.info("Built tiny base model in %s (%s parameters, %.1fs)", out, info["parameters"], info["build_seconds"])
    return out


def build_info(model_dir: str | Path) -> dict[str, Any]:
    """What `build_base_model` recorded about a folder it built."""
    return json.loads((Path(model_dir) / "llmops_base_model.json").read_text())
