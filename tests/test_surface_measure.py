"""The surface measure of the synthetic benchmark (core/geometry/surface.py): normal error and Chamfer
distance of a mesh against a true primitive, in the normalised frame."""

import torch

from propdreamer.core.builtin_prior.shapes import SDFS
from propdreamer.core.geometry.surface import crease_fraction, surface_error, true_surface
from propdreamer.core.mesh.marching_tets import marching_tets
from propdreamer.core.mesh.tets import tet_grid


def _mesh(sdf_values_of, resolution=32, bound=0.6):
    grid, tets = tet_grid(resolution, torch.full((3,), -bound), torch.full((3,), bound))
    return marching_tets(grid, tets, sdf_values_of(grid))


def test_a_faithful_mesh_scores_near_zero_and_a_terraced_one_does_not():
    sphere = SDFS["sphere"]
    smooth_v, smooth_f = _mesh(sphere)  # the sphere's own distances: a smooth surface
    terraced_v, terraced_f = _mesh(lambda p: torch.where(sphere(p) < 0, -1.0, 1.0))  # inside / outside only: the staircase
    smooth = surface_error(smooth_v.detach(), smooth_f, sphere, samples=5000)
    terraced = surface_error(terraced_v.detach(), terraced_f, sphere, samples=5000)
    truth_v, truth_f = true_surface(sphere)
    floor = surface_error(truth_v, truth_f, sphere, samples=5000, seed=1).chamfer  # two samplings of the truth itself: point sets' own spacing
    assert smooth.normal_deg < 3.0 and smooth.chamfer < 1.15 * floor, (smooth, floor)
    assert terraced.normal_deg > 15.0 and terraced.normal_deg > 5 * smooth.normal_deg, terraced
    assert terraced.chamfer < 2 * floor  # close in distance, far in shading: what volume IoU and Chamfer alone miss
    assert crease_fraction(smooth_v.detach(), smooth_f) < 0.005 and crease_fraction(terraced_v.detach(), terraced_f) > 0.1


def unturned_chamfer(v, f, sdf):
    return surface_error(v, f, sdf, turn_deg=0.0, samples=5000).chamfer


def test_the_frame_and_the_turn():
    cube = SDFS["cube"]
    v, f = true_surface(cube, turn_deg=30.0)
    moved = v * 3.0 + torch.tensor([5.0, -2.0, 1.0])  # another size and place: the normalised frame undoes it
    at_turn = surface_error(moved, f, cube, turn_deg=30.0, samples=5000)
    unturned = surface_error(moved, f, cube, turn_deg=0.0, samples=5000)
    assert at_turn.normal_deg < 3.0, at_turn
    assert at_turn.chamfer < 0.6 * unturned_chamfer(moved, f, cube)
    assert unturned.normal_deg > 20.0, unturned  # compared at the wrong turn, the faces disagree
    inside_out = surface_error(moved, f.flip(1), cube, turn_deg=30.0, samples=5000)
    assert inside_out.normal_deg > 170.0  # faces wound inwards are wrong, not forgiven
