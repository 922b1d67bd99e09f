"""The CLIP encoder interface, the offline CLIP's training and the retrieval/zero-shot scores."""

from __future__ import annotations

from dataclasses import asdict

import huggingface_hub
import numpy as np
import open_clip
import pytest
import torch

from pipeline.clip.encoder import ClipEncoder, ClipWeightsError, inference_transform, preprocess_images
from pipeline.clip.train import evaluate_clip, retrieval_accuracy, save_clip, train_clip, zero_shot_accuracy
from pipeline.core.checksum import sha256_file
from pipeline.core.params import ClipTrainParams, OptimParams
from pipeline.worlds.shapes.render import caption, render_example
from pipeline.worlds.shapes.world import SHAPES_WORLD

MODEL = "shapes-clip-tiny"
TRAIN = ClipTrainParams(seed=0, steps=30, batch_size=16, augment_p=0.5,
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
    images, captions, attributes = world(48)
    model, losses = train_clip(MODEL, images, captions, attributes, TRAIN, device="cpu", world=SHAPES_WORLD)
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
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.3


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
    assert set(report["zero_shot"]["accuracy"]) == {"shape", "colour", "size", "position", "all"}
    assert set(report["zero_shot_new_wording"]["accuracy"]) == set(report["zero_shot"]["accuracy"])
    with pytest.raises(ValueError, match="world"):
        evaluate_clip(encoder, images, captions, attributes)  # labels without the world that reads them
