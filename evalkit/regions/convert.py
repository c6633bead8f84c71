"""Region conversions: pure functions between region kinds, seeded where random.

Every function here takes plain numpy masks / tuples and returns new values; nothing reads a
global random state. Randomness comes from an explicit seed (``numpy.random.default_rng``) or an
explicit ``numpy.random.RandomState`` stream where the reference used numpy's legacy generator,
so the same inputs give the same output on every run and machine.

Coordinates are pixels of the original image: a point is ``(x, y) = (column, row)`` of a pixel
(no +0.5: models that want pixel centres add their own shift, e.g. SPHINX-V's prompt encoder);
boxes are ``xyxy`` with exclusive ``x2/y2`` edges (:func:`tight_box`) unless named ``xywh``.

References (commits as in ``shared/PROTOCOLS_WAVE2.md``, "Sources read"):

* SPHINX-V — AFeng-x/Draw-and-Understand ``28a1bd1``: ``accessory/data/conversation/transforms.py``
  (``noise_augmentation``, line 63), ``accessory/data/conversation/dataset.py`` line 296 (its
  call with ``int(w/8)``, ``int(h/8)``, ``0.15``); masks reduced to their tight box
  (``visual_prompt_gradio.py`` ``extract_masks_from_draw``).
* Point sampling — PROTOCOLS_WAVE2.md §B/§Q default (non-reference): a seeded uniform draw over
  the mask's foreground pixels with ``numpy.random.default_rng(0)``, objects in file order.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from evalkit.regions.region import Region, RegionError, RegionKind, box_to_mask, mask_to_box

Point = tuple[float, float]
BoxXYWH = tuple[float, float, float, float]

# What each method does, in the words results.json and per-prediction records carry.
METHOD_NOTES: dict[str, str] = {
    "as given": "as given",
    "tight_box": "tight box of the region's pixels",
    "rectangle": "rectangle mask of the box's pixels",
    "drawn": "drawn discs/stroke of radius 4",
    "seeded": "seeded uniform foreground pixel",
    "visual_centre": "visual centre, the foreground pixel farthest from the background",
    "medial_axis": "seeded polyline along the medial axis",
    "free_form": "SPHINX-V noise_augmentation free-form box",
}
SEEDED_METHODS = frozenset({"seeded", "medial_axis", "free_form"})


@dataclass(frozen=True)
class Conversion:
    """What was done to turn the region a task gave into the region a model was sent.

    Args:
        given: kind of region the data gave (``mask``, ``box``, ``points``, ``scribble``).
        sent: kind of region the model was sent.
        method: a key of :data:`METHOD_NOTES` (``"as given"`` when nothing was done).
        seed: the seed of a seeded method, ``None`` otherwise (or when the caller passed its
            own random stream without saying its seed).

    >>> Conversion("mask", "points", "seeded", 0).note()
    'mask -> points (seeded uniform foreground pixel, seed 0)'
    """

    given: str
    sent: str
    method: str
    seed: int | None = None

    def note(self) -> str:
        if self.method == "as given":
            return f"{self.sent} as given"
        what = METHOD_NOTES.get(self.method, self.method)
        seed = f", seed {self.seed}" if self.seed is not None else ""
        return f"{self.given} -> {self.sent} ({what}{seed})"

    def to_json(self) -> dict[str, Any]:
        return {"given": self.given, "sent": self.sent, "method": self.method, "seed": self.seed}

    @staticmethod
    def from_json(obj: Mapping[str, Any]) -> Conversion:
        seed = obj.get("seed")
        return Conversion(
            str(obj["given"]), str(obj["sent"]), str(obj["method"]), None if seed is None else int(seed)
        )


# ---------------------------------------------------------------------- mask <-> box
def tight_box(mask: np.ndarray) -> tuple[float, float, float, float]:
    """Tight ``xyxy`` box of a mask's nonzero pixels, ``x2/y2`` exclusive (pixel edges).

    SPHINX-V reduces drawn masks to the min/max of their pixels (``extract_masks_from_draw``);
    this is :func:`evalkit.regions.mask_to_box`, the box ``Region.convert("box")`` gives.

    Args:
        mask: 2-D array, nonzero = foreground.
    Returns:
        ``(x1, y1, x2, y2)`` floats.
    Raises:
        RegionError: the mask is empty.

    >>> tight_box(np.array([[0, 0, 0], [0, 1, 1]]))
    (1.0, 1.0, 3.0, 2.0)
    """
    return mask_to_box(mask)


def rectangle_mask(box: Sequence[float], height: int, width: int) -> np.ndarray:
    """``uint8`` mask of the pixels whose centres fall inside an ``xyxy`` box.

    The existing :func:`evalkit.regions.box_to_mask` (what ``Region.convert("mask")`` gives for a
    box), so ``rectangle_mask(tight_box(m), h, w)`` is the mask's bounding rectangle.

    >>> rectangle_mask((1, 0, 3, 1), 2, 4).tolist()
    [[0, 1, 1, 0], [0, 0, 0, 0]]
    """
    return box_to_mask(box, height, width)


# ---------------------------------------------------------------------- mask -> point
def _foreground(mask: np.ndarray) -> np.ndarray:
    if mask.ndim != 2:
        raise RegionError(f"mask must be 2-D, got shape {mask.shape}")
    fg = np.flatnonzero(mask)  # row-major (C order) indices of the foreground pixels
    if len(fg) == 0:
        raise RegionError("cannot place a point on an empty mask")
    return fg


def seeded_point(mask: np.ndarray, seed: int | np.random.Generator) -> Point:
    """A uniformly drawn foreground pixel: PROTOCOLS_WAVE2.md §B default (non-reference).

    ``rng = numpy.random.default_rng(seed)``; the foreground pixels in row-major order
    (``numpy.flatnonzero(mask)``); the pixel at index ``rng.integers(len(fg))``.

    Args:
        mask: 2-D array, nonzero = foreground.
        seed: an int (a fresh generator per call), or a ``numpy.random.Generator`` to draw from
            (one stream over several objects, as :func:`seeded_points`).
    Returns:
        ``(x, y)`` = (column, row) of the pixel, as floats.
    Raises:
        RegionError: the mask is empty or not 2-D.

    >>> seeded_point(np.array([[0, 1], [0, 0]]), seed=5)
    (1.0, 0.0)
    """
    fg = _foreground(mask)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    index = int(fg[int(rng.integers(len(fg)))])
    row, col = divmod(index, mask.shape[1])
    return (float(col), float(row))


def seeded_points(masks: Iterable[np.ndarray], seed: int = 0) -> list[Point]:
    """One :func:`seeded_point` per mask, drawn from ONE ``default_rng(seed)`` stream in order.

    The §B rebuild rule ("``numpy.random.default_rng(0)``, objects in file order"): pass the
    masks in file order.
    """
    rng = np.random.default_rng(seed)
    return [seeded_point(mask, rng) for mask in masks]


def _distance_to_background(fg: np.ndarray) -> np.ndarray:
    # Pixels outside the image count as background: pad by one zero pixel so a mask touching
    # the border is at distance 1 there, then crop back.
    padded = np.pad(fg.astype(bool), 1)
    return np.asarray(ndimage.distance_transform_edt(padded))[1:-1, 1:-1]


def visual_centre(mask: np.ndarray) -> Point:
    """The foreground pixel farthest (Euclidean) from any background pixel; deterministic.

    Pixels outside the image count as background; ties go to the first pixel in row-major
    order. Unlike the centre of mass (``Region.convert("points")``) it always lies on the
    region, also for rings and L-shapes.

    Args:
        mask: 2-D array, nonzero = foreground.
    Returns:
        ``(x, y)`` = (column, row) of the pixel, as floats.
    Raises:
        RegionError: the mask is empty or not 2-D.

    >>> visual_centre(np.ones((5, 5)))
    (2.0, 2.0)
    >>> visual_centre(np.ones((3, 5)))  # (1..3, 1) all at distance 2: the first wins
    (1.0, 1.0)
    """
    _foreground(mask)
    dist = _distance_to_background(mask != 0)
    index = int(np.argmax(dist))  # argmax returns the first maximum in row-major order
    row, col = divmod(index, mask.shape[1])
    return (float(col), float(row))


# ---------------------------------------------------------------------- mask -> scribble
def principal_angle(mask: np.ndarray) -> float:
    """Angle (radians, in (-pi/2, pi/2]) of the mask's principal axis, x towards y.

    Closed form of the 2x2 covariance eigenvector, ``0.5 * atan2(2 cxy, cxx - cyy)``, rather
    than an eigen-solver whose sign/order for equal eigenvalues is arbitrary: an isotropic mask
    (square, disc) gets 0, the x axis.
    """
    ys, xs = np.nonzero(mask)
    dx, dy = xs - xs.mean(), ys - ys.mean()
    cxx, cyy, cxy = float((dx * dx).mean()), float((dy * dy).mean()), float((dx * dy).mean())
    return 0.5 * math.atan2(2.0 * cxy, cxx - cyy)


def medial_axis_pixels(mask: np.ndarray) -> np.ndarray:
    """Row-major indices of the ridge of the distance transform (a discrete medial axis).

    A foreground pixel is on the ridge when its distance to the background is >= that of all
    its 8 neighbours (outside the image = background). For a rectangle this is its centre line.
    """
    fg = mask != 0
    dist = _distance_to_background(fg)
    neighbourhood = ndimage.maximum_filter(dist, size=3, mode="constant", cval=0.0)
    return np.flatnonzero(fg & (dist >= neighbourhood))


def seeded_scribble(mask: np.ndarray, seed: int, n_points: int = 5) -> tuple[Point, ...]:
    """A seeded polyline through the mask along its medial axis (evalkit default, non-reference).

    No released code turns masks into scribbles, so this is what a person drawing a stroke
    through the object's middle would do, made reproducible:

    1. candidates = :func:`medial_axis_pixels` (all foreground pixels if the ridge has fewer
       than two pixels, e.g. a square, whose discrete ridge is its centre);
    2. candidates ordered along the principal axis (:func:`principal_angle`): by projection
       ``(x - mean_x) cos a + (y - mean_y) sin a``, ties in row-major order;
    3. that list split into ``k = min(n_points, len(candidates))`` consecutive chunks
       (``numpy.array_split``) and one vertex drawn per chunk, in order, with
       ``rng.integers(len(chunk))`` from ``rng = numpy.random.default_rng(seed)``.

    A one-pixel mask gives that pixel twice (a scribble has at least two vertices), so tiny
    objects still get a region rather than an error.

    Args:
        mask: 2-D array, nonzero = foreground.
        seed: seed of ``numpy.random.default_rng``.
        n_points: most vertices wanted (>= 2).
    Returns:
        ``((x, y), ...)`` pixel (column, row) floats, at least two, ordered along the axis.
    Raises:
        RegionError: the mask is empty or not 2-D, or ``n_points < 2``.

    >>> m = np.zeros((3, 6), np.uint8); m[1, :] = 1
    >>> seeded_scribble(m, seed=0, n_points=6)
    ((0.0, 1.0), (1.0, 1.0), (2.0, 1.0), (3.0, 1.0), (4.0, 1.0), (5.0, 1.0))
    """
    if n_points < 2:
        raise RegionError(f"a scribble needs n_points >= 2, got {n_points}")
    fg = _foreground(mask)
    candidates = medial_axis_pixels(mask)
    if len(candidates) < 2:
        candidates = fg
    width = mask.shape[1]
    rows, cols = np.divmod(candidates, width)
    angle = principal_angle(mask)
    ys, xs = np.divmod(fg, width)
    projection = (cols - xs.mean()) * math.cos(angle) + (rows - ys.mean()) * math.sin(angle)
    order = np.argsort(projection, kind="stable")  # stable: ties keep row-major order
    rng = np.random.default_rng(seed)
    vertices: list[Point] = []
    for chunk in np.array_split(order, min(n_points, len(order))):
        pick = int(chunk[int(rng.integers(len(chunk)))])
        vertices.append((float(cols[pick]), float(rows[pick])))
    if len(vertices) == 1:
        vertices.append(vertices[0])
    return tuple(vertices)


# ---------------------------------------------------------------------- box -> free-form box
def free_form_box(box_xywh: Sequence[float], rng: np.random.RandomState) -> BoxXYWH:
    """SPHINX-V's free-form simulation: ``noise_augmentation`` exactly, on a given stream.

    Draw-and-Understand ``accessory/data/conversation/transforms.py:63`` as called at
    ``dataset.py:296`` (``delta_x_pos=int(w/8), delta_y_pos=int(h/8), delta_size=0.15``)::

        noise_x = randint(-dx, dx + 1); noise_y = randint(-dy, dy + 1)
        noise_w = w * (1 + uniform(-0.15, 0.15)); noise_h = h * (1 + uniform(-0.15, 0.15))
        x += noise_x; y += noise_y; w = max(0, noise_w); h = max(0, noise_h)

    It moves the top-left corner (not the centre) and rescales the size; nothing is clipped to
    the image (as the reference). ``rng`` replaces the global numpy generator the reference
    draws from, with the same four draws in the same order.

    Args:
        box_xywh: COCO ``[x, y, w, h]`` pixels.
        rng: the legacy ``numpy.random.RandomState`` stream to draw from (it advances).
    Returns:
        the perturbed ``(x, y, w, h)`` as floats.

    >>> free_form_box((10, 20, 4, 4), np.random.RandomState(0))[:2]  # w/8 < 1: no shift
    (10.0, 20.0)
    """
    x, y, w, h = (float(v) for v in box_xywh)
    delta_x, delta_y, delta_size = int(w / 8), int(h / 8), 0.15
    noise_x = rng.randint(-delta_x, delta_x + 1)
    noise_y = rng.randint(-delta_y, delta_y + 1)
    noise_w = w * (1 + rng.uniform(-delta_size, delta_size))
    noise_h = h * (1 + rng.uniform(-delta_size, delta_size))
    return (float(x + noise_x), float(y + noise_y), float(max(0, noise_w)), float(max(0, noise_h)))


def free_form_boxes(boxes: Mapping[str, Sequence[float]], seed: int = 0) -> dict[str, BoxXYWH]:
    """:func:`free_form_box` for every sample, from ONE ``RandomState(seed)`` in sorted id order.

    PROTOCOLS_WAVE2.md §C default: its own stream, seed 0, in sample-id order — not the global
    generator, which SPHINX-V's ``generate_response`` reseeds to 0 before every request (every
    box would get the same draws). Sorting makes the result independent of the mapping's order.
    """
    rng = np.random.RandomState(seed)
    return {sample_id: free_form_box(boxes[sample_id], rng) for sample_id in sorted(boxes)}


# ---------------------------------------------------------------------- one entry point
def convert_region(
    region: Region,
    kind: RegionKind,
    method: str | None = None,
    seed: int | None = None,
    rng: np.random.RandomState | None = None,
) -> tuple[Region, Conversion]:
    """The region a model that takes ``kind`` is sent, and the record of how it was made.

    * already ``kind`` → returned as is, ``method="as given"``: points and boxes a data file
      gives are never resampled (a ``method`` is then ignored, except ``"free_form"``);
    * → ``box``: ``"tight_box"`` (default; from masks, points, scribbles — the box
      ``Region.convert("box")`` gives), or ``"free_form"`` (:func:`free_form_box` of the box /
      tight box, drawn from ``rng`` or ``RandomState(seed)``);
    * → ``mask``: ``"rectangle"`` for a box, ``"drawn"`` for points/scribbles (as
      ``Region.convert("mask")``);
    * → ``points``: ``"seeded"`` (default, :func:`seeded_point`) or ``"visual_centre"``; a box
      is first its rectangle mask;
    * → ``scribble``: ``"medial_axis"`` (:func:`seeded_scribble`).

    A seeded method without a seed uses 0 (the protocols' default), recorded in the
    :class:`Conversion`; ``rng`` (only for ``"free_form"``) is a caller's running stream, whose
    seed is recorded only if passed as ``seed`` too. The box is the region's stored ``xyxy``;
    for bit-exact parity with a file's ``xywh`` numbers use :func:`free_form_boxes` on them.
    ``Region.convert`` is left as it was (centre-of-mass point).

    Raises:
        RegionError: an unknown ``method`` for ``kind``, or a region that cannot be converted.
    """
    if kind == region.kind and method != "free_form":
        return region, Conversion(region.kind, kind, "as given", None)
    allowed = _methods(region.kind, kind)
    method = allowed[0] if method is None else method
    if method not in allowed:
        raise RegionError(f"cannot convert {region.kind} -> {kind} by {method!r}; methods: {list(allowed)}")
    if rng is not None and method != "free_form":
        raise RegionError(f"rng is a numpy RandomState stream for 'free_form' only, not {method!r}")
    if method not in SEEDED_METHODS:
        seed = None
    elif seed is None and rng is None:
        seed = 0
    done = Conversion(region.kind, kind, method, seed)
    h, w = region.height, region.width
    if kind == "box":
        x1, y1, x2, y2 = region.box_xyxy()  # tight box; identical to Region.convert("box")
        if method == "tight_box":
            return Region("box", h, w, box=(x1, y1, x2, y2)), done
        stream = rng if rng is not None else np.random.RandomState(seed)
        return Region.from_box(free_form_box((x1, y1, x2 - x1, y2 - y1), stream), h, w, fmt="xywh"), done
    if kind == "mask":
        return region.convert("mask"), done
    mask = region.to_mask(cache=False)
    if kind == "points":
        point = seeded_point(mask, int(seed or 0)) if method == "seeded" else visual_centre(mask)
        return Region.from_points([point], h, w), done
    return Region.from_scribble(seeded_scribble(mask, int(seed or 0)), h, w), done


def _methods(given: str, kind: str) -> tuple[str, ...]:
    """The methods that turn a ``given`` region into ``kind``, the default first."""
    if kind == "box":
        return ("tight_box", "free_form")
    if kind == "mask":
        return ("rectangle",) if given == "box" else ("drawn",)
    if kind == "points":
        return ("seeded", "visual_centre")
    if kind == "scribble":
        return ("medial_axis",)
    raise RegionError(f"unknown region kind {kind!r}")
