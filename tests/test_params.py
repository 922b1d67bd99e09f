import os
import subprocess
import sys

import pytest

from pipeline.core.errors import ParamsError
from pipeline.core.params import MIN_REPLACE, load_params, parse_params
from pipeline.diffusion.model import noise_schedule
from pipeline.diffusion.process import MIN_REPLACE as SCHEDULE_MIN_REPLACE
from pipeline.tokenizer.model import VQGAN
from tests.conftest import REPO, default_raw_params, with_overrides


def errors_for(overrides):
    with pytest.raises(ParamsError) as info:
        parse_params(with_overrides(default_raw_params(), overrides), "params.yaml")
    return str(info.value)


def test_repo_params_are_valid():
    params = load_params(REPO / "params.yaml")
    assert params.ingest.resolution == params.shapes.resolution


def test_out_of_range_names_key_value_and_bound():
    message = errors_for({"ingest.val_fraction": 1.5})
    assert "ingest.val_fraction = 1.5" in message and "< 1" in message


def test_wrong_type_names_expected_type():
    message = errors_for({"shapes.n_images": "many"})
    assert "shapes.n_images = 'many'" in message and "an integer" in message


def test_bool_is_not_an_integer():
    assert "shapes.seed = True" in errors_for({"shapes.seed": True})


def test_unknown_key_suggests_the_close_one():
    raw = default_raw_params()
    raw["ingest"]["resolutoin"] = 64
    with pytest.raises(ParamsError, match=r"ingest.resolutoin .*did you mean 'resolution'"):
        parse_params(raw)


def test_missing_key_is_reported():
    raw = default_raw_params()
    del raw["tokenizer"]["optim"]["lr"]
    with pytest.raises(ParamsError, match=r"tokenizer.optim.lr is missing"):
        parse_params(raw)


def test_list_items_are_range_checked():
    assert "ingest.background[1] = 300" in errors_for({"ingest.background": [0, 300, 0]})


def test_fixed_length_lists_say_how_many():
    message = errors_for({"ingest.background": [0, 0], "train.optim.betas": [0.9, 0.99, 0.999]})
    assert "ingest.background = [0, 0]: must have exactly 3 values" in message
    assert "train.optim.betas = [0.9, 0.99, 0.999]: must have exactly 2 values" in message


@pytest.mark.parametrize("overrides, key, words", [
    ({"train.width": 100, "train.heads": 8}, "train.width = 100", "divisible by train.heads (8)"),
    ({"train.clipgen.width": 100, "train.clipgen.heads": 8}, "train.clipgen.width = 100", "train.clipgen.heads"),
    ({"sample.steps": 101, "train.diffusion_steps": 100}, "sample.steps = 101", "<= train.diffusion_steps (100)"),
    ({"ingest.resolution": 30}, "ingest.resolution = 30", "downsampling factor 4"),
    ({"tokenizer.n_codes": 128, "tokenizer.code_books": 2}, "tokenizer.n_codes = 128", "k ** tokenizer.code_books (2)"),
    ({"tokenizer.n_codes": 144, "tokenizer.code_books": 2, "tokenizer.code_dim": 33}, "tokenizer.code_dim = 33",
     "divisible by tokenizer.code_books (2)"),
    ({"train.abar_range": [0.1, 0.9]}, "train.abar_range = [0.1, 0.9]", "must fall"),
    ({"train.gbar_range": [0.9, 0.1]}, "train.gbar_range = [0.9, 0.1]", "must rise"),
    ({"train.abar_range": [0.5, 0.25], "train.gbar_range": [0.5, 0.75]}, "train.abar_range, train.gbar_range",
     "<= 1 - 1e-09 at both ends"),
    ({"train.abar_range": [0.5, 0.4], "train.gbar_range": [1e-4, 0.5]}, "train.abar_range, train.gbar_range",
     "abar / (1 - gbar) must not rise"),
])
def test_keys_that_must_agree_are_checked_on_load(overrides, key, words):
    message = errors_for(overrides)
    assert key in message and words in message


@pytest.mark.parametrize("abar, gbar", [
    ([0.99999, 9e-6], [9e-6, 0.99999]), ([0.9, 0.1], [0.05, 0.5]), ([0.4, 0.2], [0.2, 0.6]),
    ([0.1, 0.9], [0.05, 0.06]), ([0.5, 0.5], [0.2, 0.1]), ([0.5, 0.25], [0.5, 0.75]), ([0.5, 0.4], [1e-4, 0.5]),
    ([0.5, 0.25], [0.3, 0.5]), ([0.6, 0.3], [0.2, 0.6]),
])
def test_the_schedule_rule_on_load_is_the_schedules_own(abar, gbar):
    """params.yaml accepts exactly the (abar_range, gbar_range) that make a valid Schedule, so a run
    never fails at the train stage over a schedule its params passed."""
    assert_accepted_exactly_when_it_builds(lambda: noise_schedule(16, 100, abar, gbar),
                                           {"train.abar_range": abar, "train.gbar_range": gbar}, "train.")


@pytest.mark.parametrize("resolution, ch_mult", [
    (32, [1, 2, 4]), (30, [1, 2, 4]), (36, [1, 2, 4]), (36, [1, 2, 4, 8]), (64, [1, 2, 4, 8]), (10, [1, 2]),
    (9, [1, 2]), (9, [1]), (48, [1, 1, 2, 2, 4]), (40, [1, 1, 2, 2, 4]),
])
def test_the_resolution_rule_on_load_is_the_tokenizers_own(resolution, ch_mult):
    """params.yaml accepts exactly the ingest.resolution the tokenizer of its ch_mult can take."""
    assert_accepted_exactly_when_it_builds(lambda: VQGAN(8, 4, 4, ch_mult, 1, [], resolution, "none"),
                                           {"ingest.resolution": resolution, "tokenizer.ch_mult": ch_mult},
                                           "ingest.resolution")


def assert_accepted_exactly_when_it_builds(build, overrides: dict, key: str) -> None:
    """params with ``overrides`` load when ``build()`` (the library's own check) succeeds, and
    are refused naming ``key`` when it raises ValueError."""
    try:
        build()
    except ValueError:
        assert key in errors_for(overrides)
    else:
        parse_params(with_overrides(default_raw_params(), overrides))


def test_the_schedule_floor_on_load_is_the_schedules_own():
    assert MIN_REPLACE == SCHEDULE_MIN_REPLACE


def test_choices_are_listed():
    message = errors_for({"tokenizer.device": "tpu"})
    assert "tokenizer.device = 'tpu'" in message and "'cuda'" in message


def test_every_problem_is_reported_at_once():
    message = errors_for({"shapes.n_images": 0, "ingest.workers": -1})
    assert "shapes.n_images" in message and "ingest.workers" in message


def test_scientific_notation_string_is_a_number():
    params = parse_params(with_overrides(default_raw_params(), {"tokenizer.optim.lr": "1e-4"}))
    assert params.tokenizer.optim.lr == pytest.approx(1e-4)


def test_cli_exits_2_and_touches_no_output(params_file, tmp_path):
    bad = params_file({"ingest.val_fraction": 2})
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    result = subprocess.run(
        [sys.executable, "-m", "stages", "ingest", "--params", str(bad), "--out", str(out),
         "--report", str(tmp_path / "r.json"), "--skipped", str(tmp_path / "s.csv")],
        capture_output=True, text=True, cwd=REPO,
    )
    assert result.returncode == 2
    assert "ingest.val_fraction = 2" in result.stderr
    assert "Traceback" not in result.stderr
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert not (tmp_path / "r.json").exists()


def test_progress_bars_write_every_30_s_into_a_log():
    """stderr not a terminal (dvc repro > log, CI): the stages' tqdm bars are throttled."""
    env = {k: v for k, v in os.environ.items() if k != "TQDM_MININTERVAL"}
    probe = "import io, stages.cli, tqdm; print(tqdm.tqdm(total=1, file=io.StringIO()).mininterval)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, env=env)
    assert result.stdout.strip() == "30.0", result.stderr


@pytest.mark.parametrize("key", ["clip.pretrained", "evaluate.inception_weights", "tokenizer.perceptual_weights"])
def test_weights_files_outside_the_weights_folder_are_refused(key):
    message = errors_for({key: "/models/file.pt"})
    assert f"{key} = '/models/file.pt'" in message and "weights/" in message
    parse_params(with_overrides(default_raw_params(), {key: "weights/file.pt"}))


def test_inception_weights_auto_is_the_only_word():
    assert parse_params(with_overrides(default_raw_params(), {"evaluate.inception_weights": "auto"})
                        ).evaluate.inception_weights == "auto"
    message = errors_for({"evaluate.inception_weights": "download"})
    assert "evaluate.inception_weights = 'download': auto, null or a local weights file" in message
    assert "tokenizer.perceptual_weights = 'auto'" in errors_for({"tokenizer.perceptual_weights": "auto"})


def test_a_clip_tag_is_not_a_file():
    assert parse_params(with_overrides(default_raw_params(), {"clip.pretrained": "openai"})).clip.pretrained == "openai"
