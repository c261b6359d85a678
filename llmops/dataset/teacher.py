"""The `teacher` generator: grounded question/answer items from an OpenAI-compatible chat endpoint (RAFT style).

For each chunk the teacher sees the chunk (the oracle) among distractor chunks (its nearest chunks of
other documents in the embedding space, the same vectors the vector index serves), and is asked for
questions answerable from the oracle alone, each with two paraphrases, a short answer and a verbatim
quote of its evidence. What comes back is checked, never trusted:

- a response that is not the asked-for JSON is quarantined for the whole chunk (`malformed response`);
- an item whose quote is not in the oracle chunk (whitespace-normalised), whose answer is not in its
  quote, or that lacks a field, is quarantined with that reason.

Quarantined candidates are cached like items, so a re-run does not pay for them again.

Endpoint, model and key: `--teacher-url`/`LLMOPS_TEACHER_BASE_URL` (e.g. `http://vllm:8000/v1`),
`--teacher-model`/`LLMOPS_TEACHER_MODEL`, and the key from the environment variable named by
`--teacher-key-env` (default `LLMOPS_TEACHER_API_KEY`): in a pod a `secretKeyRef`, in Airflow the
operator resolves a connection into it. The key is never part of the config, the cache key or a message.

Requests run in a bounded thread pool (`max_workers`); a 429, a 5xx, a timeout or a refused connection
is retried with exponential backoff (`backoff_s * 2**attempt`, `retries` times), then the build fails
with the chunks generated so far cached. Any other HTTP error (401, 404, ...) fails at once.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from llmops.dataset.generators import Chunk, Context, Generated, Item, item_id, normalise
from llmops.exceptions import ConfigError, DatasetError

log = logging.getLogger(__name__)

PROMPT_VERSION = "1"
RETRYABLE = {408, 409, 425, 429, 500, 502, 503, 504}
MAX_ANSWER_CHARS = 200

SYSTEM = (
    "You write exam questions about technical documentation. You are given several documents; one of "
    "them is the oracle. Write questions that the oracle document alone answers. Reply with JSON only, "
    'in this shape: {"items": [{"question": "...", "paraphrases": ["...", "..."], "answer": "...", '
    '"quote": "..."}]}. "answer" is short (a value, a name, a command, a few words) and appears word for '
    'word in "quote"; "quote" is copied word for word from the oracle document; "paraphrases" ask the '
    "same question in other words."
)


def _ws(text: str) -> str:
    return " ".join(text.split())


def build_messages(chunk: Chunk, distractors: tuple[Chunk, ...], n: int) -> list[dict[str, str]]:
    """The chat request: the oracle among the distractors (oracle first: deterministic, and the id says which)."""
    docs = [("D1", chunk)] + [(f"D{i + 2}", d) for i, d in enumerate(distractors)]
    body = "\n\n".join(f'<document id="{did}">\n{c.text}\n</document>' for did, c in docs)
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"{body}\n\nOracle document: D1\nWrite {n} questions about D1."},
    ]


class TeacherGenerator:
    """Items written by a teacher model behind an OpenAI-compatible `/chat/completions` endpoint."""

    name = "teacher"
    version = "1"
    needs_distractors = True

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        max_workers: int = 4,
        questions_per_chunk: int = 3,
        temperature: float = 0.0,
        max_tokens: int = 1024,
        timeout_s: float = 120.0,
        retries: int = 4,
        backoff_s: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not re.match(r"^https?://", base_url or ""):
            raise ConfigError(
                f"teacher base URL {base_url!r}: give the OpenAI-compatible API root, e.g. http://vllm:8000/v1 "
                "(--teacher-url or LLMOPS_TEACHER_BASE_URL)"
            )
        if not model:
            raise ConfigError("teacher model is empty: give --teacher-model or LLMOPS_TEACHER_MODEL")
        if max_workers < 1 or retries < 0 or questions_per_chunk < 1:
            raise ConfigError(
                f"teacher max_workers={max_workers}, retries={retries}, questions_per_chunk={questions_per_chunk}: "
                "workers and questions must be at least 1, retries at least 0"
            )
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._api_key = api_key
        self.max_workers = max_workers
        self.questions_per_chunk = questions_per_chunk
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self._sleep = sleep

    @classmethod
    def from_env(cls, base_url: str | None = None, model: str | None = None,
                 key_env: str = "LLMOPS_TEACHER_API_KEY", **options: Any) -> TeacherGenerator:
        """Endpoint and model from the arguments or the environment; the key from the variable `key_env`."""
        from llmops.settings import env_value

        base_url = base_url or env_value("teacher_base_url") or ""
        model = model or env_value("teacher_model") or ""
        key = os.environ.get(key_env) or None
        if key is None:
            log.warning("no API key in $%s: calling %s without authentication", key_env, base_url)
        return cls(base_url=base_url, model=model, api_key=key, **options)

    def config(self) -> dict[str, Any]:
        # The endpoint's address and the key are not part of the output's identity; the model is.
        return {"model": self.model, "questions_per_chunk": self.questions_per_chunk,
                "temperature": self.temperature, "max_tokens": self.max_tokens, "prompt_version": PROMPT_VERSION}

    # --- HTTP ----------------------------------------------------------------------------------------

    def _post(self, payload: dict[str, Any]) -> tuple[dict | None, str | None, int]:
        """(response JSON, None) or (None, why it is malformed); the number of attempts made."""
        url = f"{self.base_url}/chat/completions"
        data = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                delay = self.backoff_s * 2 ** (attempt - 1)
                log.warning("teacher %s: %s; retry %d/%d in %.1fs", url, last, attempt, self.retries, delay)
                self._sleep(delay)
            req = urllib.request.Request(url, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                    body = resp.read()
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code} {exc.reason}"
                if exc.code in RETRYABLE:
                    continue
                raise DatasetError(
                    f"teacher endpoint {url} answered {last} ({_server_message(exc)}): check the URL, the model "
                    f"name {self.model!r}, the API key's variable, and that the prompt fits the model's context"
                ) from None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                last = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
                continue
            try:
                return json.loads(body), None, attempt + 1
            except json.JSONDecodeError:
                return None, "malformed response: the body is not JSON", attempt + 1
        raise DatasetError(
            f"teacher endpoint {url} failed {self.retries + 1} times (last: {last}): the chunks generated so far "
            "are cached, re-run the build when the endpoint is back"
        )

    # --- generation ----------------------------------------------------------------------------------

    def generate(self, chunk: Chunk, context: Context) -> Generated:
        payload = {
            "model": self.model,
            "messages": build_messages(chunk, context.distractors, self.questions_per_chunk),
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }
        response, error, attempts = self._post(payload)
        out = Generated(calls=attempts)
        if error is None:
            content, error = _content(response)
        if error is None:
            candidates, error = _candidates(content)
        if error is not None:
            out.quarantined.append({"reason": error})
            return out
        oracle = _ws(chunk.text)
        seen: set[str] = set()
        for i, cand in enumerate(candidates):
            item, reason = self._check(cand, chunk, oracle, context)
            if reason is not None:
                out.quarantined.append({"reason": reason, "candidate": i,
                                        "question": cand.get("question") if isinstance(cand, dict) else None})
            elif item.item_id not in seen:
                seen.add(item.item_id)
                out.items.append(item)
        return out

    def _check(self, cand: Any, chunk: Chunk, oracle: str, context: Context) -> tuple[Item | None, str | None]:
        if not isinstance(cand, dict):
            return None, "malformed item: not a JSON object"
        question, answer, quote = cand.get("question"), cand.get("answer"), cand.get("quote")
        paraphrases = cand.get("paraphrases", [])
        for field, value in (("question", question), ("answer", answer), ("quote", quote)):
            if not isinstance(value, str) or not value.strip():
                return None, f"malformed item: {field} missing or not a string"
        if not isinstance(paraphrases, list) or not all(isinstance(p, str) and p.strip() for p in paraphrases):
            return None, "malformed item: paraphrases is not a list of strings"
        answer, quote = _ws(answer), _ws(quote)
        if len(answer) > MAX_ANSWER_CHARS:
            return None, f"answer longer than {MAX_ANSWER_CHARS} characters"
        if quote not in oracle:
            return None, "quote not in chunk: the evidence is not a verbatim part of the oracle chunk"
        if normalise(answer) not in normalise(quote):
            return None, "answer not in quote: the answer is not supported by its own evidence"
        questions = list(dict.fromkeys(_ws(q) for q in [question, *paraphrases]))
        return Item(
            item_id=item_id("teacher", normalise(questions[0])), kind="qa", answer_kind="qa", questions=questions,
            answer=answer, evidence=quote,
            extra={"distractor_chunk_ids": [d.chunk_id for d in context.distractors], "model": self.model},
        ), None


def _server_message(exc: urllib.error.HTTPError) -> str:
    """The error an OpenAI-compatible server gives in its body (`{"error": {"message": ...}}`), shortened."""
    try:
        body = exc.read()[:2000].decode(errors="replace")
    except OSError:
        return "no body"
    try:
        error = json.loads(body).get("error", body)
        message = error.get("message", error) if isinstance(error, dict) else error
    except (json.JSONDecodeError, AttributeError):
        message = body
    return " ".join(str(message).split())[:300] or "empty body"


def _content(response: Any) -> tuple[str | None, str | None]:
    try:
        content = response["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return None, "malformed response: no choices[0].message.content"
    if not isinstance(content, str):
        return None, "malformed response: the message content is not text"
    return content, None


def _candidates(content: str) -> tuple[list | None, str | None]:
    text = content.strip()
    fenced = re.match(r"^```(?:json)?\s*(.*?)\s*```$", text, re.S)
    if fenced:
        text = fenced.group(1)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"malformed response: the content is not JSON ({exc.msg})"
    if not isinstance(obj, dict) or not isinstance(obj.get("items"), list):
        return None, 'malformed response: expected {"items": [...]}'
    return obj["items"], None
