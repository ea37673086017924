"""The Gaussian rasterisers: the dense PyTorch reference and the sparse CPU compositor against closed
forms and each other, and gsplat against the reference on CUDA."""

import math

import numpy as np
import pytest
import torch

from propdreamer.core.cameras import opencv_cameras, orbit_cameras
from propdreamer.core.gaussians.field import fill_enclosed, filtered_opacity_grid
from propdreamer.core.gaussians.init import GaussianInit
from propdreamer.core.gaussians.model import Gaussians, GaussiansConfig
from propdreamer.core.gaussians.pairs import covered_pixels, rasterize_pairs
from propdreamer.core.gaussians.projection import Splats
from propdreamer.core.gaussians.rasterize import rasterize_gsplat, rasterize_torch
from propdreamer.core.geometry.sampling import points_on_mesh

RASTERISERS = pytest.mark.parametrize("raster", [rasterize_torch, rasterize_pairs], ids=["dense", "pairs"])


def _front(res: int = 32, distance: float = 3.0, n: int = 1):
    z = torch.zeros(n)
    cams = orbit_cameras(z, z, torch.full((n,), distance), torch.full((n,), 40.0))
    return cams, *opencv_cameras(cams, res)


def _splats(means, scale, opacity):
    N = means.shape[0]
    return Splats(means=means, quats=torch.tensor([[1.0, 0, 0, 0]]).repeat(N, 1), scales=torch.full((N, 3), scale), opacities=torch.full((N,), opacity))


def test_camera_conversion_puts_the_origin_at_the_centre_and_keeps_up_up_and_right_right():
    cams, viewmats, Ks = _front()
    pts = torch.tensor([[0.0, 0, 0, 1], [0.3, 0, 0, 1], [0, 0, 0.3, 1]]).T
    cam = viewmats[0] @ pts
    uv = (Ks[0] @ cam[:3]) / cam[2]
    assert uv[0, 0] == pytest.approx(16) and uv[1, 0] == pytest.approx(16)
    assert uv[0, 1] > 16  # +X (right in Blender's front view) is right in the image
    assert uv[1, 2] < 16  # +Z (up) is up in the image (smaller row)


@RASTERISERS
def test_an_isotropic_splat_projects_to_the_closed_form_footprint(raster):
    res, distance, s, o = 32, 3.0, 0.1, 0.8
    cams, viewmats, Ks = _front(res, distance)
    rgb, alpha, depth, _ = raster(_splats(torch.zeros(1, 3), s, o), torch.ones(1, 1, 3), viewmats, Ks, res, res)
    f = float(Ks[0, 0, 0])
    var = (f * s / distance) ** 2 + 0.3  # J Sigma J^T + eps2d at the image centre
    ys, xs = torch.meshgrid(torch.arange(res) + 0.5, torch.arange(res) + 0.5, indexing="ij")
    expected = o * torch.exp(-0.5 * ((xs - 16) ** 2 + (ys - 16) ** 2) / var)
    expected = torch.where(expected >= 1 / 255, expected, torch.zeros_like(expected))
    torch.testing.assert_close(alpha[0, ..., 0], expected, atol=1e-5, rtol=0)
    assert float(depth[0, 16, 16, 0]) == pytest.approx(distance, rel=1e-4)


@RASTERISERS
def test_front_to_back_compositing_lets_the_nearer_splat_win(raster):
    cams, viewmats, Ks = _front()
    means = torch.tensor([[0.0, -0.5, 0.0], [0.0, 0.5, 0.0]])  # the first is nearer the camera on -Y
    colours = torch.tensor([[[1.0, 0, 0], [0, 0, 1.0]]])
    rgb, alpha, _, _ = raster(_splats(means, 0.2, 0.99), colours, viewmats, Ks, 32, 32)
    assert rgb[0, 16, 16, 0] > 0.95 and rgb[0, 16, 16, 2] < 0.05
    rgb2, _, _, _ = raster(_splats(means.flip(0), 0.2, 0.99), colours, viewmats, Ks, 32, 32)
    assert rgb2[0, 16, 16, 2] > 0.95  # swapped: blue is now in front


def _random_splats(n: int, seed: int = 0) -> Splats:
    gen = torch.Generator().manual_seed(seed)
    return Splats(
        means=(torch.rand(n, 3, generator=gen) - 0.5),
        quats=torch.randn(n, 4, generator=gen),
        scales=0.01 + 0.06 * torch.rand(n, 3, generator=gen),
        opacities=0.05 + 0.9 * torch.rand(n, generator=gen),
    )


def test_the_sparse_compositor_matches_the_dense_reference_in_values_and_gradients():
    n = 150
    base = _random_splats(n)
    cams = orbit_cameras(torch.tensor([10.0, 30.0, -5.0]), torch.tensor([0.0, 120.0, 250.0]), torch.tensor([2.2, 2.5, 2.0]), torch.full((3,), 40.0))
    viewmats, Ks = opencv_cameras(cams, 24)
    colours = torch.rand(3, n, 3, generator=torch.Generator().manual_seed(1))
    results = []
    for raster in (rasterize_torch, rasterize_pairs):
        leaves = [t.clone().requires_grad_() for t in (base.means, base.quats, base.scales, base.opacities, colours)]
        rgb, alpha, depth, info = raster(Splats(*leaves[:4]), leaves[4], viewmats, Ks, 24, 24)
        info["means2d"].retain_grad()
        (rgb.sin().sum() + 0.3 * alpha.sum() + 0.1 * (depth * alpha).sum()).backward()
        results.append(([rgb, alpha, depth * alpha], [t.grad for t in leaves] + [info["means2d"].grad], info["radii"]))
    (dense_out, dense_grads, dense_radii), (pairs_out, pairs_grads, pairs_radii) = results
    assert float(dense_out[1].detach().amax()) > 0.9  # the splats overlap: compositing order matters
    for a, b in zip(dense_out + dense_grads, pairs_out + pairs_grads):
        torch.testing.assert_close(b.detach(), a.detach(), atol=1e-4 * (1 + float(a.detach().abs().max())), rtol=1e-4)
    assert torch.equal(dense_radii, pairs_radii)  # what gsplat's densification reads


def test_covered_pixels_lists_each_box_inside_the_image_once():
    centre = torch.tensor([[5.0, 5.0], [0.2, 7.9], [30.0, 30.0]])
    box, px, py = covered_pixels(centre, torch.tensor([1.0, 2.0, 1.0]), 8, 8)
    first = sorted((int(x), int(y)) for b, x, y in zip(box, px, py) if b == 0)
    assert first == [(x, y) for x in (4, 5) for y in (4, 5)]  # pixel centres 4.5 and 5.5 lie within 1 of 5
    second = sorted((int(x), int(y)) for b, x, y in zip(box, px, py) if b == 1)
    assert second == [(x, y) for x in (0, 1) for y in (6, 7)]  # clipped at the left and bottom edges
    assert not bool((box == 2).any())  # off the image: no pixels


def test_gradients_reach_every_parameter_and_the_screen_space_means():
    g = Gaussians(GaussiansConfig(init=GaussianInit(count=64)), generator=torch.Generator().manual_seed(0))
    g.optimisers()
    from propdreamer.core.representation import RenderRequest

    cams, _, _ = _front(16)
    out = g.render(RenderRequest(cams, 16, "diffuse", torch.tensor([[0.0, -1.0, 0.0]])))
    out.premult.sum().backward()
    for name, p in g.params.items():
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, name
    assert g._info["means2d"].grad is not None


def test_the_opacity_field_peaks_at_a_splat_centre_at_its_opacity():
    splat = _splats(torch.tensor([[0.1, -0.2, 0.05]]), 0.05, 0.3)
    grid = filtered_opacity_grid(splat, 1.0, 40, filter_std=0.0)
    centre = torch.tensor([0.1, -0.2, 0.05])
    x = (torch.arange(40) + 0.5) / 20 - 1  # voxel centres
    i, j, k = (int((x - c).abs().argmin()) for c in centre)
    d2 = float(((torch.stack([x[i], x[j], x[k]]) - centre) ** 2).sum())
    assert float(grid[i, j, k]) == pytest.approx(0.3 * math.exp(-0.5 * d2 / 0.05**2), rel=1e-4)
    assert float(grid[0, 0, 0]) == 0.0  # beyond 3 sigma nothing is written
    wider = filtered_opacity_grid(splat, 1.0, 40, filter_std=0.05)
    assert float(wider[i, j, k]) == pytest.approx(0.3 * math.exp(-0.25 * d2 / 0.05**2), rel=1e-4)  # Sigma + s^2 I, peak kept


def test_a_closed_shell_is_filled_and_an_open_one_is_not():
    shell = torch.zeros(12, 12, 12, dtype=torch.bool)
    shell[2:10, 2:10, 2:10] = True
    shell[3:9, 3:9, 3:9] = False  # a hollow box, walls one voxel thick
    assert int(fill_enclosed(shell).sum()) == 8**3
    shell[5:7, 5:7, 2] = False  # a 2-voxel hole in one wall: the inside reaches the border
    assert torch.equal(fill_enclosed(shell), shell)


def test_splats_on_a_sphere_read_as_a_solid_ball():
    import trimesh

    ball = trimesh.creation.icosphere(subdivisions=3, radius=0.4)
    g = Gaussians(GaussiansConfig(init=GaussianInit(count=1500, scale=0.01, opacity=0.9)), points=points_on_mesh(ball.vertices, ball.faces, 1500))
    pts = torch.stack(torch.meshgrid(*(torch.linspace(-0.7, 0.7, 29),) * 3, indexing="ij"), dim=-1).reshape(-1, 3)
    truth = pts.norm(dim=-1) < 0.4
    assert float((g.density(pts) >= 0.5)[truth].float().mean()) < 0.2  # no training render yet: no filter, dust
    g.footprint = torch.tensor(0.025)  # as a draft-preset run records it (32 px, 40 degrees, 2 m)
    inside = g.density(pts) >= 0.5
    assert bool(inside[truth].all())  # the hollow shell is filled
    radius = pts[inside].norm(dim=-1).max()
    assert 0.4 < float(radius) < 0.4 + 3 * 0.025  # thickened by the filter (field.py), by at most 3 s
    colour = g.albedo(torch.zeros(1, 3))  # deep inside, far from every splat: still the splats' colour
    torch.testing.assert_close(colour, torch.full((1, 3), 0.5), atol=1e-3, rtol=0)


def test_mesh_initialisation_puts_every_point_on_the_surface():
    import trimesh

    box = trimesh.creation.box(extents=(1.0, 0.6, 0.4))
    pts = points_on_mesh(box.vertices, box.faces, 500)
    half = torch.tensor([0.5, 0.3, 0.2])
    on_a_face = ((pts.abs() - half).abs() < 1e-5).any(-1)
    assert pts.shape == (500, 3) and bool(on_a_face.all()) and bool((pts.abs() <= half + 1e-5).all())
    with pytest.raises(ValueError, match="without faces"):
        points_on_mesh(box.vertices, np.zeros((0, 3), dtype=np.int64), 10)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="gsplat's rasteriser needs a CUDA GPU")
def test_gsplat_matches_the_reference_rasteriser():
    gen = torch.Generator().manual_seed(0)
    N = 200
    splats = Splats(
        means=(torch.rand(N, 3, generator=gen) - 0.5),
        quats=torch.randn(N, 4, generator=gen),
        scales=0.02 + 0.05 * torch.rand(N, 3, generator=gen),
        opacities=0.2 + 0.7 * torch.rand(N, generator=gen),
    )
    cams = orbit_cameras(torch.tensor([10.0, 30.0]), torch.tensor([0.0, 120.0]), torch.tensor([2.5, 2.5]), torch.tensor([40.0, 40.0]))
    viewmats, Ks = opencv_cameras(cams, 64)
    colours = torch.rand(2, N, 3, generator=gen)
    ref = rasterize_torch(splats, colours, viewmats, Ks, 64, 64)
    cuda = lambda s: Splats(*(t.cuda() for t in (s.means, s.quats, s.scales, s.opacities)))
    out = rasterize_gsplat(cuda(splats), colours.cuda(), viewmats.cuda(), Ks.cuda(), 64, 64)
    for a, b in zip(out[:2], ref[:2]):
        torch.testing.assert_close(a.cpu(), b, atol=2e-2, rtol=0)
