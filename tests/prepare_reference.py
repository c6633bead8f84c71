"""The reference preparation scripts' rules, restated for the tests — written from the scripts'
text (Mask2Former 9b0651c ``datasets/prepare_ade20k_{sem,pan,ins}_seg.py``; cityscapesScripts
0bcc4a7 ``createPanopticImgs.py`` and ``json2labelImg.py``), in their loop-by-loop form and
independently of evalkit's converters. Colours come from the upstream panopticapi
``IdGenerator`` itself (panopticapi-lite), its global NumPy RNG seeded before each image as
evalkit documents (sha256("<seed>|<image id>")[:4], little-endian) — the one place where the
reference, unseeded, cannot be reproduced at all.

Only data comes from evalkit: the class tables (names, colours), which tests/test_data_prepare.py
checks against the released mapping file.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pycocotools.mask as mask_util
from PIL import Image, ImageDraw


def _seed(seed: int, image_id: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}|{image_id}".encode()).digest()[:4], "little")


def _mapping(mapping_file: Path) -> dict[int, int]:
    """instance class id -> SceneParsing class id (both as written in the file)."""
    out = {}
    for i, line in enumerate(mapping_file.read_text().splitlines()):
        if i == 0 or not line.strip():
            continue
        ins_id, sem_id, _ = line.split()
        out[int(ins_id)] = int(sem_id)
    return out


def _bbox(mask: np.ndarray) -> list[int]:
    hor = np.sum(mask, axis=0)
    hor_idx = np.nonzero(hor)[0]
    x = hor_idx[0]
    width = hor_idx[-1] - x + 1
    vert = np.sum(mask, axis=1)
    vert_idx = np.nonzero(vert)[0]
    y = vert_idx[0]
    height = vert_idx[-1] - y + 1
    return [int(x), int(y), int(width), int(height)]


def ade_reference(src: Path, out: Path, mapping_file: Path, seed: int = 0) -> None:
    from evalkit.tasks.ovseg.ade20k_classes import ADE20K_150, ADE20K_INSTANCE_100
    from panopticapi.utils import IdGenerator

    # sem_seg: every annotation file, minus one in uint8.
    sem_out = out / "annotations_detectron2" / "validation"
    sem_out.mkdir(parents=True, exist_ok=True)
    for file in sorted((src / "annotations" / "validation").iterdir()):
        img = np.asarray(Image.open(file))
        assert img.dtype == np.uint8
        Image.fromarray(img - 1).save(sem_out / file.name)

    raw_map = _mapping(mapping_file)
    pan_map = {ins - 1: sem - 1 for ins, sem in raw_map.items()}  # the pan script shifts both
    ins_map = {ins: sem - 1 for ins, sem in raw_map.items()}  # the ins script only the class
    categories = [
        {"name": name, "id": k, "isthing": int(k in pan_map.values()), "color": list(colour)}
        for k, (name, colour) in enumerate(ADE20K_150)
    ]
    categories_dict = {c["id"]: c for c in categories}
    pan_folder = out / "ade20k_panoptic_val"
    pan_folder.mkdir(parents=True, exist_ok=True)
    images, pan_annotations, ins_annotations = [], [], []
    ann_id = 1
    for filename in sorted(glob.glob(os.path.join(src / "images" / "validation", "*.jpg"))):
        image_id = os.path.basename(filename).split(".")[0]
        original = np.array(Image.open(filename))
        image = {"id": image_id, "file_name": os.path.basename(filename)}
        image["width"] = original.shape[1]
        image["height"] = original.shape[0]
        images.append(image)
        sem_seg = np.asarray(Image.open(src / "annotations" / "validation" / f"{image_id}.png"))
        ins_seg = np.asarray(Image.open(src / "annotations_instance" / "validation" / f"{image_id}.png"))

        # pan_seg
        np.random.seed(_seed(seed, image_id))
        id_generator = IdGenerator(categories_dict)
        pan_seg = np.zeros((original.shape[0], original.shape[1], 3), dtype=np.uint8)
        semantic_cat_ids = sem_seg - 1
        instance_cat_ids = ins_seg[..., 0] - 1
        instance_ins_ids = ins_seg[..., 1]
        segm_info = []
        for semantic_cat_id in np.unique(semantic_cat_ids):
            if semantic_cat_id == 255 or categories_dict[semantic_cat_id]["isthing"]:
                continue
            mask = semantic_cat_ids == semantic_cat_id
            segment_id, color = id_generator.get_id_and_color(semantic_cat_id)
            pan_seg[mask] = color
            segm_info.append(
                {
                    "id": int(segment_id),
                    "category_id": int(semantic_cat_id),
                    "area": int(np.sum(mask)),
                    "bbox": _bbox(mask),
                    "iscrowd": 0,
                }
            )
        for thing_id in np.unique(instance_ins_ids):
            if thing_id == 0:
                continue
            mask = instance_ins_ids == thing_id
            instance_cat_id = np.unique(instance_cat_ids[mask])
            assert len(instance_cat_id) == 1
            semantic_cat_id = pan_map[instance_cat_id[0]]
            segment_id, color = id_generator.get_id_and_color(semantic_cat_id)
            pan_seg[mask] = color
            segm_info.append(
                {
                    "id": int(segment_id),
                    "category_id": int(semantic_cat_id),
                    "area": int(np.sum(mask)),
                    "bbox": _bbox(mask),
                    "iscrowd": 0,
                }
            )
        pan_annotations.append(
            {"image_id": image_id, "file_name": image_id + ".png", "segments_info": segm_info}
        )
        Image.fromarray(pan_seg).save(pan_folder / f"{image_id}.png")

        # ins_seg
        for thing_id in np.unique(ins_seg[..., 1]):
            if thing_id == 0:
                continue
            mask = ins_seg[..., 1] == thing_id
            instance_cat_id = np.unique(ins_seg[..., 0][mask])
            assert len(instance_cat_id) == 1
            anno: dict[str, Any] = {"id": ann_id, "image_id": image["id"], "iscrowd": 0}
            ann_id += 1
            anno["category_id"] = int(ins_map[instance_cat_id[0]])
            inds = np.nonzero(mask)
            ymin, ymax = inds[0].min(), inds[0].max()
            xmin, xmax = inds[1].min(), inds[1].max()
            anno["bbox"] = [int(xmin), int(ymin), int(xmax - xmin + 1), int(ymax - ymin + 1)]
            rle = mask_util.encode(np.array(mask[:, :, None], order="F", dtype="uint8"))[0]
            rle["counts"] = rle["counts"].decode("utf-8")
            anno["segmentation"] = rle
            anno["area"] = int(mask_util.area(rle))
            ins_annotations.append(anno)

    with open(out / "ade20k_panoptic_val.json", "w") as f:
        json.dump({"images": images, "annotations": pan_annotations, "categories": categories}, f)
    ins_categories = [{"id": ins_map[ins], "name": name} for ins, _, name in ADE20K_INSTANCE_100]
    with open(out / "ade20k_instance_val.json", "w") as f:
        json.dump({"images": images, "categories": ins_categories, "annotations": ins_annotations}, f)


def cityscapes_reference(src: Path, out: Path) -> None:
    from evalkit.tasks.ovseg.cityscapes_labels import LABELS

    id2label = {label.id: label for label in LABELS}
    name2label = {label.name: label for label in LABELS}
    categories = [
        {
            "id": int(label.id),
            "name": label.name,
            "color": label.color,
            "supercategory": label.category,
            "isthing": 1 if label.has_instances else 0,
        }
        for label in LABELS
        if not label.ignore_in_eval
    ]
    files = sorted(glob.glob(os.path.join(src, "gtFine", "val", "*", "*_instanceIds.png")))
    pan_folder = out / "gtFine" / "cityscapes_panoptic_val"
    pan_folder.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for f in files:
        original = np.array(Image.open(f))
        file_name = os.path.basename(f)
        image_id = file_name.replace("_gtFine_instanceIds.png", "")
        images.append(
            {
                "id": image_id,
                "width": int(original.shape[1]),
                "height": int(original.shape[0]),
                "file_name": file_name.replace("_instanceIds.png", "_leftImg8bit.png"),
            }
        )
        pan_format = np.zeros((original.shape[0], original.shape[1], 3), dtype=np.uint8)
        segm_info = []
        for segment_id in np.unique(original):
            if segment_id < 1000:
                semantic_id, is_crowd = segment_id, 1
            else:
                semantic_id, is_crowd = segment_id // 1000, 0
            label = id2label[semantic_id]
            if label.ignore_in_eval:
                continue
            if not label.has_instances:
                is_crowd = 0
            mask = original == segment_id
            pan_format[mask] = [segment_id % 256, segment_id // 256, segment_id // 256 // 256]
            segm_info.append(
                {
                    "id": int(segment_id),
                    "category_id": int(label.id),
                    "area": int(np.sum(mask)),
                    "bbox": _bbox(mask),
                    "iscrowd": is_crowd,
                }
            )
        out_name = file_name.replace("_instanceIds.png", "_panoptic.png")
        annotations.append({"image_id": image_id, "file_name": out_name, "segments_info": segm_info})
        Image.fromarray(pan_format).save(pan_folder / out_name)

        # json2labelImg(polygons, labelTrainIds, "trainIds")
        poly = f.replace("_instanceIds.png", "_polygons.json")
        annotation = json.loads(Path(poly).read_text())
        label_img = Image.new(
            "L", (annotation["imgWidth"], annotation["imgHeight"]), name2label["unlabeled"].train_id
        )
        drawer = ImageDraw.Draw(label_img)
        for obj in annotation["objects"]:
            name = obj["label"]
            if obj.get("deleted", 0):
                continue
            if name not in name2label and name.endswith("group"):
                name = name[: -len("group")]
            if name2label[name].id < 0:
                continue
            drawer.polygon([tuple(p) for p in obj["polygon"]], fill=name2label[name].train_id)
        city = Path(f).parent.name
        dst = out / "gtFine" / "val" / city
        dst.mkdir(parents=True, exist_ok=True)
        label_img.save(dst / file_name.replace("_instanceIds.png", "_labelTrainIds.png"))
    with open(out / "gtFine" / "cityscapes_panoptic_val.json", "w") as fh:
        json.dump(
            {"images": images, "annotations": annotations, "categories": categories},
            fh,
            sort_keys=True,
            indent=4,
        )
