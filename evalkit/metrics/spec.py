"""What each metric is, declared once beside its function: the header a board prints, which
direction is better, the scale results hold it on, and the tolerance family ``evalkit
compare`` allows it to move by between two runs of the same checkpoint.

The leaderboard (headers, bold best), ``compare`` (tolerance, what counts as a regression) and
the HTML report (headers, score bars) all read these specs, so a new metric is described in
one place: its own module, with :func:`declare`.

Example:
    >>> from evalkit.metrics.spec import metric_spec
    >>> spec = metric_spec("cider")
    >>> spec.header, spec.higher_is_better, spec.tolerance
    ('CIDEr', True, 2.0)
    >>> metric_spec("relative_score/natural").name  # a per-group metric: its base's spec
    'relative_score'
"""

from __future__ import annotations

from dataclasses import dataclass

from evalkit.registry import Registry

# Default ``compare`` tolerances, in the metric's own points (papers' scale), by family. Judged
# scores move most between identical runs (the judge samples) and CIDEr has a wide range;
# referring-classification, POPE and segmentation scores are tight.
TOLERANCES: dict[str, float] = {
    "semantic": 0.5,
    "caption": 0.3,
    "caption_cider": 2.0,
    "pope": 0.5,
    "segmentation": 0.5,
    "judged": 2.0,
    "classification": 0.5,
    "other": 1.0,  # a metric no module declares
}


@dataclass(frozen=True)
class MetricSpec:
    """One metric as the reports show and compare it.

    Args:
        name: the key in ``results.json``'s ``metrics`` (a per-group metric
            ``name/group`` shares its base's spec).
        header: the short column header ("CIDEr", "S-IoU"); boards prefix the benchmark.
        higher_is_better: ``True`` / ``False``, or ``None`` where neither direction is
            better (POPE's yes-ratio: 50 is balanced, not "best") — never bolded, never a
            regression.
        tolerance_family: a key of :data:`TOLERANCES`.
        scale: the value a perfect score is stored as (100: percent points, the papers'
            tables); CIDEr-like metrics can exceed it.
    """

    name: str
    header: str
    higher_is_better: bool | None
    tolerance_family: str
    scale: float = 100.0

    def __post_init__(self) -> None:
        if self.tolerance_family not in TOLERANCES:
            raise ValueError(f"metric {self.name}: unknown tolerance family {self.tolerance_family!r}")

    @property
    def tolerance(self) -> float:
        return TOLERANCES[self.tolerance_family]

    @property
    def directed(self) -> bool:
        return self.higher_is_better is not None


METRIC_SPECS: Registry[MetricSpec] = Registry("metric", "evalkit.metrics")


def declare(*specs: MetricSpec) -> None:
    """Register ``specs`` (called at import by the module that computes them)."""
    for spec in specs:
        METRIC_SPECS.register(spec.name)(spec)


def metric_spec(name: str) -> MetricSpec:
    """The spec of ``name`` (``relative_score/ocr``: of ``relative_score``); a metric no module
    declares is shown under its own name, higher is better, with the fallback tolerance."""
    base = name.split("/", 1)[0]
    if base in METRIC_SPECS.names():
        return METRIC_SPECS.get(base)
    return MetricSpec(base, base, True, "other")


def metric_header(name: str) -> str:
    """The header to show for a results key: ``relative_score/ocr`` -> ``Relative score (ocr)``."""
    base, _, group = name.partition("/")
    header = metric_spec(base).header
    return f"{header} ({group})" if group else header
