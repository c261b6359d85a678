"""The promotion gate: decide from paired statistics whether a candidate replaces the champion.

For every (task, metric) of the policy:

1. **floor**: the candidate's value must reach the metric's `floor` (the worst acceptable value);
2. **difference**: `d = mean(candidate - champion)` over the samples both were evaluated on (paired by
   sample id), with a seeded paired-bootstrap confidence interval at the metric's confidence level;
3. **tests** (two-sided): p-value of `d = 0` (McNemar / exact binomial for 0/1 scores, the bootstrap
   otherwise) and, when the metric allows a regression `delta > 0`, p-value of `d = -delta` (bootstrap);
4. **Holm**: both families of p-values are Holm-adjusted across the policy's metrics, and each adjusted
   p-value is compared with its own metric's alpha = 1 - confidence.

A metric is *worse* when `d < -delta` significantly, *better* when `d > 0` significantly, else *not
significant*. The candidate is promoted when every floor holds, no metric is worse, every metric marked
`must_improve` is better, and at least one is better, or the policy sets `allow_equal`. Without a
champion, the floors alone decide.

A rule may look at one **slice** of a domain task's samples (`slice: new`, items from documents new in
the candidate's dataset; `slice: retained`, the others): "significantly better on `new`
(`must_improve: true`), not significantly worse on `retained`" is two rules. Both evaluations must be of
the same data (the fine-tune DAG evaluates the champion on the candidate's evaluation split).

Differences are oriented so that positive means better (a lower-is-better metric is negated).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from llmops import storage
from llmops.evaluation import stats
from llmops.evaluation.results import Evaluation, load_evaluation, metric_key
from llmops.exceptions import ConfigError, EvaluationError
from llmops.validation import config_error

Verdict = Literal[
    "better", "worse", "not significant", "within allowed regression", "below floor", "meets floor", "no samples"
]


class MetricRule(BaseModel):
    """What one metric of one task must satisfy."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    task: str
    """lm-eval task name (e.g. `corpus_mc`)."""

    metric: str
    """Metric name as lm-eval reports it (`acc`, `rougeL`; `metric,filter` for a non-default filter)."""

    floor: float | None = None
    """Worst acceptable candidate value (a minimum; a maximum for lower-is-better metrics). None: no floor."""

    max_regression: float = Field(default=0.0, ge=0.0)
    """Largest drop against the champion that is tolerated (in the metric's units); only a drop
    significantly larger than this rejects the candidate."""

    confidence: float | None = Field(default=None, gt=0.5, lt=1.0)
    """Confidence level of this metric's interval and tests (alpha = 1 - confidence). Default: the policy's."""

    higher_is_better: bool | None = None
    """Direction of the metric. Default: what lm-eval reports for it."""

    slice: Literal["new", "retained"] | None = None
    """Only the samples of this slice of a domain task (`corpus_mc`, `corpus_qa`): `new` (items from
    documents the previous dataset version did not have) or `retained`. None: every sample."""

    must_improve: bool = False
    """The candidate must be significantly better on this metric, else it is rejected (e.g. on the `new`
    slice: a retrain must have learnt what it was retrained for)."""

    @property
    def key(self) -> str:
        return metric_key(self.metric)

    @property
    def label(self) -> str:
        return f"{self.task}[{self.slice}]/{self.metric}" if self.slice else f"{self.task}/{self.metric}"


class GatePolicy(BaseModel):
    """A gate policy file (YAML or JSON)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    confidence: float = Field(default=0.95, gt=0.5, lt=1.0)
    """Default confidence level of every metric."""

    allow_equal: bool = False
    """Promote a candidate that is not significantly better on any metric (but meets the floors and is
    not significantly worse). False: the candidate must show a significant gain somewhere."""

    bootstrap_iterations: int = Field(default=10_000, ge=1_000, le=1_000_000)
    """Paired bootstrap resamples per metric."""

    seed: int = 20261123
    """Seed of the bootstrap (each metric derives its own stream from it): same inputs, same report."""

    exact_below: int = Field(default=25, ge=0)
    """Use the exact binomial test instead of McNemar's chi-square below this many discordant pairs."""

    metrics: list[MetricRule] = Field(min_length=1)
    """The metrics that decide."""

    @field_validator("metrics")
    @classmethod
    def _unique(cls, rules: list[MetricRule]) -> list[MetricRule]:
        seen = set()
        for r in rules:
            if (r.task, r.key, r.slice) in seen:
                raise ValueError(f"{r.label} is listed twice")
            seen.add((r.task, r.key, r.slice))
        return rules

    def confidence_of(self, rule: MetricRule) -> float:
        return rule.confidence if rule.confidence is not None else self.confidence


def load_policy(uri: str) -> GatePolicy:
    """Read and validate a gate policy; errors name the field, the bad value and the fix. A relative
    `examples/...` path that does not exist from here is the packaged example (`llmops.resources`)."""
    from llmops.resources import resolve

    storage.check_uri(uri, "--policy")
    uri = resolve(uri)
    try:
        data = yaml.safe_load(storage.read_text(uri))
    except FileNotFoundError:
        raise ConfigError(f"gate policy {uri} does not exist (see examples/local/gate.yaml)") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"gate policy {uri} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"gate policy {uri} must be a mapping with a `metrics` list")
    try:
        return GatePolicy(**data)
    except ValidationError as exc:
        raise config_error(f"gate policy {uri}", exc) from None


@dataclass
class MetricDecision:
    task: str
    metric: str
    n: int
    slice: str | None
    must_improve: bool
    candidate: float | None
    champion: float | None
    difference: float | None
    ci_low: float | None
    ci_high: float | None
    confidence: float
    floor: float | None
    max_regression: float
    higher_is_better: bool
    p_value: float | None = None
    """p-value of "no difference" (raw)."""
    p_value_holm: float | None = None
    p_regression: float | None = None
    """p-value of "difference = -max_regression" (raw; equals p_value when max_regression is 0)."""
    p_regression_holm: float | None = None
    method: str = ""
    verdict: Verdict = "not significant"
    reason: str = ""
    floor_ok: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of_rule(
        cls, rule: MetricRule, *, n: int, candidate: float | None, confidence: float, higher_is_better: bool,
        **rest: Any,
    ) -> MetricDecision:
        """The decision on `rule` before any comparison with the champion (champion, difference and interval
        unset); `rest` sets the other fields."""
        return cls(
            task=rule.task,
            metric=rule.metric,
            n=n,
            slice=rule.slice,
            must_improve=rule.must_improve,
            candidate=candidate,
            champion=None,
            difference=None,
            ci_low=None,
            ci_high=None,
            confidence=confidence,
            floor=rule.floor,
            max_regression=rule.max_regression,
            higher_is_better=higher_is_better,
            **rest,
        )

    @property
    def label(self) -> str:
        return f"{self.task}[{self.slice}]/{self.metric}" if self.slice else f"{self.task}/{self.metric}"


@dataclass
class GateReport:
    passed: bool
    reasons: list[str]
    metrics: list[MetricDecision]
    candidate: dict[str, Any]
    baseline: dict[str, Any] | None
    policy: dict[str, Any]

    @property
    def decision(self) -> str:
        return "promote" if self.passed else "reject"

    def to_dict(self) -> dict[str, Any]:
        return {
            "decision": self.decision,
            "passed": self.passed,
            "reasons": self.reasons,
            "candidate": self.candidate,
            "baseline": self.baseline,
            "policy": self.policy,
            "metrics": [asdict(m) for m in self.metrics],
        }

    def to_markdown(self) -> str:
        return report_markdown(self.to_dict())


def _fmt(x: float | None, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _fmt_p(p: float | None) -> str:
    if p is None:
        return "–"
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


def _p_text(p: float) -> str:
    return "p<0.0001" if p < 1e-4 else f"p={p:.4f}"


def report_markdown(report: dict[str, Any]) -> str:
    """The gate report as Markdown: a verdict line, the reasons and one table row per metric."""
    verdict = "PROMOTE" if report["passed"] else "REJECT"
    baseline = report.get("baseline")
    lines = [
        f"## Gate: {verdict}",
        "",
        f"- candidate: `{report['candidate'].get('uri')}` ({report['candidate'].get('label', '')})",
        f"- champion: `{baseline['uri']}` ({baseline.get('label', '')})" if baseline else "- champion: none (floors only)",
        "",
        *[f"- {r}" for r in report["reasons"]],
        "",
        "| metric | candidate | champion | difference [CI] | p-value (Holm) | verdict | reason |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in report["metrics"]:
        if m["difference"] is None:
            diff = "–"
        else:
            diff = f"{m['difference']:+.3f} [{m['ci_low']:+.3f}, {m['ci_high']:+.3f}] ({m['confidence']:.0%})"
        shown_p = m["p_regression_holm"] if m["verdict"] == "worse" else m["p_value_holm"]
        label = f"{m['task']}[{m['slice']}]/{m['metric']}" if m.get("slice") else f"{m['task']}/{m['metric']}"
        lines.append(
            f"| {label} | {_fmt(m['candidate'])} | {_fmt(m['champion'])} | {diff} | "
            f"{_fmt_p(shown_p)} | {m['verdict']} | {m['reason']} |"
        )
    return "\n".join(lines) + "\n"


def _paired(candidate: Evaluation, champion: Evaluation, rule: MetricRule) -> tuple[np.ndarray, np.ndarray, list[str]]:
    cand_task = candidate.load_scores(rule.task)
    champ_task = champion.load_scores(rule.task)
    if cand_task.data_sha256 and champ_task.data_sha256 and cand_task.data_sha256 != champ_task.data_sha256:
        raise EvaluationError(
            f"{rule.task}: candidate and champion were evaluated on different data "
            f"(sha256 {cand_task.data_sha256[:12]} vs {champ_task.data_sha256[:12]}); evaluate the champion "
            f"on the candidate's dataset (llmops evaluate --dataset {cand_task.dataset_uri or '<dataset_uri>'})"
        )
    cand = cand_task.scores.get(rule.key)
    champ = champ_task.scores.get(rule.key)
    for name, ev, scores in (("candidate", candidate, cand), ("champion", champion, champ)):
        if scores is None:
            have = sorted(ev.tasks[rule.task].scores)
            raise EvaluationError(
                f"{rule.label}: the {name} evaluation {ev.uri} has no per-sample scores for {rule.key} "
                f"(it has: {', '.join(have) or 'none'})"
            )
    if rule.slice:
        in_slice = {sid for sid, name in cand_task.sample_slices.items() if name == rule.slice}
        if not cand_task.sample_slices:
            raise EvaluationError(
                f"{rule.label}: the candidate evaluation {candidate.uri} has no slices for {rule.task} "
                "(slices come with the domain tasks evaluated on a dataset: llmops evaluate --dataset)"
            )
        cand = {k: v for k, v in cand.items() if k in in_slice}
        champ = {k: v for k, v in champ.items() if k in in_slice}
        if not cand:
            raise EvaluationError(
                f"{rule.label}: the candidate's evaluation has no sample in slice {rule.slice!r}; "
                "drop the rule or evaluate on a dataset with such items"
            )
    ids = sorted(set(cand) & set(champ))
    if set(cand) != set(champ):
        raise EvaluationError(
            f"{rule.task}: candidate and champion were evaluated on different samples "
            f"({len(cand)} vs {len(champ)} samples, {len(ids)} shared); evaluate both with the same --limit"
        )
    try:
        a = np.array([float(cand[i]) for i in ids])
        b = np.array([float(champ[i]) for i in ids])
    except (TypeError, ValueError):
        raise EvaluationError(
            f"{rule.label}: per-sample scores are not numbers (lm-eval aggregates this metric at corpus "
            "level); gate on a metric with per-sample scores"
        ) from None
    return a, b, ids


def _direction(rule: MetricRule, candidate: Evaluation) -> bool:
    if rule.higher_is_better is not None:
        return rule.higher_is_better
    metric = candidate.task(rule.task).metrics.get(rule.key)
    return True if metric is None else metric.higher_is_better


def _candidate_value(rule: MetricRule, ev: Evaluation) -> float:
    task = ev.task(rule.task)
    metrics = task.metrics
    if rule.slice:
        if rule.slice not in task.slices:
            raise EvaluationError(
                f"{rule.label}: {ev.uri} reports no slices for {rule.task} (slices come with the domain tasks "
                "evaluated on a dataset: llmops evaluate --dataset)"
            )
        metrics = task.slices[rule.slice].metrics
    metric = metrics.get(rule.key)
    if metric is None or metric.value is None:
        have = ", ".join(sorted(metrics)) or "none"
        where = f" (slice {rule.slice})" if rule.slice else ""
        raise EvaluationError(f"{rule.label}: {ev.uri} reports no value for {rule.key}{where} (it has: {have})")
    return float(metric.value)


def _floor_ok(value: float, rule: MetricRule, higher_is_better: bool) -> bool:
    if rule.floor is None:
        return True
    return value >= rule.floor if higher_is_better else value <= rule.floor


def _evaluation_info(ev: Evaluation) -> dict[str, Any]:
    model = ev.model or {}
    label = model.get("label") or model.get("uri") or ""
    return {"uri": ev.uri, "label": label, "model": model}


def decide(candidate: Evaluation, champion: Evaluation | None, policy: GatePolicy) -> GateReport:
    """Apply the policy to a candidate evaluation and (optionally) the champion's."""
    decisions: list[MetricDecision] = []
    for rule in policy.metrics:
        hib = _direction(rule, candidate)
        conf = policy.confidence_of(rule)
        task_result = candidate.task(rule.task)
        n = task_result.slices[rule.slice].n if rule.slice and rule.slice in task_result.slices else task_result.n
        if rule.slice and rule.slice in task_result.slices and n == 0:
            # An empty slice (the first dataset has no `retained` items; a rebuild without new documents
            # no `new` ones): nothing to test. A `must_improve` rule on it then rejects (see below).
            decisions.append(_empty_slice(rule, conf, hib))
            continue
        value = _candidate_value(rule, candidate)
        floor_ok = _floor_ok(value, rule, hib)
        d = MetricDecision.of_rule(rule, n=n, candidate=value, confidence=conf, higher_is_better=hib,
                                   floor_ok=floor_ok)
        if champion is not None:
            a, b, ids = _paired(candidate, champion, rule)
            sign = 1.0 if hib else -1.0
            # The difference is oriented (positive = better); candidate and champion values keep their units.
            ca, cb = sign * a, sign * b
            d.n = len(ids)
            d.champion = _candidate_value(rule, champion)
            d.difference = float(np.mean(ca - cb))
            resampled = stats.bootstrap_mean_differences(
                ca, cb, iterations=policy.bootstrap_iterations, seed=stats.seed_for(policy.seed, rule.label)
            )
            d.ci_low, d.ci_high = stats.percentile_interval(resampled, conf)
            if stats.is_binary(a) and stats.is_binary(b):
                # Orientation matters for McNemar: b counts the pairs only the (oriented) candidate wins.
                bc, cc = stats.discordant_counts(a, b) if hib else stats.discordant_counts(b, a)
                test = stats.mcnemar(bc, cc, exact_below=policy.exact_below)
                d.extra = {"discordant_candidate_better": bc, "discordant_champion_better": cc}
            else:
                test = stats.bootstrap_p_value(resampled, 0.0)
            d.p_value, d.method = test.p_value, test.method
            if rule.max_regression > 0:
                d.p_regression = stats.bootstrap_p_value(resampled, -rule.max_regression).p_value
            else:
                d.p_regression = d.p_value
        decisions.append(d)

    tested = [d for d in decisions if d.verdict != "no samples"]
    if champion is not None:
        for attr in ("p_value", "p_regression"):
            adjusted = stats.holm([getattr(d, attr) for d in tested])
            for d, p in zip(tested, adjusted, strict=True):
                setattr(d, f"{attr}_holm", p)

    reasons: list[str] = []
    for d, rule in zip(decisions, policy.metrics, strict=True):
        if d.verdict == "no samples":
            continue
        _verdict(d, rule, champion is not None)
        if d.verdict in ("below floor", "worse"):
            reasons.append(f"{rule.label}: {d.reason}")

    if champion is None:
        passed = all(d.floor_ok for d in tested)
        if passed:
            reasons.append("no champion yet: every floor holds")
    else:
        failed = any(d.verdict in ("below floor", "worse") for d in decisions)
        better = [d for d in decisions if d.verdict == "better"]
        for d in decisions:
            if d.must_improve and d.verdict not in ("better", "below floor", "worse"):
                failed = True
                reasons.append(f"{d.label}: must be significantly better than the champion, is {d.verdict}")
        if not better and not policy.allow_equal:
            # Listed even when a floor or a regression already rejects: every reason is worth knowing.
            reasons.append(
                "not significant: no metric is significantly better than the champion "
                "(the policy requires a significant gain)"
            )
        if failed or (not better and not policy.allow_equal):
            passed = False
        elif better:
            passed = True
            reasons.append("significantly better on " + ", ".join(d.label for d in better)
                           + "; every floor holds and no metric is significantly worse")
        else:
            passed = True
            reasons.append("no significant difference, every floor holds, and the policy allows equal")
    return GateReport(
        passed=passed,
        reasons=reasons,
        metrics=decisions,
        candidate=_evaluation_info(candidate),
        baseline=_evaluation_info(champion) if champion is not None else None,
        policy=policy.model_dump(),
    )


def _empty_slice(rule: MetricRule, confidence: float, higher_is_better: bool) -> MetricDecision:
    return MetricDecision.of_rule(
        rule,
        n=0,
        candidate=None,
        confidence=confidence,
        higher_is_better=higher_is_better,
        verdict="no samples",
        reason=f"the {rule.slice} slice has no samples in this dataset",
    )


def _verdict(d: MetricDecision, rule: MetricRule, has_champion: bool) -> None:
    alpha = 1.0 - d.confidence
    notes = []
    if not d.floor_ok:
        word = "below" if d.higher_is_better else "above"
        notes.append(f"{d.candidate:.3f} is {word} the floor {rule.floor:.3f}")
    if not has_champion:
        d.verdict = "meets floor" if d.floor_ok else "below floor"
        d.reason = notes[0] if notes else ("meets the floor" if rule.floor is not None else "no floor set")
        return
    assert d.difference is not None and d.p_value_holm is not None and d.p_regression_holm is not None
    worse = d.difference < -rule.max_regression and d.p_regression_holm < alpha
    better = d.difference > 0 and d.p_value_holm < alpha
    allowed = f" (allowed regression {rule.max_regression:g})" if rule.max_regression else ""
    if worse:
        notes.append(
            f"significantly worse{allowed}: {_p_text(d.p_regression_holm)} < {alpha:g} after Holm, n={d.n}"
        )
    if not d.floor_ok:
        d.verdict = "below floor"
    elif worse:
        d.verdict = "worse"
    elif better:
        d.verdict = "better"
        notes.append(f"significantly better: {_p_text(d.p_value_holm)} < {alpha:g} after Holm, n={d.n}")
    elif d.difference < 0 and d.p_value_holm < alpha:
        d.verdict = "within allowed regression"
        notes.append(f"significantly lower but within the allowed regression {rule.max_regression:g}")
    else:
        d.verdict = "not significant"
        before = f" ({_p_text(d.p_value)} before)" if d.p_value is not None and d.p_value < alpha else ""
        notes.append(f"not significant: {_p_text(d.p_value_holm)} >= {alpha:g} after Holm{before}, n={d.n}")
    d.reason = "; ".join(notes)


def report_paths(report: str) -> tuple[str, str]:
    """(JSON, Markdown) paths for `--report`: `gate.json` -> `gate.json` + `gate.md`."""
    if report.endswith(".json"):
        return report, report[: -len(".json")] + ".md"
    if report.endswith(".md"):
        return report[: -len(".md")] + ".json", report
    return report, report + ".md"


def write_report(report: GateReport, uri: str) -> tuple[str, str]:
    json_uri, md_uri = report_paths(uri)
    storage.write_text(json_uri, json.dumps(report.to_dict(), indent=2, sort_keys=True) + "\n")
    storage.write_text(md_uri, report.to_markdown())
    return json_uri, md_uri


def read_report(uri: str) -> dict[str, Any]:
    """Read a gate report JSON written by `llmops gate`."""
    storage.check_uri(uri, "gate report")
    json_uri, _ = report_paths(uri)
    try:
        report = json.loads(storage.read_text(json_uri))
    except FileNotFoundError:
        raise EvaluationError(f"gate report {json_uri} does not exist: run llmops gate --report {json_uri}") from None
    except json.JSONDecodeError as exc:
        raise EvaluationError(f"gate report {json_uri} is not valid JSON ({exc.msg})") from None
    if "passed" not in report:
        raise EvaluationError(f"{json_uri} is not a gate report (no `passed` field)")
    return report


def run_gate(candidate_uri: str, baseline_uri: str | None, policy_uri: str, report_uri: str) -> tuple[GateReport, str, str]:
    """Load both evaluations and the policy, decide, write the JSON and Markdown reports."""
    policy = load_policy(policy_uri)
    candidate = load_evaluation(candidate_uri)
    champion = None if baseline_uri in (None, "", "none") else load_evaluation(baseline_uri)
    report = decide(candidate, champion, policy)
    report.policy["uri"] = policy_uri
    json_uri, md_uri = write_report(report, report_uri)
    return report, json_uri, md_uri


__all__ = [
    "GatePolicy",
    "GateReport",
    "MetricDecision",
    "MetricRule",
    "decide",
    "load_policy",
    "read_report",
    "report_markdown",
    "run_gate",
    "write_report",
]
