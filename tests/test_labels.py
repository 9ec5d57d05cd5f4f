"""Label formats: exact round trips, auto-detection, every malformed-input error (file + line), sanitising."""

import re

import numpy as np
import pytest

from latentface.data.labels import (
    FaceRecord,
    LabelFormatError,
    detect_format,
    image_key,
    merge_landmarks,
    read_labels,
    read_retinaface,
    read_wider,
    sanitize,
    write_retinaface,
    write_wider,
)

WIDER_TEXT = """0--Parade/0_Parade_marchingband_1_849.jpg
1
449 330 122 149 0 0 0 0 0 0
0--Parade/0_Parade_Parade_0_904.jpg
0
0 0 0 0 0 0 0 0 0 0
12--Group/12_Group_Group_12_Group_Group_12_10.jpg
2
78 221 7 8 2 0 0 0 0 0
10.5 20.25 30 40.75 1 1 0 1 2 1
"""

RETINA_TEXT = """# 0--Parade/0_Parade_marchingband_1_849.jpg
449 330 122 149 488.906 373.643 0.0 542.089 376.442 0.0 515.031 412.83 0.0 485.207 425.893 0.0 538.357 431.491 0.0 0.82
# 0--Parade/0_Parade_Parade_0_904.jpg
# 1--Handshaking/1_Handshaking_Handshaking_1_134.jpg
10 20 30 40 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0
5 6 7 8
"""


def same_record(a: FaceRecord, b: FaceRecord) -> bool:
    """Exact equality of every field (arrays compared element-wise)."""
    if (a.key, a.name) != (b.key, b.name) or (a.attributes is None) != (b.attributes is None):
        return False
    pairs = [(a.boxes, b.boxes), (a.landmarks, b.landmarks), (a.has_landmarks, b.has_landmarks), (a.ignore, b.ignore)]
    if a.attributes is not None:
        pairs.append((a.attributes, b.attributes))
    return all(x.shape == y.shape and np.array_equal(x, y) for x, y in pairs)


def write(tmp_path, text, name="labels.txt"):
    path = tmp_path / name
    path.write_text(text)
    return path


def random_records(rng, n_images, attributes):
    records = {}
    for i in range(n_images):
        n = int(rng.integers(0, 5))
        xy = rng.uniform(-10, 600, (n, 2)).astype(np.float32)
        wh = rng.uniform(0.5, 100, (n, 2)).astype(np.float32)
        has = rng.random(n) < 0.6
        lms = rng.uniform(0, 640, (n, 5, 2)).astype(np.float32)
        lms[~has] = -1
        attrs = rng.integers(0, 3, (n, 6)) if attributes else None
        if attributes:
            attrs[:, 3] = rng.integers(0, 2, n)  # WIDER's invalid flag is 0/1
        ignore = attrs[:, 3] != 0 if attributes else np.zeros(n, bool)
        key = f"{i}_Event_Event_{i}_{i * 7}"
        records[key] = FaceRecord(
            key, f"{i}--Event/{key}.jpg", np.concatenate([xy, xy + wh], 1), lms, has, ignore, attrs
        )
    return records


def test_wider_hand_values(tmp_path):
    recs = read_labels(write(tmp_path, WIDER_TEXT))
    assert list(recs) == ["0_Parade_marchingband_1_849", "0_Parade_Parade_0_904", "12_Group_Group_12_Group_Group_12_10"]
    r = recs["0_Parade_marchingband_1_849"]
    assert r.name == "0--Parade/0_Parade_marchingband_1_849.jpg"
    np.testing.assert_array_equal(r.boxes, [[449, 330, 571, 479]])
    assert r.boxes.dtype == np.float32 and r.landmarks.shape == (1, 5, 2) and not r.has_landmarks.any()
    assert len(recs["0_Parade_Parade_0_904"]) == 0  # count 0 + an all-zero line: no face
    g = recs["12_Group_Group_12_Group_Group_12_10"]
    np.testing.assert_array_equal(g.boxes, [[78, 221, 85, 229], [10.5, 20.25, 40.5, 61.0]])
    np.testing.assert_array_equal(g.attributes, [[2, 0, 0, 0, 0, 0], [1, 1, 0, 1, 2, 1]])
    np.testing.assert_array_equal(g.ignore, [False, True])


def test_retinaface_hand_values(tmp_path):
    recs = read_labels(write(tmp_path, RETINA_TEXT))
    r = recs["0_Parade_marchingband_1_849"]
    np.testing.assert_array_equal(r.boxes, [[449, 330, 571, 479]])
    np.testing.assert_allclose(
        r.landmarks[0],
        [[488.906, 373.643], [542.089, 376.442], [515.031, 412.83], [485.207, 425.893], [538.357, 431.491]],
        rtol=0,
        atol=1e-4,
    )
    assert r.has_landmarks.tolist() == [True] and r.attributes is None
    assert len(recs["0_Parade_Parade_0_904"]) == 0
    h = recs["1_Handshaking_Handshaking_1_134"]
    assert h.has_landmarks.tolist() == [False, False]
    np.testing.assert_array_equal(h.boxes, [[10, 20, 40, 60], [5, 6, 12, 14]])


def test_detect_format(tmp_path):
    assert detect_format(write(tmp_path, WIDER_TEXT, "a.txt")) == "wider"
    assert detect_format(write(tmp_path, RETINA_TEXT, "b.txt")) == "retinaface"


@pytest.mark.parametrize("attributes", [True, False])
def test_wider_round_trip_exact(tmp_path, attributes):
    records = random_records(np.random.default_rng(1), 60, attributes)
    write_wider(records, tmp_path / "w.txt")
    back = read_wider(tmp_path / "w.txt")
    assert list(back) == list(records)
    for key, rec in records.items():  # WIDER bbx has no landmarks
        expected = FaceRecord(
            rec.key, rec.name, rec.boxes, np.full((len(rec), 5, 2), -1), np.zeros(len(rec)), rec.ignore, rec.attributes
        )
        assert same_record(back[key], expected), key
        assert back[key].boxes.tobytes() == rec.boxes.tobytes()


def test_retinaface_round_trip_exact(tmp_path):
    records = random_records(np.random.default_rng(2), 60, attributes=False)
    write_retinaface(records, tmp_path / "r.txt")
    back = read_retinaface(tmp_path / "r.txt")
    assert list(back) == list(records)
    for key, rec in records.items():
        assert same_record(back[key], rec), key


def test_file_round_trip(tmp_path):
    """read -> write -> read gives the same records for both hand-written files."""
    for text, writer in [(WIDER_TEXT, write_wider), (RETINA_TEXT, write_retinaface)]:
        first = read_labels(write(tmp_path, text, "in.txt"))
        writer(first, tmp_path / "out.txt")
        second = read_labels(tmp_path / "out.txt")
        assert all(same_record(second[k], first[k]) for k in first) and list(second) == list(first)


@pytest.mark.parametrize(
    "text,line,words",
    [
        ("a.jpg\n1\n1 2 3\n", 3, "expected 4 or 10 columns"),  # wrong column count
        ("a.jpg\n1\n1 2 3 4 5 6\n", 3, "got 6"),
        ("a.jpg\n2\n1 2 3 4\n1 2 3 4 0 0 0 0 0 0\n", 4, "previous faces had 4"),  # mixed widths in one image
        ("a.jpg\n1\n1 2 x 4\n", 3, "not a number: 'x'"),  # non-number
        ("a.jpg\n1\n1 2 nan 4\n", 3, "not a finite number"),
        ("a.jpg\n1\n1 2 3 4 0 0 0 0.5 0 0\n", 3, "must be integers"),
        ("a.jpg\n-1\n", 2, "negative face count -1"),  # negative count
        ("a.jpg\ntwo\n1 2 3 4\n", 2, "expected a face count"),
        ("a.jpg\n3\n1 2 3 4\n", 2, "face count 3 but only 1"),  # count beyond the file
        ("a.jpg\n2\n1 2 3 4\nb.jpg\n1\n1 2 3 4\n", 4, "line 2 says 2 faces"),  # count beyond the image
        ("a.jpg\n0\n0 0 1 0 0 0 0 0 0 0\n", 3, "all-zero line"),
        ("a.jpg\n", 1, "no face-count line"),
        ("a.jpg\n1\n1 2 3 4\na.jpg\n1\n1 2 3 4\n", 4, "appears twice"),
    ],
)
def test_wider_errors_name_file_and_line(tmp_path, text, line, words):
    path = write(tmp_path, text)
    with pytest.raises(LabelFormatError) as err:
        read_labels(path)
    assert str(err.value).startswith(f"{path}:{line}: ")
    assert words in str(err.value)
    assert err.value.line == line and err.value.path == str(path)


@pytest.mark.parametrize(
    "text,line,words",
    [
        ("# a.jpg\n1 2 3 4 5\n", 2, "expected 4, 19 or 20 columns"),
        ("# a.jpg\n1 2 3 4 " + "1 " * 14 + "zz\n", 2, "not a number: 'zz'"),
        ("#\n", 1, "without an image name"),
        ("# a.jpg\n# b.jpg\n# a.jpg\n", 3, "appears twice"),
    ],
)
def test_retinaface_errors_name_file_and_line(tmp_path, text, line, words):
    path = write(tmp_path, text)
    with pytest.raises(LabelFormatError, match=f"^{re.escape(str(path))}:{line}: .*{re.escape(words)}"):
        read_labels(path)


def test_retinaface_face_line_before_name(tmp_path):
    path = write(tmp_path, "1 2 3 4\n# a.jpg\n")
    with pytest.raises(LabelFormatError, match=f"^{re.escape(str(path))}:1: face line before"):
        read_retinaface(path)
    with pytest.raises(LabelFormatError, match=f"^{re.escape(str(path))}:1: expected an image name line"):
        read_labels(path)  # auto-detected as WIDER: the first line is not a '#' line


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        read_labels(tmp_path / "nope.txt")


def test_sanitize_policy():
    boxes = np.array(
        [
            [10, 10, 20, 30],  # inside: kept as is
            [-5, 90, 15, 110],  # partly outside: clipped to [0, 90, 15, 100]
            [30, 30, 30, 40],  # zero width: dropped
            [120, 10, 130, 20],  # wholly outside (right): dropped
            [50, 50, 40, 60],  # negative width: dropped
            [90, -10, 105, 5],  # corner: clipped to [90, 0, 100, 5]
        ],
        dtype=np.float32,
    )
    lms = np.arange(6 * 10, dtype=np.float32).reshape(6, 5, 2)
    rec = FaceRecord(
        "k",
        "e/k.jpg",
        boxes,
        lms,
        [True, False, True, True, True, True],
        [0, 1, 0, 0, 0, 0],
        np.arange(36).reshape(6, 6),
    )
    clean, dropped = sanitize(rec, width=100, height=100)
    assert dropped == 3
    np.testing.assert_array_equal(clean.boxes, [[10, 10, 20, 30], [0, 90, 15, 100], [90, 0, 100, 5]])
    np.testing.assert_array_equal(clean.landmarks, lms[[0, 1, 5]])  # landmarks are left as labelled
    assert clean.has_landmarks.tolist() == [True, False, True]
    assert clean.ignore.tolist() == [False, True, False]
    np.testing.assert_array_equal(clean.attributes, np.arange(36).reshape(6, 6)[[0, 1, 5]])
    np.testing.assert_array_equal(rec.boxes, boxes)  # the input is not modified


def test_merge_landmarks(tmp_path):
    wider = read_labels(write(tmp_path, WIDER_TEXT, "w.txt"))
    lms = read_labels(write(tmp_path, RETINA_TEXT, "r.txt"))
    merged, mismatched = merge_landmarks(wider, lms)
    assert mismatched == 0  # the Handshaking image is not in the WIDER file
    m = merged["0_Parade_marchingband_1_849"]
    assert m.has_landmarks.tolist() == [True] and m.attributes is not None
    np.testing.assert_array_equal(m.landmarks, lms["0_Parade_marchingband_1_849"].landmarks)
    shifted = {
        k: FaceRecord(r.key, r.name, r.boxes + 3, r.landmarks, r.has_landmarks, r.ignore) for k, r in lms.items()
    }
    merged, mismatched = merge_landmarks(wider, shifted)
    assert mismatched == 1 and not merged["0_Parade_marchingband_1_849"].has_landmarks.any()


def test_image_key():
    assert image_key("0--Parade/0_Parade_Parade_0_1014.jpg") == "0_Parade_Parade_0_1014"
    assert image_key("/x/y/z.png") == "z" and image_key("a\\b\\c.jpeg") == "c"


def test_a_byte_order_mark_is_not_part_of_the_first_name(tmp_path):
    """Files saved by editors that write a UTF-8 BOM read exactly like the same file without one."""
    for text, reader in ((WIDER_TEXT, read_wider), (RETINA_TEXT, read_retinaface)):
        plain = write(tmp_path, text, "plain.txt")
        bom = tmp_path / "bom.txt"
        bom.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
        want, got = reader(plain), reader(bom)
        assert list(got) == list(want) and all(same_record(got[k], want[k]) for k in want)
        assert next(iter(got.values())).name == "0--Parade/0_Parade_marchingband_1_849.jpg"
        assert not any("\ufeff" in r.name or "\ufeff" in k for k, r in got.items())
        auto = read_labels(bom)
        assert list(auto) == list(want)


def test_a_file_that_is_not_utf8_is_named_with_its_line(tmp_path):
    """A labels file in another encoding (Latin-1 here) is a LabelFormatError naming the file, line and byte."""
    for prefix in (b"", b"\xef\xbb\xbf"):  # with a BOM the line and byte are the same
        path = tmp_path / "latin1.txt"
        path.write_bytes(prefix + WIDER_TEXT.encode() + "caf\u00e9/x.jpg\n0\n".encode("latin-1"))
        line = WIDER_TEXT.count("\n") + 1
        with pytest.raises(LabelFormatError, match=re.escape(f"{path}:{line}: not UTF-8 text (byte 0xe9)")):
            read_labels(path)
    crlf = write(tmp_path, WIDER_TEXT.replace("\n", "\r\n"), "crlf.txt")
    assert list(read_wider(crlf)) == list(read_wider(write(tmp_path, WIDER_TEXT, "lf.txt")))
