"""The NeRF's 3D normal smoothness R_smooth against stable-dreamfusion's, restated, on the same inputs.

Reference: ashawkey/stable-dreamfusion at 5550b91, nerf/renderer.py lines 694-696 (`run`, training):
the normals at the ray samples, the normals at the samples moved by Gaussian noise of standard deviation
1e-2, and the loss `(normals - normals_perturb).abs().mean()` (main.py lines 202 and 211 weight it 10
and 20). Restated below in a few lines of our own.
"""

from dataclasses import replace

import pytest
import torch

from propdreamer.core.cameras import orbit_cameras
from propdreamer.core.nerf.field import FieldConfig, NeRFField
from propdreamer.core.nerf.hashgrid import HashGridConfig
from propdreamer.core.nerf.volume import VolumeConfig, _normal_smoothness, render_volume
from propdreamer.core.representation import RenderRequest
from propdreamer.core.shading import ShadingConfig


def _field(seed: int = 0) -> NeRFField:
    torch.manual_seed(seed)
    return NeRFField(FieldConfig(grid=HashGridConfig(levels=4, log2_table=10, max_resolution=16)))


def _reference(field: NeRFField, xyzs: torch.Tensor, noise: torch.Tensor, step: float) -> torch.Tensor:
    """stable-dreamfusion's computation: normals at x and at x + step * noise, mean absolute difference."""
    normals = field(xyzs, with_normals=True)[2]
    normals_perturb = field(xyzs + noise * step, with_normals=True)[2]
    return (normals - normals_perturb).abs().mean()


def test_r_smooth_and_its_gradient_match_stable_dreamfusions():
    field = _field()
    points = (torch.rand(300, 3, generator=torch.Generator().manual_seed(1)) - 0.5) * 0.9  # inside the box: no clamping
    cams = orbit_cameras(*(torch.zeros(1),) * 2, torch.full((1,), 2.5), torch.full((1,), 30.0))
    request = RenderRequest(cams, 8, generator=torch.Generator().manual_seed(7), normal_smooth_step=1e-2)
    noise = torch.randn(points.shape, generator=torch.Generator().manual_seed(7))  # the draw ours makes from the request's generator

    ours = _normal_smoothness(field, points, field(points, with_normals=True)[2], torch.ones(len(points), dtype=torch.bool), request, chunk=128)
    ours_grads = torch.autograd.grad(ours, list(field.parameters()), allow_unused=True)
    theirs = _reference(field, points, noise, 1e-2)
    their_grads = torch.autograd.grad(theirs, list(field.parameters()), allow_unused=True)

    assert float(ours.detach()) > 1e-4  # the random field's normals do turn within 1e-2
    assert torch.allclose(ours, theirs, rtol=1e-5, atol=1e-7)
    for a, b in zip(ours_grads, their_grads, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-7)


def test_padding_samples_do_not_count_and_a_share_keeps_the_expectation():
    field = _field(1)
    points = (torch.rand(400, 3, generator=torch.Generator().manual_seed(2)) - 0.5) * 0.9
    normals = field(points, with_normals=True)[2].detach()
    cams = orbit_cameras(*(torch.zeros(1),) * 2, torch.full((1,), 2.5), torch.full((1,), 30.0))
    request = lambda seed, share=1.0: RenderRequest(cams, 8, generator=torch.Generator().manual_seed(seed), normal_smooth_step=0.05, normal_smooth_share=share)
    with torch.no_grad():
        real = torch.ones(400, dtype=torch.bool)
        half = real.clone()
        half[200:] = False  # the static path's padding repeats a real sample; it must not count
        padded = _normal_smoothness(field, points, normals, half, request(3), 128)
    noise = torch.randn(points.shape, generator=torch.Generator().manual_seed(3))
    moved = field(points + 0.05 * noise, with_normals=True)[2].detach()
    assert torch.allclose(padded, (normals - moved)[:200].abs().mean(), rtol=1e-5)  # the real samples' mean
    with torch.no_grad():
        everyone = torch.stack([_normal_smoothness(field, points, normals, real, request(s), 128) for s in range(20)]).mean()
        quarter = torch.stack([_normal_smoothness(field, points, normals, real, request(s, 0.25), 128) for s in range(20)]).mean()
    assert abs(float(quarter) - float(everyone)) < 0.1 * float(everyone)


def test_the_render_returns_r_smooth_only_when_asked():
    field = _field()
    cams = orbit_cameras(*(torch.zeros(2),) * 2, torch.full((2,), 2.5), torch.full((2,), 30.0))
    light = torch.tensor([[0.0, -1.0, 0.0]] * 2)
    base = RenderRequest(cams, 8, "diffuse", light, ShadingConfig(), torch.Generator().manual_seed(0))
    assert render_volume(field, None, base, VolumeConfig(samples_per_ray=8)).regularisers.normal_smooth is None
    asked = render_volume(field, None, replace(base, normal_smooth_step=1e-2), VolumeConfig(samples_per_ray=8)).regularisers.normal_smooth
    assert asked is not None and float(asked.detach()) > 0 and asked.requires_grad


@pytest.mark.parametrize("weight", [0.0, 50.0])
def test_the_trainer_weights_r_smooth_from_the_regulariser_weights(weight, builtin_prior):
    from propdreamer.core.stage1.defaults import RegulariserWeights
    from propdreamer.core.stage1.trainer import DistillationConfig, DistillationTrainer

    config = DistillationConfig(steps=2, regularisers=RegulariserWeights(normal_smooth=weight))
    terms = DistillationTrainer(builtin_prior, "a red cube", config).train_step()
    assert ("normal_smooth" in terms) == (weight > 0)
