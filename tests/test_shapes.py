import csv

import numpy as np

from pipeline.worlds.shapes.render import ATTRIBUTES, LABELS_FILE, ShapeSpec, caption, generate, render_example


def read_labels(folder):
    with open(folder / LABELS_FILE) as handle:
        return list(csv.DictReader(handle))


def folder_bytes(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_bytes(tmp_path):
    generate(tmp_path / "a", 40, 32, seed=3)
    generate(tmp_path / "b", 40, 32, seed=3)
    assert folder_bytes(tmp_path / "a") == folder_bytes(tmp_path / "b")


def test_different_seed_gives_different_images(tmp_path):
    generate(tmp_path / "a", 10, 32, seed=1)
    generate(tmp_path / "b", 10, 32, seed=2)
    assert folder_bytes(tmp_path / "a") != folder_bytes(tmp_path / "b")


def test_captions_match_attributes(tmp_path):
    generate(tmp_path / "w", 60, 32, seed=0)
    rows = read_labels(tmp_path / "w")
    assert len(rows) == 60
    for row in rows:
        spec = ShapeSpec(row["shape"], row["colour"], row["size"], row["position"])
        assert row["caption"] == caption(spec)
        for name, values in ATTRIBUTES.items():
            assert row[name] in values
            assert row[name] in row["caption"] or name == "position"
        assert (tmp_path / "w" / row["file"]).is_file()


def test_caption_wording():
    assert caption(ShapeSpec("circle", "red", "large", "left")) == "a large red circle on the left"
    assert caption(ShapeSpec("square", "blue", "small", "centre")) == "a small blue square in the centre"


def test_all_attribute_values_appear():
    specs = [render_example(0, i, 32)[0] for i in range(400)]
    for name, values in ATTRIBUTES.items():
        assert {getattr(s, name) for s in specs} == set(values)


def test_object_is_where_the_caption_says():
    """The object's colour dominates the named region of the image, at 32 and 64 px."""
    for resolution in (32, 64):
        for index in range(60):
            spec, image = render_example(5, index, resolution)
            assert image.size == (resolution, resolution) and image.mode == "RGB"
            pixels = np.asarray(image, dtype=np.float32)
            saturation = pixels.max(axis=2) - pixels.min(axis=2)
            ys, xs = np.nonzero(saturation > 80)
            assert len(xs), spec
            cx, cy = xs.mean() / resolution, ys.mean() / resolution
            expected = {"left": cx < 0.4, "right": cx > 0.6, "top": cy < 0.4, "bottom": cy > 0.6,
                        "centre": 0.4 < cx < 0.6 and 0.4 < cy < 0.6}
            assert expected[spec.position], (spec, cx, cy)
