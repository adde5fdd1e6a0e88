"""``emoadapt predict``: emotion probabilities for any number of images, streamed to CSV/JSONL."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._shared import (add_dncshap_options, add_model_options, add_scale_options, expand_inputs, load_predictor,
                      shard_of, workers_of)

#: exit statuses of ``emoadapt predict`` (and every command; docs/reliability.md)
EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3

NAME = "predict"
HELP = "predict the emotion of images (files, folders, globs) into CSV/JSONL"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(NAME, help=HELP,
                       description="One row per image: path, emotion, prob_<class>…, uncertain (true/false), "
                                   "uncertain_reason, seconds, error (and valence, arousal, dist_<emotion>… when the "
                                   "model has affect heads). A file that cannot be decoded gets an error row. Videos "
                                   "(.mp4, .avi, .mov, .mkv…): one row per frame sampled --every, with its time in "
                                   "seconds. Exit status: 0 every image predicted, 1 some "
                                   "images failed (error rows), 2 usage or configuration error, 3 internal failure.")
    p.add_argument("inputs", nargs="+", metavar="PATH|DIR|GLOB",
                   help="image files, folders (searched recursively) or globs")
    p.add_argument("--out", default="results.csv", help="output .csv or .jsonl (default results.csv)")
    add_model_options(p)
    p.add_argument("--batch-size", type=int, default=32, help="images per model call (default 32)")
    p.add_argument("--resume", action="store_true", help="skip images that already have a row in --out")
    add_scale_options(p)
    p.add_argument("--draft", action="store_true",
                   help="decode large JPEGs at 1/2-1/8 scale (libjpeg draft mode; short side kept >= 2x the "
                        "model input): faster, probabilities differ slightly from the exact decode "
                        "(docs/scaling.md)")
    p.add_argument("--explain", action="store_true", help="also write a DnCShap overlay PNG per image")
    add_dncshap_options(p)
    add_face_options(p)
    p.add_argument("--every", default="1s",
                   help="videos: the interval between sampled frames, e.g. 1s, 500ms, 2m (default 1s)")
    p.add_argument("--plot", action="store_true",
                   help="videos: also draw each video's emotion timeline as <out stem>_<video>_timeline.png "
                        "(<out stem>_timeline.png when both stems are the same)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..errors import EmoadaptError
    from ..predict import predict_files
    from ..results import check_output

    paths = expand_inputs(args.inputs)
    if not paths:
        raise EmoadaptError("no images found in " + ", ".join(args.inputs))
    from ..data.video import is_video_file

    videos = [p for p in paths if is_video_file(p)]
    if videos:
        if len(videos) != len(paths):
            raise EmoadaptError("predict either images or videos in one run (the video rows have a time column); "
                                "give the videos to a second run with another --out")
        return _run_videos(args, videos)
    if args.plot:
        raise EmoadaptError("--plot draws the timeline of videos; none of the inputs is a video")
    out = check_output(args.out)  # before the model loads: a bad --out fails at once
    shard = shard_of(args)
    if shard is not None and out.suffix in (".csv", ".jsonl"):  # predict_files refuses other names
        from ..shards import part_path, shard_block, write_sidecar

        paths, out = shard_block(paths, *shard), part_path(out, *shard)
        write_sidecar(out, *shard, paths)
    faces = args.faces or args.face_rows is not None
    if faces:
        from ..faces.options import check_limits

        check_limits(args.min_face, args.max_faces)
    predictor = load_predictor(args)
    hooks, face_rows = [], None
    if faces:
        face_rows = _face_row_writer(predictor, args.face_rows, shard, args.resume)
        hooks.append(_face_reader(predictor, args.min_face, args.max_faces, face_rows))
    if args.explain:  # overlays of every shard go to one folder beside --out (their names never collide: overlay_name)
        hooks.append(_explainer(predictor, Path(args.out), args.depth, args.max_evals))
    bar = tqdm(total=len(paths), desc="predict", unit="img", disable=args.no_progress)
    on_batch = _progress(bar)
    try:
        counts = predict_files(predictor, paths, out, batch_size=args.batch_size, resume=args.resume,
                               on_batch=on_batch, on_row=_chain(hooks), workers=workers_of(args), draft=args.draft,
                               overlay=args.explain, faces=faces)
    finally:
        if face_rows is not None:
            face_rows.close()
    bar.close()
    print(f"predicted {counts['done']} images, {counts['failed']} failed, {counts['skipped']} already in {out}",
          file=sys.stderr)
    if args.explain:
        print(f"overlays: {_overlay_folder(Path(args.out))}/ (each image's in the 'overlay' column of {out})",
              file=sys.stderr)
    if face_rows is not None:
        print(f"one row per face: {face_rows.output}", file=sys.stderr)
    return EXIT_SOME_FAILED if counts["failed"] else EXIT_OK


def add_face_options(p: argparse.ArgumentParser) -> None:
    """``--faces``, ``--face-rows``, ``--max-faces``, ``--min-face`` (defaults from
    :mod:`emoadapt.faces.options`, which imports neither torch nor NumPy)."""
    from ..faces.options import MARGIN, MAX_FACES, MIN_FACE

    p.add_argument("--faces", action="store_true",
                   help="also locate every face (OpenCV's bundled frontal-face detector) and read each one with the "
                        "model's face branch: a 'faces' column (JSON: box x, y, w, h in px, detection score, the "
                        "classes and 7 expressions per face; 'no faces found' when none) in CSV, a field in JSONL. "
                        f"Each face is read from its box widened by {round(MARGIN * 100)}%% on every side; no identity is kept")
    p.add_argument("--face-rows", default=None, metavar="FILE",
                   help="also write one row per face to FILE (.csv or .jsonl): path (and time for video frames), face "
                        "(0 = largest), x, y, w, h, score, emotion, prob_<class>..., expression, "
                        "expr_<expression>...; implies --faces")
    p.add_argument("--max-faces", type=int, default=MAX_FACES,
                   help=f"read at most this many faces per image, the largest (default {MAX_FACES}); the others are "
                        "counted in the faces column")
    p.add_argument("--min-face", type=int, default=MIN_FACE, metavar="PX",
                   help=f"skip faces smaller than PX pixels (box side in the original image; default {MIN_FACE}, "
                        "at least 20, the detector's window); skipped faces are counted in the faces column")


def _chain(hooks: list):
    """One ``on_row`` hook running ``hooks`` in order (``None`` when there is none)."""
    if not hooks:
        return None

    def on_row(row: dict, image) -> None:
        for hook in hooks:
            hook(row, image)

    return on_row


def face_labels(faces: dict | None) -> list[tuple[list[int], str]]:
    """``(box, "<number> <class>")`` of each face read (:meth:`Predictor.read_faces`), for overlays."""
    return [(face["box"], f"{i + 1} {face['dominant_emotion']}") for i, face in enumerate((faces or {}).get("faces", []))]


def _face_row_writer(predictor, face_rows: str | None, shard, resume: bool, video: bool = False):
    """The :class:`~emoadapt.results.FaceRowWriter` of ``--face-rows`` (a part file per ``--shard``;
    a ``time`` column for ``video`` frames)."""
    if face_rows is None:
        return None
    from ..data.labels import FER_CLASSES
    from ..results import FaceRowWriter, check_output

    path = check_output(face_rows)
    if shard is not None:
        from ..shards import part_path

        path = part_path(path, *shard)
    return FaceRowWriter(path, predictor.classes, FER_CLASSES, append=resume, video=video)


def _face_reader(predictor, min_face: int, max_faces: int, face_rows):
    """Per-row hook putting :meth:`Predictor.read_faces` of the row's image (decoded again, at full
    size) in ``row["faces"]`` and its rows in ``face_rows``; a failure becomes the row's error."""
    def on_row(row: dict, image) -> None:
        try:
            row["faces"] = predictor.read_faces(row["path"], min_face, max_faces)
        except Exception as exc:  # the prediction stands; the row says why the faces are missing
            row["error"] = f"faces-failed: {type(exc).__name__}: {exc}"
            return
        if face_rows is not None:
            face_rows.write(str(row["path"]), row["faces"])

    return on_row


def _progress(bar):
    """``on_batch(n, failed)`` advancing ``bar``: the failure count is set without a redraw of its
    own, and the last step is left to ``bar.close()`` to draw, so 100 % is drawn once."""
    failed_so_far = [0]

    def on_batch(n: int, failed: int) -> None:
        failed_so_far[0] += failed
        bar.set_postfix(failed=failed_so_far[0], refresh=False)
        if bar.total is not None and bar.n + n >= bar.total:
            bar.n += n  # close() draws the final line
        else:
            bar.update(n)

    return on_batch


def _run_videos(args: argparse.Namespace, videos: list[Path]) -> int:
    """Frames of each video every ``--every`` → rows (with ``time``); ``--plot``: a timeline PNG each."""
    from tqdm import tqdm

    from ..data.video import expected_samples, parse_every
    from ..errors import EmoadaptError
    from ..results import check_output
    from ..video import plot_timeline, predict_videos, timeline_path

    every = parse_every(args.every)
    if args.explain:
        raise EmoadaptError("--explain is for images; explain a video frame by saving it as an image first")
    out = check_output(args.out, video=True)
    faces = args.faces or args.face_rows is not None
    if faces:
        from ..faces.options import check_limits

        check_limits(args.min_face, args.max_faces)
    predictor = load_predictor(args)
    face_rows = _face_row_writer(predictor, args.face_rows, None, args.resume, video=True)
    read = (lambda picture: predictor.read_faces(picture, args.min_face, args.max_faces)) if faces else None
    bar = tqdm(total=sum(expected_samples(v, every) for v in videos), desc="predict", unit="frame",
               disable=args.no_progress)
    on_frames = _progress(bar)

    def on_error(video: Path, message: str) -> None:
        bar.write(f"error: {message}", file=sys.stderr)

    try:
        counts = predict_videos(predictor, videos, out, every=every, batch_size=args.batch_size, resume=args.resume,
                                on_frames=on_frames, on_error=on_error, faces=read, face_rows=face_rows)
    finally:
        if face_rows is not None:
            face_rows.close()
    bar.close()
    for video in videos:
        if args.plot:
            png = plot_timeline(out, video, timeline_path(out, video))
            if png is not None:
                print(f"timeline: {png}", file=sys.stderr)
    print(f"predicted {counts['frames']} frames of {counts['videos']} videos, {counts['failed']} failed, "
          f"{counts['skipped']} already in {out}", file=sys.stderr)
    return EXIT_SOME_FAILED if counts["failed"] else EXIT_OK


def overlay_name(path: str | Path) -> str:
    """``<stem>-<12 hex of sha256(absolute path)>_overlay.png``: the same for a path on every run (so
    ``--resume`` rewrites its own file), different for two paths (so it never overwrites another
    image's overlay); the stem is reduced to safe characters and 60 of them."""
    import hashlib
    import os

    digest = hashlib.sha256(os.fsencode(os.path.abspath(os.fspath(path)))).hexdigest()[:12]
    stem = "".join(c if (c.isalnum() and c.isprintable()) or c in "._-" else "_" for c in Path(path).stem)
    return f"{stem[:60].lstrip('.') or 'image'}-{digest}_overlay.png"


def _overlay_folder(out: Path) -> Path:
    """Where ``--explain`` writes the overlays: ``<out stem>_explanations`` beside ``--out``."""
    return out.with_name(out.stem + "_explanations")


def _explainer(predictor, out: Path, depth: int, max_evals: int | None):
    """Per-row hook writing ``<out stem>_explanations/<overlay_name(path)>`` (its title says when
    the prediction is uncertain) and putting its path in ``row["overlay"]``."""
    from ..attribution import save_overlay
    from ..results import overlay_note

    folder = _overlay_folder(out)
    explainer = predictor.explainer(depth, max_evals=max_evals)

    def on_row(row: dict, image) -> None:
        from ..predictor import to_pil

        # the class the row reports (the model's test-time augmentation included), not one pass's argmax
        target = predictor.classes.index(row["emotion"]) if row.get("emotion") in predictor.classes else None
        explanation = explainer.attribute(image, target)
        png = folder / overlay_name(row["path"])
        save_overlay(image, explanation, png, picture=to_pil(row["path"]), fit=predictor.fit, note=overlay_note(row),
                     faces=face_labels(row.get("faces")))
        row["overlay"] = str(png)

    return on_row
