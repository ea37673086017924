import pytest
import torch

from propdreamer.core.cameras import ELEVATION_BANDS, OrbitRange, ViewPromptRule, camera_rays, orbit_cameras, sample_orbit


def _cams(el, az, dist=2.0, fov=40.0):
    t = lambda v: torch.tensor([float(v)])
    return orbit_cameras(t(el), t(az), t(dist), t(fov))


def test_front_camera_stands_on_minus_y_and_looks_toward_plus_y():
    c2w = _cams(0, 0).c2w[0]
    torch.testing.assert_close(c2w[:3, 3], torch.tensor([0.0, -2.0, 0.0]))
    torch.testing.assert_close(-c2w[:3, 2], torch.tensor([0.0, 1.0, 0.0]))  # camera looks down its -Z
    torch.testing.assert_close(c2w[:3, 1], torch.tensor([0.0, 0.0, 1.0]))  # image up is world Z
    torch.testing.assert_close(c2w[:3, 0], torch.tensor([1.0, 0.0, 0.0]))  # image right is world +X


def test_azimuth_90_is_blenders_right_view_and_matrices_are_rigid():
    torch.testing.assert_close(_cams(0, 90).c2w[0, :3, 3], torch.tensor([2.0, 0.0, 0.0]), atol=1e-6, rtol=0)
    cams = sample_orbit(64, OrbitRange(elevation_deg=(-30, 89.9)), torch.Generator().manual_seed(0))
    R = cams.c2w[:, :3, :3]
    torch.testing.assert_close(R @ R.transpose(1, 2), torch.eye(3).expand(64, 3, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(64), atol=1e-5, rtol=0)


def test_straight_overhead_camera_is_well_defined():
    c2w = _cams(90, 0).c2w[0]
    assert torch.isfinite(c2w).all()
    torch.testing.assert_close(-c2w[:3, 2], torch.tensor([0.0, 0.0, -1.0]), atol=1e-6, rtol=0)


def test_stratified_azimuths_cover_every_sector():
    for seed in range(5):
        cams = sample_orbit(8, OrbitRange(), torch.Generator().manual_seed(seed))
        az = torch.sort(cams.azimuth_deg).values
        gaps = torch.diff(torch.cat([az, az[:1] + 360]))
        assert gaps.max() < 2 * 45  # one camera in each 45-degree sector (of a randomly rotated set)


def test_centre_ray_hits_the_origin():
    cams = _cams(30, 120, 2.2)
    origins, dirs = camera_rays(cams, 32)
    centre = dirs[0, 15:17, 15:17].mean(dim=(0, 1))
    closest = origins[0, 0, 0] + (-(origins[0, 0, 0] @ centre)) * centre
    assert closest.norm() < 0.05


@pytest.mark.parametrize(
    "el, az, suffix",
    [
        (0, 0, ", front view"),
        (10, 44, ", front view"),
        (10, -44, ", front view"),
        (0, 90, ", side view"),
        (0, 170, ", back view"),
        (0, -136, ", back view"),
        (61, 0, ", overhead view"),
        (20, 360 + 10, ", front view"),
    ],
)
def test_view_prompt_rule(el, az, suffix):
    assert ViewPromptRule().suffix(el, az) == suffix


@pytest.mark.parametrize(
    "el, az, suffix",
    [
        (-10, 0, ", front view, low angle"),
        (9.9, 90, ", side view, low angle"),
        (10, 90, ", side view, mid angle"),
        (34, 170, ", back view, mid angle"),
        (35, 0, ", front view, high angle"),
        (60, 0, ", front view, high angle"),
        (61, 90, ", overhead view"),
    ],
)
def test_elevation_bands_name_how_high_the_camera_stands(el, az, suffix):
    assert ViewPromptRule(elevation_bands=ELEVATION_BANDS).suffix(el, az) == suffix


def test_elevation_bands_must_rise_and_be_words():
    with pytest.raises(ValueError, match="rising order"):
        ViewPromptRule(elevation_bands=((30.0, "high angle"), (10.0, "low angle")))
    with pytest.raises(ValueError, match="without commas"):
        ViewPromptRule(elevation_bands=((30.0, "low, angle"),))


def test_bad_orbit_ranges_are_rejected_with_the_field_name():
    with pytest.raises(ValueError, match="distance"):
        OrbitRange(distance=(3.0, 2.0))
    with pytest.raises(ValueError, match="fov"):
        OrbitRange(fov_deg=(0.0, 40.0))
