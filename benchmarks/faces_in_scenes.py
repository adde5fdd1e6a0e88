"""Faces in scenes (issue #35): detection recall by face size, 4-class accuracy of the detected
faces against the same faces read as plain crops, and time per image with 0, 1 and 10 faces.

    nice python benchmarks/faces_in_scenes.py [--composites 120] [--repeats 7] [--seed 0]

Composites are built at run time and never saved: each is an Emotion6 image (any class; scaled to
cover 640 × 480 px and centre-cropped) with one face of each size in :data:`SIZES` pasted at a
random place, no two overlapping. Each face is drawn with its source uniform over FER2013
PrivateTest (48 px crops), JAFFE (the reader's face crops of the 256 px shots) and CK+48 (48 px
crops), its class uniform over the 4 mapped classes (happy, sad, disgust→hate, angry→anger), and a
face uniform within (source, class) (a pool repeats only once all its faces were dealt: see
``pools_dealt_more_than_once``). Faces are pasted grey (as the datasets give
them), resized to the square box.

A pasted box counts as found when a detection (``read_faces`` with ``min_face`` = the cascade's
own 20 px window, at most 50 faces) overlaps it with IoU ≥ 0.4, one detection per box. Found
faces are scored on the 4 classes as read in the scene, and the same faces read alone (the plain
crop through the same reader: grey, the model's fit and flip) — the gap is what detection and
pasting cost. The same detections are also read with the margins of :data:`OTHER_MARGINS`
(``accuracy_found_by_margin``: the first half of the composites to choose on, the second to
report). Detections that match no pasted box are counted (Emotion6 photos have people of their
own, so they are not all false positives).

Readers: on ``--reader-faces`` FER2013 PrivateTest faces (mapped classes), the face branch alone
(what ``read_faces`` uses: 7 expressions mapped to the 4 classes) against the whole model on the
crop (the figure the model card quotes): accuracy and seconds per face.

Timing: one composite with 0, 1 and 10 faces of 64 px: ``analyze`` without and with ``faces=True``
and detection alone, median (and fastest) of ``--repeats`` runs after one warm-up, the cases in
turn within each repeat, one torch/onnxruntime/OpenCV thread. Writes
``benchmarks/results/faces/faces_in_scenes.json``.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from emoadapt.api import Predictor
from emoadapt.data import open_dataset
from emoadapt.data.locate import dataset_path
from emoadapt.data.labels import IER_CLASSES
from emoadapt.faces.options import CASCADE_FILE, CASCADE_WINDOW, MARGIN
from emoadapt.faces.detect import FaceBox, detect_faces
from emoadapt.faces.read import face_crops, read_crops
from emoadapt.models.registry import DEFAULT_MODEL

from lib.provenance import provenance, write_json

OUT = Path(__file__).resolve().parent / "results" / "faces" / "faces_in_scenes.json"
SIZES = (24, 32, 48, 64, 96, 128)
CANVAS = (640, 480)
SOURCES = ("fer2013", "jaffe", "ckplus48")
IOU = 0.4
#: margins tried besides the default (:data:`emoadapt.faces.options.MARGIN`), on the same detections
OTHER_MARGINS = (0.0, 0.25, 0.4)


def face_pools(rng: random.Random) -> dict[tuple[str, str], dict]:
    """``{(source, IER class): {"faces": [(dataset, sample)…] shuffled, "next": 0, "rounds": 1}}`` of
    FER2013 PrivateTest, JAFFE and CK+48."""
    pools: dict[tuple[str, str], list] = {}
    for source in SOURCES:
        dataset = open_dataset(dataset_path(source), source).to_ier_dataset()
        if source == "fer2013":
            dataset = dataset.split("PrivateTest")
        for sample in dataset.samples:
            pools.setdefault((source, sample.label), []).append((dataset, sample))
    for key, faces in pools.items():
        rng.shuffle(faces)
        pools[key] = {"faces": faces, "next": 0, "rounds": 1}
    return pools


def scene_images() -> list:
    """(dataset, sample) of every Emotion6 image (backgrounds; their labels are not used)."""
    dataset = open_dataset(dataset_path("emotion6"), "emotion6")
    return [(dataset, sample) for sample in dataset.samples]


def cover(image: Image.Image, size: tuple[int, int] = CANVAS) -> Image.Image:
    """``image`` scaled to cover ``size`` (w, h) and centre-cropped to it, RGB."""
    scale = max(size[0] / image.width, size[1] / image.height)
    image = image.convert("RGB").resize((max(size[0], round(image.width * scale)),
                                         max(size[1], round(image.height * scale))), Image.Resampling.BILINEAR)
    left, top = (image.width - size[0]) // 2, (image.height - size[1]) // 2
    return image.crop((left, top, left + size[0], top + size[1]))


def place(sizes: list[int], rng: random.Random, canvas: tuple[int, int] = CANVAS, gap: int = 8) -> list[tuple]:
    """Non-overlapping boxes ``(x, y, s, s)`` for faces of ``sizes`` px (largest placed first)."""
    boxes: list[tuple] = []
    for side in sorted(sizes, reverse=True):
        for _ in range(1000):
            x, y = rng.randrange(0, canvas[0] - side), rng.randrange(0, canvas[1] - side)
            if all(x + side + gap <= bx or bx + bs + gap <= x or y + side + gap <= by or by + bs + gap <= y
                   for bx, by, bs, _ in boxes):
                boxes.append((x, y, side, side))
                break
        else:
            raise RuntimeError(f"no room for a {side} px face")
    return boxes


def composite(scene: Image.Image, faces: list[Image.Image], boxes: list[tuple]) -> Image.Image:
    """``scene`` with each grey face resized into its box."""
    out = scene.copy()
    for face, (x, y, w, h) in zip(faces, boxes):
        out.paste(face.convert("RGB").resize((w, h), Image.Resampling.BILINEAR), (x, y))
    return out


def iou(a, b) -> float:
    """Intersection over union of two boxes (x, y, w, h)."""
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def match(truth: list[tuple], found: list[dict]) -> list[int | None]:
    """For each true box, the index of its detection (IoU ≥ :data:`IOU`, greedy by IoU, one each)."""
    pairs = sorted(((iou(t, f["box"]), i, j) for i, t in enumerate(truth) for j, f in enumerate(found)), reverse=True)
    matched: list[int | None] = [None] * len(truth)
    used = set()
    for overlap, i, j in pairs:
        if overlap >= IOU and matched[i] is None and j not in used:
            matched[i] = j
            used.add(j)
    return matched


def draw_faces(pools, rng: random.Random, count: int) -> list[tuple]:
    """``count`` faces ``(source, label, image)``: source and class uniform; a (source, class) pool
    deals its faces in a shuffled order and, once every face was dealt, again in a new order
    (JAFFE has about 30 faces per class)."""
    drawn = []
    for _ in range(count):
        source, label = rng.choice(SOURCES), rng.choice(IER_CLASSES)
        pool = pools[(source, label)]
        if pool["next"] == len(pool["faces"]):
            rng.shuffle(pool["faces"])
            pool["next"], pool["rounds"] = 0, pool["rounds"] + 1
        dataset, sample = pool["faces"][pool["next"]]
        pool["next"] += 1
        drawn.append((source, label, dataset.load(sample, "L")))
    return drawn


def measure_scenes(predictor: Predictor, pools, scenes, count: int, rng: random.Random) -> list[dict]:
    """One record per pasted face of ``count`` composites: size, source, label, found, IoU, the class
    read in the scene and alone."""
    records = []
    for index in range(count):
        dataset, sample = scenes[rng.randrange(len(scenes))]
        faces = draw_faces(pools, rng, len(SIZES))
        boxes = place(list(SIZES), rng)
        picture = composite(cover(dataset.load(sample)), [image for _, _, image in faces], boxes)
        found = predictor.read_faces(picture, min_face=CASCADE_WINDOW, max_faces=50)["faces"]
        matched = match(boxes, found)
        alone = read_crops(predictor, [image.convert("RGB") for _, _, image in faces])["probs"]
        by_margin = margin_reads(predictor, picture, found)
        for k, ((source, label, _), box, j) in enumerate(zip(faces, boxes, matched)):
            records.append({"composite": index, "size": box[2], "source": source, "label": label,
                            "found": j is not None, "iou": round(iou(box, found[j]["box"]), 3) if j is not None else None,
                            "in_scene": found[j]["dominant_emotion"] if j is not None else None,
                            "alone": predictor.classes[int(alone[k].argmax())],
                            "in_scene_margin": {m: classes[j] for m, classes in by_margin.items()} if j is not None else None})
        records.append({"composite": index, "unmatched": len(found) - sum(j is not None for j in matched)})
        if index % 20 == 0:
            print(f"composite {index}/{count}", flush=True)
    return records


def margin_reads(predictor: Predictor, picture: Image.Image, found: list[dict]) -> dict[str, list[str]]:
    """The class of each detected face read with each margin of :data:`OTHER_MARGINS` (the default's
    is ``in_scene``)."""
    if not found:
        return {str(m): [] for m in OTHER_MARGINS}
    boxes = [FaceBox(*face["box"], score=face["score"]) for face in found]
    return {str(m): [predictor.classes[int(p.argmax())] for p in read_crops(predictor, face_crops(picture, boxes, m))["probs"]]
            for m in OTHER_MARGINS}


def margin_summary(records: list[dict], count: int) -> dict:
    """4-class accuracy of the found faces read with each margin, on the first half of the composites
    (to choose on) and the second half (to report)."""
    found = [r for r in records if r.get("found")]
    halves = {"first_half": [r for r in found if r["composite"] < count // 2],
              "second_half": [r for r in found if r["composite"] >= count // 2]}
    out = {}
    for margin in (str(MARGIN), *map(str, OTHER_MARGINS)):
        read = (lambda r: r["in_scene"]) if margin == str(MARGIN) else (lambda r, m=margin: r["in_scene_margin"][m])
        out[margin] = {half: round(sum(read(r) == r["label"] for r in group) / len(group), 4) if group else None
                       for half, group in halves.items()}
    return out


def summary(records: list[dict]) -> dict:
    """Recall by size and source, accuracy of found faces in the scene vs alone, unmatched detections."""
    faces = [r for r in records if "size" in r]
    out: dict = {"recall_by_size": {}, "recall_by_source_size": {}, "accuracy_by_size": {}}
    for size in SIZES:
        group = [r for r in faces if r["size"] == size]
        out["recall_by_size"][str(size)] = round(sum(r["found"] for r in group) / len(group), 4)
        out["accuracy_by_size"][str(size)] = accuracy([r for r in group if r["found"]])
        for source in SOURCES:
            part = [r for r in group if r["source"] == source]
            out["recall_by_source_size"].setdefault(source, {})[str(size)] = (
                round(sum(r["found"] for r in part) / len(part), 4) if part else None)
    found = [r for r in faces if r["found"]]
    out["recall"] = round(len(found) / len(faces), 4)
    out["accuracy_found"] = accuracy(found)
    out["accuracy_alone_all"] = round(sum(r["alone"] == r["label"] for r in faces) / len(faces), 4)
    out["accuracy_by_source"] = {source: accuracy([r for r in found if r["source"] == source]) for source in SOURCES}
    unmatched = [r["unmatched"] for r in records if "unmatched" in r]
    out["unmatched_detections_per_composite"] = round(sum(unmatched) / len(unmatched), 3)
    out["n_faces"], out["n_found"], out["n_composites"] = len(faces), len(found), len(unmatched)
    return out


def accuracy(group: list[dict]) -> dict:
    """``{"n", "in_scene", "alone"}``: 4-class accuracy of the same faces read in the scene and alone."""
    if not group:
        return {"n": 0, "in_scene": None, "alone": None}
    n = len(group)
    return {"n": n, "in_scene": round(sum(r["in_scene"] == r["label"] for r in group) / n, 4),
            "alone": round(sum(r["alone"] == r["label"] for r in group) / n, 4)}


def measure_time(predictor: Predictor, pools, scenes, repeats: int, rng: random.Random) -> dict:
    """Seconds on one 640 × 480 composite with 0, 1 and 10 faces of 64 px: ``analyze`` without
    faces (``whole_image_s``), with ``faces=True`` (``with_faces_s``) and detection alone
    (``detect_s``); each the median of ``repeats`` runs (``*_min``: the fastest) after one warm-up.
    The cases run in turn within each repeat, so that a change of the machine's load hits them alike."""
    dataset, sample = scenes[rng.randrange(len(scenes))]
    scene = cover(dataset.load(sample))
    faces = [image for _, _, image in draw_faces(pools, rng, 10)]
    boxes = place([64] * 10, rng)
    pictures = {count: composite(scene, faces[:count], boxes[:count]) for count in (0, 1, 10)}
    cases = {(count, key): run for count, picture in pictures.items() for key, run in (
        ("whole_image_s", lambda picture=picture: predictor.analyze(picture)),
        ("with_faces_s", lambda picture=picture: predictor.analyze(picture, faces=True)),
        ("detect_s", lambda picture=picture: detect_faces(picture)))}
    times: dict = {case: [] for case in cases}
    for case, run in cases.items():
        run()  # warm-up
    for _ in range(repeats):
        for case, run in cases.items():
            started = time.perf_counter()
            run()
            times[case].append(time.perf_counter() - started)
    out = {}
    for count, picture in pictures.items():
        row = {"faces_read": predictor.analyze(picture, faces=True)["faces"]["count"]}
        for key in ("whole_image_s", "with_faces_s", "detect_s"):
            row[key] = round(statistics.median(times[(count, key)]), 4)
            row[key.replace("_s", "_min_s")] = round(min(times[(count, key)]), 4)
        out[str(count)] = row
    return out


def compare_readers(predictor: Predictor, count: int, rng: random.Random) -> dict:
    """4-class accuracy and seconds per face of the two readers on ``count`` FER2013 PrivateTest faces
    of the mapped classes: the face branch alone (what ``read_faces`` uses) and the whole model."""
    dataset = open_dataset(dataset_path("fer2013"), "fer2013").to_ier_dataset().split("PrivateTest")
    samples = rng.sample(dataset.samples, min(count, len(dataset.samples)))
    truth = np.array([predictor.classes.index(s.label) for s in samples])
    out = {"n": len(samples)}
    for name in ("face-branch", "model"):
        hits, seconds = 0, 0.0
        for start in range(0, len(samples), 50):
            crops = [dataset.load(s, "L").convert("RGB") for s in samples[start:start + 50]]
            started = time.perf_counter()
            if name == "face-branch":
                probs = read_crops(predictor, crops)["probs"]
            else:
                probs = predictor.predict_outputs(torch.stack([predictor.preprocess(c) for c in crops]))["probs"]
            seconds += time.perf_counter() - started
            hits += int((probs.argmax(1) == truth[start:start + 50]).sum())
        out[name] = {"accuracy": round(hits / len(samples), 4), "seconds_per_face": round(seconds / len(samples), 4)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--composites", type=int, default=120, help="composites for recall and accuracy")
    parser.add_argument("--repeats", type=int, default=11, help="timed runs per case (median)")
    parser.add_argument("--reader-faces", type=int, default=600,
                        help="FER2013 PrivateTest faces for the comparison of readers (0: skip)")
    parser.add_argument("--seed", type=int, default=0, help="seed of faces, scenes and places")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model (default: the shipped default)")
    parser.add_argument("--out", default=str(OUT), help="results JSON")
    args = parser.parse_args()
    import cv2

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    predictor = Predictor(args.model, threads=1)
    load_start = [round(v, 2) for v in os.getloadavg()]
    rng = random.Random(args.seed)
    pools, scenes = face_pools(rng), scene_images()
    started = time.perf_counter()
    records = measure_scenes(predictor, pools, scenes, args.composites, rng)
    rounds = {f"{source}/{label}": pool["rounds"] for (source, label), pool in pools.items() if pool["rounds"] > 1}
    result = {"sizes_px": list(SIZES), "canvas_px": list(CANVAS), "sources": list(SOURCES), "iou_threshold": IOU,
              "detector": f"OpenCV {cv2.__version__} {CASCADE_FILE}, min face {CASCADE_WINDOW} px",
              "margin": MARGIN, "pools_dealt_more_than_once": rounds, **summary(records),
              "accuracy_found_by_margin": margin_summary(records, args.composites), "scenes_seconds": round(time.perf_counter() - started, 1),
              "timing": measure_time(predictor, pools, scenes, args.repeats, rng), "runtime": predictor.runtime,
              "readers_fer2013_privatetest": compare_readers(predictor, args.reader_faces, rng) if args.reader_faces else None}
    load = {"start": load_start, "end": [round(v, 2) for v in os.getloadavg()]}  # 1/5/15-min load (2 cores shared)
    payload = {**provenance(predictor.meta.get("name", args.model), predictor.meta.get("weights_sha256"),
                            load_average=load), **result,
               "records": records}
    print(f"wrote {write_json(args.out, payload)}")
    print({k: v for k, v in result.items() if k != "records"})


if __name__ == "__main__":
    main()
