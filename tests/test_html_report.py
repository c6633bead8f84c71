"""`evalkit report RUN_DIR`: the self-contained HTML gallery, checked in headless Chromium."""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
from evalkit.tasks.shapes.scenes import category_phrase
from PIL import Image

from evalkit.cli import main
from evalkit.regions import Region
from evalkit.report.render import draw_regions
from tests.helpers import run_replay

CHROMIUM = Path("/usr/bin/chromium")
N_SAMPLES = 36


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A replay run of shapes_cls: right answers, except every fourth names another shape."""
    from evalkit.task import get_task

    root = tmp_path_factory.mktemp("report")
    task = get_task("shapes_cls")
    samples = task.load_samples(task.resolve_data({}, command="score")).samples[:N_SAMPLES]
    rows = []
    for k, s in enumerate(samples):
        text = category_phrase(str(s.target))
        rows.append({"id": s.id, "text": "a <b>kite</b> & string" if k % 4 == 0 else text})
    preds = root / "preds.jsonl"
    preds.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = root / "run"
    run_replay("shapes_cls", preds, out, "--limit", str(N_SAMPLES))
    assert main(["report", str(out), "--out", str(root / "report.html")]) == 0
    return root


def _cards(page: str) -> list[str]:
    return re.findall(r'<article class="card"[^>]*>', page)


def test_page_is_self_contained_and_worst_first(run_dir: Path) -> None:
    page = (run_dir / "report.html").read_text()
    cards = _cards(page)
    assert len(cards) == N_SAMPLES
    assert page.count('src="data:image/png;base64,') == N_SAMPLES + 1  # thumbnails + plot
    assert "http://" not in page and "https://" not in page  # nothing fetched from outside
    # Model output is escaped, never interpreted.
    assert "a &lt;b&gt;kite&lt;/b&gt; &amp; string" in page and "<b>kite</b>" not in page
    ids = [re.search(r'data-id="([^"]+)"', c).group(1) for c in cards]  # type: ignore[union-attr]
    rows = {
        json.loads(line)["id"]: json.loads(line)
        for line in (run_dir / "run" / "samples.jsonl").read_text().splitlines()
    }
    scores = [rows[i]["ss"] for i in ids]
    assert scores == sorted(scores) and scores[0] < 60 < scores[-1]
    # Category filter lists exactly the categories on the page.
    cats = set(re.findall(r'data-category="([^"]+)"', page))
    options = set(re.findall(r'<option value="([^"]+)"', page))
    assert options == cats and len(cats) > 3
    # The prompt comes from the task card, with the region placeholder marked.
    assert '<span class="region r0">&lt;region&gt;</span>' in page
    assert "fingerprint" in page and "shapes_cls.yaml" in page


def test_regions_are_drawn_on_the_thumbnail() -> None:
    image = Image.fromarray(np.full((40, 60, 3), 200, dtype=np.uint8))
    mask = np.zeros((40, 60), dtype=np.uint8)
    mask[10:30, 20:40] = 1
    drawn = np.asarray(draw_regions(image, [Region.from_mask(mask)]))
    assert tuple(drawn[0, 0]) == (90, 90, 90)  # outside the region: dimmed
    assert tuple(drawn[20, 30]) == (200, 200, 200)  # inside: untouched
    assert tuple(drawn[10, 30]) == (0, 230, 255)  # border: outlined
    box = Region.from_box([2, 2, 14, 38], 40, 60)
    drawn = np.asarray(draw_regions(image, [Region.from_mask(mask), box]))
    assert tuple(drawn[30, 2]) == (255, 60, 200)  # second region in the second colour
    assert tuple(drawn[3, 4]) == (0, 0, 0)  # its number label sits at its top-left corner


def _chromium(page: Path, *flags: str, tmp: Path, fragment: str = "") -> subprocess.CompletedProcess[str]:
    cmd = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp / 'profile'}",
        *flags,
        page.as_uri() + fragment,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")
def test_gallery_renders_in_headless_chromium(run_dir: Path, tmp_path: Path) -> None:
    page = run_dir / "report.html"
    shot = tmp_path / "shot.png"
    done = _chromium(page, f"--screenshot={shot}", "--window-size=1280,2000", tmp=tmp_path)
    assert shot.exists(), done.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.int16)
    assert pixels.shape == (2000, 1280, 3)
    # Not blank: many distinct colours, dark header on top, light page below it.
    assert len(np.unique(pixels.reshape(-1, 3)[::97], axis=0)) > 200
    assert pixels[10:60, :, :].mean() < 80 and pixels[1500:1600, 10:20, :].mean() > 200
    # The gallery area holds thumbnails: the card images are the dark-framed, varied region.
    assert pixels[900:1900].std() > 40
    dom = _chromium(page, "--dump-dom", tmp=tmp_path).stdout
    assert len(_cards(dom)) == N_SAMPLES
    # The inline script ran: it counted the cards it shows.
    assert f'data-shown="{N_SAMPLES}"' in dom
    # The category filter (driven by the URL, as a shared link would) hides the other cards.
    cats = re.findall(r'data-category="([^"]+)"', page.read_text())
    wanted = max(sorted(set(cats)), key=cats.count)
    filtered = _chromium(page, "--dump-dom", tmp=tmp_path, fragment=f"#category={quote(wanted)}").stdout
    assert f'data-shown="{cats.count(wanted)}"' in filtered
    visible = re.findall(r'<article class="card"[^>]*data-category="([^"]+)"', filtered)
    assert len(visible) == cats.count(wanted) and set(visible) == {wanted}
    assert filtered.count('class="card hidden"') == N_SAMPLES - cats.count(wanted)
    thumb = re.search(r'<img alt="[^"]+" src="data:image/png;base64,([^"]+)"', dom)
    assert thumb is not None
    assert Image.open(io.BytesIO(base64.b64decode(thumb.group(1)))).size[0] > 100


def test_report_without_task_or_images_still_renders(tmp_path: Path) -> None:
    from tests.report_helpers import write_run

    rows = [
        {
            "id": f"q{k}",
            "prediction": "yes",
            "target": "no" if k % 2 else "yes",
            "correct": float(k % 2 == 0) * 100,
        }
        for k in range(6)
    ]
    write_run(tmp_path / "run", "not_a_task", "m", {"correct": 50.0}, samples=rows, n=6)
    out = tmp_path / "r.html"
    assert main(["report", str(tmp_path / "run"), "--out", str(out)]) == 0
    page = out.read_text()
    assert len(_cards(page)) == 6 and page.count("image not available") == 6
    assert "task not_a_task not available here" in page
    ids = re.findall(r'data-id="([^"]+)"', page)
    assert ids == ["q1", "q3", "q5", "q0", "q2", "q4"]  # worst (0) first, then by id
    assert set(re.findall(r'data-category="([^"]+)"', page)) == {"yes", "no"}
