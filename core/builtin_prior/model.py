"""The builtin prior's networks: a word-level tokenizer, a small CLIP text encoder and a pixel-space UNet.

They are ordinary diffusers / transformers classes, saved as a diffusers-format folder, so the builtin
prior loads through exactly the same `from_pretrained` code as Stable Diffusion.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from diffusers import DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, PreTrainedTokenizerFast

from ..cameras import ELEVATION_BANDS, VIEW_SUFFIXES
from .vocabulary import COLOURS, SHAPES

SPECIAL_TOKENS = {"pad_token": "[PAD]", "unk_token": "[UNK]", "bos_token": "[BOS]", "eos_token": "[EOS]"}


@dataclass(frozen=True)
class ModelConfig:
    resolution: int = 32
    block_out_channels: tuple[int, ...] = (32, 64, 128, 128)  # 32 -> 16 -> 8 -> 4 px
    # Cross-attention at 16, 8 and 4 px, not at 32 px. The first shipped prior had it at 8 and 4 px only;
    # the current one grew the 16 px level (`prior train --attention-levels 1,2,3`, which starts it as
    # the identity) and costs 0.68-0.70 s a training step on 2 CPU cores against 0.6-0.75.
    attention: tuple[bool, ...] = (False, True, True, True)
    layers_per_block: int = 1
    text_width: int = 64  # = the UNet's cross-attention dim
    text_layers: int = 2
    text_heads: int = 4
    max_tokens: int = 16
    num_train_timesteps: int = 1000
    # Camera features (priors/camera_conditioning.py) added to the timestep embedding; 0: none (the
    # first shipped prior). The embedding's last layer starts at zero, so a prior trained without
    # cameras continues unchanged until training teaches it to read them.
    camera_features: int = 0

    def __post_init__(self) -> None:
        halvings = len(self.block_out_channels) - 1
        if self.resolution < 2**halvings or self.resolution % 2**halvings:
            raise ValueError(
                f"the prior's resolution (--resolution) must be a multiple of {2**halvings} (the UNet halves it {halvings} times), e.g. 32 or 64; got {self.resolution}"
            )


def vocabulary_words() -> list[str]:
    words = ["a", "an", "the", ","] + list(COLOURS) + list(SHAPES)
    for suffix in VIEW_SUFFIXES:
        words += [w for w in suffix.replace(",", " ").split() if w not in words]
    # Appended last, so a prior saved before them keeps its token ids and can learn them (`--init`).
    for _, band in ELEVATION_BANDS:
        words += [w for w in band.split() if w not in words]
    return list(dict.fromkeys(words))


def build_tokenizer(max_tokens: int) -> PreTrainedTokenizerFast:
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel

    vocab = {tok: i for i, tok in enumerate(list(SPECIAL_TOKENS.values()) + vocabulary_words())}
    tok = Tokenizer(WordLevel(vocab, unk_token=SPECIAL_TOKENS["unk_token"]))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()  # "cube, front" -> "cube" "," "front"
    tok.post_processor = processors.TemplateProcessing(single="[BOS] $A [EOS]", special_tokens=[("[BOS]", vocab["[BOS]"]), ("[EOS]", vocab["[EOS]"])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=max_tokens, **SPECIAL_TOKENS)


def build_text_encoder(config: ModelConfig, tokenizer: PreTrainedTokenizerFast) -> CLIPTextModel:
    return CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=config.text_width,
            intermediate_size=2 * config.text_width,
            projection_dim=config.text_width,
            num_hidden_layers=config.text_layers,
            num_attention_heads=config.text_heads,
            max_position_embeddings=config.max_tokens,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    )


def build_unet(config: ModelConfig) -> UNet2DConditionModel:
    if len(config.attention) != len(config.block_out_channels):
        raise ValueError("ModelConfig.attention needs one flag per entry of block_out_channels")
    down = tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in config.attention)
    up = tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(config.attention))
    unet = UNet2DConditionModel(
        sample_size=config.resolution,
        in_channels=3,
        out_channels=3,
        block_out_channels=config.block_out_channels,
        layers_per_block=config.layers_per_block,
        down_block_types=down,
        up_block_types=up,
        cross_attention_dim=config.text_width,
        attention_head_dim=4,  # diffusers' historical name: the number of heads
        norm_num_groups=8,
        **({"class_embed_type": "projection", "projection_class_embeddings_input_dim": config.camera_features} if config.camera_features else {}),
    )
    if config.camera_features:  # the camera's projection starts at zero: a fresh camera-conditioned prior reads no camera yet
        projection = unet.get_submodule("class_embedding.linear_2")
        assert isinstance(projection, torch.nn.Linear)
        torch.nn.init.zeros_(projection.weight)
        torch.nn.init.zeros_(projection.bias)
    return unet


def build_scheduler(config: ModelConfig) -> DDPMScheduler:
    # Cosine schedule (Nichol & Dhariwal): better than linear betas at low resolution.
    return DDPMScheduler(
        num_train_timesteps=config.num_train_timesteps,
        beta_schedule="squaredcos_cap_v2",
        prediction_type="epsilon",
        clip_sample=False,
    )


def save_prior(folder: Path, unet, text_encoder, tokenizer, scheduler, config: ModelConfig, extra: dict) -> None:
    """Write a diffusers-format folder: model_index.json plus one subfolder per component."""
    folder.mkdir(parents=True, exist_ok=True)
    unet.save_pretrained(folder / "unet")
    text_encoder.save_pretrained(folder / "text_encoder")
    tokenizer.save_pretrained(folder / "tokenizer")
    scheduler.save_pretrained(folder / "scheduler")
    index = {
        "_class_name": "PropDreamerBuiltinPrior",
        "_diffusers_version": __import__("diffusers").__version__,
        "unet": ["diffusers", "UNet2DConditionModel"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "PreTrainedTokenizerFast"],
        "scheduler": ["diffusers", "DDPMScheduler"],
    }
    (folder / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    (folder / "propdreamer_prior.json").write_text(json.dumps({"model": asdict(config), "colours": list(COLOURS), "shapes": list(SHAPES), **extra}, indent=2) + "\n")
