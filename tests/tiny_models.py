"""Tiny random-weight Stable-Diffusion-shaped models, built and saved locally (no download, ever)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from propdreamer.core.priors.random_prior import byte_vocab, save_byte_tokenizer


def save_tiny_clip_tokenizer(folder: Path, max_length: int = 16) -> None:
    save_byte_tokenizer(folder, max_length)


def build_tiny_sd(folder: Path, prediction_type: str = "epsilon", with_vae: bool = True, seed: int = 0) -> Path:
    """A diffusers folder shaped like SD 2.x (CLIP text encoder, UNet, optional VAE, scheduler); ~100 kB."""
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    save_tiny_clip_tokenizer(folder / "tokenizer")
    vocab_size = len(byte_vocab())
    text_encoder = CLIPTextModel(
        CLIPTextConfig(vocab_size=vocab_size, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=16, projection_dim=16)
    )
    latent_channels = 4 if with_vae else 3
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=latent_channels,
        out_channels=latent_channels,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16,
        attention_head_dim=2,
        norm_num_groups=4,
    )
    # SD ships a PNDM scheduler config; the prior must read the DDPM schedule out of any of them.
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", prediction_type=prediction_type, skip_prk_steps=True)
    text_encoder.save_pretrained(folder / "text_encoder")
    unet.save_pretrained(folder / "unet")
    scheduler.save_pretrained(folder / "scheduler")
    index = {
        "_class_name": "StableDiffusionPipeline",
        "_diffusers_version": "0.30.0",
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "scheduler": ["diffusers", "PNDMScheduler"],
        "vae": [None, None],
        "safety_checker": [None, None],
        "feature_extractor": [None, None],
    }
    if with_vae:
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            latent_channels=4,
            block_out_channels=(8, 16),
            down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
            up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
            layers_per_block=1,
            norm_num_groups=4,
            sample_size=16,
        )
        vae.save_pretrained(folder / "vae")
        index["vae"] = ["diffusers", "AutoencoderKL"]
    (folder / "model_index.json").write_text(json.dumps(index, indent=2))
    return folder


def install_in_hub_cache(source: Path, cache: Path, repo_id: str, revision: str = "0" * 40) -> Path:
    """Lay `source` out as the Hugging Face cache does (models--org--name/snapshots/<sha>, refs/main)."""
    import shutil

    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / revision
    shutil.copytree(source, snapshot)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    return snapshot
