import io
import socket
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

from pipeline.core.errors import UserError
from pipeline.evaluate.metrics import (
    clip_scores,
    fd_embedding,
    fid_inception,
    hessel_clipscore,
    inception_weights_cache,
)
from pipeline.evaluate.scoring import frechet, inception_for_fid

torch.set_num_threads(1)


def channel_stats(batch: torch.Tensor) -> torch.Tensor:
    """A tiny stand-in for CLIP: per-channel mean and spread of a uint8 batch."""
    x = batch.float()
    return torch.cat([x.mean((2, 3)), x.std((2, 3))], dim=1)


def test_fd_embedding_through_torch_fidelity(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 200, (40, 16, 16, 3), dtype=np.uint8)
    same = fd_embedding(images, images, channel_stats, reference_split="val", space="toy")
    assert same["fd_toy"] == pytest.approx(0, abs=1e-6)
    assert same["n_generated"] == same["n_reference"] == 40 and same["reference_split"] == "val"
    assert not any(key.startswith("fid") for key in same)
    folder = tmp_path / "generated"
    folder.mkdir()
    for i, image in enumerate(images[:30] + 50):  # shifted, as PNG files in a folder
        Image.fromarray(image).save(folder / f"{i:03d}.png")
    as_numpy = lambda batch: channel_stats(batch).numpy()  # noqa: E731 (ClipEncoder returns arrays too)
    shifted = fd_embedding(folder, torch.from_numpy(images).permute(0, 3, 1, 2), as_numpy, "val", space="toy")
    assert shifted["n_generated"] == 30 and shifted["fd_toy"] > 1000
    again = fd_embedding(images, images + 5, channel_stats, "val", space="toy")  # registers only once
    assert 0 < again["fd_toy"] < shifted["fd_toy"]


class RandomInception(FeatureExtractorInceptionV3):
    """torch-fidelity's Inception-v3, built by its own constructor but keeping its random
    initialisation: the state that constructor reads from a file is not applied."""

    def load_state_dict(self, state_dict, strict=True, assign=False):
        return None


@pytest.fixture(scope="module")
def random_inception(tmp_path_factory) -> Path:
    """A randomly initialised FeatureExtractorInceptionV3 state, saved as torch-fidelity loads it."""
    folder = tmp_path_factory.mktemp("inception")
    torch.save({}, folder / "nothing.pth")
    torch.manual_seed(0)
    model = RandomInception("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(folder / "nothing.pth"))
    for module in model.modules():  # He-scaled, so the pool features do not vanish through the depth
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    torch.save(model.state_dict(), folder / "inception.pth")
    return folder / "inception.pth"


def test_fid_and_kid_run_torch_fidelity_on_local_inception_weights(random_inception):
    images = np.random.default_rng(0).integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
    apart = fid_inception(images, images // 2, random_inception, reference_split="val")
    assert set(apart) == {"fid_inception", "kid_inception_mean", "kid_inception_std", "n_generated", "n_reference",
                          "reference_split", "features"}
    assert np.isfinite([apart["fid_inception"], apart["kid_inception_mean"], apart["kid_inception_std"]]).all()
    assert apart["fid_inception"] > 0 and apart["kid_inception_mean"] > 0 and apart["kid_inception_std"] >= 0
    assert (apart["n_generated"], apart["n_reference"]) == (10, 10)
    same = fid_inception(images, images, random_inception, reference_split="val")
    assert same["fid_inception"] == pytest.approx(0, abs=1e-4 * apart["fid_inception"])
    assert abs(same["kid_inception_mean"]) < apart["kid_inception_mean"]


def block_the_network(monkeypatch, tmp_path: Path) -> None:
    """No cached weights (an empty torch home) and no network: every connection fails."""
    def unreachable(*args, **kwargs):
        raise OSError(101, "Network is unreachable")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(socket, "getaddrinfo", unreachable)
    monkeypatch.setattr(socket.socket, "connect", unreachable)


def test_auto_offline_says_so_once_and_scores_with_the_clip(tmp_path, monkeypatch, capsys):
    block_the_network(monkeypatch, tmp_path)
    lines = []
    weights = inception_for_fid("auto", lines.append)
    assert weights is None and len(lines) == 1
    assert "Inception weights" in lines[0] and "Network is unreachable" in lines[0] and "scoring CLIP" in lines[0]
    assert capsys.readouterr() == ("", "")  # no traceback, nothing else printed
    images = np.random.default_rng(0).integers(0, 200, (12, 16, 16, 3), dtype=np.uint8)
    result = frechet(images, images + 20, channel_stats, weights, batch_size=8)
    assert {"fd_clip", "kd_clip_mean", "kd_clip_std"} <= set(result) and result["features"] == "clip image embedding"
    assert not any(key.startswith(("fid", "kid")) for key in result)
    assert not inception_weights_cache().exists()


def test_auto_uses_cached_weights_without_the_network(tmp_path, monkeypatch):
    block_the_network(monkeypatch, tmp_path)
    cached = inception_weights_cache()
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"weights")
    lines = []
    assert inception_for_fid("auto", lines.append) == cached and lines == []


def test_a_corrupt_download_is_not_cached(tmp_path, monkeypatch):
    block_the_network(monkeypatch, tmp_path)
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: io.BytesIO(b"not the weights"))
    lines = []
    assert inception_for_fid("auto", lines.append) is None
    assert len(lines) == 1 and "checksum" in lines[0]
    assert not any(inception_weights_cache().parent.iterdir())


def test_inception_weights_path_or_null(tmp_path):
    weights = tmp_path / "inception.pth"
    weights.write_bytes(b"weights")
    assert inception_for_fid(str(weights), print) == weights and inception_for_fid(None, print) is None
    with pytest.raises(UserError, match=r"evaluate.inception_weights = .*absent.pth.*auto.*null"):
        inception_for_fid(str(tmp_path / "absent.pth"), print)


def test_clip_score_conventions():
    scores = pd.DataFrame({"prompt": [0, 0, 0, 1, 1], "sample": [0, 1, 2, 0, 1],
                           "cosine": [0.2, 0.3, -0.1, 0.5, 0.1]})
    result = clip_scores(scores)
    assert result["clip_cosine_mean"] == pytest.approx(0.2)
    assert result["clipscore_hessel_mean"] == pytest.approx(2.5 * (0.2 + 0.3 + 0 + 0.5 + 0.1) / 5)
    assert result["clip_cosine_best_of_n"] == pytest.approx(0.4)
    assert result["clipscore_hessel_best_of_n"] == pytest.approx(1.0)
    assert (result["n_prompts"], result["n_samples"]) == (2, 5)
    assert (result["samples_per_prompt_min"], result["samples_per_prompt_max"]) == (2, 3)
    assert hessel_clipscore(-0.3) == 0 and hessel_clipscore(0.4) == pytest.approx(1.0)


