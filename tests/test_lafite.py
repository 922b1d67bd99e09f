import dataclasses
import math

import numpy as np
import pytest
import torch

from pipeline.clip.encoder import ClipEncoder
from pipeline.core.training import list_checkpoints, load_latest_checkpoint
from pipeline.generator.conditioning import Conditioning
from pipeline.generator.data import ImageTrainingData, with_text_mean
from pipeline.generator.files import read_generator_file
from pipeline.generator.sampling import SamplingSettings
from pipeline.lafite.losses import d_adversarial, g_adversarial, info_nce, r1_penalty
from pipeline.lafite.model import LafiteConfig, build_discriminator, build_generator, save_model
from pipeline.lafite.sampler import LafiteGenerator, lafite_generator
from pipeline.lafite.train import model_config, train_lafite
from tests.conftest import make_params

TINY = {"train.lafite.z_dim": 8, "train.lafite.w_dim": 16, "train.lafite.mapping_layers": 1,
        "train.lafite.channel_base": 64, "train.lafite.channel_max": 8, "train.lafite.r1_every": 3,
        "train.lafite.r1_gamma": 1.0, "train.pseudo_text": "c3", "train.pseudo_scale": 0.5, "train.steps": 8,
        "train.batch_size": 4, "train.checkpoint_every": 4, "train.log_every": 1, "train.device": "cpu"}
SMALL = LafiteConfig(resolution=8, z_dim=8, w_dim=16, mapping_layers=1, channel_base=64, channel_max=8, clip_dim=12)


def tiny_params(**extra):
    return make_params(**{k.replace(".", "__"): v for k, v in {**TINY, **extra}.items()}).train


def settings(psi: float) -> SamplingSettings:
    return SamplingSettings(steps=None, guidance=1.0, truncation=psi, top_k=0, purity=False, purity_sharpen=0.0)


def unit_rows(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=1)


@pytest.fixture(scope="module")
def tiny_clip():
    torch.manual_seed(0)
    return ClipEncoder.load("shapes-clip-tiny", None, device="cpu")


@pytest.mark.parametrize("resolution", [32, 64])
def test_network_shapes_at_the_default_sizes(resolution, one_thread):
    torch.manual_seed(0)
    config = model_config(make_params().train, resolution, clip_dim=16)
    generator, discriminator = build_generator(config), build_discriminator(config)
    z, cond = torch.randn(2, config.z_dim), unit_rows(2, 16, 0)
    with torch.no_grad():
        images = generator(z, cond)
        logits, projected = discriminator(images, cond)
    assert images.shape == (2, 3, resolution, resolution) and torch.isfinite(images).all()
    assert logits.shape == (2,) and projected.shape == (2, 16)
    lafite = make_params().train.lafite  # channels min(channel_base // r, channel_max) at 4 and 32 px
    assert generator.blocks[0].const.shape[0] == min(lafite.channel_base // 4, lafite.channel_max)
    assert generator.blocks[3].to_rgb.conv.weight.shape[1] == min(lafite.channel_base // 32, lafite.channel_max)


def test_the_condition_steers_every_style_not_just_w(one_thread):
    torch.manual_seed(0)
    generator = build_generator(SMALL)
    with torch.no_grad():
        generator.mapping.embed.weight.zero_()  # w no longer sees h': only the styles' C_i(h') can
        z, a, b = torch.randn(3, 8), unit_rows(3, 12, 1), unit_rows(3, 12, 2)
        assert torch.equal(generator.mapping(z, a), generator.mapping(z, b))
        image_a = generator(z, a, torch.Generator().manual_seed(0))
        again = generator(z, a, torch.Generator().manual_seed(0))
        image_b = generator(z, b, torch.Generator().manual_seed(0))
    assert torch.equal(image_a, again)
    assert (image_a - image_b).abs().mean() > 1e-3


def test_contrastive_losses_match_a_brute_force_formula():
    features, cond, tau = torch.randn(5, 7), torch.randn(5, 7), 0.3

    def cos(u, v):
        return float(u @ v) / (float(u.norm()) * float(v.norm()))

    # each condition h'_i picks its own image among the batch's images j (LAFITE's L_ConD, L_ConG)
    expected = 0.0
    for i in range(5):
        scores = [math.exp(cos(cond[i], features[j]) / tau) for j in range(5)]
        expected -= math.log(scores[i] / sum(scores)) / 5
    assert info_nce(features, cond, tau).item() == pytest.approx(expected, rel=1e-5)
    assert info_nce(cond, features, tau).item() != pytest.approx(expected, rel=1e-5)  # the direction matters
    real, fake = torch.randn(6), torch.randn(6)
    softplus = [math.log1p(math.exp(v)) for v in (-real).tolist()], [math.log1p(math.exp(v)) for v in fake.tolist()]
    assert d_adversarial(real, fake).item() == pytest.approx(sum(map(sum, softplus)) / 6, rel=1e-5)
    assert g_adversarial(fake).item() == pytest.approx(sum(math.log1p(math.exp(-v)) for v in fake.tolist()) / 6,
                                                       rel=1e-5)


def test_r1_matches_the_closed_form_gradient():
    # D(x) = <a, x> + ||x||^2 has grad_x D = a + 2x
    a = torch.randn(1, 3, 4, 4, requires_grad=True)
    x = torch.randn(5, 3, 4, 4, requires_grad=True)
    logits = (a * x).sum((1, 2, 3)) + x.square().sum((1, 2, 3))
    gamma = 0.7
    penalty = r1_penalty(logits, x, gamma)
    expected = gamma / 2 * (a + 2 * x).detach().square().sum((1, 2, 3)).mean()
    torch.testing.assert_close(penalty, expected)
    penalty.backward()  # differentiable in D's parameters: d/da = gamma * mean(a + 2x)
    torch.testing.assert_close(a.grad, gamma * (a + 2 * x).detach().mean(0, keepdim=True))


class Killed(Exception):
    pass


class KillAfter:
    """A log that kills the run once it has logged ``step`` (after an earlier checkpoint)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def begin(self, step, rows) -> None:
        pass

    def row(self, row) -> None:
        if row["step"] == self.step:
            raise Killed


def tiny_data(n: int = 12, side: int = 8, dim: int = 128) -> ImageTrainingData:
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, (n, 3, side, side), dtype=np.uint8))
    data = ImageTrainingData(images, unit_rows(n, dim, 3), {"images.sha256": "test"})
    return with_text_mean(data, unit_rows(4, dim, 4).numpy())


def test_killed_run_resumes_to_the_same_weights(tmp_path, tiny_clip, one_thread):
    data, params = tiny_data(), tiny_params()
    clean = train_lafite(params, data, tiny_clip, tmp_path / "clean")
    with pytest.raises(Killed):  # killed at step 6: steps 5 and 6 are lost, R1 (every 3) falls at step 6 again
        train_lafite(params, data, tiny_clip, tmp_path / "killed", KillAfter(6))
    assert [p.name for p in list_checkpoints(tmp_path / "killed")] == ["step-00000004.pt"]
    resumed = train_lafite(params, data, tiny_clip, tmp_path / "killed")
    assert resumed.start_step == 4
    a, b = load_latest_checkpoint(tmp_path / "clean"), load_latest_checkpoint(tmp_path / "killed")
    for name in ("generator", "discriminator", "ema"):
        assert all(torch.equal(a[name][k], b[name][k]) for k in a[name]), name
    for name in ("g_optimizer", "d_optimizer"):
        assert all(torch.equal(x, y) for s, t in zip(a[name]["state"].values(), b[name]["state"].values())
                   for x, y in zip(s.values(), t.values())), name
    clean_model, resumed_model = clean.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(clean_model[k], resumed_model[k]) for k in clean_model)
    assert torch.equal(clean_model["mapping.w_avg"], a["ema"]["mapping.w_avg"]) and clean_model["mapping.w_avg"].any()
    keys = ["step", "d_loss", "g_loss", "r1", "itd", "itc"]
    assert [{k: r[k] for k in keys} for r in clean.history] == [{k: r[k] for k in keys} for r in resumed.history]
    assert all(math.isfinite(r[k]) for r in clean.history for k in keys)
    assert list(clean.history[0]) == keys + ["steps_per_s"]


def test_sampler_is_seeded_and_truncation_pulls_towards_the_mean(one_thread):
    torch.manual_seed(0)
    model = build_generator(SMALL).eval()
    model.mapping.w_avg.normal_()
    sampler = LafiteGenerator(model, Conditioning("none", 0.0, None))
    cond = unit_rows(1, 12, 5).expand(3, -1)

    def draw(psi: float, seed: int = 0) -> torch.Tensor:
        return sampler.images(cond, 3, settings(psi), torch.Generator().manual_seed(seed))

    first = draw(1.0)
    assert first.dtype == torch.uint8 and first.shape == (3, 3, 8, 8)
    assert torch.equal(first, draw(1.0)) and not torch.equal(first, draw(1.0, seed=1))
    assert not torch.equal(first, draw(0.5))
    assert sampler.kind == "lafite" and not sampler.uses_guidance and sampler.num_params() > 0
    with pytest.raises(ValueError, match="no unconditional mode"):
        sampler.images(None, 3, settings(1.0), torch.Generator().manual_seed(0))


def test_model_file_round_trip_gives_the_same_samples(tmp_path, one_thread):
    torch.manual_seed(0)
    model = build_generator(SMALL).eval()
    model.mapping.w_avg.normal_()
    conditioning = Conditioning("clipvq", 0.5, None)
    save_model(tmp_path / "m.pt", model, SMALL, {"images.sha256": "x"}, conditioning)
    payload = read_generator_file(tmp_path / "m.pt", "lafite")
    loaded = lafite_generator(payload, "cpu")
    assert loaded.conditioning == conditioning and payload["sources"] == {"images.sha256": "x"}
    assert LafiteConfig(**payload["config"]) == SMALL and dataclasses.asdict(SMALL) == payload["config"]
    cond = unit_rows(4, 12, 6)
    original = LafiteGenerator(model, conditioning).images(cond, 4, settings(0.7), torch.Generator().manual_seed(3))
    again = loaded.images(cond, 4, settings(0.7), torch.Generator().manual_seed(3))
    assert torch.equal(original, again)
