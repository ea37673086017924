"""Training the builtin prior: a tiny model trains, saves a loadable folder, and continues from it."""

from __future__ import annotations

import json
import re

import pytest
import torch

from propdreamer.core.builtin_prior.dataset import DatasetConfig
from propdreamer.core.builtin_prior.model import ModelConfig
from propdreamer.core.builtin_prior.train import EMA, TrainConfig, train

TINY = ModelConfig(resolution=8, block_out_channels=(8, 16), attention=(False, True), layers_per_block=1, text_width=16, text_layers=1, text_heads=2)


def _config(**kw) -> TrainConfig:
    kw.setdefault("data", DatasetConfig(resolution=8, views_per_label=1))
    kw.setdefault("model", TINY)
    return TrainConfig(steps=2, batch_size=4, warmup_steps=1, log_every=1, **kw)


def _unet_weights(folder) -> dict[str, torch.Tensor]:
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_pretrained(folder / "unet").state_dict()


def test_training_continues_from_a_saved_prior(tmp_path):
    train(_config(), tmp_path / "a", log=lambda m: None)
    # lr 0: a continued run must write back exactly the weights it started from; a fresh one must not.
    train(_config(lr=0.0, init=str(tmp_path / "a")), tmp_path / "b", log=lambda m: None)
    train(_config(lr=0.0), tmp_path / "c", log=lambda m: None)
    a, b, c = (_unet_weights(tmp_path / k) for k in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    meta = json.loads((tmp_path / "b" / "propdreamer_prior.json").read_text())
    assert [r["steps_done"] for r in meta["earlier_runs"]] == [2] and meta["train"]["init"] == str(tmp_path / "a")


def test_continuing_needs_a_prior_folder_of_the_same_architecture(tmp_path):
    train(_config(), tmp_path / "a", log=lambda m: None)
    with pytest.raises(FileNotFoundError, match="not a builtin-prior folder"):
        train(_config(init=str(tmp_path)), tmp_path / "x", log=lambda m: None)
    other = TrainConfig(
        steps=1,
        batch_size=4,
        model=ModelConfig(resolution=8, block_out_channels=(8, 8), attention=(False, True), text_width=16, text_layers=1, text_heads=2),
        data=DatasetConfig(resolution=8, views_per_label=1),
        init=str(tmp_path / "a"),
    )
    with pytest.raises(ValueError, match="another architecture"):
        train(other, tmp_path / "y", log=lambda m: None)


def test_continuing_can_add_cross_attention_that_starts_as_the_identity(tmp_path):
    from dataclasses import replace

    from propdreamer.core.builtin_prior.model import build_text_encoder, build_tokenizer, build_unet
    from propdreamer.core.builtin_prior.train import continue_from

    train(_config(), tmp_path / "a", log=lambda m: None)
    grown_config = replace(TINY, attention=(True, True))
    unet = build_unet(grown_config)
    continue_from(tmp_path / "a", unet, build_text_encoder(grown_config, build_tokenizer(TINY.max_tokens)), grown_config)
    saved = _unet_weights(tmp_path / "a")
    from diffusers import UNet2DConditionModel

    reference = UNet2DConditionModel.from_pretrained(tmp_path / "a" / "unet")
    assert any(k.startswith("down_blocks.0.attentions.") for k in unet.state_dict()) and not any(k.startswith("down_blocks.0.attentions.") for k in saved)
    x, t, h = torch.randn(2, 3, 8, 8), torch.tensor([10, 900]), torch.randn(2, TINY.max_tokens, TINY.text_width)
    with torch.no_grad():
        assert torch.allclose(unet(x, t, encoder_hidden_states=h).sample, reference(x, t, encoder_hidden_states=h).sample, atol=1e-6)
    # and the new attention trains: a continued run with it moves its weights away from zero
    train(_config(init=str(tmp_path / "a"), model=grown_config), tmp_path / "b", log=lambda m: None)
    grown = _unet_weights(tmp_path / "b")
    assert grown["down_blocks.0.attentions.0.proj_out.weight"].abs().sum() > 0
    # dropping a level that the saved prior has is refused
    with pytest.raises(ValueError, match="can add levels, not drop them"):
        train(_config(init=str(tmp_path / "b")), tmp_path / "c", log=lambda m: None)


def test_ema_follows_its_formula_and_swaps_back():
    p = torch.zeros(3)
    ema = EMA([p], decay=0.5)
    p.fill_(1.0)
    ema.update()  # d = min(0.5, 1/10) = 0.1: 0.1 * 0 + 0.9 * 1
    assert torch.allclose(ema.shadow[0], torch.full((3,), 0.9))
    p.fill_(2.0)
    ema.update()  # d = min(0.5, 2/11)
    d = 2 / 11
    assert torch.allclose(ema.shadow[0], torch.full((3,), d * 0.9 + (1 - d) * 2.0))
    ema.swap()
    assert torch.allclose(p, torch.full((3,), d * 0.9 + (1 - d) * 2.0))
    ema.swap()
    assert torch.equal(p, torch.full((3,), 2.0))


def test_saved_weights_are_the_average_and_training_refuses_held_out_renders(tmp_path):
    train(_config(ema_decay=0.0), tmp_path / "raw", log=lambda m: None)
    train(_config(ema_decay=0.99), tmp_path / "ema", log=lambda m: None)
    raw, ema = _unet_weights(tmp_path / "raw"), _unet_weights(tmp_path / "ema")
    assert not all(torch.equal(raw[k], ema[k]) for k in raw)  # same seed, same steps: only the averaging differs
    with pytest.raises(ValueError, match="held-out"):
        TrainConfig(data=DatasetConfig(seed=1))


def test_truncated_snr_weights_follow_their_formula(tmp_path):
    from propdreamer.core.builtin_prior.train import loss_weights

    abar = torch.tensor([0.99, 0.5, 0.1, 0.02, 1e-9])
    # max(1, 1/SNR) = max(1, (1 - abar) / abar), capped at 100.
    expected = torch.tensor([1.0, 1.0, 9.0, 49.0, 100.0])
    assert torch.allclose(loss_weights(abar, "truncated_snr"), expected)
    assert torch.equal(loss_weights(abar, "eps"), torch.ones(5))
    with pytest.raises(ValueError, match="loss_weighting"):
        TrainConfig(loss_weighting="x0")
    logs: list[str] = []
    train(_config(loss_weighting="truncated_snr"), tmp_path / "w", log=logs.append)
    assert any("loss" in m for m in logs) and (tmp_path / "w" / "unet").is_dir()


def test_elevation_words_grow_an_older_vocabulary_and_reach_stage_one(tmp_path, monkeypatch):
    from transformers import CLIPTextModel

    from propdreamer.core.builtin_prior import model
    from propdreamer.core.cameras import ELEVATION_BANDS, OrbitRange, ViewPromptRule, sample_orbit
    from propdreamer.core.priors.diffusers_prior import PriorConfig, load_prior
    from propdreamer.core.stage1.trainer import DistillationConfig, DistillationTrainer

    with monkeypatch.context() as m:  # a prior saved before the elevation words existed
        m.setattr(model, "ELEVATION_BANDS", ())
        train(_config(), tmp_path / "old", log=lambda m: None)
    banded = DatasetConfig(resolution=8, views_per_label=1, view_rule=ViewPromptRule(elevation_bands=ELEVATION_BANDS))
    train(_config(lr=0.0, init=str(tmp_path / "old"), data=banded), tmp_path / "new", log=lambda m: None)
    old, new = (CLIPTextModel.from_pretrained(tmp_path / k / "text_encoder").get_input_embeddings().weight for k in ("old", "new"))
    assert new.shape[0] == old.shape[0] + 4  # "low", "mid", "high", "angle"
    assert torch.equal(new[: old.shape[0]], old)  # lr 0: the old words keep their rows

    prior = load_prior(PriorConfig(source=str(tmp_path / "new"), device="cpu"))
    assert prior.view_rule.elevation_bands == ELEVATION_BANDS
    assert prior.unknown_words("a red cube, side view, low angle") == []
    trainer = DistillationTrainer(prior, "a red cube", DistillationConfig())
    cams = sample_orbit(64, OrbitRange(elevation_deg=(-10.0, 60.0)), torch.Generator().manual_seed(0))
    prompts = trainer.prompts_for(cams)
    assert {p.split(", ")[-1] for p in prompts} == {"low angle", "mid angle", "high angle"}
    assert load_prior(PriorConfig(source=str(tmp_path / "old"), device="cpu")).view_rule.elevation_bands == ()

    from propdreamer.core.builtin_prior.evaluate import elevation_word_gain

    gain = elevation_word_gain(prior)  # the same renders under three captions: the words must change the prediction
    assert set(gain) == {"true words", "no view words", "wrong words"} and all(v > 0 for v in gain.values())
    assert gain["true words"] != gain["wrong words"] and gain["true words"] != gain["no view words"]

    with monkeypatch.context() as m:  # another version's words in the same places: refused, not misread
        m.setattr(model, "ELEVATION_BANDS", ((10.0, "lowish"),))
        train(_config(), tmp_path / "other", log=lambda m: None)
    with pytest.raises(ValueError, match="not a beginning"):
        train(_config(init=str(tmp_path / "other")), tmp_path / "x", log=lambda m: None)


def test_training_elevations_are_saved_and_stage_one_reads_them(tmp_path):
    from dataclasses import replace

    from propdreamer.core.builtin_prior.dataset import PRIOR_ORBIT, render_dataset
    from propdreamer.core.priors.diffusers_prior import PriorConfig, load_prior
    from propdreamer.core.stage1.trainer import DistillationConfig, DistillationTrainer

    low = DatasetConfig(resolution=8, views_per_label=2, orbit=replace(PRIOR_ORBIT, elevation_deg=(-5.0, 25.0)))
    assert float(render_dataset(low).cameras.elevation_deg.max()) <= 25.0
    train(_config(data=low), tmp_path / "low", log=lambda m: None)
    prior = load_prior(PriorConfig(source=str(tmp_path / "low"), device="cpu"))
    assert prior.trained_orbit.elevation_deg == (-5.0, 25.0)
    assert DistillationTrainer(prior, "a red cube", DistillationConfig(steps=1)).orbit.elevation_deg == (-5.0, 25.0)


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--elevation", "30,10", "lowest and highest"),
        ("--elevation", "x", "lowest and highest"),
        ("--attention-levels", "1,7", "from 0 .32 px. to 3"),
        ("--attention-levels", "a", "from 0"),
        ("--resolution", "36", "multiple of 8"),
        ("--device", "banana", "torch device such as cpu, cuda"),
    ],
)
def test_prior_train_refuses_bad_elevations_and_levels_with_advice(tmp_path, capsys, flag, value, message):
    from propdreamer.core.cli import main

    assert main(["prior", "train", "--out", str(tmp_path / "p"), "--steps", "1", f"{flag}={value}"]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err


def test_a_prior_trains_at_a_finer_resolution_and_loads_at_it(tmp_path):
    """`prior train --resolution`: the renders, the UNet and the loaded prior's image size all follow it
    (a finer prior is the lever on the surface's normal error, BENCHMARKS.md "Surface quality")."""
    from dataclasses import replace

    from propdreamer.core.priors.diffusers_prior import PriorConfig, load_prior

    train(_config(data=DatasetConfig(resolution=16, views_per_label=1), model=replace(TINY, resolution=16)), tmp_path / "p16", log=lambda m: None)
    prior = load_prior(PriorConfig(source=str(tmp_path / "p16"), device="cpu"))
    assert prior.image_size == 16
    z = prior.encode(torch.rand(1, 3, 40, 40))
    assert z.shape == (1, 3, 16, 16)
    with pytest.raises(ValueError, match="must be the renders'"):
        _config(data=DatasetConfig(resolution=16, views_per_label=1))


def test_the_cli_trains_at_the_resolution_and_on_the_device_it_is_given(tmp_path):
    from propdreamer.core.cli import main

    assert main(["prior", "train", "--out", str(tmp_path / "p"), "--steps", "1", "--views-per-label", "1", "--resolution", "16", "--device", "cpu"]) == 0
    meta = json.loads((tmp_path / "p" / "propdreamer_prior.json").read_text())
    assert meta["model"]["resolution"] == 16 and meta["train"]["data"]["resolution"] == 16 and meta["train"]["device"] == "cpu"


def test_a_prior_continues_at_another_resolution_from_the_same_weights(tmp_path):
    from dataclasses import replace

    train(_config(), tmp_path / "p8", log=lambda m: None)
    finer = _config(lr=0.0, init=str(tmp_path / "p8"), data=DatasetConfig(resolution=16, views_per_label=1), model=replace(TINY, resolution=16))
    train(finer, tmp_path / "p16", log=lambda m: None)
    a, b = _unet_weights(tmp_path / "p8"), _unet_weights(tmp_path / "p16")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((tmp_path / "p16" / "propdreamer_prior.json").read_text())["model"]["resolution"] == 16
