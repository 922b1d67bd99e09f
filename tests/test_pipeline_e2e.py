"""`dvc repro` of the whole pipeline in a temporary copy of the repo, on a micro config."""

import json

import pytest
import yaml

from tests.e2e import MICRO, commit, micro_copy, progress_states, set_param, sh, stages_changed, stages_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("repo")
    return root, micro_copy(root)


def test_repro_runs_every_stage_then_is_up_to_date(workdir):
    root, env = workdir
    output = sh(["dvc", "repro"], root, env)
    states = progress_states(output)
    assert {"tokenizer", "train", "clip", "ingest"} <= {bar for bar, _, _ in states}
    between = [state for state in states if 0 < state[1] < state[2]]
    assert not between, f"progress lines between a bar's first and last, within TQDM_MININTERVAL: {between[:5]}"
    assert stages_run(output) == set(yaml.safe_load((root / "dvc.yaml").read_text())["stages"])
    assert yaml.safe_load((root / "reports/judge.json").read_text()) == {"judge": "rules", "world": "shapes"}
    report = yaml.safe_load((root / "reports/ingest.json").read_text())
    assert report["kept"] == MICRO["shapes.n_images"]
    assert len(list((root / "data/ingest").glob("part-*.parquet"))) == 3
    for output in ("models/tokenizer.pt", "models/clip/clip.pt", "models/scorer/clip.pt", "models/generator.pt",
                   "data/prompts.csv", "data/tokens",
                   "data/embeddings", "data/prompt_embeddings.parquet", "reports/tokenizer_recon.png"):
        assert (root / output).exists(), output
    metrics = yaml.safe_load((root / "reports/metrics.json").read_text())
    assert {"frechet", "clipscore", "alignment", "checker", "world"} <= set(metrics)
    assert metrics["world"] == {"world": "shapes", "images": MICRO["shapes.n_images"],
                                "heldout_pairs": metrics["world"]["heldout_pairs"]}
    assert "fd_clip" in metrics["frechet"]["samples"] and "fid" not in str(metrics["frechet"]).replace("fidelity", "")
    assert {"seen", "heldout", "new_wording", "partial"} <= set(metrics["alignment"])
    assert "(scorer)" in metrics["scored_by"]["clipscore"]
    card = yaml.safe_load((root / "reports/scorecard.json").read_text())
    assert {"align_seen_all", "align_heldout_all", "align_partial_named", "clip_matched_cosine", "fd_eval_clip",
            "fd_floor_real", "fd_floor_recon", "checker_acc_fresh", "checker_acc_recon", "checker_acc_real",
            "checker_acc_recon_heldout", "tokenizer_psnr"} <= set(card)
    assert card["pseudo_text"] == "c3-0.5" and card["fd_n"] == MICRO["evaluate.fd_images"]
    assert (root / "reports/index.html").stat().st_size > 1000 and (root / "reports/samples.png").is_file()
    curve = (root / "reports/tradeoff.csv").read_text().splitlines()
    assert curve[0] == "sweep,guidance,truncation,align_all,align_low,align_high,fd_scorer_clip,n"
    assert [line.split(",")[:3] for line in curve[1:]] == [["guidance", "1.0", "0.9"], ["guidance", "2.0", "0.9"],
                                                           ["truncation", "2.0", "1.0"]]
    tradeoff = yaml.safe_load((root / "reports/tradeoff.json").read_text())
    assert tradeoff["fd_n"] == 10 and "(scorer)" in tradeoff["scored_by"]["frechet"]
    for report in ("clip", "scorer", "sample"):
        assert yaml.safe_load((root / f"reports/{report}.json").read_text()), report
    for log in ("tokenizer", "clip", "scorer", "train"):  # the DVCLive logs
        summary = yaml.safe_load((root / f"reports/{log}/metrics.json").read_text())
        assert summary["step"] > 0 and (root / f"reports/{log}/plots/metrics/loss.tsv").is_file(), log
    page = (root / "reports/index.html").read_text()
    assert page.index('id="scorecard"') < page.index("<img") < page.index('id="tradeoff"')
    again = sh(["dvc", "repro"], root, env)
    assert stages_run(again) == set()
    assert "up to date" in again
    status = sh(["dvc", "status"], root, env)
    assert "up to date" in status


def test_embed_as_two_workers_writes_what_the_stage_wrote(workdir):
    root, env = workdir
    sh(["dvc", "repro"], root, env)
    for worker in ("1/2", "0/2"):
        sh(["t2i", "embed", "--shard", worker, "--out", "sharded", "--prompts-out", "sharded.parquet"], root, env)
    names = sorted(p.name for p in (root / "data/embeddings").iterdir())
    assert names == sorted(p.name for p in (root / "sharded").iterdir()) and len(names) == 3
    assert all((root / "data/embeddings" / n).read_bytes() == (root / "sharded" / n).read_bytes() for n in names)
    assert (root / "data/prompt_embeddings.parquet").read_bytes() == (root / "sharded.parquet").read_bytes()


def test_a_tokenizer_param_reruns_only_the_tokenizer_and_downstream(workdir):
    root, env = workdir
    sh(["dvc", "repro"], root, env)
    set_param(root, "tokenizer.optim.lr", 3.0e-4)
    assert stages_run(sh(["dvc", "repro"], root, env)) == {"tokenizer", "train", "sample", "tradeoff",
                                                          "evaluate"}


def test_an_ingest_param_leaves_the_world_alone(workdir):
    root, env = workdir
    sh(["dvc", "repro"], root, env)
    before = (root / "params.yaml").read_text(), (root / "conf/config.yaml").read_text()
    set_param(root, "ingest.val_fraction", 0.25)
    assert stages_changed(root, env) == {"ingest"}  # the world stage does not read ingest:
    (root / "params.yaml").write_text(before[0])
    (root / "conf/config.yaml").write_text(before[1])
    assert stages_changed(root, env) == set()


def test_code_and_weights_changes_rerun_the_stages_that_use_them(workdir):
    root, env = workdir
    sh(["dvc", "repro"], root, env)
    with open(root / "pipeline/diffusion/process.py", "a") as handle:  # the sampler's maths lives here too
        handle.write("\n# edited\n")
    output = sh(["dvc", "repro"], root, env)
    assert stages_run(output) == {"train", "sample", "tradeoff", "evaluate"}
    assert f"train: resuming from step {MICRO['train.steps']}" in output  # finished: reloaded, not retrained
    (root / "weights/vgg16.pt").write_bytes(b"a user's weights file")
    assert stages_changed(root, env) == {"tokenizer", "clip", "scorer", "embed", "train", "tradeoff", "evaluate"}
    (root / "weights/vgg16.pt").unlink()
    assert stages_changed(root, env) == set()


def test_the_ablation_command_scores_its_settings_and_keeps_finished_ones(workdir):
    root, env = workdir
    sh(["dvc", "repro"], root, env)
    ablation = ["t2i", "ablation", "--steps", "10", "--samples", "2", "--setting", "none", "--setting", "c3-0.5"]
    sh(ablation, root, env)
    table = yaml.safe_load((root / "reports/ablation.json").read_text())
    assert list(table) == ["none", "c3-0.5"]  # in the table's order; without --setting, all six
    for name, card in table.items():
        assert card["pseudo_text"] == name and card["train_steps"] == 10 and "align_seen_all" in card
    assert "trains the generator 10 steps" in (root / "reports/ablation.md").read_text()
    again = sh(ablation, root, env)
    assert again.count("kept") == 2
    (root / "data/ablation/none/scorecard.json").unlink()  # score one again: no training, no sampling
    rescored = sh(ablation, root, env)
    assert rescored.count("kept") == 1 and "ablation: evaluate" in rescored
    assert "ablation: sample" not in rescored and "ablation: train" not in rescored


def test_the_compare_command_trains_samples_and_scores_the_three_generators(workdir):
    root, env = workdir
    sh(["dvc", "repro"], root, env)
    output = sh(["t2i", "compare", "--samples", "2", "--steps", "vqdiffusion=4", "--steps", "lafite=4",
                 "--steps", "clipgen=4"], root, env)
    assert output.count("compare: train") == 3
    table = json.loads((root / "reports/comparison.json").read_text())
    assert list(table["generators"]) == ["vqdiffusion", "lafite", "clipgen"]
    assert 0 <= table["random_real_floor_all"] < 1 and "checker" in table["scored_by_alignment"]
    for name, row in table["generators"].items():
        assert row["generator"] == name and row["train_steps"] == 4 and row["parameters"] > 0, name
        assert row["sampling_images_per_second"] > 0, name
        assert {"align_seen_all", "ci95_align_seen_all", "align_heldout_all", "fd_eval_clip", "fd_floor_real",
                "clipscore_hessel_mean", "clipscore_hessel_best_of_n"} <= set(row), name
        assert (root / f"reports/comparison/{name}.png").is_file()
    markdown = (root / "reports/comparison.md").read_text()
    assert markdown.count("\n- **") == 3 and "LAFITE" in markdown  # a line on the paper's ranking each
    assert "kept" in sh(["t2i", "compare", "--samples", "2", "--generator", "lafite", "--steps", "lafite=4"],
                        root, env)


def test_an_experiment_shows_its_training_live_in_dvc_exp_show_and_plots(workdir):
    """Last here: it leaves the workspace at the experiment's params."""
    root, env = workdir
    sh(["dvc", "repro"], root, env)
    commit(root, env, "baseline")
    output = sh(["dvc", "exp", "run", "-S", "train.steps=30"], root, env)
    assert stages_run(output) == {"train", "sample", "tradeoff", "evaluate"}
    shown = json.loads(sh(["dvc", "exp", "show", "--json", "--no-fetch"], root, env))
    runs = [exp for baseline in shown for exp in [baseline, *(baseline.get("experiments") or [])]]
    steps = {run["rev"]: run["data"]["metrics"]["reports/train/metrics.json"]["data"]["step"]
             for exp in runs for run in exp.get("revs", [exp]) if run.get("data")}
    assert sorted(steps.values()) == [MICRO["train.steps"], 30, 30]  # the baseline, the experiment, the workspace
    plots = json.loads(sh(["dvc", "plots", "show", "--json"], root, env))["data"]
    loss = plots["reports/train/plots/metrics/loss.tsv"]
    points = [row for plot in loss for row in plot["content"]["data"]["values"]]
    assert [int(row["step"]) for row in points] == list(range(5, 31, 5))  # the training steps, each once
    assert "reports/tradeoff.csv" in plots and "reports/tokenizer/plots/metrics/val_psnr.tsv" in plots
