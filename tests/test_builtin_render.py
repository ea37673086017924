"""The builtin prior's training data: analytic shapes, sphere tracing, determinism."""

import pytest
import torch

from propdreamer.core.builtin_prior.dataset import DatasetConfig, render_dataset
from propdreamer.core.builtin_prior.shapes import SDFS
from propdreamer.core.builtin_prior.vocabulary import COLOURS, SHAPES, parse_caption


@pytest.mark.parametrize("shape", SHAPES)
def test_sdf_is_negative_inside_positive_outside_and_fits_the_unit_sphere(shape):
    sdf = SDFS[shape]
    inside = torch.tensor([[0.0, 0.0, 0.0]]) if shape != "torus" else torch.tensor([[0.35, 0.0, 0.0]])
    assert sdf(inside).item() < 0
    far = torch.nn.functional.normalize(torch.randn(500, 3), dim=-1)  # points on the unit sphere
    assert (sdf(far) > 0).all()
    assert sdf(torch.tensor([[0.0, 0.0, 2.0]])).item() <= 2.0  # never overestimates distance


def test_dataset_is_deterministic_and_consistent():
    config = DatasetConfig(views_per_label=1, seed=5)
    a, b = render_dataset(config), render_dataset(config)
    assert len(a) == len(SHAPES) * len(COLOURS)
    torch.testing.assert_close(a.images, b.images)
    assert a.captions() == b.captions()
    assert a.images.shape[1:] == (3, 32, 32) and 0 <= a.images.min() and a.images.max() <= 1
    covered = a.alpha > 0.5
    assert covered.float().mean() > 0.05  # the objects fill part of the frame
    assert (a.depth[covered] > 1.0).all() and (a.depth[covered] < 3.5).all()  # camera distance 2.0-2.4
    assert (a.images[:, :, 0, 0] == 1).all()  # white background in the corners
    c = render_dataset(DatasetConfig(views_per_label=1, seed=6))
    assert not torch.allclose(a.images, c.images)


def test_captions_and_parsing():
    data = render_dataset(DatasetConfig(views_per_label=1, seed=0))
    first = data.captions()[0]
    assert first.startswith("a red sphere, ") and first.endswith(" view")
    assert parse_caption("An orange Torus, side view") == ("orange", "torus")
    assert parse_caption("a chair") == (None, None)
