"""``evalkit report RUN_DIR``: one self-contained static HTML page about a run.

The page holds a provenance header, the metric table, a per-sample metric distribution
(matplotlib PNG) and a gallery of cards — image with the region drawn, prompt, prediction,
target and per-sample scores — worst first, filterable by category. Everything (images,
plot, CSS, JS) is inlined, so the file can be mailed or attached to a CI run.

Images, regions and prompts come from the run itself: the ``sample`` block the engine adds
to each samples.jsonl row (:class:`evalkit.results.SampleRecord`). Only runs written before
that block existed have their task's data read again (``--data`` / ``--images`` say where).
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalkit.errors import DataError, EvalkitError
from evalkit.images import image_in
from evalkit.metrics.spec import metric_header, metric_spec
from evalkit.redact import redact_text
from evalkit.regions import Region, RegionError
from evalkit.report.plots import histograms_png
from evalkit.report.render import thumbnail_png
from evalkit.report.runs import Run
from evalkit.results import SAMPLE_KEY, SampleRecord

DEFAULT_MAX_CARDS = 200
# Inside evalkit/assets so the wheel ships them (package-data "assets/**/*").
_ASSETS = Path(__file__).resolve().parent.parent / "assets" / "report"


@dataclass
class Card:
    id: str
    category: str
    image_b64: str | None
    prompt: str
    prediction: str
    target: str
    scores: dict[str, float]
    extra: dict[str, str] = field(default_factory=dict)


@dataclass
class Gallery:
    cards: list[Card]
    n_total: int
    sort_metric: str | None
    notes: list[str]
    # {metric: every sample's value, in file order}: the distribution plot's data.
    distributions: dict[str, list[float]] = field(default_factory=dict)


def _numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def per_sample_metrics(run: Run, rows: list[dict[str, Any]]) -> list[str]:
    """Per-sample fields that are metrics of the run, in the run's metric order."""
    names = [m for m in run.results.metrics if rows and all(_numeric(r.get(m)) for r in rows)]
    if names:
        return names
    # No aggregate metric is per-sample (e.g. PQ): show whatever numeric scores rows carry.
    skip = {"id", "image"}
    return sorted({k for r in rows for k, v in r.items() if _numeric(v) and k not in skip})


@dataclass
class Shown:
    """What a card shows of one sample besides its samples.jsonl row."""

    image_path: str | None
    regions: list[Region]
    target: Any = None
    meta: dict[str, Any] = field(default_factory=dict)
    prompt: str | None = None  # the task's prompt, where the predictions file has none


@dataclass
class TaskView:
    samples: dict[str, Shown] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def recorded_samples(rows: Sequence[Mapping[str, Any]], images: Path | None) -> TaskView | None:
    """The samples as the run recorded them (each row's ``sample`` block), or None for a run
    written before the engine recorded them. ``images`` relocates the images folder."""
    if not rows or not all(isinstance(r.get(SAMPLE_KEY), dict) for r in rows):
        return None
    shown: dict[str, Shown] = {}
    notes: list[str] = []
    for row in rows:
        sid = str(row.get("id"))
        record = SampleRecord.model_validate(row[SAMPLE_KEY])
        try:
            regions = [Region.from_json(r) for r in record.regions]
        except (RegionError, KeyError, TypeError, ValueError) as exc:
            notes.append(f"sample {sid}: recorded regions unreadable ({exc}); drawn without them")
            regions = []
        image_path = record.image_path
        name = record.image if record.image is not None else row.get("image")
        if images is not None and isinstance(name, str):
            try:  # a samples.jsonl is data too: its names may not leave --images
                image_path = str(image_in(images, name, sid))
            except DataError as exc:
                notes.append(f"sample {sid}: {exc}; drawn without its image")
                image_path = None
        elif image_path is not None and not _recorded_path_ok(image_path, name):
            notes.append(f"sample {sid}: recorded image path {image_path!r} does not end in its image name")
            image_path = None
        own_meta = row.get("meta")
        meta = record.meta if record.meta is not None else own_meta if isinstance(own_meta, dict) else {}
        shown[sid] = Shown(image_path, regions, record.target, meta, record.prompt)
    return TaskView(shown, notes)


def _recorded_path_ok(image_path: str, name: Any) -> bool:
    """A recorded path is embedded only when it has no ``..`` and ends in the file of its
    relative image name (or Osprey's short COCO name, ``readers.coco_image_path``), a name
    that itself stays inside its folder: a tampered samples.jsonl cannot embed any file."""
    if not isinstance(name, str) or ".." in Path(image_path).parts:
        return False
    try:
        image_in(Path("."), name)
    except DataError:
        return False
    last = Path(image_path).name
    return last in (Path(name).name, Path(name).name.split("_")[-1])


def load_task_samples(run: Run, overrides: Mapping[str, str], images: Path | None) -> TaskView:
    """The run's samples (regions, image paths) and prompts from its task, or why not: for
    runs whose samples.jsonl predates the engine's ``sample`` block."""
    from evalkit.task import get_task

    notes: list[str] = []
    try:
        task = get_task(run.results.task, run.variant)
    except EvalkitError as exc:
        return TaskView(notes=[f"task {run.results.task} not available here ({exc}); no images"])
    by_name = {Path(p).name: p for p in run.results.provenance.data_files}
    given = dict(overrides)
    defaults: dict[str, Path | None] | None = None  # the card's defaults, resolved once when needed
    for key, spec in task.card.data.items():
        if key in given or spec.default is None:
            continue
        if defaults is None:
            defaults = task.resolve_data({}, command="report")
        default = defaults.get(key)
        if default is not None and not default.exists() and default.name in by_name:
            given[key] = by_name[default.name]  # where the run read it (recorded in provenance)
    if images is not None and "images" in task.card.data:
        given["images"] = str(images)
    try:
        data = task.resolve_data(given, command="report")
        read = task.load_samples(data)
        requests = task.build_requests(read.samples, run.results.provenance.generation)
    except EvalkitError as exc:
        notes.append(f"samples of {task.name} could not be read ({exc}); cards have no images")
        return TaskView(notes=notes)
    prompts: dict[str, str] = {}
    for request in requests:
        prompts.setdefault(request.sample_id, request.prompt)
    shown = {
        s.id: Shown(s.image_path, list(s.regions), s.target, s.meta.to_json(), prompts.get(s.id))
        for s in read.samples
    }
    return TaskView(shown, notes)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _category(row: Mapping[str, Any], sample: Shown | None) -> str:
    for source in (row, sample.meta if sample else {}):
        if isinstance(source.get("category"), str):
            return str(source["category"])
    target = row.get("target", sample.target if sample else None)
    if isinstance(target, str) and len(target) <= 40:
        return target
    return "all"


def build_gallery(run: Run, overrides: Mapping[str, str], images: Path | None, max_cards: int) -> Gallery:
    rows = run.sample_rows()
    preds = {str(p.get("id")): p for p in run.prediction_rows()}
    metrics = per_sample_metrics(run, rows)
    dist = {m: [float(r[m]) for r in rows if _numeric(r.get(m))] for m in metrics}
    sort_metric = next((m for m in metrics if m in run.results.metrics), metrics[0] if metrics else None)
    view = recorded_samples(rows, images)
    if view is None:  # a run from before the engine recorded its samples: read them again
        view = load_task_samples(run, overrides, images)
    samples, notes = view.samples, list(view.notes)
    if sort_metric is not None:
        # Worst first; ties in a fixed order so the page is the same on every build.
        rows = sorted(rows, key=lambda r: (float(r.get(sort_metric, 0.0)), str(r.get("id"))))
    shown = rows[:max_cards]
    if len(rows) > len(shown):
        notes.append(f"showing the {len(shown)} lowest-scoring of {len(rows)} samples (--max-cards)")
    cards = []
    for row in shown:
        sid = str(row.get("id"))
        sample = samples.get(sid)
        pred = preds.get(sid, {})
        image = thumbnail_png(sample.image_path, sample.regions) if sample else None
        cards.append(
            Card(
                id=sid,
                category=_category(row, sample),
                image_b64=image,
                prompt=_text(pred.get("prompt") or (sample.prompt if sample else None)),
                prediction=_text(row.get("prediction", pred.get("text"))),
                target=_text(row.get("target", sample.target if sample else None)),
                scores={m: float(row[m]) for m in metrics if _numeric(row.get(m))},
                extra={
                    k: _text(v) for k, v in row.items() if k in ("answer",) and v != row.get("prediction")
                },
            )
        )
    return Gallery(cards, len(rows), sort_metric, notes, dist)


# ---------------------------------------------------------------------- HTML
def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _prompt_html(prompt: str) -> str:
    """The prompt with its ``<region>`` placeholders marked in the region colours' order."""
    parts = _esc(prompt).split("&lt;region&gt;")
    out = parts[0]
    for k, part in enumerate(parts[1:]):
        out += f'<span class="region r{k % 5}">&lt;region{k + 1 if len(parts) > 2 else ""}&gt;</span>'
        out += part
    return out


def _bar(metric: str, value: float) -> float:
    """The score bar's fill, in percent of the metric's perfect score."""
    return min(max(100.0 * value / metric_spec(metric).scale, 0.0), 100.0)


def _card_html(card: Card, sort_metric: str | None) -> str:
    if card.image_b64:
        img = f'<img alt="{_esc(card.id)}" src="data:image/png;base64,{card.image_b64}">'
    else:
        img = '<div class="noimg">image not available</div>'
    badges = "".join(
        f'<span class="score{" key" if m == sort_metric else ""}" title="{_esc(m)}" '
        f'style="--v:{_bar(m, v):.1f}">{_esc(metric_header(m))} {v:.1f}</span>'
        for m, v in card.scores.items()
    )
    extra = "".join(f"<dt>{_esc(k)}</dt><dd>{_esc(v)}</dd>" for k, v in card.extra.items())
    return (
        f'<article class="card" data-category="{_esc(card.category)}" data-id="{_esc(card.id)}">'
        f'{img}<div class="body"><div class="head"><code>{_esc(card.id)}</code>'
        f'<span class="cat">{_esc(card.category)}</span></div><div class="badges">{badges}</div>'
        f'<dl><dt>prompt</dt><dd class="prompt">{_prompt_html(card.prompt)}</dd>'
        f'<dt>prediction</dt><dd class="pred">{_esc(card.prediction)}</dd>{extra}'
        f'<dt>target</dt><dd class="target">{_esc(card.target)}</dd></dl></div></article>'
    )


def _provenance_html(run: Run) -> str:
    res, prov = run.results, run.results.provenance
    items: list[tuple[str, str]] = [
        ("model", f"{res.model} · fingerprint {run.fingerprint()}"),
        ("adapter", json.dumps(prov.adapter, sort_keys=True)),
        ("protocol", prov.protocol_variant),
        ("task card", f"{prov.task_card} · {prov.task_card_hash[:16]}"),
        (
            "evalkit",
            f"{prov.evalkit_version}" + (f" · git {prov.git_sha[:10]}" if prov.git_sha else ""),
        ),
        ("created", prov.created),
        ("generation", json.dumps(prov.generation, sort_keys=True)),
        ("samples", f"{res.n} ({res.n_scored} scored, {res.n_failed} failed)"),
        (
            "timings",
            f"wall {prov.timings.wall_s:.1f} s · {prov.timings.samples_per_s:.2f} samples/s",
        ),
    ]
    items += [("data", f"{p} · {h[:16]}") for p, h in sorted(prov.data_files.items())]
    items += [("deviation", d) for d in prov.deviations] + [("note", n) for n in prov.notes]
    # redact_text: runs written before evalkit redacted URLs may still hold a key in one
    return "".join(f"<dt>{_esc(k)}</dt><dd>{_esc(redact_text(v))}</dd>" for k, v in items)


def render_html(run: Run, gallery: Gallery, histogram_png: bytes) -> str:
    res = run.results
    metric_cells = "".join(
        f'<div class="metric" title="{_esc(k)}"><b>{v:.2f}</b><span>{_esc(metric_header(k))}</span></div>'
        for k, v in res.metrics.items()
    )
    categories = sorted({c.category for c in gallery.cards})
    options = "".join(f'<option value="{_esc(c)}">{_esc(c)}</option>' for c in categories)
    cards = "\n".join(_card_html(c, gallery.sort_metric) for c in gallery.cards)
    notes = "".join(f"<li>{_esc(n)}</li>" for n in gallery.notes)
    order = f"worst {_esc(gallery.sort_metric)} first" if gallery.sort_metric else "file order"
    plot = base64.b64encode(histogram_png).decode("ascii")
    return (
        (_ASSETS / "report.html")
        .read_text("utf-8")
        .format(
            title=_esc(f"{res.task} · {res.model}"),
            css=(_ASSETS / "report.css").read_text("utf-8"),
            js=(_ASSETS / "report.js").read_text("utf-8"),
            task=_esc(res.task),
            model=_esc(res.model),
            metrics=metric_cells,
            provenance=_provenance_html(run),
            plot=plot,
            notes=f'<ul class="notes">{notes}</ul>' if notes else "",
            options=options,
            n_cards=len(gallery.cards),
            n_total=gallery.n_total,
            order=order,
            cards=cards,
        )
    )


def write_report(
    run: Run,
    out: Path,
    overrides: Mapping[str, str] | None = None,
    images: Path | None = None,
    max_cards: int = DEFAULT_MAX_CARDS,
) -> Path:
    gallery = build_gallery(run, overrides or {}, images, max_cards)
    page = render_html(run, gallery, histograms_png(gallery.distributions))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, "utf-8")
    return out
