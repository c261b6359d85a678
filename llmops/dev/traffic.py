"""Sample inference traffic for the demo and the tests (`llmops sample-traffic`).

- **in-domain**: questions about the fictional product Larkspur drawn from the same generator as the
  fine-tuning prompts (`llmops.dev.sample_data`: a fact, then its canonical question or a paraphrase, sent as
  a `prompt_for` prompt or as a bare chat question in the same proportions as `finetune_rows`), sampled
  with replacement under another seed. Against `finetune.jsonl` as reference it must not be flagged.
- **out-of-domain**: cooking questions from the project's own templates (a second fictional domain with
  no overlap with Larkspur), in the same two formats, so only the subject changes. It must be flagged.

Records follow the traffic record format of `llmops.drift.inputs` (`timestamp`, `prompt`, `completion`,
`model`, `request_id`), timestamps evenly spread over `span_hours` ending at `end`.
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta
from typing import Literal

from llmops.dataset.build import prompt_for
from llmops.dev import sample_data as sd

Kind = Literal["in-domain", "out-of-domain"]
SERVED_MODEL = "llmops-assistant"

DISHES = [
    "risotto", "lasagna", "banana bread", "chicken curry", "sourdough", "ratatouille", "pad thai",
    "shakshuka", "paella", "minestrone", "apple pie", "beef stew", "falafel", "carbonara", "gazpacho",
    "pancakes", "lentil soup", "focaccia", "tiramisu", "fish tacos",
]
INGREDIENTS = [
    "butter", "buttermilk", "eggs", "heavy cream", "yeast", "fresh basil", "brown sugar", "saffron",
    "coconut milk", "parmesan", "baking soda", "tahini", "white wine", "cornstarch", "shallots",
    "smoked paprika", "honey", "ricotta",
]
VEGETABLES = ["carrots", "brussels sprouts", "sweet potatoes", "cauliflower", "beets", "zucchini", "parsnips"]
TEMPERATURES = ["180", "200", "220", "160"]
COOKING_QUESTIONS = [
    ("How long should I roast {veg} at {temp} degrees?", "About {minutes} minutes, turning them once."),
    ("What can I use instead of {ingredient} in {dish}?", "Try {other} in the same amount."),
    ("How do I keep {dish} from getting soggy?", "Let it rest uncovered for {minutes} minutes."),
    ("Can I freeze leftover {dish}?", "Yes, for up to {months} months in an airtight box."),
    ("Why did my {dish} turn out dry?", "It was probably cooked {minutes} minutes too long."),
    ("How much {ingredient} goes into a {dish} for four people?", "Roughly {grams} grams."),
    ("What side dish goes well with {dish}?", "Roasted {veg} work well."),
    ("Is {dish} better made a day ahead?", "Yes, the flavours settle overnight."),
]


def _larkspur_row(rng: random.Random, facts: list[sd.Fact]) -> tuple[str, str]:
    fact = rng.choice(facts)
    # finetune_rows has, per fact, three prompt/completion rows (question + 2 paraphrases) and one chat
    # row with the canonical question: draw the same four shapes with equal weight.
    shape = rng.randrange(4)
    if shape == 3:
        return fact.question, fact.answer
    templates = [sd.QUESTIONS[fact.attribute], *sd.PARAPHRASES[fact.attribute]]
    question = templates[shape].format(product=sd.PRODUCT, name=fact.component)
    return prompt_for(question), f" {fact.answer}"


def _cooking_row(rng: random.Random, _facts: list[sd.Fact]) -> tuple[str, str]:
    question, answer = rng.choice(COOKING_QUESTIONS)
    values = {
        "dish": rng.choice(DISHES),
        "ingredient": rng.choice(INGREDIENTS),
        "other": rng.choice(INGREDIENTS),
        "veg": rng.choice(VEGETABLES),
        "temp": rng.choice(TEMPERATURES),
        "minutes": rng.choice([10, 15, 20, 25, 35, 45]),
        "months": rng.choice([2, 3, 6]),
        "grams": rng.choice([50, 100, 150, 250, 400]),
    }
    q, a = question.format(**values), answer.format(**values)
    if rng.randrange(4) == 3:
        return q, a
    return prompt_for(q), f" {a}"


def sample_traffic(kind: Kind, n: int, seed: int, end: datetime, span_hours: float = 1.0) -> list[dict]:
    """`n` traffic records of one kind, deterministic for a given seed and end time."""
    if kind not in ("in-domain", "out-of-domain"):
        raise ValueError(f"kind must be 'in-domain' or 'out-of-domain', got {kind!r}")
    # A seed space of its own: in-domain traffic must not replay the fine-tuning set's own shuffle.
    rng = random.Random(f"llmops-traffic:{kind}:{seed}")
    make = _larkspur_row if kind == "in-domain" else _cooking_row
    facts = sd.facts()
    step = timedelta(hours=span_hours) / max(n, 1)
    rows = []
    for i in range(n):
        prompt, completion = make(rng, facts)
        ts = end - step * (n - 1 - i)
        rows.append(
            {
                "timestamp": ts.isoformat().replace("+00:00", "Z"),
                "prompt": prompt,
                "completion": completion,
                "model": SERVED_MODEL,
                "request_id": f"{kind}-{seed}-{i:06d}",
            }
        )
    return rows


def to_jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows)
