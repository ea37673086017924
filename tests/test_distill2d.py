"""2D distillation: the distilled image is what the prompt asked for, and the CLI's required interface."""

import os
import subprocess
import sys

import pytest
import torch

from propdreamer.core.builtin_prior.classifier import ClassifierConfig, classify
from propdreamer.core.distill2d import Distill2DConfig, distill2d


@pytest.mark.parametrize("colour, shape", [("red", "cube"), ("blue", "torus")])
def test_distilled_image_is_classified_as_the_prompt(builtin_prior, colour, shape):
    result = distill2d(builtin_prior, f"a {colour} {shape}, front view", Distill2DConfig(steps=400, seed=0))
    assert result.image.shape == (3, 32, 32)
    assert result.snapshots.shape[0] == 8
    predicted = classify(builtin_prior, result.image[None], [", front view"], ClassifierConfig(timesteps=12))
    assert predicted == [(colour, shape)]


def _cli(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "propdreamer.server.cli", *args], capture_output=True, text=True, timeout=300, **kwargs)


def test_cli_help_lists_subcommands():
    out = _cli("--help")
    assert out.returncode == 0
    for command in ("distill2d", "prior", "serve", "submit"):
        assert command in out.stdout


def test_cli_distill2d_writes_pngs(tmp_path):
    out = _cli("distill2d", "a red cube, front view", "--out", str(tmp_path), "--steps", "10", "--seed", "1")
    assert out.returncode == 0, out.stderr
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert pngs == ["distilled.png", "progress.png"]
    from PIL import Image

    assert Image.open(tmp_path / "distilled.png").size == (128, 128)  # 32 px shown 4x


def test_cli_bad_prior_fails_with_advice(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "cache")}
    out = _cli("distill2d", "a red cube", "--out", str(tmp_path), "--prior", "nobody/no-such-model", env=env)
    assert out.returncode == 2
    assert "nobody/no-such-model" in out.stderr and "--prior builtin" in out.stderr
    assert "Traceback" not in out.stderr
    bad = _cli("distill2d", "a red cube", "--out", str(tmp_path), "--steps", "0")
    assert bad.returncode == 2 and "steps must be at least 1" in bad.stderr


@pytest.mark.parametrize("method", ["nfsd", "vsd", "ssd", "vdm"])
def test_every_method_runs_2d_distillation_on_cpu(builtin_prior, method):
    result = distill2d(builtin_prior, "a green cone, front view", Distill2DConfig(method=method, steps=6, seed=0, particles=2 if method == "vsd" else 1))
    assert torch.isfinite(result.particles).all()
    start = torch.sigmoid(2.0 + 0.1 * torch.randn((1, 3, 32, 32), generator=torch.Generator().manual_seed(0)))[0]
    assert not torch.allclose(result.image, start, atol=1e-3)  # the image moved


def test_guidance_benchmark_runs_and_writes_its_files(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "benchmarks/guidance_2d.py",
            "--steps",
            "4",
            "--every",
            "2",
            "--draws",
            "2",
            "--classifier-timesteps",
            "2",
            "--prompts",
            "a red cube",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=os.path.dirname(os.path.dirname(__file__)),
    )
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "guidance_2d.png").stat().st_size > 1000
    rows = (tmp_path / "guidance_2d.csv").read_text().splitlines()
    assert len(rows) == 1 + 5 * 3  # header + 5 methods x steps 0, 2, 4
    for method in ("sds", "nfsd", "vsd", "ssd", "vdm"):
        assert any(line.startswith(method) for line in out.stdout.splitlines())
