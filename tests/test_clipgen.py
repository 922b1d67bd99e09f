import dataclasses

import pytest
import torch
import torch.nn.functional as F

from pipeline.clipgen.model import ClipgenConfig, ClipGPT, save_model
from pipeline.clipgen.sampler import ClipgenGenerator, clipgen_generator, filter_logits
from pipeline.clipgen.train import next_code_loss, train_clipgen
import pipeline.clipgen.train as clipgen_train
from pipeline.core.params import ClipgenParams
from pipeline.core.training import list_checkpoints
from pipeline.generator.conditioning import Conditioning
from pipeline.generator.data import load_training_data
from pipeline.generator.files import read_generator_file
from pipeline.generator.sampling import SamplingSettings
from tests.test_diffusion_train import tiny_params, write_caches

CFG = ClipgenConfig(n_codes=7, grid_h=3, grid_w=3, clip_dim=8, depth=2, width=16, heads=2, mlp_ratio=2.0)
PLAIN = SamplingSettings(steps=None, guidance=1.0, truncation=1.0, top_k=0, purity=False, purity_sharpen=0.0)


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def tiny_model(seed=0):
    torch.manual_seed(seed)
    model = ClipGPT(CFG).eval()
    with torch.no_grad():  # livelier than the 0.02 init, so conditions and codes visibly move the logits
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model


def decode(codes):
    """Stand-in for the tokenizer's decoder: each code as a 2x2 grey patch."""
    grey = (codes * 30).to(torch.uint8).repeat_interleave(2, 1).repeat_interleave(2, 2)
    return grey[:, None].expand(-1, 3, -1, -1)


def generator(model=None):
    return ClipgenGenerator(model or tiny_model(), decode, Conditioning("none", 0.0, None))


def test_the_attention_is_causal():
    model = tiny_model()
    codes = torch.randint(0, CFG.n_codes, (2, CFG.length), generator=torch.Generator().manual_seed(1))
    cond = torch.randn(2, CFG.clip_dim)
    with torch.no_grad():
        base = model(codes, cond)
        for j in range(CFG.length):
            changed = codes.clone()
            changed[:, j] = (changed[:, j] + 1) % CFG.n_codes
            logits = model(changed, cond)
            torch.testing.assert_close(logits[:, :j + 1], base[:, :j + 1], rtol=0, atol=1e-6)
            if j + 1 < CFG.length:  # code j is the input of position j + 1
                assert not torch.allclose(logits[:, j + 1], base[:, j + 1])


def test_the_cached_steps_give_the_full_pass_logits():
    model = tiny_model()
    codes = torch.randint(0, CFG.n_codes, (3, CFG.length))
    cond, drop = torch.randn(3, CFG.clip_dim), torch.tensor([False, True, False])
    with torch.no_grad():
        full = model(codes, cond, drop)
        cache = model.new_cache()
        first = model.run(model.condition(cond, drop), 0, cache)
        rest = model.run(model.tok_emb(codes[:, :4]), 1, cache)  # several positions after a cached prefix
        steps = [first, rest] + [model.run(model.tok_emb(codes[:, i - 1:i]), i, cache) for i in range(5, CFG.length)]
    torch.testing.assert_close(torch.cat(steps, 1), full, rtol=1e-5, atol=1e-5)


def test_the_loss_is_the_mean_negative_log_likelihood():
    logits = torch.randn(2, 5, 7)
    codes = torch.randint(0, 7, (2, 5))
    total = sum(-F.log_softmax(logits[b, i], -1)[codes[b, i]].item() for b in range(2) for i in range(5))
    assert next_code_loss(logits, codes).item() == pytest.approx(total / 10, rel=1e-6)


def test_the_condition_matters():
    model = tiny_model()
    codes = torch.randint(0, CFG.n_codes, (1, CFG.length))
    a, b = torch.randn(2, 1, CFG.clip_dim)
    with torch.no_grad():
        assert not torch.allclose(model(codes, a), model(codes, b))
        assert not torch.allclose(model(codes, a), model(codes, a, torch.tensor([True])))
        # dropped, the condition is ignored: only the null embedding remains
        torch.testing.assert_close(model(codes, a, torch.tensor([True])), model(codes, b, torch.tensor([True])))


def test_filter_logits_keeps_top_k_then_top_p():
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.0, -1.0]]).log_softmax(-1)
    assert torch.isfinite(filter_logits(logits, top_k=2)).tolist() == [[False, True, False, True, False]]
    probs = logits.exp()[0]  # 0.03, 0.64, 0.09, 0.23, 0.01: the top two hold 0.87
    kept = torch.isfinite(filter_logits(logits, top_p=float(probs[1] + probs[3]) - 1e-4))
    assert kept.tolist() == [[False, True, False, True, False]]
    assert torch.isfinite(filter_logits(logits, top_p=1e-6)).tolist() == [[False, True, False, False, False]]
    assert torch.equal(filter_logits(logits), logits)


def test_sampler_shapes_seeds_and_paths():
    gen = generator()
    cond = torch.randn(1, CFG.clip_dim).expand(3, -1)

    def images(settings, seed, c=cond):
        return gen.images(c, 3, settings, torch.Generator().manual_seed(seed))

    first = images(PLAIN, 0)
    assert first.shape == (3, 3, 6, 6) and first.dtype == torch.uint8 and first.device.type == "cpu"
    assert torch.equal(first, images(PLAIN, 0))
    assert not torch.equal(first, images(PLAIN, 1))
    for settings in (dataclasses.replace(PLAIN, guidance=3.0), dataclasses.replace(PLAIN, guidance=0.0),
                     dataclasses.replace(PLAIN, top_k=2, truncation=0.8)):
        assert images(settings, 0).shape == (3, 3, 6, 6)
    assert images(PLAIN, 0, None).shape == (3, 3, 6, 6)
    assert gen.kind == "clipgen" and gen.uses_guidance and gen.num_params() == gen.model.num_params()


def test_tiny_top_p_is_greedy_decoding():
    model = tiny_model()
    cond = torch.randn(2, CFG.clip_dim)
    greedy = dataclasses.replace(PLAIN, truncation=1e-6, guidance=2.0)
    gen = generator(model)
    a = gen.images(cond, 2, greedy, torch.Generator().manual_seed(0))
    b = gen.images(cond, 2, greedy, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    codes = torch.zeros(2, CFG.length, dtype=torch.long)  # brute force: full passes, guided argmax
    with torch.no_grad():
        for i in range(CFG.length):
            c = model(codes[:, :i + 1], cond)[:, i]
            u = model(codes[:, :i + 1], cond, torch.ones(2, dtype=torch.bool))[:, i]
            codes[:, i] = (u + 2.0 * (c - u)).argmax(-1)
    assert torch.equal(a, decode(codes.view(2, CFG.grid_h, CFG.grid_w)))


def test_model_file_round_trip(tmp_path):
    gen = generator()
    conditioning = Conditioning("clipvq", 0.5, None)
    save_model(tmp_path / "m.pt", gen.model, CFG, {"tokens.n_codes": "7"}, conditioning)
    payload = read_generator_file(tmp_path / "m.pt", "clipgen")
    loaded = clipgen_generator(payload, decode, "cpu")
    assert loaded.conditioning == conditioning and payload["sources"] == {"tokens.n_codes": "7"}
    assert not loaded.model.training
    cond = torch.randn(2, CFG.clip_dim)
    settings = dataclasses.replace(PLAIN, guidance=2.0, top_k=4, truncation=0.9)
    assert torch.equal(loaded.images(cond, 2, settings, torch.Generator().manual_seed(5)),
                       gen.images(cond, 2, settings, torch.Generator().manual_seed(5)))


class Killed(Exception):
    pass


def test_a_killed_run_resumes_to_the_same_weights(tmp_path, monkeypatch):
    root = write_caches(tmp_path)
    data = load_training_data(root / "tokens", root / "embeddings")
    params = dataclasses.replace(tiny_params(**{"train.steps": 30, "train.ema_decay": 0.9}), generator="clipgen",
                                 clipgen=ClipgenParams(depth=1, width=32, heads=2, mlp_ratio=2.0))
    whole = train_clipgen(params, data, tmp_path / "whole")
    assert [row["step"] for row in whole.history] == [5, 10, 15, 20, 25, 30]
    assert set(whole.history[0]) == {"step", "loss", "lr", "steps_per_s"}
    assert whole.history[-1]["loss"] < whole.history[0]["loss"]

    step = clipgen_train.train_step

    def dies_at_15(trainer, loader, i, p):
        if i == 15:
            raise Killed
        return step(trainer, loader, i, p)

    monkeypatch.setattr(clipgen_train, "train_step", dies_at_15)
    with pytest.raises(Killed):
        train_clipgen(params, data, tmp_path / "killed")
    assert [p.name for p in list_checkpoints(tmp_path / "killed")] == ["step-00000010.pt"]
    monkeypatch.setattr(clipgen_train, "train_step", step)
    resumed = train_clipgen(params, data, tmp_path / "killed")
    assert resumed.start_step == 10
    a, b = whole.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in whole.history]
