"""SDS against its formula (METHODS.md): g = w(t) * (eps_0 + s * (eps_y - eps_0) - eps)."""

import pytest
import torch
from tiny_models import build_tiny_sd

from propdreamer.core.guidance.common import inject
from propdreamer.core.guidance.sds import SDS, SDSConfig
from propdreamer.core.priors import PriorConfig, add_noise, load_prior


@pytest.fixture(scope="module")
def pixel_prior(tmp_path_factory):
    folder = build_tiny_sd(tmp_path_factory.mktemp("pixel"), with_vae=False)
    return load_prior(PriorConfig(source=str(folder), device="cpu"))


def test_inject_has_gradient_g_over_b():
    z = torch.randn(3, 4, 5, 5, requires_grad=True)
    g = torch.randn(3, 4, 5, 5)
    g[0, 0, 0, 0] = float("nan")
    inject(z, g).backward()
    expected = torch.nan_to_num(g) / 3
    torch.testing.assert_close(z.grad, expected)


@pytest.mark.parametrize("weighting, scale", [("sds", 100.0), ("uniform", 7.5)])
def test_sds_update_matches_formula(pixel_prior, weighting, scale):
    prior = pixel_prior
    B = 2
    x = torch.rand(B, 3, 8, 8, requires_grad=True)
    t = torch.tensor([150, 800])
    eps = torch.randn(B, 3, 8, 8)
    prompts = ["a red cube, front view", "a red cube, back view"]
    out = SDS(prior, SDSConfig(guidance_scale=scale, weighting=weighting))(x, prompts, step=0, steps=1, t=t, eps=eps)
    out.loss.backward()

    # The formula, evaluated with separate, plain UNet calls.
    z = 2 * x.detach() - 1
    z_t = add_noise(prior.alphas_cumprod, z, eps, t)
    with torch.no_grad():
        eps_y = prior.unet(z_t, t, encoder_hidden_states=prior.text_embeddings(prompts)).sample
        eps_0 = prior.unet(z_t, t, encoder_hidden_states=prior.text_embeddings(["", ""])).sample
    w = (1 - prior.alphas_cumprod[t]).reshape(-1, 1, 1, 1) if weighting == "sds" else torch.ones(B, 1, 1, 1)
    g = w * (eps_0 + scale * (eps_y - eps_0) - eps)
    # loss gradient on z is g / B, and z = 2x - 1, so on x it is 2 g / B. The batched and the separate UNet
    # calls round differently in float32 (about 1e-7), and the guidance scale multiplies that difference.
    torch.testing.assert_close(x.grad, 2 * g / B, atol=1e-6 * scale, rtol=1e-4)
    torch.testing.assert_close(out.t, t)
    assert float(out.update_norm) == pytest.approx(float(g.flatten(1).norm(dim=1).mean()), rel=1e-4)


def test_sds_uses_one_unet_call_per_step(pixel_prior):
    calls = []
    hook = pixel_prior.unet.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    SDS(pixel_prior)(torch.rand(4, 3, 8, 8), ["a"] * 4, step=0, steps=10, generator=torch.Generator().manual_seed(0))
    hook.remove()
    assert calls == [8]  # [cond, uncond] x 4 images
