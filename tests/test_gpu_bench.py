"""The GPU benchmark harness (benchmarks/gpu.py): the kept SD 2.1-base architecture is the real one,
and the harness runs its measurements end to end at CPU size, writing BENCHMARKS.md's section."""

import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).parents[1]


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_kept_architecture_has_sd21_base_parameter_counts():
    """Published sizes: UNet 865,910,724; VAE (kl-f8) 83,653,863; OpenCLIP-H text tower, 23 layers, 340,387,840."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from propdreamer.core.priors.random_prior import architecture_configs

    c = architecture_configs("sd21-base")
    with torch.device("meta"):  # shapes only: no memory, no init time
        unet = UNet2DConditionModel.from_config(c["unet"])
        vae = AutoencoderKL.from_config(c["vae"])
        text = CLIPTextModel(CLIPTextConfig(**{k: v for k, v in c["text_encoder"].items() if k not in ("architectures", "model_type")}))
    assert (_count(unet), _count(vae), _count(text)) == (865_910_724, 83_653_863, 340_387_840)
    assert unet.config.sample_size * 2 ** (len(vae.config.block_out_channels) - 1) == 512  # a 512 px model
    with pytest.raises(ValueError, match="kept ones"):
        architecture_configs("sd-xl")


@pytest.mark.slow
def test_harness_measures_floor_iterations_and_e2e_at_cpu_size(tmp_path):
    import importlib.util

    # Loaded by path: Blender (bpy) brings a module of its own named `gpu`.
    spec = importlib.util.spec_from_file_location("propdreamer_gpu_bench", ROOT / "benchmarks" / "gpu.py")
    gpu = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = gpu  # dataclasses look their module up
    spec.loader.exec_module(gpu)

    md = tmp_path / "BENCHMARKS.md"
    md.write_text("# Benchmarks\n\nearlier text\n")
    args = [
        "--small",
        "--device",
        "cpu",
        "--repeats",
        "1",
        "--methods",
        "sds,vsd,ssd",
        "--representations",
        "nerf",
        "--e2e-presets",
        "draft",
        "--e2e-steps",
        "2",
        "--benchmarks-md",
        str(md),
        "--json",
        str(tmp_path / "r.json"),
    ]
    assert gpu.main(args) == 0
    r = json.loads((tmp_path / "r.json").read_text())
    rows = {(row["config"], row["method"]): row for row in r["rows"]}
    assert rows[("floor", "-")]["s"] > 0
    for method in ("sds", "vsd", "ssd"):
        assert "error" not in rows[("iteration", method)] and rows[("iteration", method)]["s"] > 0
    assert r["e2e"][0]["preset"] == "draft" and r["e2e"][0]["glb_bytes"] > 1000
    assert {"coarse_s", "geometry_s", "texture_s", "export_s"} <= set(r["e2e"][0])
    gpu.main(args)  # a second run replaces the device's section
    text = md.read_text()
    assert text.count("<!-- gpu.py: CPU") == 1 and "earlier text" in text
    assert "| SDS on nerf |" in text and "| draft |" in text


def test_prior_options_channels_last_gives_the_same_prediction(tmp_path):
    from propdreamer.core.priors.diffusers_prior import DiffusersPrior
    from propdreamer.core.priors.random_prior import SMALL, save_random_prior

    folder = save_random_prior(tmp_path / "sd", overrides=SMALL, dtype=torch.float32)
    plain = DiffusersPrior(folder, torch.device("cpu"), torch.float32)
    nhwc = DiffusersPrior(folder, torch.device("cpu"), torch.float32, channels_last=True)
    assert plain.image_size == 64 and plain.latent
    z, t = torch.randn(2, 4, 8, 8), torch.tensor([500, 100])
    emb = plain.text_embeddings(["a red cube", ""])
    torch.testing.assert_close(nhwc.predict_noise(z, t, emb), plain.predict_noise(z, t, emb), rtol=1e-4, atol=1e-4)
