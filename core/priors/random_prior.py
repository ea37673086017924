"""Random-weight priors of a known architecture, built and saved as diffusers folders (no weights are
ever downloaded).

The GPU benchmark times Stable Diffusion 2.1-base's real-sized networks this way (timing does not
depend on the weights; the configs live in `architectures/`), and the tests build tiny SD-shaped
models with the same byte-level tokenizer.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

ARCHITECTURES = Path(__file__).parent / "architectures"
COMPONENTS = ("unet", "vae", "text_encoder", "scheduler")

# CPU-sized stand-in: the same blocks, attention layout and wiring as SD 2.1-base, far fewer channels
# (64 px images, 8 x 8 latents). The GPU benchmark's CPU smoke run and its test use it.
SMALL: dict[str, dict] = {
    "unet": {"block_out_channels": [32, 64, 64, 64], "attention_head_dim": [2, 4, 4, 4], "cross_attention_dim": 64, "layers_per_block": 1, "sample_size": 8},
    "vae": {"block_out_channels": [32, 32, 64, 64], "layers_per_block": 1, "sample_size": 64},
    "text_encoder": {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4, "num_hidden_layers": 2, "projection_dim": 64},
}
# The same for SSD's depth estimator: a plain (non-hybrid) DPT, 64 px.
SMALL_DEPTH: dict = {
    "is_hybrid": False,
    "embedding_type": "patch_embeddings",
    "hidden_size": 32,
    "num_hidden_layers": 4,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "image_size": 64,
    "patch_size": 8,
    "backbone_out_indices": [0, 1, 2, 3],
    "backbone_featmap_shape": None,
    "neck_hidden_sizes": [16, 16, 32, 32],
    "neck_ignore_stages": [],
    "reassemble_factors": [4, 2, 1, 0.5],
    "fusion_hidden_size": 16,
}


def byte_vocab() -> dict[str, int]:
    """A CLIP BPE vocabulary with one token per byte (and per word-final byte): no merges needed."""
    # GPT-2 / CLIP byte-to-printable-character table: printable Latin-1 bytes map to themselves, the
    # rest to code points from 256 upwards.
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = iter(range(256, 512))
    chars = [chr(b) if b in keep else chr(next(extra)) for b in range(256)]
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    return {tok: i for i, tok in enumerate(tokens)}


def save_byte_tokenizer(folder: Path, max_length: int) -> None:
    """A CLIPTokenizer over `byte_vocab()`, padding to `max_length` tokens as SD's does."""
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(byte_vocab()))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer.from_pretrained(folder, model_max_length=max_length, pad_token="<|endoftext|>")
    tokenizer.save_pretrained(folder)


def architecture_configs(name: str = "sd21-base", overrides: dict[str, dict] | None = None) -> dict[str, dict]:
    """The component configs of a kept architecture, with `overrides` merged in per component."""
    folder = ARCHITECTURES / name
    if not folder.is_dir():
        raise ValueError(f"unknown architecture '{name}'; kept ones: {sorted(p.name for p in ARCHITECTURES.iterdir() if p.is_dir())}")
    configs = {c: json.loads((folder / f"{c}.json").read_text()) for c in COMPONENTS}
    for component, values in (overrides or {}).items():
        configs[component].update(values)
    return configs


def save_random_prior(folder: Path, name: str = "sd21-base", overrides: dict[str, dict] | None = None, dtype: torch.dtype = torch.float16, seed: int = 0) -> Path:
    """Write a diffusers folder with the architecture `name` and random weights; returns `folder`."""
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    configs = architecture_configs(name, overrides)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    save_byte_tokenizer(folder / "tokenizer", configs["text_encoder"]["max_position_embeddings"])
    text = {k: v for k, v in configs["text_encoder"].items() if k not in ("architectures", "model_type")}
    CLIPTextModel(CLIPTextConfig(**text)).to(dtype=dtype).save_pretrained(folder / "text_encoder")
    UNet2DConditionModel.from_config(configs["unet"]).to(dtype).save_pretrained(folder / "unet")
    AutoencoderKL.from_config(configs["vae"]).to(dtype).save_pretrained(folder / "vae")
    PNDMScheduler.from_config(configs["scheduler"]).save_pretrained(folder / "scheduler")
    shutil.copy(ARCHITECTURES / name / "model_index.json", folder / "model_index.json")
    return folder


def save_random_depth(folder: Path, name: str = "dpt-hybrid-midas", overrides: dict | None = None, seed: int = 0) -> Path:
    """Write a transformers DPT folder (SSD's depth estimator) of architecture `name` with random weights."""
    from transformers import DPTConfig, DPTForDepthEstimation

    source = ARCHITECTURES / name
    config = {k: v for k, v in json.loads((source / "config.json").read_text()).items() if k != "model_type"}
    config.update(overrides or {})
    torch.manual_seed(seed)
    DPTForDepthEstimation(DPTConfig(**config)).save_pretrained(folder)
    processor = json.loads((source / "preprocessor_config.json").read_text())
    processor["size"] = {"height": config["image_size"], "width": config["image_size"]}
    (folder / "preprocessor_config.json").write_text(json.dumps(processor, indent=2))
    return folder
