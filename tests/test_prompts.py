import pytest

from pipeline.core.errors import UserError
from pipeline.data.prompts import load_prompts
from tests.conftest import REPO


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
