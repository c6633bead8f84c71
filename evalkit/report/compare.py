"""The CI regression gate: a candidate run against a baseline run of the same task and data.

A metric regresses when it drops by more than its tolerance *and*, where per-sample values
exist for it in both runs, the paired bootstrap 95 % interval of the mean difference lies
entirely below zero — so a drop the sample size cannot distinguish from noise is reported
as noise, not as a regression.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from evalkit.cards import CardCatalog
from evalkit.errors import ConfigError
from evalkit.metrics.spec import MetricSpec, metric_spec
from evalkit.report.runs import Run

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
# Per-sample values are rounded (4 decimals) when written; their mean may differ from the
# aggregate by that much. Anything further apart is not a per-sample decomposition.
_MEAN_MATCH = 1e-3


def default_tolerance(metric: str) -> float:
    """The metric's tolerance family's (evalkit/metrics/spec.py): points it may drop by."""
    return metric_spec(metric).tolerance


def parse_tolerances(items: list[str] | None) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        try:
            delta = float(value)
        except ValueError:
            delta = -1.0
        if not sep or not name or delta < 0:
            raise ConfigError(f"--tolerance {item!r}: expected METRIC=DELTA with DELTA >= 0")
        out[name.strip()] = delta
    return out


@dataclass
class MetricDelta:
    metric: str
    baseline: float
    candidate: float
    delta: float
    tolerance: float
    status: str  # ok | improved | regression | noise | info
    ci_low: float | None = None
    ci_high: float | None = None
    n_paired: int | None = None


@dataclass
class Comparison:
    task: str
    candidate: str
    baseline: str
    metrics: list[MetricDelta]
    forced: bool
    mismatches: list[str]
    notes: list[str] = field(default_factory=list)

    @property
    def regressed(self) -> bool:
        return any(m.status == "regression" for m in self.metrics)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["regressed"] = self.regressed
        return out


def _data_hashes(run: Run) -> list[str]:
    """Data file hashes, without the predictions file that `evalkit score` also records."""
    prov = run.results.provenance
    own = {v for k, v in prov.adapter.items() if k.endswith("sha256") and isinstance(v, str)}
    return sorted(h for h in prov.data_files.values() if h not in own)


def _same_card(task: str, a: str, b: str) -> bool:
    """The same card text: equal hashes, or the current card and a hash it had before it was
    rewritten to inherit through include: (its ``previous_hashes``, same resolved content)."""
    if a == b:
        return True
    try:
        loaded = CardCatalog().load(task)
    except ConfigError:
        return False  # a card from an --include folder this command was not given
    known = {loaded.card_hash, *loaded.card.previous_hashes}
    return a in known and b in known


def mismatches(candidate: Run, baseline: Run) -> list[str]:
    """Why two runs' numbers are not comparable (empty when they are)."""
    c, b = candidate.results, baseline.results
    out = []
    if c.task != b.task:
        out.append(f"tasks differ: {c.task} vs {b.task}")
    if not _same_card(c.task, c.provenance.task_card_hash, b.provenance.task_card_hash):
        out.append(
            f"task card hashes differ: {c.provenance.task_card_hash[:12]} vs "
            f"{b.provenance.task_card_hash[:12]}"
        )
    if c.provenance.protocol_variant != b.provenance.protocol_variant:
        out.append(
            f"protocol variants differ: {c.provenance.protocol_variant} vs {b.provenance.protocol_variant}"
        )
    if _data_hashes(candidate) != _data_hashes(baseline):
        out.append("data file hashes differ (not the same benchmark data)")
    return out


def paired_bootstrap(
    diffs: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> tuple[float, float]:
    """95 % percentile interval of the mean of paired differences (seeded, reproducible)."""
    rng = np.random.default_rng(seed)
    n = len(diffs)
    means = np.empty(resamples)
    chunk = max(1, min(resamples, 2_000_000 // max(n, 1)))  # bound memory on big runs
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = diffs[idx].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def per_sample_values(
    run: Run, metric: str, rows: list[dict[str, Any]] | None = None
) -> dict[str, float] | None:
    """{sample id: value} when the aggregate metric is the mean of these per-sample values.

    ``rows`` are the run's sample rows when the caller has already read them.
    """
    if rows is None:
        rows = run.sample_rows()
    values: dict[str, float] = {}
    for row in rows:
        v = row.get(metric)
        if "id" not in row or not isinstance(v, (int, float)) or isinstance(v, bool):
            return None
        values[str(row["id"])] = float(v)
    if not values:
        return None
    mean = sum(values.values()) / len(values)
    if abs(mean - run.results.metrics[metric]) > _MEAN_MATCH:
        return None
    return values


def _status(spec: MetricSpec, delta: float, tol: float, ci_low: float | None, ci_high: float | None) -> str:
    """ok / improved / regression / noise / info for one metric's change ``delta``."""
    if not spec.directed:
        return "info"  # neither direction is better (POPE's yes-ratio)
    # Oriented so that a positive gain is better, whichever direction the metric has.
    sign = 1.0 if spec.higher_is_better else -1.0
    gain = sign * delta
    if gain > tol:
        return "improved"
    if gain >= -tol:
        return "ok"
    # A drop past the tolerance is a regression only when the paired interval of the change
    # lies wholly on the worse side of zero (or there is no per-sample decomposition).
    if ci_low is None or ci_high is None:
        return "regression"
    worst_side = ci_high if sign > 0 else -ci_low
    return "regression" if worst_side < 0 else "noise"


def compare_runs(
    candidate: Run,
    baseline: Run,
    tolerances: Mapping[str, float] | None = None,
    force: bool = False,
) -> Comparison:
    problems = mismatches(candidate, baseline)
    if problems and not force:
        raise ConfigError(
            "refusing to compare runs that are not comparable: "
            + "; ".join(problems)
            + " (pass --force to compare anyway)"
        )
    tolerances = dict(tolerances or {})
    cmp = Comparison(candidate.results.task, str(candidate.path), str(baseline.path), [], force, problems)
    cm, bm = candidate.results.metrics, baseline.results.metrics
    unknown = sorted(set(tolerances) - set(cm) - set(bm))
    if unknown:
        cmp.notes.append(f"--tolerance for metrics neither run has: {', '.join(unknown)}")
    shared = [m for m in bm if m in cm]
    # Each run's samples.jsonl is read once, not once per metric.
    cand_rows = candidate.sample_rows() if shared else []
    base_rows = baseline.sample_rows() if shared else []
    for metric in shared:
        tol = tolerances.get(metric, default_tolerance(metric))
        delta = cm[metric] - bm[metric]
        md = MetricDelta(metric, bm[metric], cm[metric], delta, tol, "ok")
        cand_vals, base_vals = (
            per_sample_values(candidate, metric, cand_rows),
            per_sample_values(baseline, metric, base_rows),
        )
        if cand_vals is not None and base_vals is not None:
            ids = sorted(set(cand_vals) & set(base_vals))
            if len(ids) != len(cand_vals) or len(ids) != len(base_vals):
                cmp.notes.append(f"{metric}: paired on the {len(ids)} samples both runs scored")
            if ids:
                diffs = np.array([cand_vals[i] - base_vals[i] for i in ids])
                md.ci_low, md.ci_high = paired_bootstrap(diffs)
                md.n_paired = len(ids)
        md.status = _status(metric_spec(metric), delta, tol, md.ci_low, md.ci_high)
        cmp.metrics.append(md)
    missing = [m for m in bm if m not in cm]
    if missing:
        cmp.notes.append(f"metrics only the baseline has: {', '.join(missing)}")
    return cmp


def render_markdown(cmp: Comparison) -> str:
    verdict = "❌ regression" if cmp.regressed else "✅ no regression"
    lines = [
        f"### evalkit compare · `{cmp.task}` · {verdict}",
        "",
        f"candidate `{cmp.candidate}` vs baseline `{cmp.baseline}`",
        "",
        "| metric | baseline | candidate | Δ | tolerance | 95 % CI of Δ | status |",
        "| :-- | --: | --: | --: | --: | :-- | :-- |",
    ]
    for m in cmp.metrics:
        ci = f"[{m.ci_low:+.2f}, {m.ci_high:+.2f}] (n = {m.n_paired})" if m.ci_low is not None else "—"
        status = f"**{m.status}**" if m.status == "regression" else m.status
        lines.append(
            f"| {m.metric} | {m.baseline:.2f} | {m.candidate:.2f} | {m.delta:+.2f} | "
            f"{m.tolerance:.2f} | {ci} | {status} |"
        )
    extra = [f"forced past: {p}" for p in cmp.mismatches] + cmp.notes
    if extra:
        lines.append("")
        lines += [f"- {x}" for x in extra]
    return "\n".join(lines) + "\n"
