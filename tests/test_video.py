"""``emoadapt predict clip.avi --every 1s [--plot]``: one row per sampled frame with its time, on a
generated video with known content (first half one picture, second half another; lossless FFV1
so every frame equals its source picture); a truncated or unreadable video → an error row."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

cv2 = pytest.importorskip("cv2")

from conftest import save_tiny_affect_model  # noqa: E402
from emoadapt.api import Predictor  # noqa: E402
from emoadapt.cli import main  # noqa: E402
from emoadapt.data.video import parse_every, sample_frames  # noqa: E402
from emoadapt.errors import EmoadaptError, VideoDecodeError  # noqa: E402

FPS, SECONDS = 10, 4


def pictures() -> tuple[np.ndarray, np.ndarray]:
    """Two distinct RGB pictures (48, 64, 3) uint8: a bright gradient and a dark noise."""
    rng = np.random.default_rng(0)
    first = np.zeros((48, 64, 3), np.uint8)
    first[..., 0] = np.linspace(100, 255, 64, dtype=np.uint8)[None]
    first[..., 1] = 200
    second = rng.integers(0, 90, (48, 64, 3), dtype=np.uint8)
    return first, second


def write_video(path: Path, fourcc: str = "FFV1") -> Path:
    """SECONDS s at FPS: the first half ``pictures()[0]``, the second half ``pictures()[1]``."""
    first, second = pictures()
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), FPS, (64, 48))
    assert writer.isOpened(), f"OpenCV cannot write {fourcc}"
    for i in range(FPS * SECONDS):
        writer.write(cv2.cvtColor(first if i < FPS * SECONDS // 2 else second, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return save_tiny_affect_model(tmp_path_factory.mktemp("video-model") / "tiny.safetensors")


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("video") / "clip.avi")


def rows_of(path: Path) -> list[dict]:
    return list(csv.DictReader(path.open(encoding="utf-8")))


def test_frames_are_sampled_at_the_interval_with_their_times(clip):
    first, second = pictures()
    frames = list(sample_frames(clip, 0.5))
    assert [f.time for f in frames] == [0.5 * i for i in range(8)]
    assert [f.index for f in frames] == [5 * i for i in range(8)]
    assert all(np.array_equal(f.image, first if f.time < 2 else second) for f in frames)  # lossless, RGB order
    assert parse_every("1s") == 1.0 and parse_every("500ms") == 0.5 and parse_every("2m") == 120.0
    for bad in ("0s", "soon", "-1"):
        with pytest.raises(EmoadaptError):
            parse_every(bad)


def test_predict_video_rows_are_per_frame_with_times_and_known_content(tiny, clip, tmp_path):
    out = tmp_path / "video.csv"
    assert main(["predict", str(clip), "--every", "1s", "--model", str(tiny), "--runtime", "torch", "--out", str(out),
                 "--plot", "--no-progress"]) == 0
    rows = rows_of(out)
    assert list(rows[0])[:3] == ["path", "time", "emotion"] and "valence" in rows[0] and "dist_joy" in rows[0]
    assert [r["time"] for r in rows] == ["0.000", "1.000", "2.000", "3.000"]
    assert all(r["path"] == str(clip) and r["error"] == "" for r in rows)
    predictor = Predictor(str(tiny), runtime="torch")
    from PIL import Image

    for picture, row in zip((pictures()[0], pictures()[0], pictures()[1], pictures()[1]), rows):
        expected = predictor.analyze(Image.fromarray(picture))
        assert float(row["prob_happy"]) == pytest.approx(expected["emotion"]["happy"], abs=1e-5)
        assert float(row["valence"]) == pytest.approx(expected["valence"], abs=1e-3)
    assert rows[0]["valence"] == rows[1]["valence"] != rows[2]["valence"] == rows[3]["valence"]  # the cut at 2 s
    png = tmp_path / f"video_{clip.stem}_timeline.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_truncated_and_unreadable_videos_get_an_error_row(tiny, clip, tmp_path, capsys):
    cut = tmp_path / "cut.avi"
    data = clip.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 100)
    out = tmp_path / "bad.csv"
    assert main(["predict", str(cut), str(junk), "--every", "1s", "--model", str(tiny), "--runtime", "torch",
                 "--out", str(out), "--no-progress"]) == 1
    rows = rows_of(out)
    cut_rows = [r for r in rows if r["path"] == str(cut)]
    times = [r["time"] for r in cut_rows[:-1]]
    assert 0 < len(times) < SECONDS and times == ["0.000", "1.000", "2.000", "3.000"][: len(times)]  # the frames it had
    assert cut_rows[-1]["time"] == "" and cut_rows[-1]["error"].startswith("truncated:")
    junk_rows = [r for r in rows if r["path"] == str(junk)]
    assert len(junk_rows) == 1 and junk_rows[0]["error"].startswith("unsupported:")
    err = capsys.readouterr().err
    assert f"cannot decode video {junk}: unsupported" in err


def test_resume_redoes_only_the_missing_frames(tiny, clip, tmp_path):
    out = tmp_path / "resume.csv"
    args = ["predict", str(clip), "--every", "1s", "--model", str(tiny), "--runtime", "torch", "--out", str(out),
            "--no-progress"]
    assert main(args) == 0
    full = out.read_text().splitlines()
    out.write_text("\n".join(full[:3]) + "\n" + full[3][:10])  # two frames kept, a third cut by a kill
    assert main(args + ["--resume"]) == 0
    assert [r["time"] for r in rows_of(out)] == ["0.000", "1.000", "2.000", "3.000"]
    assert main(args + ["--resume"]) == 0  # nothing left to do
    assert len(rows_of(out)) == 4


def test_images_and_videos_are_not_mixed_in_one_run(tiny, clip, tmp_path):
    from importlib import resources

    image = Path(str(resources.files("emoadapt") / "samples" / "coffee.jpg"))
    assert main(["predict", str(clip), str(image), "--model", str(tiny), "--out", str(tmp_path / "x.csv")]) == 2


def test_a_missing_video_raises_missing(tmp_path):
    with pytest.raises(VideoDecodeError, match="missing"):
        list(sample_frames(tmp_path / "nope.mp4"))


def test_frames_stream_one_at_a_time(clip):
    """The iterator holds one frame: a long video never sits in memory."""
    frames = sample_frames(clip, 1.0)
    first = next(frames)
    assert isinstance(first.image, np.ndarray) and first.image.shape == (48, 64, 3)
    frames.close()
    torch.manual_seed(0)


def test_timeline_name_is_not_doubled_and_uncertain_frames_are_shaded(tiny, clip, tmp_path):
    from emoadapt.video import CLASS_COLOURS, AFFECT_STYLES, plot_timeline, timeline_path

    assert timeline_path(tmp_path / "clip.csv", Path("videos/clip.mp4")) == tmp_path / "clip_timeline.png"
    assert timeline_path(tmp_path / "r.csv", Path("clip.mp4")) == tmp_path / "r_clip_timeline.png"
    assert not {style["color"] for style in AFFECT_STYLES.values()} & set(CLASS_COLOURS)  # affect ≠ any class colour
    out = tmp_path / f"{clip.stem}.csv"
    assert main(["predict", str(clip), "--every", "1s", "--model", str(tiny), "--runtime", "torch", "--out", str(out),
                 "--plot", "--no-progress"]) == 0
    assert (tmp_path / f"{clip.stem}_timeline.png").exists()
    rows = rows_of(out)
    rows[1]["uncertain"], rows[2]["uncertain"] = "true", "false"
    with open(out, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    import matplotlib.pyplot as plt

    shaded = []
    real_close = plt.close

    def spy(fig=None):  # the figure's shaded spans, read just before it is closed
        if fig is not None:
            shaded.extend(p for ax in fig.axes for p in ax.patches)
        real_close(fig)

    plt.close = spy
    try:
        plot_timeline(out, clip, tmp_path / "t.png")
    finally:
        plt.close = real_close
    uncertain = sum(1 for r in rows if r["uncertain"] == "true")
    assert uncertain >= 1 and len(shaded) == 2 * uncertain  # one span per uncertain frame on each of 2 axes
