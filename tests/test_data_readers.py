"""Every dataset reader, open_dataset and summarize on small generated fixtures in each layout."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from emoadapt.data import (IER_CLASSES, MIKELS_CLASSES, detect_layout, open_dataset, read_artphoto,
                           read_ckplus48, read_csv_dataset, read_emotic, read_emotion6, read_fi, read_folder,
                           read_iaps, read_jaffe, summarize)
from emoadapt.errors import DatasetLayoutError


def img(path: Path, size=(12, 10), color=(90, 120, 150), mode="RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color if mode != "L" else 100).save(path)
    return path


# --- builders: one small dataset per layout -------------------------------------------------------

def build_folder(root: Path) -> Path:
    img(root / "happy" / "a.jpg")
    img(root / "happy" / "B.JPEG")
    img(root / "sad" / "c.png")
    img(root / "anger" / "d.Tiff")
    img(root / "sad" / ".hidden.jpg")
    (root / "sad" / "notes.txt").write_text("not an image")
    (root / "empty").mkdir()
    return root


def build_ckplus(root: Path) -> Path:
    for label, names in {"happy": ["S005_001_00000010.png", "S005_001_00000011.png"],
                         "sadness": ["S010_002_00000020.png"], "contempt": ["S011_003_00000005.png"]}.items():
        for name in names:
            img(root / "CK+48" / label / name, (48, 48), mode="L")
    return root


def build_jaffe(root: Path) -> Path:
    for name in ("KA.HA1.29.tiff", "KA.AN1.39.tiff", "YM.SU1.58.tiff", "YM.NE2.50.tiff"):
        img(root / "jaffedbase" / name, (64, 64), mode="L")
    palette = Image.new("P", (64, 64), 200)
    palette.putpalette([v for g in range(256) for v in (g, g, g)])
    palette.save(root / "jaffedbase" / "NA.SA1.200.tiff")
    (root / "jaffedbase" / "README").write_text("JAFFE")
    return root


GT_HEADER = "[image_filename]\t[valence]\t[arousal]\t[prob. anger]\t[prob. disgust]\t[prob. fear]\t" \
            "[prob. joy]\t[prob. sadness]\t[prob. surprise]\t[prob. neutral]"


def build_emotion6(root: Path) -> Path:
    base = root / "Emotion6"
    for rel in ("joy/1.jpg", "joy/2.jpg", "anger/3.jpg", "fear/10.jpg", "fear/9.jpg"):
        img(base / "images" / rel, (40, 30))
    rows = ["joy/1.jpg\t7.1\t5.0\t0\t0\t0\t0.7\t0.1\t0.1\t0.1",  # joy wins: agrees
            "joy/2.jpg\t5.0\t4.0\t0\t0\t0\t0.4\t0\t0.4\t0.2",  # tie: no unique argmax
            "anger/3.jpg\t2.0\t6.0\t0.2\t0.5\t0\t0\t0.3\t0\t0",  # disgust wins: disagrees
            "fear/10.jpg\t3.0\t6.0\t0\t0\t0.9\t0\t0\t0\t0.1"]  # fear/9.jpg has no row
    (base / "ground_truth.txt").write_text("\n".join([GT_HEADER] + rows) + "\n")
    (base / "readme.txt").write_text("Emotion6")
    return root


def build_mikels_folder(root: Path, n: int = 2) -> Path:
    for label in MIKELS_CLASSES:
        for i in range(n):
            img(root / label / f"{label}_{i}.jpg")
    return root


def build_artphoto(root: Path) -> Path:
    folder = root / "testImages_artphoto"
    for name in ("amusement_1.jpg", "awe_12.jpg", "fear_02.jpg", "sadness_3.JPG", "anger_4.png", "disgust_5.jpg"):
        img(folder / name)
    return root


EMOTIC_HEADER = "Folder,Filename,Image Size,BBox,Categorical_Labels,Continuous_Labels,Gender,Age,Crop_name,Arr_name"


def build_emotic(root: Path) -> Path:
    img(root / "mscoco" / "images" / "a.jpg", (100, 80))
    img(root / "framesdb" / "images" / "b.jpg", (60, 60))
    rows = [
        'mscoco/images,a.jpg,"[100, 80]","[10, 5, 50, 75]","[\'Engagement\', \'Happiness\']","[5, 5, 5]",M,A,c0,a0',
        'mscoco/images,a.jpg,"[100, 80]","[60, 0, 100, 80]","[\'Sadness\', \'Happiness\']","[5, 5, 5]",F,A,c1,a1',
        'mscoco/images,a.jpg,"[100, 80]","[0, 0, 20, 20]","[\'Annoyance\']","[5, 5, 5]",F,A,c2,a2',
        'framesdb/images,b.jpg,"[60, 60]","[5, 5, 40, 50]","[\'Engagement\']","[5, 5, 5]",M,K,c3,a3',
        'framesdb/images,b.jpg,"[60, 60]","[1, 1, 30, 30]","[\'Suffering\', \'Pain\']","[5, 5, 5]",M,K,c4,a4',
    ]
    (root / "annots").mkdir(parents=True)
    (root / "annots" / "annot_arrs_train.csv").write_text("\n".join([EMOTIC_HEADER] + rows) + "\n")
    return root


# --- folder ---------------------------------------------------------------------------------------

def test_folder_reader(tmp_path):
    data = read_folder(build_folder(tmp_path / "ds"))
    assert data.classes == ("anger", "happy", "sad")
    assert sorted(Path(s.path).name for s in data) == ["B.JPEG", "a.jpg", "c.png", "d.Tiff"]
    assert data.label_counts() == {"happy": 2, "sad": 1, "anger": 1}
    assert data.to_ier == {c: c for c in IER_CLASSES}
    renamed = read_folder(tmp_path / "ds", label_map={"sad": None, "anger": "angry"})
    assert renamed.classes == ("angry", "happy") and len(renamed) == 3


def test_folder_reader_errors(tmp_path):
    (tmp_path / "flat").mkdir()
    img(tmp_path / "flat" / "x.jpg")
    with pytest.raises(DatasetLayoutError, match="no class sub-folders"):
        read_folder(tmp_path / "flat")
    with pytest.raises(DatasetLayoutError, match="not a folder"):
        read_folder(tmp_path / "missing")


# --- csv ------------------------------------------------------------------------------------------

def test_csv_reader(tmp_path):
    root = tmp_path / "ds"
    img(root / "imgs" / "a.png")
    img(root / "imgs" / "b.png")
    img(root / "c.png")
    (root / "list.csv").write_text("path,label,split\nimgs/a.png,happy,train\n\nimgs/b.png,sad,test\n"
                                   f"{root / 'c.png'},,\n")
    data = read_csv_dataset(root / "list.csv")
    assert [(Path(s.path).name, s.label, s.split) for s in data] == [
        ("a.png", "happy", "train"), ("b.png", "sad", "test"), ("c.png", None, None)]
    assert data.classes == ("happy", "sad") and data.root == str(root.resolve())


@pytest.mark.parametrize("bad", ["../outside.png", "imgs/../../outside.png", "ABSOLUTE", "link.png"])
def test_csv_rejects_paths_outside_the_root(tmp_path, bad):
    root = tmp_path / "ds"
    outside = img(tmp_path / "outside.png")
    img(root / "imgs" / "a.png")
    os.symlink(outside, root / "link.png")
    bad = str(outside) if bad == "ABSOLUTE" else bad
    (root / "list.csv").write_text(f"path,label\nimgs/a.png,happy\n{bad},sad\n")
    with pytest.raises(DatasetLayoutError) as info:
        read_csv_dataset(root / "list.csv")
    message = str(info.value)
    assert "row 3" in message and repr(bad) in message and "outside the dataset root" in message


def test_csv_errors(tmp_path):
    (tmp_path / "nolabel.csv").write_text("path,split\na.png,train\n")
    with pytest.raises(DatasetLayoutError, match=r"missing column\(s\) label.*path, split"):
        read_csv_dataset(tmp_path / "nolabel.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DatasetLayoutError, match="empty"):
        read_csv_dataset(tmp_path / "empty.csv")
    (tmp_path / "gone.csv").write_text("path,label\nnothere.png,happy\n")
    with pytest.raises(DatasetLayoutError, match="do not exist: .*nothere.png"):
        read_csv_dataset(tmp_path / "gone.csv")


# --- the shared sets' layouts ---------------------------------------------------------------------

def test_ckplus_reader(tmp_path):
    build_ckplus(tmp_path)
    for root in (tmp_path, tmp_path / "CK+48"):
        data = read_ckplus48(root)
        assert len(data) == 4 and data.root.endswith("CK+48")
    assert {s.subject for s in data} == {"S005", "S010", "S011"}
    assert data[0].meta == {"sequence": "001", "frame": 10} or data[0].label != "happy"
    ier = data.to_ier_dataset()
    assert ier.label_counts() == {"happy": 2, "sad": 1}
    img(tmp_path / "CK+48" / "happy" / "zz.png", (48, 48), mode="L")
    with pytest.raises(DatasetLayoutError, match="zz.png"):
        read_ckplus48(tmp_path)


def test_jaffe_reader_and_face_crop_fallback(tmp_path):
    data = read_jaffe(build_jaffe(tmp_path))
    assert len(data) == 5
    assert {Path(s.path).name: (s.label, s.subject) for s in data}["KA.AN1.39.tiff"] == ("angry", "KA")
    assert data.label_counts() == {"happy": 1, "angry": 1, "surprise": 1, "neutral": 1, "sad": 1}
    assert {s.subject for s in data} == {"KA", "YM", "NA"}
    palette = next(s for s in data if s.subject == "NA")
    assert palette.load("L").getpixel((5, 5)) == 200  # grey palette decodes to its grey value
    image = data.load(palette, "L")  # a flat image has no face: centre crop of 80 % of the side
    info = data.loader.info[palette.path]
    assert info["face_found"] is False and info["box"] is None
    assert image.size == (51, 51) and info["crop"] == [6, 6, 57, 57]
    assert read_jaffe(tmp_path, crop_faces=False).loader is None


def test_emotion6_reader(tmp_path):
    data = read_emotion6(build_emotion6(tmp_path))
    names = [f"{s.label}/{Path(s.path).name}" for s in data]
    assert names == ["anger/3.jpg", "fear/9.jpg", "fear/10.jpg", "joy/1.jpg", "joy/2.jpg"]  # numeric order
    meta = {n: s.meta for n, s in zip(names, data)}
    assert meta["joy/1.jpg"]["vote_agrees"] is True
    assert meta["joy/2.jpg"]["vote_agrees"] is False
    assert meta["anger/3.jpg"]["vote_agrees"] is False
    assert meta["fear/9.jpg"] == {"vote_agrees": None}
    assert meta["joy/1.jpg"]["valence"] == 7.1 and meta["joy/1.jpg"]["votes"]["joy"] == 0.7
    assert data.to_ier_dataset().label_counts() == {"happy": 2, "anger": 1}


def test_emotion6_bad_ground_truth(tmp_path):
    build_emotion6(tmp_path)
    (tmp_path / "Emotion6" / "ground_truth.txt").write_text(GT_HEADER + "\njoy/1.jpg\t7\t5\t0.1\n")
    with pytest.raises(DatasetLayoutError, match="line 2: 4 tab-separated fields"):
        read_emotion6(tmp_path)


# --- the paper's IER sets -------------------------------------------------------------------------

def test_fi_reader_and_mikels_map(tmp_path):
    data = read_fi(build_mikels_folder(tmp_path / "FI"))
    assert data.classes == MIKELS_CLASSES and len(data) == 16
    ier = data.to_ier_dataset()
    assert ier.label_counts() == {"happy": 8, "sad": 2, "hate": 2, "anger": 2}  # fear dropped
    assert {s.meta["source_label"] for s in ier if s.label == "happy"} == {"amusement", "awe", "contentment",
                                                                           "excitement"}
    img(tmp_path / "FI" / "joy" / "x.jpg")
    with pytest.raises(DatasetLayoutError, match="found joy"):
        read_fi(tmp_path / "FI")


def test_artphoto_reader(tmp_path):
    data = read_artphoto(build_artphoto(tmp_path))
    assert data.label_counts() == {"amusement": 1, "awe": 1, "fear": 1, "sadness": 1, "anger": 1, "disgust": 1}
    assert data.to_ier_dataset().label_counts() == {"happy": 2, "sad": 1, "anger": 1, "hate": 1}
    img(tmp_path / "testImages_artphoto" / "holiday_1.jpg")
    with pytest.raises(DatasetLayoutError, match="holiday_1.jpg"):
        read_artphoto(tmp_path / "testImages_artphoto")


def test_iaps_folder_and_list_layouts(tmp_path):
    assert len(read_iaps(build_mikels_folder(tmp_path / "folder", n=1))) == 8
    root = tmp_path / "list"
    for name in ("1050.jpg", "2040.jpg", "7230.png", "9300.jpg"):
        img(root / "images" / name)
    (root / "iapsa.txt").write_text("# IAPSa\nimages/1050.jpg amusement\nimages/2040\tcontentment\n"
                                    "images/7230 Sadness\nimages/9300.jpg disgust\nimages/9300.jpg fear\n")
    data = read_iaps(root / "iapsa.txt")
    labels = {Path(s.path).name: s.label for s in data}
    assert labels == {"1050.jpg": "amusement", "2040.jpg": "contentment", "7230.png": "sadness", "9300.jpg": None}
    assert next(s for s in data if s.label is None).meta["labels"] == ["disgust", "fear"]
    assert data.to_ier_dataset().label_counts() == {"happy": 2, "sad": 1}
    (root / "iapsa.csv").write_text("image,emotion\nimages/1050.jpg,awe\n")
    assert [s.label for s in read_iaps(root / "iapsa.csv")] == ["awe"]


def test_iaps_list_errors(tmp_path):
    img(tmp_path / "a.jpg")
    (tmp_path / "bad.txt").write_text("a.jpg joy\n")
    with pytest.raises(DatasetLayoutError, match="row 1: unknown emotion 'joy'"):
        read_iaps(tmp_path / "bad.txt")
    (tmp_path / "escape.txt").write_text("../a.jpg anger\n")
    with pytest.raises(DatasetLayoutError, match="outside the dataset root"):
        read_iaps(tmp_path / "escape.txt")


def test_emotic_reader(tmp_path):
    build_emotic(tmp_path)
    data = read_emotic(tmp_path / "annots")
    assert data.root == str(tmp_path.resolve())  # images found beside the annots folder
    got = [(Path(s.path).name, s.meta["person"], s.label, s.split) for s in data]
    assert got == [("a.jpg", 0, "happy", "train"), ("a.jpg", 2, "anger", "train"), ("b.jpg", 1, "sad", "train")]
    assert data[0].meta["bbox"] == [10, 5, 50, 75] and data[0].meta["categories"] == ["Engagement", "Happiness"]
    assert data.load(data[0]).size == (40, 70)  # the person box
    everyone = read_emotic(tmp_path / "annots" / "annot_arrs_train.csv", keep_unmapped=True, crop_person_box=False)
    assert len(everyone) == 5 and sum(s.label is None for s in everyone) == 2 and everyone.loader is None
    assert everyone.load(everyone[0]).size == (100, 80)


def test_emotic_one_hot_columns_and_errors(tmp_path):
    img(tmp_path / "x.jpg", (50, 50))
    categories = ["Anger", "Aversion", "Peace"]
    (tmp_path / "ann.csv").write_text(
        "filename,x1,y1,x2,y2,split," + ",".join(categories) + ",Affection,Anticipation,Annoyance,Confidence,"
        "Disapproval,Disconnection,Disquietment,Doubt/Confusion,Embarrassment,Engagement\n"
        "x.jpg,0,0,10,10,val,0,1,1,0,0,0,0,0,0,0,0,0,0\n"
        "x.jpg,5,5,30,30,val,1,0,0,0,0,0,0,0,0,0,0,0,1\n")
    data = read_emotic(tmp_path / "ann.csv")
    assert [(s.label, s.split, s.meta["categories"]) for s in data] == [
        ("hate", "val", ["Aversion", "Peace"]), ("anger", "val", ["Anger", "Engagement"])]
    (tmp_path / "bad.csv").write_text(EMOTIC_HEADER + '\n,x.jpg,"[50, 50]","[0, 0, 5, 5]","[\'Joy\']",,,,,\n')
    with pytest.raises(DatasetLayoutError, match="unknown EMOTIC category 'Joy'"):
        read_emotic(tmp_path / "bad.csv")
    (tmp_path / "short.csv").write_text(EMOTIC_HEADER + '\n,x.jpg,"[50, 50]","[0, 0, 5, 5]"\n')
    with pytest.raises(DatasetLayoutError, match="row 2: 4 column"):
        read_emotic(tmp_path / "short.csv")
    (tmp_path / "box.csv").write_text(EMOTIC_HEADER + '\n,x.jpg,"[50, 50]","[9, 0, 5, 5]","[\'Anger\']",,,,,\n')
    with pytest.raises(DatasetLayoutError, match="x2>x1"):
        read_emotic(tmp_path / "box.csv")


# --- open_dataset and summarize -------------------------------------------------------------------

@pytest.mark.parametrize("layout, build, where", [
    ("folder", build_folder, ""), ("ckplus48", build_ckplus, ""), ("ckplus48", build_ckplus, "CK+48"),
    ("jaffe", build_jaffe, ""), ("emotion6", build_emotion6, ""), ("artphoto", build_artphoto, ""),
    ("emotic", build_emotic, "annots"), ("emotic", build_emotic, "annots/annot_arrs_train.csv"),
])
def test_detect_layout(tmp_path, layout, build, where):
    build(tmp_path / "ds")
    path = tmp_path / "ds" / where
    assert detect_layout(path) == layout
    assert open_dataset(path).name == layout


def test_detect_layout_files_and_ambiguity(tmp_path):
    build_mikels_folder(tmp_path / "mikels", n=1)
    with pytest.raises(DatasetLayoutError, match=r"several layouts \(fi, iaps\)"):
        detect_layout(tmp_path / "mikels")
    assert open_dataset(tmp_path / "mikels", "fi").name == "fi"
    img(tmp_path / "a.png")
    (tmp_path / "list.csv").write_text("path,label\na.png,happy\n")
    (tmp_path / "list.txt").write_text("a.png anger\n")
    (tmp_path / "other.csv").write_text("file,emotion\na.png,happy\n")
    assert detect_layout(tmp_path / "list.csv") == "csv"
    assert detect_layout(tmp_path / "list.txt") == "iaps"
    for bad in (tmp_path / "other.csv", tmp_path / "a.png"):
        with pytest.raises(DatasetLayoutError, match="fer2013, ckplus48, jaffe, emotion6"):
            detect_layout(bad)
    (tmp_path / "nothing").mkdir()
    with pytest.raises(DatasetLayoutError, match="cannot tell the layout"):
        open_dataset(tmp_path / "nothing")
    with pytest.raises(DatasetLayoutError, match="does not exist"):
        open_dataset(tmp_path / "missing")
    with pytest.raises(DatasetLayoutError, match="unknown layout 'nope'"):
        open_dataset(tmp_path / "mikels", "nope")


def test_summarize(tmp_path):
    build_folder(tmp_path / "ds")
    Image.new("L", (30, 20)).save(tmp_path / "ds" / "sad" / "grey.png")
    (tmp_path / "ds" / "sad" / "broken.jpg").write_bytes(b"")
    summary = summarize(open_dataset(tmp_path / "ds"), sizes=None)
    assert summary["samples"] == 6 and summary["classes"] == {"anger": 1, "happy": 2, "sad": 3}
    assert summary["splits"] == {"(none)": 6}
    assert summary["ier"] == {"happy": 2, "sad": 3, "hate": 0, "anger": 1, "(no IER class)": 0}
    sizes = summary["sizes"]
    assert sizes["sampled"] == 6 and sizes["width"] == {"min": 12, "median": 12, "max": 30}
    assert sizes["modes"] == {"RGB": 4, "L": 1}
    assert sizes["unreadable"] == [{"path": str((tmp_path / "ds" / "sad" / "broken.jpg").resolve()), "reason": "empty"}]
    limited = summarize(open_dataset(tmp_path / "ds"), sizes=2)["sizes"]
    assert limited["sampled"] == 2 and limited["files"] == 6
    assert "sizes" not in summarize(open_dataset(tmp_path / "ds"), sizes=0)
    emotion6 = summarize(open_dataset(build_emotion6(tmp_path / "e6")), sizes=0)
    assert emotion6["vote_agrees"] == {"anger": 0, "disgust": 0, "fear": 1, "joy": 1, "sadness": 0, "surprise": 0}
