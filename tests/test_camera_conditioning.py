"""Camera-conditioned priors: the features' formula, a prior without cameras growing them, and the
guidance handing each render's camera to the prior."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from propdreamer.core.builtin_prior.dataset import DatasetConfig
from propdreamer.core.builtin_prior.model import ModelConfig
from propdreamer.core.builtin_prior.train import TrainConfig, train
from propdreamer.core.cameras import orbit_cameras
from propdreamer.core.priors.camera_conditioning import CAMERA_FEATURES, camera_features
from propdreamer.core.priors.diffusers_prior import PriorConfig, load_prior

TINY = ModelConfig(resolution=8, block_out_channels=(8, 16), attention=(False, True), layers_per_block=1, text_width=16, text_layers=1, text_heads=2)
TINY_CAMERAS = replace(TINY, camera_features=CAMERA_FEATURES)


def _config(model: ModelConfig, **kw) -> TrainConfig:
    return TrainConfig(steps=2, batch_size=4, warmup_steps=1, log_every=1, model=model, data=DatasetConfig(resolution=8, views_per_label=1), **kw)


def _cameras(elevations: list[float], azimuths: list[float], distance: float = 2.2):
    n = len(elevations)
    return orbit_cameras(torch.tensor(elevations), torch.tensor(azimuths), torch.full((n,), distance), torch.full((n,), 40.0))


def test_camera_features_follow_their_formula():
    f = camera_features(_cameras([30.0, -10.0], [90.0, 180.0], distance=2.4), 2)
    expected = torch.tensor(
        [
            [0.5, math.cos(math.radians(30)), 1.0, 0.0, 1.0, 1.0],
            [-math.sin(math.radians(10)), math.cos(math.radians(10)), 0.0, -1.0, 1.0, 1.0],
        ]
    )
    assert f.shape == (2, CAMERA_FEATURES) and torch.allclose(f, expected, atol=1e-5)
    assert torch.equal(camera_features(None, 3), torch.zeros(3, CAMERA_FEATURES))  # unknown camera
    with pytest.raises(ValueError, match="one camera per image"):
        camera_features(_cameras([0.0], [0.0]), 2)


def _eps(prior, cameras):
    z = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    return prior.predict_noise(z, torch.tensor([300, 700]), prior.text_embeddings(["a red cube", ""]), cameras)


def test_a_prior_without_cameras_grows_them_and_learns_to_read_them(tmp_path):
    train(_config(TINY), tmp_path / "plain", log=lambda m: None)
    # Zero-initialised camera embedding: before training, the camera prior is the plain one for every camera.
    train(_config(TINY_CAMERAS, lr=0.0, init=str(tmp_path / "plain")), tmp_path / "same", log=lambda m: None)
    plain, same = (load_prior(PriorConfig(source=str(tmp_path / k), device="cpu")) for k in ("plain", "same"))
    assert not plain.camera_conditioned and same.camera_conditioned
    low, high = _cameras([0.0, 0.0], [0.0, 90.0]), _cameras([60.0, 60.0], [0.0, 90.0])
    assert torch.allclose(_eps(plain, None), _eps(same, low), atol=1e-5)
    assert torch.allclose(_eps(same, low), _eps(same, high), atol=1e-5)
    # Trained (raw weights: the average would still be close to zero after two steps), it tells the cameras apart.
    train(_config(TINY_CAMERAS, lr=1e-2, ema_decay=0.0, camera_dropout=0.0, init=str(tmp_path / "plain")), tmp_path / "cam", log=lambda m: None)
    cam = load_prior(PriorConfig(source=str(tmp_path / "cam"), device="cpu"))
    assert (_eps(cam, low) - _eps(cam, high)).abs().max() > 1e-4
    # A camera prior does not continue into one without cameras.
    with pytest.raises(ValueError, match="--cameras"):
        train(_config(TINY, init=str(tmp_path / "cam")), tmp_path / "back", log=lambda m: None)


def test_guidance_hands_each_render_its_camera(tmp_path, monkeypatch):
    from propdreamer.core.guidance import build_guidance

    train(_config(TINY_CAMERAS, lr=1e-2, ema_decay=0.0, camera_dropout=0.0), tmp_path / "cam", log=lambda m: None)
    prior = load_prior(PriorConfig(source=str(tmp_path / "cam"), device="cpu"))
    seen = []
    original = prior.predict_noise
    monkeypatch.setattr(prior, "predict_noise", lambda z_t, t, e, cameras=None: seen.append(cameras) or original(z_t, t, e, cameras))
    images = torch.rand(2, 3, 8, 8, requires_grad=True)
    cameras = _cameras([0.0, 45.0], [0.0, 120.0])
    for method in ("sds", "nfsd"):
        seen.clear()
        build_guidance(method, prior)(images, ["a red cube"] * 2, 0, 10, cameras=cameras, generator=torch.Generator().manual_seed(0))
        assert seen and all(c is cameras for c in seen), method


def test_prior_eval_measures_what_the_cameras_are_worth(tmp_path):
    from propdreamer.core.builtin_prior.evaluate import camera_gain

    train(_config(TINY_CAMERAS, lr=1e-2, ema_decay=0.0, camera_dropout=0.0), tmp_path / "cam", log=lambda m: None)
    gain = camera_gain(load_prior(PriorConfig(source=str(tmp_path / "cam"), device="cpu")))
    assert set(gain) == {"true camera", "unknown camera", "wrong camera"}
    assert all(0 < v < 10 for v in gain.values())
    assert gain["true camera"] != gain["unknown camera"]  # the camera reaches the UNet
