"""Train the builtin prior on its own renders (reproducible: everything follows from the seed).

    propdreamer prior train --out core/builtin_prior/weights

On 2 CPU cores the default run takes about 100 minutes (102.5 measured). The saved weights are an
exponential moving average of the trained ones (`--ema`, 0.999); the first shipped prior predates that
(`--ema 0` reproduces its run), and propdreamer_prior.json records every run a folder came from.
`--init FOLDER` continues from a saved prior instead of random weights (a longer-trained prior in
pieces: each run warms up and decays its own learning rate; pass a lower `--lr` to fine-tune, and
another `--seed` for a new batch order: the rendered images follow the dataset's own seed).
"""

from __future__ import annotations

import json
import math
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..device import to_device, usable_device
from ..priors.camera_conditioning import camera_features
from .dataset import DatasetConfig, render_dataset
from .model import ModelConfig, build_scheduler, build_text_encoder, build_tokenizer, build_unet, save_prior


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 3000
    batch_size: int = 32
    lr: float = 3e-4
    weight_decay: float = 1e-2
    warmup_steps: int = 100
    final_lr_fraction: float = 0.1  # cosine decay to this fraction of `lr`
    caption_dropout: float = 0.1  # empty caption, for classifier-free guidance
    view_dropout: float = 0.1  # caption without its view suffix
    camera_dropout: float = 0.1  # camera features zeroed ("unknown"), when the model takes cameras
    # The camera embedding's learning rate, as a multiple of `lr`. Its signal is weak (a noisy render
    # shows its own view up to mid t), so at 1x it barely leaves its zero start: 2500 steps at 2e-4
    # moved the prior's noise predictions between elevations -10 and 60 by 0.14% (BENCHMARKS.md).
    camera_lr_scale: float = 10.0
    # "eps": the plain noise-prediction MSE. "truncated_snr": the same MSE weighted by max(1, 1/SNR_t),
    # i.e. the error of x0-hat weighted by max(SNR_t, 1) (Salimans & Ho's truncated-SNR weighting).
    # Plain eps-MSE barely sees x0-hat at high t (eps-MSE = SNR_t * x0-MSE, SNR_t ~ 0.02 at t = 0.9T),
    # yet high-t x0-hat is what SDS pulls a render toward, and the only place where a view or camera
    # says something a noisy image does not (BENCHMARKS.md).
    loss_weighting: str = "eps"
    seed: int = 0
    log_every: int = 100
    checkpoint_every: int = 1000
    # Saved weights are an exponential moving average of the trained ones (as DDPM and Stable
    # Diffusion ship): theta_ema <- d theta_ema + (1 - d) theta, with d warmed up as min(d, (1+k)/(10+k)).
    # 0 saves the raw weights.
    ema_decay: float = 0.999
    init: str | None = None  # a saved prior folder to continue from; None: random weights
    # Where the model trains ("cpu", "cuda", "cuda:1"). Random draws stay on one seeded CPU generator
    # (a run reproduces its draws on any device); the renders move to the device once.
    device: str = "cpu"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DatasetConfig = field(default_factory=DatasetConfig)

    def __post_init__(self) -> None:
        from .evaluate import HELD_OUT_SEEDS

        if self.data.seed in HELD_OUT_SEEDS:
            raise ValueError(f"data seed {self.data.seed} renders the held-out evaluation's cameras {HELD_OUT_SEEDS}; pick another")
        if self.loss_weighting not in ("eps", "truncated_snr"):
            raise ValueError(f"loss_weighting must be 'eps' or 'truncated_snr', got '{self.loss_weighting}'")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must lie in [0, 1), got {self.ema_decay}")
        usable_device(self.device, "TrainConfig.device (--device)")
        if self.model.resolution != self.data.resolution:
            raise ValueError(f"the model's resolution ({self.model.resolution} px) must be the renders' ({self.data.resolution} px)")


def lr_factor(step: int, config: TrainConfig) -> float:
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.final_lr_fraction + (1 - config.final_lr_fraction) * 0.5 * (1 + math.cos(math.pi * progress))


def loss_weights(abar_t: Tensor, weighting: str) -> Tensor:
    """[B] weights of each image's eps-MSE: 1 ("eps"), or max(1, 1/SNR_t) with SNR_t = abar_t / (1 - abar_t),
    capped at 100 (t ~ 0.95T): the cosine schedule's last steps have SNR ~ 1e-9, where x0-hat is
    (z_t - sigma_t eps-hat) / alpha_t, noise over almost nothing, and a weight of 1e9 would be the whole batch."""
    if weighting == "eps":
        return torch.ones_like(abar_t)
    snr = abar_t / (1 - abar_t)
    return snr.reciprocal().clamp(min=1.0, max=100.0)


def dropped_captions(captions: list[str], config: TrainConfig, generator: torch.Generator) -> list[str]:
    out = []
    for text in captions:
        u = float(torch.rand(1, generator=generator))
        if u < config.caption_dropout:
            out.append("")
        elif u < config.caption_dropout + config.view_dropout:
            out.append(text.split(",")[0])
        else:
            out.append(text)
    return out


class EMA:
    """Moving averages of `params`, swapped in while saving."""

    def __init__(self, params: list[torch.Tensor], decay: float):
        self.params, self.decay, self.updates = params, decay, 0
        self.shadow = [p.detach().clone() for p in params]

    @torch.no_grad()
    def update(self) -> None:
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(self.shadow, [p.detach() for p in self.params], 1 - d)
        self.updates += 1

    @torch.no_grad()
    def swap(self) -> None:
        """Exchange the trained weights and the averages (call twice to restore)."""
        for p, s in zip(self.params, self.shadow):
            tmp = p.detach().clone()
            p.copy_(s)
            s.copy_(tmp)

    @contextmanager
    def applied(self):
        """The averages in place of the trained weights for the `with` block (to save them)."""
        self.swap()
        try:
            yield
        finally:
            self.swap()


def continue_from(folder: Path, unet, text_encoder, model: ModelConfig) -> list[dict]:
    """Load a saved prior's weights into `unet` and `text_encoder`; returns its training runs, oldest first."""
    meta_path = folder / "propdreamer_prior.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{folder} is not a builtin-prior folder (no propdreamer_prior.json); pass the folder `prior train --out` wrote")
    meta = json.loads(meta_path.read_text())
    saved, wanted = {"camera_features": 0, **meta["model"]}, json.loads(json.dumps(asdict(model)))  # JSON keeps tuples as lists
    saved_cameras, wanted_cameras = saved.pop("camera_features"), wanted.pop("camera_features")
    saved_attention, wanted_attention = saved.pop("attention"), wanted.pop("attention")
    # A prior continues at another resolution: its weights do not depend on it (the UNet's convolutions
    # and attention carry no positions), so a 32 px prior can be fine-tuned on 64 px renders.
    saved.pop("resolution"), wanted.pop("resolution")
    if saved != wanted or len(saved_attention) != len(wanted_attention):
        raise ValueError(f"{folder} holds a prior of another architecture ({meta['model']}); continue it with the same model config")
    if saved_cameras and saved_cameras != wanted_cameras:
        raise ValueError(f"{folder} holds a camera-conditioned prior (another architecture); continue it with camera features (`prior train --cameras`)")
    if any(s and not w for s, w in zip(saved_attention, wanted_attention)):
        raise ValueError(
            f"{folder} has cross-attention at levels {saved_attention}; continuing it can add levels, not drop them (asked for {wanted_attention}; "
            f"pass `--attention-levels {','.join(str(i) for i, a in enumerate(saved_attention) if a)}` or more)"
        )
    adds_cameras = not saved_cameras and wanted_cameras > 0  # a prior without cameras can learn them
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel

    # New parts start so that the grown model predicts exactly what the saved one did: a prior without
    # cameras loads into one with them (the camera embedding starts at zero), and cross-attention added
    # at a level starts as the identity (zero_attention_outputs).
    grown_attention = grown_attention_prefixes(saved_attention, wanted_attention)
    new_parts = (("class_embedding.",) if adds_cameras else ()) + grown_attention
    missing, unexpected = unet.load_state_dict(UNet2DConditionModel.from_pretrained(folder / "unet").state_dict(), strict=not new_parts)
    if unexpected or any(not k.startswith(new_parts) for k in missing):
        raise ValueError(f"{folder}: weights do not fit the model (missing {missing[:3]}, unexpected {unexpected[:3]})")
    zero_attention_outputs(unet, grown_attention)
    text_encoder.load_state_dict(grown_text_state(folder, CLIPTextModel.from_pretrained(folder / "text_encoder").state_dict(), text_encoder))
    runs = meta.get("earlier_runs", [])
    return runs + [meta["train"]] if "train" in meta else runs


def grown_attention_prefixes(saved: list[bool], wanted: list[bool]) -> tuple[str, ...]:
    """State-dict prefixes of the cross-attention a continued prior gains: level i (0 = full resolution)
    is down block i and up block n - 1 - i."""
    n = len(wanted)
    grown = [i for i, (s, w) in enumerate(zip(saved, wanted)) if w and not s]
    return tuple(f"down_blocks.{i}.attentions." for i in grown) + tuple(f"up_blocks.{n - 1 - i}.attentions." for i in grown)


@torch.no_grad()
def zero_attention_outputs(unet, prefixes: tuple[str, ...]) -> None:
    """Zero the output projection of each new transformer block: a Transformer2DModel adds its output to
    its input, so it starts as the identity and training grows it from there."""
    for name, module in unet.named_modules():
        if name.endswith(".proj_out") and (name + ".").startswith(prefixes):
            module.weight.zero_()
            if module.bias is not None:
                module.bias.zero_()


def grown_text_state(folder: Path, saved: dict[str, Tensor], text_encoder) -> dict[str, Tensor]:
    """A saved text encoder's weights for `text_encoder`, whose vocabulary may have grown since (new words
    are appended, model.vocabulary_words): the old words keep their rows, the new ones their fresh ones."""
    key = "embeddings.token_embedding.weight"
    old, new = saved[key], text_encoder.state_dict()[key]  # [V_old, D], [V, D]
    if old.shape == new.shape:
        return saved
    saved_vocab = json.loads((folder / "tokenizer" / "tokenizer.json").read_text())["model"]["vocab"]
    vocab = build_tokenizer(text_encoder.config.max_position_embeddings).get_vocab()
    if old.shape[0] > new.shape[0] or any(vocab.get(word) != i for word, i in saved_vocab.items()):
        raise ValueError(f"{folder}: its vocabulary ({len(saved_vocab)} words) is not a beginning of this version's ({len(vocab)}); retrain it from scratch")
    return {**saved, key: torch.cat([old, new[old.shape[0] :]])}


def train(config: TrainConfig, out: Path, log=lambda msg: print(msg, flush=True)) -> dict:
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    t0 = time.time()
    data = render_dataset(config.data)
    captions = data.captions()
    log(f"rendered {len(data)} training images at {config.data.resolution} px in {time.time() - t0:.1f} s")

    tokenizer = build_tokenizer(config.model.max_tokens)
    text_encoder = build_text_encoder(config.model, tokenizer)
    unet = build_unet(config.model)
    history: list[dict] = []
    if config.init is not None:
        history = continue_from(Path(config.init), unet, text_encoder, config.model)
        log(f"continuing from {config.init} ({sum(h.get('steps_done', 0) for h in history)} steps so far)")
    device = torch.device(config.device)  # checked by TrainConfig
    unet.to(device)
    text_encoder.to(device)
    images = to_device(data.images, device)  # [N, 3, H, W] in [0, 1]
    scheduler = build_scheduler(config.model)
    abar = scheduler.alphas_cumprod.to(device)  # [T]
    params = list(unet.parameters()) + list(text_encoder.parameters())
    n_params = sum(p.numel() for p in params)
    log(f"model: {n_params / 1e6:.2f} M parameters")
    camera = [p for n, p in unet.named_parameters() if n.startswith("class_embedding.")]
    rest = [p for p in params if all(p is not c for c in camera)]
    groups = [{"params": rest}] + ([{"params": camera, "lr": config.lr * config.camera_lr_scale}] if camera else [])
    optimiser = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    ema = EMA(params, config.ema_decay) if config.ema_decay > 0 else None
    lr_schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda s: lr_factor(s, config))

    t_train = time.time()
    running = 0.0
    for step in range(config.steps):
        idx = torch.randint(len(data), (config.batch_size,), generator=generator)
        x0 = images[to_device(idx, device)] * 2 - 1  # z = 2x - 1, [B, 3, H, W]
        batch_captions = dropped_captions([captions[i] for i in idx.tolist()], config, generator)
        ids = tokenizer(batch_captions, padding="max_length", max_length=config.model.max_tokens, truncation=True, return_tensors="pt").input_ids
        ids = to_device(ids, device)
        t = to_device(torch.randint(config.model.num_train_timesteps, (config.batch_size,), generator=generator), device)
        eps = to_device(torch.randn(x0.shape, generator=generator), device)
        a = abar[t].sqrt()[:, None, None, None]
        s = (1 - abar[t]).sqrt()[:, None, None, None]
        z_t = a * x0 + s * eps  # z_t = alpha_t z + sigma_t eps
        extra = {}
        if config.model.camera_features:
            keep = (torch.rand(config.batch_size, 1, generator=generator) >= config.camera_dropout).float()
            extra["class_labels"] = to_device(camera_features(data.cameras[idx], config.batch_size) * keep, device)  # [B, F], zeros: unknown
        eps_pred = unet(z_t, t, encoder_hidden_states=text_encoder(ids)[0], **extra).sample
        loss = loss_weights(abar[t], config.loss_weighting) @ (eps_pred - eps).pow(2).mean(dim=(1, 2, 3)) / config.batch_size
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimiser.step()
        lr_schedule.step()
        if ema is not None:
            ema.update()
        running += loss.item()
        if (step + 1) % config.log_every == 0:
            rate = (time.time() - t_train) / (step + 1)
            log(f"step {step + 1}/{config.steps}  loss {running / config.log_every:.4f}  {rate:.2f} s/step  eta {rate * (config.steps - step - 1) / 60:.1f} min")
            running = 0.0
        if (step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps:
            minutes = (time.time() - t0) / 60
            run = {**asdict(config), "steps_done": step + 1, "minutes": round(minutes, 1)}
            with ema.applied() if ema is not None else nullcontext():  # save the averages, train on from the raw weights
                metadata: dict[str, Any] = {"view_rule": asdict(config.data.view_rule), "train": run, **({"earlier_runs": history} if history else {})}
                save_prior(out, unet, text_encoder, tokenizer, scheduler, config.model, metadata)
    summary = {"minutes": (time.time() - t0) / 60, "parameters": n_params, "steps": config.steps}
    log(json.dumps(summary))
    return summary
