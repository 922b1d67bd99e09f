"""The CLIP encoder interface, the offline CLIP's training and the retrieval/zero-shot scores."""

from __future__ import annotations

import dataclasses
from dataclasses import asdict

import huggingface_hub
import numpy as np
import open_clip
import pandas as pd
import pytest
import torch

from pipeline.clip.encoder import ClipEncoder, ClipWeightsError, inference_transform, preprocess_images
from pipeline.clip.pretrain import clip_images, trainable_world
from pipeline.clip.train import (TokenCache, attribute_codes, caption_matches, evaluate_clip, modality_gap,
                                 multi_positive_loss, pseudo_text_cosines, retrieval_accuracy, save_clip, train_clip,
                                 zero_shot_accuracy)
from pipeline.core.errors import UserError
from pipeline.generator.pseudo_text import ABLATION
from pipeline.core.checksum import sha256_file
from pipeline.core.params import ClipTrainParams, OptimParams
from pipeline.worlds.shapes.render import caption, render_example
from pipeline.worlds.faces.parts import write_parts
from pipeline.worlds.faces.world import FACES_WORLD
from pipeline.worlds.shapes.world import SHAPES_WORLD
from tests.face_fixtures import fake_faces_archive

MODEL = "shapes-clip-tiny"
TRAIN = ClipTrainParams(world="shapes", data=None, images=48, render_seed=5, seed=0, steps=30, batch_size=16, augment_p=0.5,
                        partial_p=0.5, logit_scale=100.0, learn_logit_scale=True,
                        optim=OptimParams(lr=2e-3, betas=[0.9, 0.98], weight_decay=0.1, warmup_steps=5, grad_clip=1.0))


def world(n: int, resolution: int = 32, start: int = 0):
    examples = [render_example(0, i, resolution) for i in range(start, start + n)]
    return [im for _, im in examples], [caption(s) for s, _ in examples], [asdict(s) for s, _ in examples]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny batches gain nothing from threads, and two spinning threads crawl on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained():
    images, attributes = SHAPES_WORLD.render(TRAIN.render_seed, 0, TRAIN.images, 32)
    model, losses = train_clip(MODEL, torch.from_numpy(images), attributes, SHAPES_WORLD, TRAIN, device="cpu")
    return model, losses


@pytest.fixture(scope="module")
def encoder(trained) -> ClipEncoder:
    return ClipEncoder(trained[0], MODEL, "in-memory", batch_size=8)


@pytest.mark.timeout(60)
def test_pretrained_tag_offline_is_one_clear_error(monkeypatch, tmp_path):
    # The machine is offline anyway; offline mode and an empty cache make the failure immediate.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ClipWeightsError, match="clip.pretrained: weights/ViT-B-32-quickgelu-openai.pt"):
        ClipEncoder.load("ViT-B-32-quickgelu", "openai", device="cpu")


def test_missing_local_checkpoint_is_one_clear_error(tmp_path):
    with pytest.raises(ClipWeightsError, match="no such file") as error:
        ClipEncoder.load(MODEL, str(tmp_path / "missing.pt"), device="cpu")
    assert "clip.pretrained" in str(error.value)


def test_checkpoint_of_another_model_is_a_weights_error(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"state_dict": {"unrelated": torch.zeros(1)}}, path)
    with pytest.raises(ClipWeightsError, match="does not hold weights"):
        ClipEncoder.load(MODEL, str(path), device="cpu")


def test_project_config_is_registered_with_open_clip():
    assert MODEL in open_clip.list_models()


def test_training_loss_decreases(trained):
    losses = trained[1]
    assert len(losses) == TRAIN.steps
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.2


def test_the_contrastive_loss_spreads_its_target_over_every_match():
    rng = np.random.default_rng(0)
    images, texts = (torch.nn.functional.normalize(torch.from_numpy(rng.normal(size=(5, 8))).float(), dim=-1)
                     for _ in range(2))
    scale = torch.tensor(20.0)
    alone = torch.eye(5, dtype=torch.bool)
    expected = open_clip.ClipLoss()(images, texts, scale)
    torch.testing.assert_close(multi_positive_loss(images, texts, scale, alone), expected)
    matches = alone.clone()
    matches[0, 1] = matches[1, 0] = True  # captions 0 and 1 both describe images 0 and 1
    logits = (scale * images @ texts.T).double()
    by_hand = 0.0
    for rows, m in ((logits, matches), (logits.T, matches.T)):
        for i in range(5):
            positives = torch.nonzero(m[i]).flatten()
            by_hand += -rows[i].log_softmax(0)[positives].mean() / 5 / 2
    torch.testing.assert_close(multi_positive_loss(images, texts, scale, matches).double(), by_hand)


@pytest.mark.parametrize("world", [SHAPES_WORLD, FACES_WORLD], ids=lambda w: w.name)
def test_a_caption_matches_every_image_that_agrees_with_each_attribute_it_names(world):
    rng = np.random.default_rng(0)
    combos = world.attribute_combinations()
    images = [combos[i] for i in rng.integers(len(combos), size=40)]
    captions = [{k: v for k, v in combos[i].items() if rng.random() < 0.6} for i in rng.integers(len(combos), size=40)]
    captions[:len(images) // 2] = images[:len(images) // 2]  # full captions of their own images too
    by_hand = [[all(image[k] == v for k, v in named.items()) for named in captions] for image in images]
    matches = caption_matches(attribute_codes(images, world), attribute_codes(captions, world))
    assert matches.tolist() == by_hand
    assert matches.diagonal()[:len(images) // 2].all() and not matches.all()


def test_the_token_cache_gives_the_tokenizers_rows_and_tokenises_each_caption_once():
    tokenizer = open_clip.get_tokenizer(MODEL)
    tokenised = []
    cache = TokenCache(lambda texts: tokenised.extend(texts) or tokenizer(texts))
    first, second = ["a red circle", "a blue square", "a red circle"], ["a blue square", "a small red circle"]
    assert torch.equal(cache(first), tokenizer(first)) and torch.equal(cache(second), tokenizer(second))
    assert tokenised == ["a red circle", "a blue square", "a small red circle"]


def test_the_temperature_starts_where_params_put_it():
    params = dataclasses.replace(TRAIN, steps=1, learn_logit_scale=False, logit_scale=50.0)
    images, attributes = SHAPES_WORLD.render(1, 0, 8, 32)
    model, _ = train_clip(MODEL, torch.from_numpy(images), attributes, SHAPES_WORLD, params, device="cpu")
    assert float(model.logit_scale.exp()) == pytest.approx(50.0)


def test_a_world_without_a_renderer_pretrains_a_clip_only_on_a_labelled_folder():
    with pytest.raises(UserError, match="clip.train.world = 'nowhere': no such world"):
        trainable_world("nowhere", None, "clip.train.world")
    with pytest.raises(UserError, match="cannot render"):
        trainable_world("faces", None, "clip.train.world")
    assert trainable_world("faces", "data/faces/clip", "clip.train.world").name == "faces"
    blind = dataclasses.replace(SHAPES_WORLD, render=None)
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(__import__("pipeline.worlds.registry", fromlist=["WORLDS"]).WORLDS, "blind", blind)
        with pytest.raises(UserError, match="cannot render"):
            trainable_world("blind", None, "scorer.train.world")


def test_the_modality_gap_figures_on_constructed_embeddings():
    # images at e0 + small offsets, captions at e1 + the same offsets: every matched cosine is equal
    offsets = np.eye(6, dtype=np.float32)[2:5] * 0.5
    image = offsets + np.eye(6, dtype=np.float32)[0]
    text = offsets + np.eye(6, dtype=np.float32)[1]
    image /= np.linalg.norm(image, axis=1, keepdims=True)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    gap = modality_gap(image, text, ["a", "b", "c"])
    assert gap["matched_cosine"] == pytest.approx(0.25 / 1.25)
    assert gap["mismatched_cosine"] == pytest.approx(0.0)
    assert gap["image_image_cosine"] == gap["text_text_cosine"] == pytest.approx(1 / 1.25)
    assert gap["centroid_distance"] == pytest.approx(np.sqrt(2) / np.sqrt(1.25))
    assert modality_gap(image, image, ["a", "b", "c"])["centroid_distance"] == pytest.approx(0.0, abs=1e-6)


def test_pseudo_text_cosines_name_every_ablation_setting():
    rng = np.random.default_rng(0)
    image = rng.normal(size=(50, 16)).astype(np.float32)
    image /= np.linalg.norm(image, axis=1, keepdims=True)
    figures = pseudo_text_cosines(image, image, ABLATION)
    assert list(figures) == ["none", "clipvq-0.25", "clipvq-0.5", "clipvq-0.75", "lafite-3", "c3-0.5"]
    assert figures["none"]["to_image"] == pytest.approx(1.0) and figures["none"]["to_caption"] == pytest.approx(1.0)
    assert figures["clipvq-0.5"]["to_image"] == pytest.approx(1 / np.sqrt(1.25), abs=0.02)  # 0.89, DESIGN.md
    assert figures["clipvq-0.25"]["to_image"] > figures["clipvq-0.75"]["to_image"] > figures["lafite-3"]["to_image"]


def test_saved_checkpoint_loads_and_embeds_identically(trained, encoder, tmp_path):
    path = tmp_path / "clip.pt"
    save_clip(trained[0], path)
    loaded = ClipEncoder.load(MODEL, str(path), batch_size=8, device="cpu")
    assert loaded.checkpoint_id == sha256_file(path)
    images, captions, _ = world(5, start=100)
    np.testing.assert_allclose(loaded.embed_images(images), encoder.embed_images(images), atol=1e-6)
    np.testing.assert_allclose(loaded.embed_texts(captions), encoder.embed_texts(captions), atol=1e-6)


def test_embeddings_are_unit_float32_rows(encoder):
    images, captions, _ = world(11, start=200)  # more than one batch of 8
    for emb in (encoder.embed_images(images), encoder.embed_texts(captions)):
        assert emb.dtype == np.float32 and emb.shape[0] == 11
        np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert encoder.embed_texts([]).shape == (0, emb.shape[1])


def test_pil_and_tensor_images_embed_the_same(encoder):
    images, _, _ = world(4, start=300)
    tensors = [torch.from_numpy(np.array(im)).permute(2, 0, 1) for im in images]
    from_pil = encoder.embed_images(images)
    np.testing.assert_array_equal(encoder.embed_images(tensors), from_pil)
    np.testing.assert_array_equal(encoder.embed_images(torch.stack(tensors)), from_pil)


def test_batches_at_the_input_size_get_open_clips_pixels_bit_for_bit(encoder):
    images, _, _ = world(4, start=300)
    batch = torch.stack([torch.from_numpy(np.array(im)).permute(2, 0, 1) for im in images])
    expected = torch.stack([inference_transform(encoder.model)(im) for im in images])
    assert torch.equal(preprocess_images(encoder.model, batch), expected)


def test_64px_images_are_resized_by_open_clip_preprocess(encoder):
    images, _, _ = world(3, resolution=64)
    assert encoder.embed_images(images).shape[0] == 3


def test_wordings_fit_the_context_length(encoder):
    rng = np.random.default_rng(0)
    combos, templates = SHAPES_WORLD.attribute_combinations(), SHAPES_WORLD.train_templates + SHAPES_WORLD.new_templates
    texts = [SHAPES_WORLD.reword(c, rng) for c in combos for _ in range(20)]
    texts += [SHAPES_WORLD.describe(c, t) for c in combos for t in templates]
    tokens = encoder.tokenizer(texts)
    assert (tokens[:, -1] == 0).all(), "a wording fills the context and would be truncated"


def test_retrieval_is_perfect_on_separable_pairs_and_counts_duplicates():
    captions = ["a", "a", "b", "c"]
    emb = np.eye(3, dtype=np.float32)[[0, 0, 1, 2]]
    report = retrieval_accuracy(emb, emb, captions)
    assert report["text_to_image"]["top1"] == report["image_to_text"]["top1"] == 1.0
    assert report["text_to_image"]["chance_top1"] == pytest.approx((2 / 4 + 2 / 4 + 1 / 4 + 1 / 4) / 4)
    assert report["image_to_text"]["chance_top1"] == pytest.approx(1 / 3)


def test_retrieval_of_random_embeddings_is_at_the_stated_chance():
    rng = np.random.default_rng(0)
    captions = [f"caption {i % 60}" for i in range(300)]  # each caption on 5 images
    hits, chance = [], None
    for _ in range(50):
        image_emb, text_emb = (rng.normal(size=(300, 32)).astype(np.float32) for _ in range(2))
        report = retrieval_accuracy(image_emb, text_emb, captions)
        hits.append([report[d][f"top{k}"] for d in ("text_to_image", "image_to_text") for k in (1, 5)])
        chance = [report[d][f"chance_top{k}"] for d in ("text_to_image", "image_to_text") for k in (1, 5)]
    np.testing.assert_allclose(np.mean(hits, axis=0), chance, atol=0.02)


def test_zero_shot_is_perfect_when_separable_and_chance_when_random():
    combos = SHAPES_WORLD.attribute_combinations()
    prompts = np.eye(len(combos), dtype=np.float32)
    labels = [combos[i] for i in range(0, len(combos), 7)]
    perfect = zero_shot_accuracy(prompts[::7], labels, prompts, combos, logit_scale=100.0)
    assert all(v == 1.0 for v in perfect["accuracy"].values())

    rng = np.random.default_rng(0)
    labels = [combos[i] for i in rng.integers(len(combos), size=3000)]
    random = zero_shot_accuracy(rng.normal(size=(3000, 16)), labels, rng.normal(size=(len(combos), 16)),
                                combos, logit_scale=10.0)
    for name, chance in random["chance"].items():
        assert random["accuracy"][name] == pytest.approx(chance, abs=0.03)


def test_evaluate_reports_every_section(encoder):
    images, captions, attributes = world(20, start=400)
    report = evaluate_clip(encoder, images, captions, attributes, SHAPES_WORLD)
    assert report["checkpoint"] == "in-memory" and report["retrieval"]["n_pairs"] == 20
    assert {"matched_cosine", "centroid_distance", "pseudo_text"} <= set(report["gap"])
    assert set(report["zero_shot"]["accuracy"]) == {"shape", "colour", "size", "position", "all"}
    assert set(report["zero_shot_new_wording"]["accuracy"]) == set(report["zero_shot"]["accuracy"])
    with pytest.raises(ValueError, match="world"):
        evaluate_clip(encoder, images, captions, attributes)  # labels without the world that reads them


def test_a_photo_world_clip_trains_on_its_labelled_folder_and_is_scored_on_photos_it_never_saw(tmp_path):
    fake_faces_archive(tmp_path / "faces.tar", n=120)
    write_parts(tmp_path / "faces.tar", tmp_path / "faces", 0, 0.5, 0.25, [])
    train = dataclasses.replace(TRAIN, world="faces", data=str(tmp_path / "faces/clip"), images=1000)
    (images, attributes), (val_images, val_attributes) = clip_images(FACES_WORLD, train, 10, 32)
    assert images.shape[1:] == (3, 32, 32) and len(val_images) == 10 and len(images) + 10 == len(
        pd.read_csv(tmp_path / "faces/clip/labels.csv"))
    assert set(attributes[0]) == {"age", "gender", "race"}
    # the evaluation photos are a seeded hash sample, not the first names (UTKFace's begin with the age)
    assert sorted(a["age"] for a in val_attributes) != ["baby"] * 10
    with pytest.raises(UserError, match="not enough for eval_images"):
        clip_images(FACES_WORLD, train, 1000, 32)
