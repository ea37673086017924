"""Each score-distillation method against its formula (METHODS.md), computed independently here."""

import pytest
import torch
from tiny_models import build_tiny_sd

from propdreamer.core.guidance import build_guidance
from propdreamer.core.guidance.nfsd import NEGATIVE_PROMPT
from propdreamer.core.guidance.ssd import SSD, SSDConfig, control_variate
from propdreamer.core.guidance.vdm import dca_lambda
from propdreamer.core.priors import PriorConfig, add_noise, load_prior

PROMPTS = ["a red cube, front view", "a red cube, side view"]


@pytest.fixture(scope="module")
def prior(tmp_path_factory):
    """A tiny pixel-space prior: z = 2x - 1, so d loss / d x = 2 g / B exactly."""
    return load_prior(PriorConfig(source=str(build_tiny_sd(tmp_path_factory.mktemp("px"), with_vae=False)), device="cpu"))


def _eps(prior, z_t, t, prompts):
    with torch.no_grad():
        return prior.unet(z_t, t, encoder_hidden_states=prior.text_embeddings(prompts)).sample


def _run(guidance, t, seed=0):
    """Images, the fixed eps, the gradient the method put on the images, and its output."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2, 3, 8, 8, generator=g).requires_grad_(True)
    eps = torch.randn(2, 3, 8, 8, generator=g)
    out = guidance(x, PROMPTS, step=0, steps=1, t=t, eps=eps, generator=g)
    out.loss.backward()
    z_t = add_noise(guidance.prior.alphas_cumprod, 2 * x.detach() - 1, eps, t)
    return z_t, eps, x.grad, out  # B = 2 and dz/dx = 2, so x.grad = 2 g / B = g


def test_nfsd_uses_the_right_domain_term_on_each_side_of_the_cutoff(prior):
    t = torch.tensor([150, 600])  # one below, one above the 200 cut-off
    z_t, eps, g, _ = _run(build_guidance("nfsd", prior), t)
    e_y, e_0 = _eps(prior, z_t, t, PROMPTS), _eps(prior, z_t, t, ["", ""])
    e_neg = _eps(prior, z_t, t, [NEGATIVE_PROMPT] * 2)
    w = (1 - prior.alphas_cumprod[t]).reshape(-1, 1, 1, 1)
    d_c = e_y - e_0
    expected_low = w[0] * (e_0[0] + 7.5 * d_c[0])  # t < 200: dD = eps_0
    expected_high = w[1] * (e_0[1] - e_neg[1] + 7.5 * d_c[1])  # t >= 200: dD = eps_0 - eps_neg
    torch.testing.assert_close(g[0], expected_low, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(g[1], expected_high, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(g[1], w[1] * (e_0[1] + 7.5 * d_c[1]), atol=1e-4)  # the branch matters


def test_nfsd_evaluates_three_branches_in_one_unet_call(prior):
    calls = []
    hook = prior.unet.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    _run(build_guidance("nfsd", prior), torch.tensor([100, 900]))
    hook.remove()
    assert calls == [6]


def test_dca_lambda_on_each_side_of_300(prior):
    t = torch.tensor([299, 300, 301, 800])
    lam = dca_lambda(prior.alphas_cumprod, t, 300).flatten()
    abar = prior.alphas_cumprod
    torch.testing.assert_close(lam, torch.stack([1 - abar[299], 1 - abar[300], torch.tensor(1.0), torch.tensor(1.0)]))


def test_vdm_update_matches_formula_and_its_mapping_learns(prior):
    vdm = build_guidance("vdm", prior)
    with torch.no_grad():  # make M_psi non-trivial so the formula is really exercised
        for p in vdm.m_psi.parameters():
            p.add_(0.05 * torch.randn_like(p))
    m_psi_before = [p.detach().clone() for p in vdm.m_psi.parameters()]
    t = torch.tensor([200, 700])
    snapshot = __import__("copy").deepcopy(vdm.m_psi)
    z_t, eps, g, out = _run(vdm, t)
    e_y, e_0 = _eps(prior, z_t, t, PROMPTS), _eps(prior, z_t, t, ["", ""])
    e_c = e_0 + 7.5 * (e_y - e_0)
    abar = prior.alphas_cumprod[t].reshape(-1, 1, 1, 1)
    lam = torch.where(t.reshape(-1, 1, 1, 1) > 300, torch.ones_like(abar), 1 - abar)
    with torch.no_grad():
        expected = (1 - abar) * (e_c - lam * snapshot(e_c))
    torch.testing.assert_close(g, expected, atol=1e-5, rtol=1e-4)
    assert any(not torch.equal(a, b) for a, b in zip(m_psi_before, vdm.m_psi.parameters()))  # it took a step
    # L_op falls when M_psi trains on a fixed batch
    losses = [vdm.step_auxiliary(_fixed_ctx(vdm, e_c, eps, t))["vdm_loss"] for _ in range(30)]
    assert losses[-1] < 0.8 * losses[0]


def _fixed_ctx(guidance, eps_c, eps, t):
    from propdreamer.core.guidance.base import GuidanceContext

    z = torch.zeros_like(eps)
    ctx = GuidanceContext(images=z, z=z, z_t=z, t=t, eps=eps, w=torch.ones(2, 1, 1, 1), prompts=PROMPTS, step=0, steps=1)
    ctx.eps_cfg = eps_c
    return ctx


def test_vsd_update_matches_formula_at_init(prior):
    """At initialisation the LoRA (B = 0) and camera embedding (last layer 0) are off: eps_phi = eps_y."""
    vsd = build_guidance("vsd", prior)
    t = torch.tensor([300, 900])
    z_t, eps, g, _ = _vsd_update_only(vsd, t)
    e_y, e_0 = _eps(prior, z_t, t, PROMPTS), _eps(prior, z_t, t, ["", ""])
    w = (1 - prior.alphas_cumprod[t]).reshape(-1, 1, 1, 1)
    torch.testing.assert_close(g, w * (e_0 + 7.5 * (e_y - e_0) - e_y), atol=1e-5, rtol=1e-4)


def _vsd_update_only(vsd, t):
    from propdreamer.core.guidance.base import GuidanceContext

    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 8, 8, generator=gen)
    eps = torch.randn(2, 3, 8, 8, generator=gen)
    z = 2 * x - 1
    z_t = add_noise(vsd.prior.alphas_cumprod, z, eps, t)
    w = (1 - vsd.prior.alphas_cumprod[t]).reshape(-1, 1, 1, 1)
    ctx = GuidanceContext(images=x, z=z, z_t=z_t, t=t, eps=eps, w=w, prompts=PROMPTS, step=0, steps=1, generator=gen)
    g, _ = vsd.update(ctx)
    return z_t, eps, g, ctx


def test_vsd_lora_step_fits_a_random_subset_of_the_batch_when_asked(prior, monkeypatch):
    """lora_batch = k: the LoRA step sees k of the batch's renders (with their prompts and cameras), drawn at random."""
    vsd = build_guidance("vsd", prior, lora_batch=1)
    _, _, _, ctx = _vsd_update_only(vsd, torch.tensor([300, 900]))
    seen = []
    monkeypatch.setattr(vsd, "lora_loss", lambda z, prompts, cams, t, eps: seen.append((z, prompts, cams, t)) or torch.zeros((), requires_grad=True))
    for _ in range(12):
        vsd.step_auxiliary(ctx)
    assert all(z.shape[0] == 1 and len(prompts) == 1 and cams.shape[0] == 1 and t.shape[0] == 1 for z, prompts, cams, t in seen)
    picked = {prompts[0] for _, prompts, _, _ in seen}
    assert picked == set(PROMPTS)  # both renders get their turn
    for z, prompts, _, _ in seen:  # each picked render keeps its own prompt
        assert torch.equal(z[0], ctx.z[PROMPTS.index(prompts[0])])
    with pytest.raises(ValueError, match="lora_batch must be at least 1"):
        build_guidance("vsd", prior, lora_batch=0)


def test_vsd_lora_step_lowers_its_loss_and_never_touches_the_base_unet(prior):
    vsd = build_guidance("vsd", prior, lr=1e-2)
    base = {n: p.detach().clone() for n, p in prior.unet.named_parameters() if "lora_" not in n}
    gen = torch.Generator().manual_seed(1)
    z = torch.rand(2, 3, 8, 8, generator=gen) * 2 - 1
    t, eps = torch.tensor([400, 600]), torch.randn(2, 3, 8, 8, generator=gen)
    cams = torch.randn(2, 16, generator=gen)
    with torch.no_grad(), vsd._phi(cams):
        before = vsd.lora_loss(z, PROMPTS, cams, t, eps).item()
    for _ in range(20):
        vsd.lora_step(z, PROMPTS, cams, t, eps)
    with torch.no_grad(), vsd._phi(cams):
        assert vsd.lora_loss(z, PROMPTS, cams, t, eps).item() < 0.9 * before
    for n, p in prior.unet.named_parameters():
        if "lora_" not in n:
            assert torch.equal(p, base[n]), f"base weight {n} changed"
    # and the base predictions used for eps_cfg are unaffected by the trained adapter
    z_t = add_noise(prior.alphas_cumprod, z, eps, t)
    direct = prior.predict_noise(z_t, t, prior.text_embeddings(PROMPTS)[None])[0]
    prior.unet.disable_adapters()
    torch.testing.assert_close(direct, _eps(prior, z_t, t, PROMPTS))
    # a new VSD run starts from a fresh eps_phi, not the adapter trained above
    test_vsd_update_matches_formula_at_init(prior)


def test_ssd_with_phi_1_and_mu_1_is_exactly_sds(prior):
    t = torch.tensor([250, 750])
    ssd = SSD(prior, SSDConfig(guidance_scale=100.0), baseline=lambda z_t, ctx: torch.ones(z_t.shape[0]))
    sds = build_guidance("sds", prior, guidance_scale=100.0)
    _, _, g_ssd, _ = _run(ssd, t)
    _, _, g_sds, _ = _run(sds, t)
    torch.testing.assert_close(g_ssd, g_sds)


def _nontrivial_phi(z_t, ctx):
    a = torch.linspace(-1, 1, z_t[0].numel()).reshape(z_t.shape[1:])
    return torch.sin((a * z_t).flatten(1).sum(1)) + 0.5 * (z_t**2).flatten(1).sum(1)


@pytest.mark.parametrize("sign, should_be_zero", [(1.0, True), (-1.0, False)])
def test_stein_control_variate_has_zero_mean(prior, sign, should_be_zero):
    """E_eps[eps phi(z_t) - sigma_t grad phi(z_t)] = 0 (Gaussian integration by parts); the wrong sign is not."""
    torch.manual_seed(0)
    N, t = 20000, torch.tensor(500)
    alpha, sigma = prior.alphas_cumprod[t].sqrt(), (1 - prior.alphas_cumprod[t]).sqrt()
    z = torch.tensor([[[[0.8, -0.5], [0.3, -0.9]]]])  # [1, 1, 2, 2]
    eps = torch.randn(N, 1, 2, 2)
    z_t = (alpha * z + sigma * eps).requires_grad_(True)
    phi = _nontrivial_phi(z_t, None)
    (grad,) = torch.autograd.grad(phi.sum(), z_t)
    h = control_variate(phi.detach(), sign * grad, eps, sigma)
    mean, stderr = h.mean(0), h.std(0) / N**0.5
    chi2 = ((mean / stderr) ** 2).mean().item()  # about 1 when the true mean is 0
    assert (chi2 < 4.0) == should_be_zero, chi2


def test_ssd_depth_baseline_is_a_valid_control_variate(prior):
    """The real baseline (a depth estimator on the decoded noisy image) also gives mean-zero h."""
    from propdreamer.core.guidance.base import GuidanceContext
    from propdreamer.core.guidance.depth import BuiltinDepth

    torch.manual_seed(0)
    ssd = SSD(prior, SSDConfig(lambda_phi=1.0), baseline=lambda z, c: z.sum())
    ssd.estimator = BuiltinDepth().eval().requires_grad_(False)
    for p in ssd.estimator.net.head.parameters():  # a random, non-zero estimator
        p.data.normal_(0, 0.1)
    N, t = 2000, torch.full((2000,), 500)
    sigma = (1 - prior.alphas_cumprod[500]).sqrt()
    x = torch.rand(1, 3, 8, 8).expand(N, 3, 8, 8)
    depth = torch.full((N, 1, 8, 8), 2.0) + torch.linspace(0, 0.5, 8).reshape(1, 1, 1, 8)
    eps = torch.randn(N, 3, 8, 8)
    z_t = add_noise(prior.alphas_cumprod, 2 * x - 1, eps, t)
    ctx = GuidanceContext(images=x, z=2 * x - 1, z_t=z_t, t=t, eps=eps, w=torch.ones(N, 1, 1, 1), prompts=[""] * N, step=0, steps=1, depth=depth, alpha=torch.ones(N, 1, 8, 8))
    ssd.baseline = ssd.depth_baseline
    phi, grad = ssd.phi_and_grad(z_t, ctx)
    assert phi.std() > 0 and grad.abs().sum() > 0
    h = control_variate(phi, grad, eps, sigma)
    chi2 = ((h.mean(0) / (h.std(0) / N**0.5)) ** 2).mean().item()
    assert chi2 < 2.0


def test_ssd_mu_step_lowers_the_second_moment(prior):
    ssd = SSD(prior, SSDConfig(mu_lr=0.05), baseline=_nontrivial_phi)
    t = torch.tensor([400, 600])
    _, _, _, out = _run(ssd, t)
    first = float(out.losses["ssd_second_moment"])
    for _ in range(30):
        _, _, _, out = _run(ssd, t)
    assert out.losses["ssd_second_moment"] < first


def test_tiny_dpt_loads_from_a_local_folder_and_is_differentiable(tmp_path):
    from transformers import DPTConfig, DPTForDepthEstimation

    from propdreamer.core.guidance.depth import load_depth_estimator

    config = DPTConfig(
        hidden_size=16,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=32,
        image_size=32,
        patch_size=8,
        backbone_out_indices=[0, 1, 2, 3],
        neck_hidden_sizes=[8, 8, 8, 8],
        fusion_hidden_size=8,
        head_in_index=-1,
    )
    DPTForDepthEstimation(config).save_pretrained(tmp_path / "dpt")
    estimator = load_depth_estimator(str(tmp_path / "dpt"), torch.device("cpu"), offline=True)
    x = torch.rand(2, 3, 20, 20, requires_grad=True)
    d = estimator(x)
    assert d.shape == (2, 1, 20, 20)
    d.sum().backward()
    assert x.grad.abs().sum() > 0


def test_missing_dpt_id_error_teaches(tmp_path, monkeypatch):
    from huggingface_hub import constants

    from propdreamer.core.guidance.depth import load_depth_estimator

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="Intel/dpt-hybrid-midas"):
        load_depth_estimator("Intel/dpt-hybrid-midas", torch.device("cpu"), offline=True)


def test_unknown_method_and_field_are_named(prior):
    with pytest.raises(ValueError, match="choose one of"):
        build_guidance("dds", prior)
    with pytest.raises(ValueError, match="lambda_phi"):
        build_guidance("sds", prior, lambda_phi=1.0)
    with pytest.raises(ValueError, match="weighting"):
        build_guidance("nfsd", prior, weighting="sigma")


def test_linear_decoder_recovers_a_linear_encoder_exactly():
    """If the 'VAE' is linear, z = A avgpool_8(x) + c with A of full column rank, the least-squares
    decoder inverts it: W z + b = avgpool_8(x) on images it was not fitted on."""
    import torch.nn.functional as F

    from propdreamer.core.priors.linear_decoder import fit_linear_decoder, smooth_images

    g = torch.Generator().manual_seed(3)
    A, c = torch.randn(4, 3, generator=g), torch.randn(4, generator=g)
    encode = lambda x: torch.einsum("ci,bihw->bchw", A, F.avg_pool2d(x, 8)) + c.reshape(1, 4, 1, 1)
    decoder = fit_linear_decoder(encode, scale=8, size=64)
    x = smooth_images(3, 64, torch.Generator().manual_seed(99))
    expected = F.interpolate(F.avg_pool2d(x, 8), scale_factor=8, mode="bilinear", align_corners=False)  # the low-res image, upsampled
    torch.testing.assert_close(decoder(encode(x)), expected, atol=1e-4, rtol=1e-4)


def test_ssd_on_a_latent_prior_runs_its_depth_baseline_through_the_linear_decoder(tmp_path):
    from propdreamer.core.priors.random_prior import SMALL_DEPTH, save_random_depth

    latent = load_prior(PriorConfig(source=str(build_tiny_sd(tmp_path / "sd")), device="cpu"))
    save_random_depth(tmp_path / "dpt", overrides=SMALL_DEPTH)
    for decode in ("linear", "vae"):
        ssd = SSD(latent, SSDConfig(depth_estimator=str(tmp_path / "dpt"), baseline_decode=decode, lambda_phi=1.0))
        x = torch.rand(2, 3, 16, 16)
        depth = torch.rand(2, 1, 16, 16) + 1.0
        out = ssd(
            x.requires_grad_(True), PROMPTS, step=0, steps=1, t=torch.tensor([500, 700]), depth=depth, alpha=torch.ones(2, 1, 16, 16), generator=torch.Generator().manual_seed(0)
        )
        out.loss.backward()
        assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
        assert out.losses["phi"] != 0  # the depth baseline was evaluated, not a constant
    assert latent._linear_decoder is not None and latent._linear_decoder.weight.shape == (3, 4)


# -- the negative prompt ------------------------------------------------------------------------------
NEGATIVE = "a blue sphere"


@pytest.mark.parametrize("method", ["sds", "nfsd", "vsd", "ssd", "vdm"])
def test_an_empty_negative_prompt_changes_nothing_and_a_negative_prompt_changes_the_update(prior, method):
    t = torch.tensor([300, 700])
    options = {"depth_estimator": "builtin"} if method == "ssd" else {}
    torch.manual_seed(0)
    _, _, g_default, _ = _run(build_guidance(method, prior, **options), t)
    torch.manual_seed(0)
    empty = {} if method == "nfsd" else {"negative_prompt": ""}  # NFSD: "no negative prompt from the artist" keeps its paper's list
    _, _, g_empty, _ = _run(build_guidance(method, prior, **empty, **options), t)
    torch.manual_seed(0)
    _, _, g_negative, _ = _run(build_guidance(method, prior, negative_prompt=NEGATIVE, **options), t)
    torch.testing.assert_close(g_empty, g_default, atol=0, rtol=0)
    assert (g_negative - g_default).abs().max() > 1e-3 * g_default.abs().max()


def test_sds_takes_the_negative_prompt_as_cfg_unconditional_branch(prior):
    """eps_cfg = eps_neg + s (eps_y - eps_neg), as threestudio's prompt processor and diffusers' pipelines
    build it: g = w(t) (eps_cfg - eps)."""
    t = torch.tensor([300, 700])
    z_t, eps, g, _ = _run(build_guidance("sds", prior, negative_prompt=NEGATIVE, guidance_scale=7.5), t)
    e_y, e_neg = _eps(prior, z_t, t, PROMPTS), _eps(prior, z_t, t, [NEGATIVE] * 2)
    w = (1 - prior.alphas_cumprod[t]).reshape(-1, 1, 1, 1)
    torch.testing.assert_close(g, w * (e_neg + 7.5 * (e_y - e_neg) - eps), atol=1e-5, rtol=1e-4)


def test_nfsd_reads_the_artists_negative_prompt_as_its_negative_term(prior):
    """NFSD keeps eps_0 on the empty prompt (its dC and low-t dD) and puts the negative prompt in eps_neg."""
    t = torch.tensor([600, 900])
    z_t, _, g, _ = _run(build_guidance("nfsd", prior, negative_prompt=NEGATIVE), t)
    e_y, e_0, e_neg = _eps(prior, z_t, t, PROMPTS), _eps(prior, z_t, t, ["", ""]), _eps(prior, z_t, t, [NEGATIVE] * 2)
    w = (1 - prior.alphas_cumprod[t]).reshape(-1, 1, 1, 1)
    torch.testing.assert_close(g, w * (e_0 - e_neg + 7.5 * (e_y - e_0)), atol=1e-5, rtol=1e-4)


# -- VSD's LoRA trains, and VSD agrees with threestudio's reference ------------------------------------
def _lora_tensors(vsd):
    return vsd.lora_params + list(vsd.camera_mlp.parameters())


def test_vsd_lora_trains_every_tensor(prior):
    """After step_auxiliary every LoRA tensor has a gradient and has moved. (peft's disable_adapters sets
    the LoRA's requires_grad to False; a backward pass after it accumulated nothing, and only the camera
    MLP learned.) LoRA's B starts at zero, so A's gradient is zero on the first step: check the second."""
    vsd = build_guidance("vsd", prior)
    start = [p.detach().clone() for p in _lora_tensors(vsd)]
    _, _, _, ctx = _vsd_update_only(vsd, torch.tensor([300, 900]))
    for _ in range(2):
        vsd.step_auxiliary(ctx)
    grads = [p.grad for p in vsd.lora_params]
    assert all(g is not None and g.abs().max() > 0 for g in grads), f"{sum(g is None for g in grads)} of {len(grads)} LoRA tensors got no gradient"
    assert all(not torch.equal(p, p0) for p, p0 in zip(_lora_tensors(vsd), start))
    assert not any(p.requires_grad for n, p in prior.unet.named_parameters() if "lora_" not in n)  # the base UNet stays frozen


def _threestudio_eps_phi(vsd, z_t, t, prompts, cameras_flat):
    """eps_phi as threestudio builds it: the adapters on (never toggled here) and the camera through an
    embedding added to the UNet's time embedding (threestudio: `unet_lora.class_embedding`)."""
    prior = vsd.prior
    hook = prior.unet.time_embedding.register_forward_hook(lambda m, i, out: out + vsd.camera_mlp(cameras_flat))
    try:
        return prior.unet(z_t, t, encoder_hidden_states=prior.text_embeddings(prompts)).sample
    finally:
        hook.remove()


def test_vsd_matches_threestudio(prior):
    """A literal restatement of threestudio (threestudio-project/threestudio @ 28d9d80,
    threestudio/models/guidance/stable_diffusion_vsd_guidance.py): `compute_grad_vsd` (lines 456-543)
    and `train_lora` (lines 561-604), on the same tiny prior, latents, t, noise and cameras:

        pretrain = eps_uncond + s (eps_text - eps_uncond)            view-dependent prompts, base UNet
        est      = eps_lora(z_t, t, y, c)                            bare prompt, guidance_scale_lora = 1
        grad     = w(t) (pretrain - est),  w = 1 - abar_t
        loss_lora = mse(eps_lora(abar' z + sigma' eps', t', y, c), eps')

    with the LoRA first trained a few steps so eps_phi is not the base UNet."""
    vsd = build_guidance("vsd", prior, lr=1e-2)
    gen = torch.Generator().manual_seed(3)
    z = torch.rand(2, 3, 8, 8, generator=gen) * 2 - 1
    cams = torch.randn(2, 16, generator=gen)
    bare = ["a red cube"] * 2
    for _ in range(5):
        vsd.lora_step(z, bare, cams, torch.tensor([200, 700]), torch.randn(2, 3, 8, 8, generator=gen))
    # the update
    from types import SimpleNamespace

    from propdreamer.core.guidance.base import GuidanceContext

    t, eps = torch.tensor([300, 800]), torch.randn(2, 3, 8, 8, generator=gen)
    z_t = add_noise(prior.alphas_cumprod, z, eps, t)
    w = (1 - prior.alphas_cumprod[t]).reshape(-1, 1, 1, 1)
    cameras = SimpleNamespace(c2w=cams.reshape(2, 4, 4))  # VSD reads the camera-to-world matrices only
    ctx = GuidanceContext(images=(z + 1) / 2, z=z, z_t=z_t, t=t, eps=eps, w=w, prompts=PROMPTS, step=0, steps=1, cameras=cameras, generator=gen, plain_prompts=bare)
    g, _ = vsd.update(ctx)
    prior.unet.enable_adapters()
    with torch.no_grad():
        est = _threestudio_eps_phi(vsd, z_t, t, bare, cams)
    prior.unet.disable_adapters()
    e_text, e_uncond = _eps(prior, z_t, t, PROMPTS), _eps(prior, z_t, t, ["", ""])
    expected = w * (e_uncond + 7.5 * (e_text - e_uncond) - est)
    torch.testing.assert_close(g, expected, atol=1e-5, rtol=1e-4)
    assert (est - _eps(prior, z_t, t, bare)).abs().max() > 1e-4  # eps_phi has adapted
    # the LoRA loss's gradient, adapters on throughout
    t2, eps2 = torch.tensor([100, 650]), torch.randn(2, 3, 8, 8, generator=gen)
    prior.unet.enable_adapters()
    for p in _lora_tensors(vsd):
        p.grad = None
    noisy = add_noise(prior.alphas_cumprod, z, eps2, t2)
    torch.nn.functional.mse_loss(_threestudio_eps_phi(vsd, noisy, t2, bare, cams).float(), eps2.float(), reduction="mean").backward()
    reference = [p.grad.clone() for p in _lora_tensors(vsd)]
    prior.unet.disable_adapters()
    vsd.lora_step(z, bare, cams, t2, eps2)  # its gradients stay in .grad after the optimiser step
    for p, r in zip(_lora_tensors(vsd), reference):
        torch.testing.assert_close(p.grad, r, atol=1e-6, rtol=1e-4)


def test_vsd_conditions_eps_phi_on_the_shading_mode_as_prolificdreamer(prior):
    """ProlificDreamer (thu-ml/prolificdreamer @ 5a30304, lora_unet.py lines 420-422 and 636-645) adds a
    learned vector per shading mode to the LoRA UNet's time embedding, next to the camera's:

        emb = time_embedding(t) + camera_emb(c) + {textureless_emb, lambertian_emb, normal_emb}[shading]   (albedo: nothing)

    restated here with our modes (diffuse = lambertian) on the same tiny prior; and the LoRA step trains
    the vector of the step's mode only (the trainer passes the mode it rendered with)."""
    vsd = build_guidance("vsd", prior, lr=1e-2)
    gen = torch.Generator().manual_seed(5)
    z = torch.rand(2, 3, 8, 8, generator=gen) * 2 - 1
    cams = torch.randn(2, 16, generator=gen)
    t, eps = torch.tensor([250, 750]), torch.randn(2, 3, 8, 8, generator=gen)
    bare = ["a red cube"] * 2
    with torch.no_grad():  # vectors away from their zero start, so each mode's condition differs
        for v in vsd.shading_embedding.values():
            v.normal_(0, 1, generator=gen)
    z_t = add_noise(prior.alphas_cumprod, z, eps, t)

    def reference(mode):
        extra = vsd.shading_embedding[mode] if mode in ("diffuse", "textureless") else 0.0
        hook = prior.unet.time_embedding.register_forward_hook(lambda m, i, out: out + vsd.camera_mlp(cams) + extra)
        prior.unet.enable_adapters()
        try:
            return prior.unet(z_t, t, encoder_hidden_states=prior.text_embeddings(bare)).sample
        finally:
            hook.remove()
            prior.unet.disable_adapters()

    with torch.no_grad():
        for mode in ("albedo", "diffuse", "textureless"):
            torch.testing.assert_close(vsd.eps_phi(z_t, t, bare, cams, mode), reference(mode), atol=1e-5, rtol=1e-4)
        assert (vsd.eps_phi(z_t, t, bare, cams, "textureless") - vsd.eps_phi(z_t, t, bare, cams, "albedo")).abs().max() > 1e-4
    before = {m: v.detach().clone() for m, v in vsd.shading_embedding.items()}
    vsd.lora_step(z, bare, cams, t, eps, "diffuse")
    assert not torch.equal(vsd.shading_embedding["diffuse"], before["diffuse"])
    assert torch.equal(vsd.shading_embedding["textureless"], before["textureless"])
    # the trainer hands the guidance the mode it rendered with
    from propdreamer.core.stage1.trainer import DistillationConfig, DistillationTrainer

    seen = []
    trainer = DistillationTrainer(prior, "a red cube", DistillationConfig(method="vsd", steps=2))
    original = trainer.guidance.step_auxiliary
    trainer.guidance.step_auxiliary = lambda ctx: seen.append(ctx.shading) or original(ctx)
    trainer.train_step()
    assert seen and seen[0] in ("albedo", "diffuse", "textureless")


def test_sds_matches_threestudio(prior):
    """A literal restatement of threestudio (threestudio-project/threestudio @ 28d9d80,
    threestudio/models/guidance/stable_diffusion_guidance.py, `compute_grad_sds` lines 186-287 without
    perp-neg, and the loss of `__call__` at lines 445-447), with the negative prompt as the unconditional
    branch (threestudio's prompt processor puts it there):

        noise_pred = eps_text + s_ts (eps_text - eps_uncond)      threestudio's scale counts from 1 ...
        grad = w(t) (noise_pred - noise),  w = 1 - abar_t
        loss = 0.5 mse(latents, (latents - grad).detach(), sum) / B

    ... so its s_ts is our s - 1: eps_0 + s (eps_y - eps_0) = eps_y + (s - 1)(eps_y - eps_0)."""
    t = torch.tensor([300, 700])
    gen = torch.Generator().manual_seed(5)
    x = torch.rand(2, 3, 8, 8, generator=gen).requires_grad_(True)
    noise = torch.randn(2, 3, 8, 8, generator=gen)
    ours = build_guidance("sds", prior, guidance_scale=100.0, negative_prompt=NEGATIVE)
    ours(x, PROMPTS, step=0, steps=1, t=t, eps=noise).loss.backward()
    latents = (2 * x.detach() - 1).requires_grad_(True)  # the pixel prior's "VAE": z = 2x - 1
    with torch.no_grad():
        latents_noisy = add_noise(prior.alphas_cumprod, latents, noise, t)
        noise_pred_text, noise_pred_uncond = _eps(prior, latents_noisy, t, PROMPTS), _eps(prior, latents_noisy, t, [NEGATIVE] * 2)
        noise_pred = noise_pred_text + 99.0 * (noise_pred_text - noise_pred_uncond)
    grad = (1 - prior.alphas_cumprod[t]).view(-1, 1, 1, 1) * (noise_pred - noise)
    target = (latents - grad).detach()
    (0.5 * torch.nn.functional.mse_loss(latents, target, reduction="sum") / 2).backward()
    torch.testing.assert_close(x.grad, 2 * latents.grad, atol=1e-4, rtol=1e-3)  # dz/dx = 2; float32 rounding times a scale of 100
