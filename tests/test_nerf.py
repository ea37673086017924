"""The NeRF's parts: hash grid, fields, occupancy grid and volume rendering against closed forms."""

from dataclasses import dataclass

import pytest
import torch

from propdreamer.core.cameras import orbit_cameras
from propdreamer.core.nerf.field import FieldConfig, NeRFField
from propdreamer.core.nerf.hashgrid import HashGrid, HashGridConfig
from propdreamer.core.nerf.occupancy import OccupancyConfig, OccupancyGrid
from propdreamer.core.nerf.volume import VolumeConfig, ray_box, render_volume
from propdreamer.core.representation import RenderRequest
from propdreamer.core.shading import ShadingConfig


def _front_camera(n: int = 1, distance: float = 2.5):
    z = torch.zeros(n)
    return orbit_cameras(z, z, torch.full((n,), distance), torch.full((n,), 30.0))


def test_hash_grid_interpolates_a_linear_function_exactly_on_dense_levels():
    grid = HashGrid(HashGridConfig(levels=2, features=1, log2_table=12, base_resolution=4, max_resolution=8))
    assert bool(grid.dense.all())  # (8 + 1)^3 = 729 <= 4096
    coef = torch.tensor([0.3, -0.7, 1.1])
    with torch.no_grad():
        for level, res in enumerate(grid.resolutions.tolist()):
            side = res + 1
            idx = torch.arange(side**3)
            vert = torch.stack([idx % side, (idx // side) % side, idx // side**2], dim=-1).float() / res  # vertex in [0, 1]^3
            grid.table[level * grid.table_size + idx, 0] = vert @ coef
    u = torch.rand(100, 3, generator=torch.Generator().manual_seed(0))
    out = grid(u)  # [100, 2]: trilinear interpolation reproduces a linear function exactly
    torch.testing.assert_close(out, (u @ coef)[:, None].expand(-1, 2), atol=1e-5, rtol=0)


def test_hash_grid_gradient_reaches_only_the_touched_entries():
    grid = HashGrid(HashGridConfig(levels=4, log2_table=10, base_resolution=4, max_resolution=64))
    assert not bool(grid.dense.all())  # the finest levels are hashed
    grid(torch.tensor([[0.2, 0.4, 0.6]])).sum().backward()
    touched = (grid.table.grad.abs().sum(1) > 0).sum()
    assert 0 < touched <= 4 * 8


def test_blob_density_falls_off_from_the_centre_and_is_zero_far_out():
    field = NeRFField(FieldConfig())
    sigma = field.density(torch.tensor([[0.0, 0.0, 0.0], [0.45, 0, 0], [0.9, 0.0, 0.0]]))
    assert sigma[0] > 5 and sigma[0] > sigma[1] > sigma[2] and sigma[2] < 1e-2


@pytest.mark.parametrize("normals", ["analytic", "finite_difference"])
def test_normals_of_the_blob_point_outward(normals):
    field = NeRFField(FieldConfig(normals=normals, normal_step=0.01))
    with torch.no_grad():  # the MLP adds nothing: sigma is the blob alone, radially symmetric
        field.density_net[-1].weight.zero_()
        field.density_net[-1].bias.zero_()
    x = torch.nn.functional.normalize(torch.randn(50, 3, generator=torch.Generator().manual_seed(1)), dim=-1) * 0.4
    _, _, n = field(x, with_normals=True)
    cos = (n * torch.nn.functional.normalize(x, dim=-1)).sum(-1)
    assert float(cos.detach().min()) > 0.999


def test_ray_box_matches_the_slab_method_on_known_rays():
    o = torch.tensor([[0.0, -3.0, 0.0], [0.0, -3.0, 2.0]])
    d = torch.tensor([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    near, far = ray_box(o, d, 1.0)
    assert near[0] == pytest.approx(2.0) and far[0] == pytest.approx(4.0)
    assert not bool(far[1] > near[1])  # passes above the box


@dataclass
class _ConstantField:
    """sigma = s everywhere in the box, albedo = a; counts the points it is asked about."""

    sigma: float
    albedo: tuple
    config: FieldConfig = FieldConfig(bound=1.0)
    queries: int = 0

    def __call__(self, x, with_normals=False):
        self.queries += x.shape[0]
        n = x.shape[0]
        normals = torch.nn.functional.normalize(x, dim=-1) if with_normals else None
        return torch.full((n,), self.sigma), torch.tensor(self.albedo).expand(n, 3), normals


def test_volume_rendering_matches_beer_lambert_for_a_constant_density():
    field = _ConstantField(0.8, (0.2, 0.5, 0.9))
    cams = _front_camera()
    out = render_volume(field, None, RenderRequest(cams, 8, "albedo"), VolumeConfig(samples_per_ray=64))
    from propdreamer.core.cameras import camera_rays

    o, d = camera_rays(cams, 8)
    near, far = ray_box(o.reshape(-1, 3), d.reshape(-1, 3), 1.0)
    expected = (1 - torch.exp(-0.8 * (far - near).clamp(min=0))).reshape(1, 1, 8, 8)
    torch.testing.assert_close(out.alpha, expected, atol=1e-4, rtol=0)
    torch.testing.assert_close(out.premult, expected * torch.tensor([0.2, 0.5, 0.9]).reshape(1, 3, 1, 1), atol=1e-4, rtol=0)


def test_empty_occupancy_skips_every_sample_and_renders_nothing():
    field = _ConstantField(5.0, (1.0, 0.0, 0.0))
    grid = OccupancyGrid(1.0, OccupancyConfig(resolution=8))
    grid.update(lambda x: torch.zeros(x.shape[0]))
    assert grid.occupied_fraction() == 0.0
    out = render_volume(field, grid, RenderRequest(_front_camera(), 8, "albedo"), VolumeConfig())
    assert field.queries == 0 and float(out.alpha.max()) == 0.0


def test_occupancy_keeps_exactly_the_cells_where_density_lives():
    grid = OccupancyGrid(1.0, OccupancyConfig(resolution=8, threshold=0.5))
    grid.update(lambda x: (x.norm(dim=-1) < 0.45).float() * 10, torch.Generator().manual_seed(0))  # any point of the centre cells is inside
    inside = grid.lookup(torch.tensor([[0.0, 0.0, 0.0], [0.9, 0.9, 0.9]]))
    assert inside.tolist() == [True, False]
    assert 0 < grid.occupied_fraction() < 0.1


def test_orientation_penalty_is_zero_for_normals_facing_the_camera_and_positive_otherwise():
    class Facing(_ConstantField):
        def __call__(self, x, with_normals=False):
            s, a, _ = super().__call__(x, False)
            n = torch.tensor([0.0, self.sign, 0.0]).expand(x.shape[0], 3)  # camera on -Y looks toward +Y
            return s, a, n

    light = torch.tensor([[0.0, -1.0, 0.0]])
    toward = Facing(1.0, (0.5, 0.5, 0.5))
    toward.sign = -1.0
    away = Facing(1.0, (0.5, 0.5, 0.5))
    away.sign = 1.0
    req = lambda: RenderRequest(_front_camera(), 8, "diffuse", light, ShadingConfig())
    assert float(render_volume(toward, None, req(), VolumeConfig()).regularisers.orientation) == 0.0
    assert float(render_volume(away, None, req(), VolumeConfig()).regularisers.orientation) > 0.01


def _blob_scene():
    field = NeRFField(FieldConfig(grid=HashGridConfig(levels=4, log2_table=10, max_resolution=16)))
    grid = OccupancyGrid(1.0, OccupancyConfig(resolution=16))
    grid.update(field.density)
    cams = orbit_cameras(torch.tensor([20.0, 40.0]), torch.tensor([0.0, 90.0]), torch.tensor([2.2, 2.2]), torch.tensor([40.0, 40.0]))
    return field, grid, cams


def test_static_compaction_renders_exactly_what_nonzero_does():
    """The sync-free path (fixed-size indices padded with a dummy slot) changes no pixel and no gradient."""
    from propdreamer.core.nerf.compact import SampleCompactor

    field, grid, cams = _blob_scene()
    outs = []
    for compactor in (SampleCompactor(static=False), SampleCompactor(static=True, granule=256)):
        field.zero_grad()
        for _ in range(2):  # the second step runs at the capacity measured in the first
            request = RenderRequest(cams, 12, "diffuse", light=torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0]]), generator=torch.Generator().manual_seed(0))
            out = render_volume(field, grid, request, VolumeConfig(samples_per_ray=16), compactor)
        (out.premult.sum() + out.regularisers.orientation).backward()
        grads = torch.cat([p.grad.flatten() for p in field.parameters() if p.grad is not None])
        outs.append((out.premult.detach(), out.alpha.detach(), out.regularisers.orientation.detach(), grads))
    assert compactor.fraction < 1.0 and compactor.overflows == 0  # it measured the occupied fraction and sized itself
    for a, b in zip(outs[0], outs[1]):
        torch.testing.assert_close(a, b)


def test_static_compaction_overflow_drops_samples_and_grows_the_capacity():
    from propdreamer.core.nerf.compact import SampleCompactor

    field, grid, cams = _blob_scene()
    compactor = SampleCompactor(static=True, granule=64)
    compactor.fraction = 0.001  # pretend the scene was nearly empty last step
    request = lambda: RenderRequest(cams, 12, "albedo", generator=torch.Generator().manual_seed(0))
    starved = render_volume(field, grid, request(), VolumeConfig(samples_per_ray=16), compactor)
    full = render_volume(field, grid, request(), VolumeConfig(samples_per_ray=16), SampleCompactor(static=False))
    assert torch.isfinite(starved.premult).all() and float(starved.alpha.detach().sum()) < float(full.alpha.detach().sum())
    render_volume(field, grid, request(), VolumeConfig(samples_per_ray=16), compactor)  # reads the first step's count
    assert compactor.overflows == 1 and compactor.fraction > 0.01
    again = render_volume(field, grid, request(), VolumeConfig(samples_per_ray=16), compactor)
    torch.testing.assert_close(again.alpha, full.alpha)
