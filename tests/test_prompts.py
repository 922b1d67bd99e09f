import pytest

from pipeline.errors import UserError
from pipeline.prompts import load_prompts, shapes_prompts
from pipeline.shapes import ATTRIBUTES, POSITION_PHRASES
from tests.conftest import REPO


def test_committed_shapes_prompts_match_the_builder():
    committed = load_prompts(REPO / "prompts/shapes.csv")
    assert committed.to_dict("records") == shapes_prompts().to_dict("records")


def test_shapes_prompts_are_balanced_and_say_their_labels():
    prompts = shapes_prompts()
    assert len(prompts) == 60 and not prompts.duplicated(list(ATTRIBUTES)).any()
    for name, values in ATTRIBUTES.items():
        assert set(prompts[name].value_counts()) == {60 // len(values)}
    for row in prompts.to_dict("records"):
        text = row["prompt"].lower()
        assert all(row[name] in text for name in ("shape", "colour", "size"))
        assert POSITION_PHRASES[row["position"]] in text
    assert (prompts["wording"] == "new").sum() == 30


def test_text_prompts_with_prefix(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("# comment\na smiling woman\n\na man with a beard\n")
    assert load_prompts(path, "a photograph of ")["prompt"].tolist() == [
        "a photograph of a smiling woman", "a photograph of a man with a beard"]
    assert len(load_prompts(REPO / "prompts/faces.txt")) == 64


def test_bad_prompt_files(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_prompts(tmp_path / "missing.csv")
    (tmp_path / "x.csv").write_text("text\nhello\n")
    with pytest.raises(UserError, match="'prompt' column"):
        load_prompts(tmp_path / "x.csv")
