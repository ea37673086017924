"""The shipped builtin prior: small, loaded through the diffusers path, and it knows its shapes and colours."""

from pathlib import Path

from propdreamer.core.builtin_prior.classifier import ClassifierConfig, classify
from propdreamer.core.builtin_prior.dataset import DatasetConfig, render_dataset
from propdreamer.core.builtin_prior.evaluate import HELD_OUT_SEED
from propdreamer.core.builtin_prior.vocabulary import COLOURS, SHAPES
from propdreamer.core.priors.loading import BUILTIN_FOLDER


def test_builtin_prior_is_a_small_diffusers_folder(builtin_prior):
    from diffusers import UNet2DConditionModel

    size = sum(f.stat().st_size for f in Path(BUILTIN_FOLDER).rglob("*") if f.is_file())
    assert size <= 30 * 2**20, f"builtin prior is {size / 2**20:.1f} MB; the budget is 30 MB"
    assert isinstance(builtin_prior.unet, UNet2DConditionModel)
    assert not builtin_prior.latent and builtin_prior.image_size == 32
    assert builtin_prior.unknown_words("a red cube, front view") == []
    assert builtin_prior.unknown_words("a red chair") == ["chair"]


def test_builtin_prior_classifies_unseen_views(builtin_prior):
    """A diffusion classifier over all 56 colour x shape captions, on renders from cameras never trained on.

    16 images: every shape at least twice, every colour twice; `propdreamer prior eval` measures them all.
    The cameras stand where the prior was trained (and where stage one's stand): -10 to 30 degrees up.
    """
    assert builtin_prior.trained_orbit.elevation_deg == (-10.0, 30.0)
    data = render_dataset(DatasetConfig(views_per_label=1, seed=HELD_OUT_SEED, orbit=builtin_prior.trained_orbit))
    n_colours = len(COLOURS)
    picks = [s * n_colours + (2 * s + k) % n_colours for s in range(len(SHAPES)) for k in (0, 1)]
    picks += [6, 5 * n_colours + 7]  # colours 6 and 7 a second time
    images = data.images[picks]
    predicted = classify(builtin_prior, images, [data.view_suffixes[i] for i in picks], ClassifierConfig(timesteps=6))
    truth = [(list(COLOURS)[data.colour_ids[i]], SHAPES[data.shape_ids[i]]) for i in picks]
    shape_acc = sum(p[1] == t[1] for p, t in zip(predicted, truth)) / len(picks)
    colour_acc = sum(p[0] == t[0] for p, t in zip(predicted, truth)) / len(picks)
    misses = [(t, p) for p, t in zip(predicted, truth) if p != t]
    assert shape_acc >= 0.9 and colour_acc >= 0.9, f"shape {shape_acc:.0%}, colour {colour_acc:.0%}; misses {misses}"


def test_classifier_prefers_the_true_caption_over_a_wrong_one(builtin_prior):
    from propdreamer.core.builtin_prior.classifier import denoising_errors

    data = render_dataset(DatasetConfig(views_per_label=1, seed=HELD_OUT_SEED + 1))
    i = 2 * len(COLOURS) + 4  # a blue cylinder
    suffix = data.view_suffixes[i]
    errors = denoising_errors(builtin_prior, data.images[i : i + 1], [f"a blue cylinder{suffix}", f"a yellow torus{suffix}"])
    assert errors.shape == (1, 2) and errors[0, 0] < errors[0, 1]
