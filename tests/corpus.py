"""A corpus of unusual image files, generated on the fly (nothing is stored in the repository), for
the reliability tests (tests/test_reliability.py) and the table in docs/reliability.md
(``python benchmarks/reliability.py``).

``build(folder)`` writes every case into ``folder`` and returns a list of :class:`Case`: the file,
what kind of oddity it is, and whether emoadapt must give a result (``ok``) or an error row
(``error``). Good pictures come under odd names (non-UTF-8 bytes, newline, carriage return, a
leading quote, 200 characters…) and in odd encodings (16-bit, palette with transparency, RGBA,
EXIF-rotated, animated); bad files are empty, not images, truncated, corrupt mid-stream, or
decompression bombs of every shape.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

SAMPLES = Path(__file__).resolve().parents[1] / "src" / "emoadapt" / "samples"


@dataclass
class Case:
    path: Path      #: the file (its name may hold undecodable bytes, kept as surrogates)
    kind: str       #: the oddity, e.g. "name: newline" or "bomb: 1 x 1,000,000 PNG"
    expect: str     #: "ok" (a result) or "error" (an error row / ImageDecodeError / 4xx)
    group: str      #: "odd name", "odd encoding", "bad file", "bomb", "corrupt JPEG"


def _png(array: np.ndarray, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG", **options)
    return buffer.getvalue()


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares width × height RGB pixels (a decompression bomb's shape)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * (1 + 3 * min(width, 4096)))) + chunk(b"IEND", b""))


def sample_jpeg() -> bytes:
    return (SAMPLES / "chelsea.jpg").read_bytes()


def corrupt_jpegs(data: bytes) -> dict[str, bytes]:
    """Mid-stream damage to a JPEG's entropy-coded data that Pillow decodes without a word."""
    start = data.find(b"\xff\xda")
    middle = start + (len(data) - start) // 2
    zeroed = bytearray(data)
    zeroed[middle:middle + 1024] = bytes(1024)
    return {
        "corrupt JPEG: 1 KB zeroed mid-stream": bytes(zeroed),
        "corrupt JPEG: cut mid-stream, end marker appended": data[:middle] + b"\xff\xd9",
        "corrupt JPEG: 500 bytes deleted mid-stream": data[:middle] + data[middle + 500:],
    }


def _good_pictures(rng) -> dict[str, bytes]:
    rgb = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    rgba = np.dstack([rgb, rng.integers(0, 256, (48, 64), dtype=np.uint8)])
    grey16 = (rng.integers(0, 65536, (40, 40))).astype(np.uint16)
    rotated = Image.fromarray(rgb)
    exif = rotated.getexif()
    exif[0x0112] = 6
    palette = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    frames = [Image.fromarray(np.roll(rgb, k, axis=1)) for k in range(3)]
    animated = io.BytesIO()
    frames[0].save(animated, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    return {
        "encoding: RGB PNG": _png(rgb),
        "encoding: RGBA PNG": _png(rgba),
        "encoding: 16-bit grey PNG": _encode(Image.fromarray(grey16), "PNG"),
        "encoding: palette PNG with transparency": _encode(palette, "PNG", transparency=0),
        "encoding: EXIF-rotated JPEG": _encode(rotated, "JPEG", exif=exif, quality=90),
        "encoding: progressive JPEG": _encode(Image.fromarray(rgb), "JPEG", progressive=True, quality=85),
        "encoding: CMYK JPEG": _encode(Image.fromarray(rgb).convert("CMYK"), "JPEG"),
        "encoding: animated GIF": animated.getvalue(),
        "encoding: WebP": _encode(Image.fromarray(rgb), "WEBP"),
        "encoding: BMP": _encode(Image.fromarray(rgb), "BMP"),
        "encoding: TIFF": _encode(Image.fromarray(rgb), "TIFF"),
        "encoding: 1 x 1 PNG": _png(rgb[:1, :1]),
        "encoding: 1 x 100 PNG (aspect 100)": _png(rgb[:1, :1].repeat(100, axis=1)),
        "encoding: camera JPEG (sample)": (SAMPLES / "camera.jpg").read_bytes(),
    }


def _odd_names() -> dict[str, bytes]:
    """Name kinds → file names as bytes (what the file system stores)."""
    return {
        "name: Latin-1 byte (not UTF-8)": b"caf\xe9.png",
        "name: invalid UTF-8 sequence": b"bad\xff\xfe.png",
        "name: newline": b"line\nbreak.png",
        "name: carriage return": b"carriage\rreturn.png",
        "name: quote, comma and semicolon": b'"quoted", a;b.png',
        "name: leading double quote": b'"lead.png',
        "name: backslash": b"back\\slash.png",
        "name: tab": b"tab\there.png",
        "name: emoji and accents": "ünïcødé 😀.png".encode(),
        "name: leading dash": b"-dash.png",
        "name: 200 characters": b"n" * 196 + b".png",
        "name: spaces only stem": b"   .png",
    }


def build(folder: Path, seed: int = 0) -> list[Case]:
    """Write the corpus into ``folder`` (created) and return its cases."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    base = os.fsencode(folder)
    cases: list[Case] = []

    def put(name: bytes, data: bytes, kind: str, expect: str, group: str) -> None:
        with open(os.path.join(base, name), "wb") as handle:
            handle.write(data)
        cases.append(Case(Path(os.fsdecode(os.path.join(base, name))), kind, expect, group))

    for i, (kind, data) in enumerate(_good_pictures(rng).items()):
        ext = {"PNG": "png", "JPE": "jpg", "GIF": "gif", "Web": "webp", "BMP": "bmp", "TIF": "tiff"}
        suffix = next((v for k, v in ext.items() if k in kind), "jpg")
        put(f"good{i:02d}.{suffix}".encode(), data, kind, "ok", "odd encoding")
    picture = _png(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))
    for kind, name in _odd_names().items():
        put(name, picture, kind, "ok", "odd name")

    jpeg = sample_jpeg()
    bad = {
        "bad: zero bytes": (b"empty.png", b""),
        "bad: text file named .jpg": (b"notes.jpg", b"hello, this is not an image\n" * 20),
        "bad: random bytes named .png": (b"random.png", rng.integers(0, 256, 3000, dtype=np.uint8).tobytes()),
        "bad: PNG signature only": (b"sig.png", b"\x89PNG\r\n\x1a\n"),
        "bad: truncated PNG": (b"cut.png", picture[: len(picture) // 2]),
        "bad: truncated JPEG": (b"cut.jpg", jpeg[: len(jpeg) // 2]),
        "bad: PNG with a wrong CRC": (b"crc.png", picture[:29] + b"\0\0\0\0" + picture[33:]),
        "bad: JPEG header, garbage after": (b"garbage.jpg", jpeg[:700] + rng.integers(0, 256, 2000, dtype=np.uint8).tobytes()),
        "bad: HTML named .webp": (b"page.webp", b"<!doctype html><html><body>404</body></html>"),
    }
    for kind, (name, data) in bad.items():
        put(name, data, kind, "error", "bad file")
    bombs = {
        "bomb: 1 x 14,000,000 PNG": (14_000_000, 1),
        "bomb: 1 x 1,000,000 PNG": (1, 1_000_000),
        "bomb: 1 x 20,000 PNG": (1, 20_000),
        "bomb: 20,000 x 20,000 PNG": (20_000, 20_000),
        "bomb: 100,000 x 100,000 PNG": (100_000, 100_000),
        "bomb: 70,000 x 700 PNG (side)": (70_000, 700),
    }
    for i, (kind, (width, height)) in enumerate(bombs.items()):
        put(f"bomb{i}.png".encode(), png_header(width, height), kind, "error", "bomb")
    for i, (kind, data) in enumerate(corrupt_jpegs(jpeg).items()):
        put(f"corrupt{i}.jpg".encode(), data, kind, "error", "corrupt JPEG")
    # not regular files: a folder named like an image, a dangling symbolic link
    os.makedirs(os.path.join(base, b"folder.jpg"), exist_ok=True)
    cases.append(Case(folder / "folder.jpg", "bad: a folder named .jpg", "error", "bad file"))
    os.symlink(os.path.join(base, b"nowhere.png"), os.path.join(base, b"dangling.png"))
    cases.append(Case(folder / "dangling.png", "bad: dangling symbolic link", "error", "bad file"))
    return cases


# --------------------------------------------------------------------------------------------------
# Running the corpus through every surface

SURFACES = ("CLI folder", "CLI file list", "JSONL", "API", "web")
_TOLERANCE = 2e-6  #: the CLI rounds probabilities to 6 decimals


@dataclass
class Outcome:
    surface: str
    case: Case
    result: str          #: "ok", "error: <reason>", "not listed" or "crash: <what>"
    crash: bool = False
    lost: bool = False
    wrong: bool = False


def _cli(argv: list[str]) -> tuple[int, str]:
    """Run ``emoadapt`` in-process: (exit status, stderr)."""
    import contextlib

    from emoadapt.cli import main

    argv = [*argv, "--threads", "1"]  # one torch thread: on a busy CPU more threads are many times slower
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            status = main(argv)
        except SystemExit as exc:  # argparse
            status = exc.code if isinstance(exc.code, int) else 2
        except BaseException as exc:  # noqa: BLE001 - what we count as a crash
            return -1, f"{type(exc).__name__}: {exc}"
    return status, err.getvalue()


def read_rows(output: Path) -> list[dict]:
    """The rows of a CSV or JSONL results file, with ``path`` decoded back (CSV: ``path_from_text``)."""
    import csv
    import json

    from emoadapt.results import path_from_text

    text = output.read_text(encoding="utf-8")
    if output.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    for row in rows:
        row["path"] = path_from_text(row["path"])
    return rows


def _row_outcome(surface: str, case: Case, rows: list[dict], reference: dict[str, np.ndarray],
                 classes: tuple[str, ...]) -> Outcome:
    if not rows:
        return Outcome(surface, case, "no row", lost=True)
    if len(rows) > 1:
        return Outcome(surface, case, f"{len(rows)} rows", wrong=True)
    row = rows[0]
    if row.get("error"):
        reason = str(row["error"]).split(":")[0]
        return Outcome(surface, case, f"error: {reason}", lost=case.expect == "ok")
    probs = np.array([float(row[f"prob_{c}"]) for c in classes])
    ref = reference.get(str(case.path))
    wrong = case.expect == "error" or ref is None or np.abs(probs - ref).max() > _TOLERANCE
    return Outcome(surface, case, "ok", wrong=wrong)


def run_surfaces(cases: list[Case], folder: Path, weights: Path, work: Path) -> list[Outcome]:
    """Every case through the CLI (folder → CSV, file list → CSV, folder → JSONL), the Python API
    (path, bytes, PIL image) and the web app (TestClient): one :class:`Outcome` per case and surface."""
    from emoadapt.api import Predictor
    from emoadapt.errors import ImageDecodeError

    work.mkdir(parents=True, exist_ok=True)
    predictor = Predictor(str(weights), runtime="torch")
    classes = predictor.classes
    outcomes: list[Outcome] = []
    reference: dict[str, np.ndarray] = {}

    # API: path, bytes and a lazily opened PIL image must agree; bad files raise ImageDecodeError only
    for case in cases:
        results = []
        try:
            results.append(predictor.predict([case.path])[0])
            if case.path.is_file():
                results.append(predictor.predict([case.path.read_bytes()])[0])
                with Image.open(case.path) as image:
                    results.append(predictor.predict([image])[0])
        except ImageDecodeError as exc:
            outcomes.append(Outcome("API", case, f"error: {exc.reason}", lost=case.expect == "ok"))
            continue
        except Exception as exc:  # noqa: BLE001 - anything else is a crash
            outcomes.append(Outcome("API", case, f"crash: {type(exc).__name__}: {exc}", crash=True))
            continue
        reference[str(case.path)] = results[0]
        spread = max(float(np.abs(r - results[0]).max()) for r in results)
        outcomes.append(Outcome("API", case, "ok", wrong=case.expect == "error" or spread > 1e-6))

    runs = {
        "CLI folder": ([str(folder)], work / "folder.csv"),
        "CLI file list": ([str(c.path) for c in cases if not c.path.is_dir()], work / "list.csv"),
        "JSONL": ([str(folder)], work / "folder.jsonl"),
    }
    for surface, (inputs, output) in runs.items():
        status, stderr = _cli(["predict", *inputs, "--out", str(output), "--model", str(weights),
                               "--runtime", "torch", "--no-progress"])
        if status not in (0, 1) or "Traceback" in stderr or not output.exists():
            for case in cases:
                outcomes.append(Outcome(surface, case, f"crash: exit {status}: {stderr.strip()[-200:]}", crash=True))
            continue
        by_path: dict[str, list[dict]] = {}
        for row in read_rows(output):
            by_path.setdefault(row["path"], []).append(row)
        listed = set(inputs) if surface == "CLI file list" else None
        for case in cases:
            rows = by_path.pop(str(case.path), [])
            if not rows and surface != "CLI file list" and not case.path.is_file():
                outcomes.append(Outcome(surface, case, "not listed (not a regular file)"))
                continue
            if listed is not None and str(case.path) not in listed:
                outcomes.append(Outcome(surface, case, "not listed (a folder is expanded)"))
                continue
            outcomes.append(_row_outcome(surface, case, rows, reference, classes))
        for path, rows in by_path.items():  # rows for paths that are not in the corpus: garbage
            outcomes.append(Outcome(surface, Case(Path(path), "unexpected row", "error", "?"), "garbage row",
                                    wrong=True))

    outcomes += _web(cases, predictor, reference)
    return outcomes


def _web(cases: list[Case], predictor, reference: dict[str, np.ndarray]) -> list[Outcome]:
    import re

    from fastapi.testclient import TestClient

    from emoadapt.data.decode import REASONS
    from emoadapt.serve import create_app

    outcomes = []
    with TestClient(create_app(predictor), raise_server_exceptions=False) as client:
        for case in cases:
            if not case.path.is_file():
                outcomes.append(Outcome("web", case, "not applicable (no bytes to upload)"))
                continue
            answer = client.post("/api/predict", files={"file": ("upload" + case.path.suffix, case.path.read_bytes(),
                                                                 "application/octet-stream")})
            try:
                body = answer.json()
            except ValueError:
                outcomes.append(Outcome("web", case, f"crash: {answer.status_code} not JSON", crash=True))
                continue
            if answer.status_code >= 500:
                outcomes.append(Outcome("web", case, f"crash: {answer.status_code}", crash=True))
            elif answer.status_code != 200:
                found = re.search(r"cannot decode image .*?: (%s)\b" % "|".join(REASONS), str(body.get("detail", "")))
                reason = found.group(1) if found else str(body.get("detail", ""))[:40]
                outcomes.append(Outcome("web", case, f"error: {answer.status_code} {reason}", lost=case.expect == "ok"))
            else:
                probs = np.array([body["emotion"][c] for c in predictor.classes])
                ref = reference.get(str(case.path))
                wrong = case.expect == "error" or ref is None or np.abs(probs - ref).max() > 1e-6
                outcomes.append(Outcome("web", case, "ok", wrong=wrong))
    return outcomes


def resume_trials(folder: Path, weights: Path, work: Path, trials: int, seed: int = 0,
                  suffixes: tuple[str, ...] = (".csv", ".jsonl")) -> tuple[int, int]:
    """Cut an uninterrupted results file at random byte offsets (what a kill leaves behind), resume,
    and compare with the uninterrupted rows (every column but ``seconds``): (trials, passed)."""
    rng = np.random.default_rng(seed)
    passed = total = 0
    for suffix in suffixes:
        reference_file = work / f"reference{suffix}"
        status, stderr = _cli(["predict", str(folder), "--out", str(reference_file), "--model", str(weights),
                               "--runtime", "torch", "--no-progress", "--batch-size", "4"])
        assert status in (0, 1), stderr
        data = reference_file.read_bytes()
        expected = _comparable(read_rows(reference_file))
        for trial in range(trials):
            total += 1
            cut = int(rng.integers(0, len(data) + 1))
            out = work / f"trial{trial}{suffix}"
            out.write_bytes(data[:cut])
            status, stderr = _cli(["predict", str(folder), "--out", str(out), "--model", str(weights),
                                   "--runtime", "torch", "--no-progress", "--resume", "--batch-size", "4"])
            rows = read_rows(out) if status in (0, 1) else []
            passed += int(status in (0, 1) and len(rows) == len(expected) and _comparable(rows) == expected)
    return total, passed


def _comparable(rows: list[dict]) -> dict[str, tuple]:
    return {row["path"]: tuple(sorted((k, str(v)) for k, v in row.items() if k != "seconds")) for row in rows}
