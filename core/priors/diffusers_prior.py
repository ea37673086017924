"""A frozen diffusers text-to-image model as a `DiffusionPrior`.

One class serves both kinds of prior PropDreamer uses, through one loading path:
- latent priors (Stable Diffusion 1.x / 2.x): a `vae/` folder is present; `z = vae.encode(2x - 1) * scaling_factor`;
- pixel priors (the builtin prior): no VAE; `z = 2x - 1` resized to the UNet's resolution.
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..cameras import Cameras, OrbitRange, ViewPromptRule
from ..device import usable_device
from .base import v_to_eps
from .camera_conditioning import camera_features
from .loading import BUILTIN, resolve_prior_folder

if TYPE_CHECKING:
    from ..stage1.defaults import PriorDefaults

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PriorConfig:
    source: str = BUILTIN  # "builtin", a local diffusers folder, or a Hub id such as DEFAULT_SD_ID
    device: str = "auto"  # "auto" (CUDA when available), "cuda", "cuda:1", "cpu"
    dtype: str = "auto"  # "auto" (float16 on CUDA, float32 on CPU), "float16", "bfloat16", "float32"
    revision: str | None = None
    offline: bool | None = None  # None: follow HF_HUB_OFFLINE
    channels_last: bool | None = None  # NHWC convolutions for the UNet and VAE; None: on CUDA (benchmarks/gpu.py measures it)
    compile: bool = False  # torch.compile the UNet (minutes of compiling at start; benchmarks/gpu.py measures the gain)

    def resolved_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return usable_device(self.device, "PriorConfig.device (or 'auto')")

    def resolved_dtype(self, device: torch.device) -> torch.dtype:
        if self.dtype == "auto":
            return torch.float16 if device.type == "cuda" else torch.float32
        dtypes = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
        if self.dtype not in dtypes:
            raise ValueError(f"PriorConfig.dtype must be one of {['auto', *dtypes]}, got '{self.dtype}'.")
        return dtypes[self.dtype]


def _component_class(index: dict, name: str):
    library, class_name = index[name]
    return getattr(importlib.import_module(library), class_name)


class DiffusersPrior:
    """Frozen UNet + text encoder (+ VAE); see `base.DiffusionPrior` for the contract."""

    def __init__(self, folder: Path, device: torch.device, dtype: torch.dtype, source: str = "", channels_last: bool = False, compile: bool = False) -> None:
        from diffusers import DDPMScheduler

        self.folder, self.source, self.device, self.dtype = folder, source or str(folder), device, dtype
        index = json.loads((folder / "model_index.json").read_text())

        def load(name: str):
            library = index[name][0]
            kwargs = {"torch_dtype": dtype} if library == "diffusers" and name != "scheduler" else {}
            return _component_class(index, name).from_pretrained(folder, subfolder=name, **kwargs)

        def frozen(module):
            module = module.to(device)
            return (module if module.dtype == dtype else module.to(dtype)).eval().requires_grad_(False)

        self.tokenizer = load("tokenizer")
        self.text_encoder = frozen(load("text_encoder"))
        self.unet = frozen(load("unet"))
        has_vae = bool(index.get("vae") and index["vae"][0]) and (folder / "vae").is_dir()
        self.vae: Any = frozen(load("vae")) if has_vae else None  # diffusers' AutoencoderKL; None for pixel priors
        if device.type == "cuda":
            from diffusers.models.attention_processor import AttnProcessor2_0

            self.unet.set_attn_processor(AttnProcessor2_0())  # PyTorch SDPA (flash / memory-efficient kernels)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if channels_last:
            self.unet.to(memory_format=torch.channels_last)
            if self.vae is not None:
                self.vae.to(memory_format=torch.channels_last)
        self._unet_forward = torch.compile(self.unet) if compile else self.unet
        # Any SD scheduler config (PNDM, DDIM, ...) defines the same training-time DDPM schedule.
        scheduler = DDPMScheduler.from_pretrained(folder, subfolder="scheduler")
        self.scheduler_config = dict(scheduler.config)
        self.num_train_timesteps = int(scheduler.config.num_train_timesteps)
        self.alphas_cumprod = scheduler.alphas_cumprod.to(device=device, dtype=torch.float32)  # [T]
        self.prediction_type = str(scheduler.config.prediction_type)
        if self.prediction_type not in ("epsilon", "v_prediction"):
            raise ValueError(f"Prior {self.source}: prediction type '{self.prediction_type}' is not supported (epsilon or v_prediction).")
        self.latent = self.vae is not None
        self.vae_scale = 2 ** (len(self.vae.config.block_out_channels) - 1) if self.vae is not None else 1
        self.image_size = int(self.unet.config.sample_size) * self.vae_scale
        self._embedding_cache: dict[str, Tensor] = {}
        self._linear_decoder: Callable[[Tensor], Tensor] | None = None  # fitted on first use
        # A camera-conditioned prior (camera_conditioning.py) reads camera features through the UNet's class embedding.
        self.camera_conditioned = self.unet.config.class_embed_type == "projection"
        # A builtin-format prior records the view words its captions used; stage one prompts with the same.
        meta = builtin_metadata(folder)
        self.view_rule = saved_view_rule(meta)
        # ... and the cameras its last training run rendered from: stage one's default orbit (stage1.defaults.defaults_for).
        self.trained_orbit = saved_orbit(meta)
        log.info("loaded prior %s from %s on %s (%s, %s space, %d px)", self.source, folder, device, dtype, "latent" if self.latent else "pixel", self.image_size)

    @property
    def defaults(self) -> PriorDefaults:
        """See `base.DiffusionPrior.defaults`: a pixel or latent prior's, with the orbit it was trained on."""
        from ..stage1.defaults import defaults_for  # stage one's types import the prior's interface

        return defaults_for(self)

    # -- image space <-> model space -------------------------------------------------------------
    def encode(self, x: Tensor) -> Tensor:
        x = x.to(self.device)
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(x, (self.image_size, self.image_size), mode="bilinear", align_corners=False, antialias=x.shape[-1] > self.image_size)
        if not self.latent:
            return x * 2 - 1  # z = 2x - 1
        posterior = self.vae.encode((x * 2 - 1).to(self.dtype).contiguous(memory_format=self.memory_format)).latent_dist
        return (posterior.sample() * self.vae.config.scaling_factor).float()  # [B, 4, H/8, W/8]

    def decode(self, z: Tensor) -> Tensor:
        if not self.latent:
            return ((z + 1) / 2).clamp(0, 1)
        x = self.vae.decode((z / self.vae.config.scaling_factor).to(self.dtype)).sample.float()
        return ((x + 1) / 2).clamp(0, 1)

    def decode_linear(self, z: Tensor) -> Tensor:
        """A nearly free approximate decode (see linear_decoder.py); exact for pixel priors."""
        if not self.latent:
            return self.decode(z)
        if self._linear_decoder is None:
            from .linear_decoder import fit_linear_decoder

            self._linear_decoder = fit_linear_decoder(self.encode, self.vae_scale, self.image_size)
        return self._linear_decoder(z)

    # -- text ------------------------------------------------------------------------------------
    @torch.no_grad()
    def text_embeddings(self, prompts: list[str]) -> Tensor:
        missing = [p for p in dict.fromkeys(prompts) if p not in self._embedding_cache]
        if missing:
            ids = self.tokenizer(missing, padding="max_length", max_length=self.tokenizer.model_max_length, truncation=True, return_tensors="pt").input_ids
            states = self.text_encoder(ids.to(self.device))[0]  # [K, L, D]
            self._embedding_cache.update(zip(missing, states))
        return torch.stack([self._embedding_cache[p] for p in prompts])  # [K, L, D]

    def unknown_words(self, prompt: str) -> list[str]:
        """Words the tokenizer cannot represent (only word-level tokenizers such as the builtin prior's have any)."""
        unk = getattr(self.tokenizer, "unk_token_id", None)
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        if unk is None or backend is None:
            return []
        encoding = backend.encode(prompt, add_special_tokens=False)
        return [prompt[a:b] for i, (a, b) in zip(encoding.ids, encoding.offsets) if i == unk]

    # -- the UNet --------------------------------------------------------------------------------
    def predict_noise(self, z_t: Tensor, t: Tensor, embeddings: Tensor, cameras: Cameras | None = None) -> Tensor:
        """eps [K, B, C, h, w]: all K conditions (e.g. prompt, empty, negative) in one batched UNet call.

        `embeddings` is [K, L, D] (one prompt per condition) or [K, B, L, D] (a prompt per image, e.g.
        view-dependent prompts). `cameras` (B of them) condition a camera-conditioned prior, the same
        for every condition; other priors ignore them, and None is "camera unknown".
        """
        K, B = embeddings.shape[0], z_t.shape[0]
        t = t.to(self.device).expand(B) if t.ndim == 0 else t.to(self.device)
        z_in = z_t.repeat(K, 1, 1, 1).to(self.dtype).contiguous(memory_format=self.memory_format)  # [K*B, C, h, w], condition-major
        t_in = t.repeat(K)
        if embeddings.ndim == 3:
            embeddings = embeddings[:, None].expand(K, B, *embeddings.shape[1:])
        states = embeddings.reshape(K * B, *embeddings.shape[2:]).to(self.dtype)  # [K*B, L, D]
        extra = {}
        if self.camera_conditioned:
            extra["class_labels"] = camera_features(cameras, B).to(self.device, self.dtype).repeat(K, 1)  # [K*B, F]
        out = self._unet_forward(z_in, t_in, encoder_hidden_states=states, **extra).sample.float()
        if self.prediction_type == "v_prediction":
            out = v_to_eps(self.alphas_cumprod, out, z_t.float().repeat(K, 1, 1, 1), t_in)
        return out.reshape(K, B, *z_t.shape[1:])


def builtin_metadata(folder: Path) -> dict:
    """A builtin-format prior's propdreamer_prior.json ({} for other priors)."""
    meta = folder / "propdreamer_prior.json"
    return json.loads(meta.read_text()) if meta.is_file() else {}


def saved_view_rule(meta: dict) -> ViewPromptRule | None:
    """The view-prompt rule a builtin-format prior was trained with (from `builtin_metadata`), or None."""
    rule = meta.get("view_rule")
    if rule is None:
        return None
    return ViewPromptRule(**{**rule, "elevation_bands": tuple((float(b), str(w)) for b, w in rule.get("elevation_bands", ()))})


def saved_orbit(meta: dict) -> OrbitRange | None:
    """The camera ranges of a builtin-format prior's last training run (from `builtin_metadata`), or None."""
    orbit = meta.get("train", {}).get("data", {}).get("orbit")
    return OrbitRange(**{k: tuple(v) for k, v in orbit.items()}) if orbit else None


def load_prior(config: PriorConfig = PriorConfig()) -> DiffusersPrior:
    """Load a prior: the builtin one, a local diffusers folder, or a Hub id (cache and offline mode respected)."""
    folder = resolve_prior_folder(config.source, config.revision, config.offline)
    device = config.resolved_device()
    channels_last = device.type == "cuda" if config.channels_last is None else config.channels_last
    return DiffusersPrior(folder, device, config.resolved_dtype(device), source=config.source, channels_last=channels_last, compile=config.compile)
