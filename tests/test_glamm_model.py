"""GLaMM's pieces against hand-computed values and literal restatements of the reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from evalkit.models.glamm import generation
from evalkit.models.glamm.generation import Job, generate
from evalkit.models.glamm.modeling import IMAGE_SENTINEL, GLaMMModel
from evalkit.models.glamm.preprocess import clip_view, longest_side_shape, sam_view
from evalkit.models.glamm.prompting import GLaMMTokenizer, render_prompt
from evalkit.models.glamm.region_encoder import roi_align
from evalkit.models.glamm.sam_decoder import upscale_to_image
from evalkit.models.glamm.sam_encoder import relative_positions, window_partition, window_unpartition
from evalkit.records import Request
from tests.glamm_helpers import GCG_PROMPT, REGCAP_PROMPT, tiny_model, tiny_tokenizer


# ---------------------------------------------------------------------- RoIAlign
def mmcv_bilinear(feat: np.ndarray, y: float, x: float) -> np.ndarray:
    """mmcv roi_align_kernel.cuh ``bilinear_interpolate``, line by line."""
    height, width = feat.shape[1:]
    if y < -1.0 or y > height or x < -1.0 or x > width:
        return np.zeros(feat.shape[0])
    y, x = max(y, 0.0), max(x, 0.0)
    y_low, x_low = int(y), int(x)
    if y_low >= height - 1:
        y_high = y_low = height - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= width - 1:
        x_high = x_low = width - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    hy, hx = 1.0 - ly, 1.0 - lx
    return (
        hy * hx * feat[:, y_low, x_low]
        + hy * lx * feat[:, y_low, x_high]
        + ly * hx * feat[:, y_high, x_low]
        + ly * lx * feat[:, y_high, x_high]
    )


def mmcv_roi_align(feats: np.ndarray, rois: np.ndarray, out: int, scale: float, ratio: int) -> np.ndarray:
    """mmcv ``roi_align_forward`` (aligned=True, avg), loops as in the kernel."""
    result = np.zeros((len(rois), feats.shape[1], out, out))
    for k, (b, x1, y1, x2, y2) in enumerate(rois):
        start_w, start_h = x1 * scale - 0.5, y1 * scale - 0.5
        roi_w, roi_h = x2 * scale - 0.5 - start_w, y2 * scale - 0.5 - start_h
        bin_h, bin_w = roi_h / out, roi_w / out
        for ph in range(out):
            for pw in range(out):
                acc = np.zeros(feats.shape[1])
                for iy in range(ratio):
                    y = start_h + ph * bin_h + (iy + 0.5) * bin_h / ratio
                    for ix in range(ratio):
                        x = start_w + pw * bin_w + (ix + 0.5) * bin_w / ratio
                        acc += mmcv_bilinear(feats[int(b)], y, x)
                result[k, :, ph, pw] = acc / (ratio * ratio)
    return result


def test_roi_align_is_mmcv_aligned_roi_align() -> None:
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(2, 3, 9, 11))
    rois = np.array(
        [
            [0, 3.0, 2.0, 30.0, 25.0],  # inside
            [1, -8.0, -6.0, 12.0, 40.0],  # over the top-left and bottom edges
            [0, 70.0, 50.0, 90.0, 80.0],  # outside: zeros
            [1, 10.0, 10.0, 10.5, 10.2],  # smaller than a cell
        ]
    )
    expected = mmcv_roi_align(feats, rois, out=4, scale=1 / 3.5, ratio=2)
    got = roi_align(torch.tensor(feats), torch.tensor(rois), 4, 1 / 3.5, 2)
    assert np.allclose(got.numpy(), expected, atol=1e-12)
    assert np.all(expected[2] == 0)


def test_the_official_layer_slice_reads_layers_14_17_20_23_of_vit_l() -> None:
    # CLIPVisionTower returns 25 hidden states (embeddings + 24 layers).
    states = list(range(25))
    assert states[-2::-3][::-1][-4:] == [14, 17, 20, 23]
    assert list(range(11))[-2::-3][::-1][-4:] == [0, 3, 6, 9]  # the 10-layer tiny tower


# ---------------------------------------------------------------------- SAM pieces
def test_window_partition_round_trip_with_padding() -> None:
    x = torch.arange(2 * 5 * 7 * 3, dtype=torch.float32).view(2, 5, 7, 3)
    windows, padded = window_partition(x, 3)
    assert padded == (6, 9) and windows.shape == (2 * 2 * 3, 3, 3, 3)
    assert torch.equal(windows[0], x[0, :3, :3])
    assert torch.equal(window_unpartition(windows, 3, padded, (5, 7)), x)


def test_relative_position_offsets() -> None:
    table = torch.arange(3, dtype=torch.float32)[:, None]  # offsets -1, 0, +1 as rows 0..2
    got = relative_positions(2, 2, table)[..., 0]
    assert got.tolist() == [[1.0, 0.0], [2.0, 1.0]]  # row q, column k: (q - k) + 1


def test_masks_are_cropped_from_the_padded_square_then_resized() -> None:
    low = torch.zeros(1, 1, 4, 4)
    low[0, 0, :2, :] = 5.0  # the top half of the padded square
    out = upscale_to_image(low, 16, resized=(8, 16), original=(4, 8))
    # The image fills the top half of the square: its logits are all 5 but near the bottom.
    assert out.shape == (1, 4, 8) and out.dtype == torch.float32
    assert bool((out[0, 0] > 4.9).all())


# ---------------------------------------------------------------------- preprocessing
def test_longest_side_shape_rounds_half_up() -> None:
    assert longest_side_shape(480, 640, 1024) == (768, 1024)
    assert longest_side_shape(333, 500, 1024) == (682, 1024)  # 681.98 -> 682
    assert longest_side_shape(500, 333, 64) == (64, 43)  # 42.624 + 0.5 -> 43


def test_clip_view_is_a_centre_crop_and_sam_view_is_padded() -> None:
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:, 10:30] = 255  # the middle half: exactly the centre crop after the resize
    image = Image.fromarray(pixels)
    clip = clip_view(image, 20)
    assert clip.shape == (3, 20, 20)
    white = (1.0 - 0.48145466) / 0.26862954
    assert abs(float(clip[0, 10, 10]) - white) < 1e-5 and abs(float(clip[0, 0, 0]) - white) < 1e-5
    sam, resized = sam_view(image, 64)
    assert resized == (32, 64) and sam.shape == (3, 64, 64)
    assert float(sam[0, 40, 5]) == 0.0  # padding below the image
    assert abs(float(sam[0, 0, 32]) - (255 - 123.675) / 58.395) < 1e-4


@pytest.mark.parametrize("shape", [(70, 90), (90, 70), (56, 56), (101, 57)])
def test_clip_view_equals_transformers_clip_image_processor(shape: tuple[int, int]) -> None:
    """``CLIPImageProcessor.preprocess`` with the clip-vit-large-patch14-336 settings (shortest
    edge, bicubic, centre crop), at a small size."""
    from transformers import CLIPImageProcessor

    processor = CLIPImageProcessor(
        size={"shortest_edge": 56}, crop_size={"height": 56, "width": 56}, resample=3, do_center_crop=True
    )
    pixels = np.random.default_rng(0).integers(0, 255, (*shape, 3), dtype=np.uint8)
    expected = processor.preprocess(pixels, return_tensors="pt")["pixel_values"][0]
    assert torch.equal(clip_view(Image.fromarray(pixels), 56), expected)


# ---------------------------------------------------------------------- the model
@pytest.fixture(scope="module")
def tok() -> GLaMMTokenizer:
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def model(tok: GLaMMTokenizer) -> GLaMMModel:
    return tiny_model(tok, seed=1)


def test_embed_inputs_splices_image_and_bbox_tokens(model: GLaMMModel, tok: GLaMMTokenizer) -> None:
    ids = torch.tensor([1, 7, IMAGE_SENTINEL, 8, tok.bbox_id, 9])
    image = torch.randn(5, model.config.hidden_size)
    boxes = torch.randn(1, model.config.hidden_size)
    out = model.embed_inputs(ids, image, boxes, tok.bbox_id)
    text = model.embed_text(torch.tensor([1, 7, 8, 9]))
    assert out.shape == (10, model.config.hidden_size)
    assert torch.equal(out[:2], text[:2]) and torch.equal(out[2:7], image)
    assert torch.equal(out[7], text[2]) and torch.equal(out[8], boxes[0]) and torch.equal(out[9], text[3])
    with pytest.raises(ValueError, match="1 <bbox> token"):
        model.embed_inputs(ids, image, None, tok.bbox_id)


def job_for(tok: GLaMMTokenizer, max_new_tokens: int = 6) -> Job:
    rendered = render_prompt(REGCAP_PROMPT)
    request = Request("r", "s", "x.png", REGCAP_PROMPT, [], {})
    return Job(
        request, rendered, tok.encode_prompt(rendered), "x.png", None, max_new_tokens, 0.0, 1.0, 0, True, True
    )


def test_kv_cache_generation_matches_the_full_forward(
    model: GLaMMModel, tok: GLaMMTokenizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Greedy tokens, log-probs and the [SEG] states equal the reference forward's over the
    prompt + answer (the official evaluate re-runs the whole sequence at every step)."""
    torch.manual_seed(0)
    image = torch.randn(3, model.config.vision.clip.image_size, model.config.vision.clip.image_size)
    boxes = torch.tensor([[0.1, 0.2, 0.6, 0.9]])
    features = model.encode_images(image[None])
    bbox = model.region_tokens(model.region_maps(features), [boxes])[0]
    job = job_for(tok)
    job.ids = tok.encode_prompt(render_prompt(REGCAP_PROMPT))
    assert job.ids.count(tok.bbox_id) == 1
    # Steps 2 and 4 are forced to [SEG]; the others are the model's greedy choice.
    real = generation.choose_next
    step = {"n": 0}

    def scripted(logits: torch.Tensor, job: Job, gen: torch.Generator | None) -> int:
        step["n"] += 1
        return tok.seg_id if step["n"] in (2, 4) else real(logits, job, gen)

    monkeypatch.setattr(generation, "choose_next", scripted)
    with torch.no_grad():
        done = generate(model, job, features.tokens[0], bbox, tok.bbox_id, tok.seg_id, tok.eos_id)
        full = torch.tensor(job.ids + done.token_ids)
        hidden, logits = model(full, image, boxes, tok.bbox_id)
    n_image = model.config.vision.clip.image_tokens
    prompt_len = len(job.ids) + n_image - 1
    assert len(done.token_ids) == 6 and done.token_ids[1] == done.token_ids[3] == tok.seg_id
    assert done.token_logprobs is not None
    for k, token in enumerate(done.token_ids):
        row = logits[prompt_len - 1 + k]
        if k not in (1, 3):
            assert int(row.argmax()) == token
        assert math.isclose(done.token_logprobs[k], float(row.log_softmax(-1)[token]), abs_tol=1e-4)
    # The state kept for the [SEG] at answer position k is the one at k - 1.
    seg_at = [k for k, t in enumerate(done.token_ids) if t == tok.seg_id]
    assert {1, 3} <= set(seg_at)
    expected = hidden[[prompt_len - 1 + k for k in seg_at]]
    assert torch.allclose(done.seg_hidden, expected, atol=1e-5)


def test_masks_come_at_the_original_size(model: GLaMMModel) -> None:
    sam = model.config.vision.sam.image_size
    embedding = model.encode_sam(torch.randn(1, 3, sam, sam))
    logits = model.masks(torch.randn(3, model.config.hidden_size), embedding, (48, 64), (75, 100))
    assert logits.shape == (3, 75, 100) and logits.dtype == torch.float32
    # Each [SEG] state is its own prompt: masks differ when the states do.
    assert not torch.equal(logits[0], logits[1])


def test_a_left_padded_batch_decodes_as_each_row_alone(model: GLaMMModel, tok: GLaMMTokenizer) -> None:
    from evalkit.models.glamm.generation import generate_batch

    torch.manual_seed(0)
    size = model.config.vision.clip.image_size
    features = model.encode_images(torch.randn(2, 3, size, size))
    maps = model.region_maps(features)
    jobs, embeds, singles = [], [], []
    prompts = [
        (GCG_PROMPT, None),
        (REGCAP_PROMPT, torch.tensor([[0.1, 0.2, 0.5, 0.6]])),
        ("What is this?", None),
    ]
    for i, (prompt, box) in enumerate(prompts):
        rendered = render_prompt(prompt)
        ids = tok.encode_prompt(rendered)
        job = Job(
            Request(f"r{i}", "s", "x", prompt, [], {}), rendered, ids, "x", box, 10, 0.0, 1.0, 0, True, True
        )
        image = features.tokens[i % 2]
        bbox = (
            model.region_tokens([m[i % 2 : i % 2 + 1] for m in maps], [box])[0] if box is not None else None
        )
        jobs.append(job)
        embeds.append(model.embed_inputs(torch.tensor(ids), image, bbox, tok.bbox_id))
        singles.append(generate(model, job, image, bbox, tok.bbox_id, tok.seg_id, tok.eos_id))
    assert len({e.shape[0] for e in embeds}) == 3  # three prompt lengths: real padding
    for alone, together in zip(
        singles, generate_batch(model, jobs, embeds, tok.seg_id, tok.eos_id), strict=True
    ):
        assert together.token_ids == alone.token_ids
        assert together.token_logprobs == pytest.approx(alone.token_logprobs, abs=1e-5)
        assert torch.allclose(together.seg_hidden, alone.seg_hidden, atol=1e-5)
