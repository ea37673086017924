"""What one prompt costs on this device with a Stable-Diffusion-sized prior (issue 9).

    python benchmarks/gpu.py                              # SD 2.1-base's architecture, random weights, CUDA
    python benchmarks/gpu.py --parts e2e --e2e-presets standard   # one part at a time (each fits a 10-minute slot)
    python benchmarks/gpu.py --small --device cpu         # the same measurements at CPU size (the tests run this)

Timing does not depend on the weights, and no weights can be downloaded here, so the prior is built
from the architecture configs kept in core/priors/architectures/ with random weights (SSD's depth
estimator likewise: DPT-hybrid-MiDaS's architecture). Measured in one run, on one device:

- floor: one batched UNet call with both CFG branches, plus the VAE encoder forward and backward at
  the render resolution (the part of an SDS step no optimisation of ours can remove);
- one full stage-one iteration per method x representation at the standard preset's settings
  (render, guidance, regularisers, backward, optimiser steps, the method's own auxiliary step), its
  ratio to the floor and to SDS on the same representation;
- peak GPU memory per configuration;
- prompt -> GLB time of the draft and standard presets.

Prints a table and writes it into BENCHMARKS.md under the device's name (--no-write to skip).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "a wooden barrel"
from propdreamer.core.request import METHODS, REPRESENTATIONS, JobRequest  # noqa: E402  (the one registry and request)


@dataclass
class Settings:
    device: torch.device
    dtype: torch.dtype
    small: bool
    render: int  # render resolution of one iteration (px)
    batch: int  # views per iteration
    warmup: int
    repeats: int
    methods: tuple[str, ...] = METHODS
    representations: tuple[str, ...] = REPRESENTATIONS
    parts: tuple[str, ...] = ("floor", "iterations", "e2e")
    e2e_presets: tuple[str, ...] = ("draft", "standard")
    e2e_steps: int | None = None  # None: the presets' own step counts
    channels_last: bool = True
    compile: bool = False
    cache: Path = ROOT / ".cache" / "bench"


@dataclass
class Results:
    device_name: str
    settings: dict
    rows: list[dict] = field(default_factory=list)  # floor and iterations
    e2e: list[dict] = field(default_factory=list)


# -- setup -------------------------------------------------------------------------------------------
def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def build_prior(s: Settings):
    """A random-weight prior (and SSD depth estimator) of SD 2.1-base's architecture, cached on disk."""
    from propdreamer.core.priors.diffusers_prior import DiffusersPrior
    from propdreamer.core.priors.random_prior import SMALL, SMALL_DEPTH, save_random_depth, save_random_prior

    tag = "small" if s.small else "full"
    folder, depth = s.cache / f"sd21-base-random-{tag}", s.cache / f"dpt-hybrid-midas-random-{tag}"
    if not (folder / "model_index.json").is_file():
        print(f"building a random-weight SD 2.1-base ({tag}) in {folder} ...", flush=True)
        save_random_prior(folder, overrides=SMALL if s.small else None)
    if not (depth / "config.json").is_file():
        save_random_depth(depth, overrides=SMALL_DEPTH if s.small else None)
    prior = DiffusersPrior(folder, s.device, s.dtype, source=f"sd21-base architecture, random weights ({tag})", channels_last=s.channels_last, compile=s.compile)
    return prior, depth


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, s: Settings) -> tuple[float, float | None]:
    """Seconds per call (mean over `repeats` calls after `warmup`, one sync at the end: a host sync
    inside `fn` shows up as lost overlap) and peak GPU memory in GiB."""
    for _ in range(s.warmup):
        fn()
    sync(s.device)
    if s.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(s.device)
    start = time.perf_counter()
    for _ in range(s.repeats):
        fn()
    sync(s.device)
    seconds = (time.perf_counter() - start) / s.repeats
    peak = torch.cuda.max_memory_allocated(s.device) / 2**30 if s.device.type == "cuda" else None
    return seconds, peak


# -- the measurements ----------------------------------------------------------------------------------
def floor_step(prior, embeddings, s: Settings):
    """One SDS-shaped step with nothing but the networks: VAE encode (forward + backward) + one UNet call."""
    from propdreamer.core.priors.base import add_noise

    def step() -> None:
        x = torch.rand(s.batch, 3, s.render, s.render, device=s.device, requires_grad=True)
        z = prior.encode(x)  # [B, 4, 64, 64] from a 512 px VAE input
        t = torch.randint(20, 981, (s.batch,), device=s.device)
        eps = torch.randn_like(z)
        with torch.no_grad():
            eps_hat = prior.predict_noise(add_noise(prior.alphas_cumprod, z.detach(), eps, t), t, embeddings)  # [2, B, 4, 64, 64]
        (z * (eps_hat[0] - eps)).sum().backward()

    return step


def iteration_step(prior, depth: Path, method: str, representation: str, s: Settings):
    from propdreamer.core.resolve import resolve
    from propdreamer.core.stage1.presets import get_preset
    from propdreamer.core.stage1.trainer import DistillationTrainer

    config = resolve(JobRequest(PROMPT, method=method, representation=representation, preset="standard"), prior).config  # as a job from the panel
    if method == "ssd":
        config = replace(config, guidance_options={**config.guidance_options, "depth_estimator": str(depth)})
    preset = replace(get_preset("standard"), batch=s.batch, resolutions=((0.0, s.render),))
    trainer = DistillationTrainer(prior, PROMPT, config, preset=preset)
    return trainer.train_step


def run_e2e(prior, preset_name: str, s: Settings) -> dict:
    from propdreamer.core.pipeline import generate
    from propdreamer.core.resolve import resolve
    from propdreamer.core.stage2.presets import get_refine_preset

    refine = get_refine_preset(preset_name)
    if s.e2e_steps is not None:  # CPU smoke runs: the presets' shapes, a few steps each
        refine = replace(
            refine,
            dmtet_resolution=min(refine.dmtet_resolution, 24),
            colour_fit_steps=s.e2e_steps,
            geometry=replace(refine.geometry, steps=s.e2e_steps),
            texture=replace(refine.texture, steps=s.e2e_steps),
            export=replace(refine.export, texture_size=min(refine.export.texture_size, 128)),
        )
    if s.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(s.device)
    start = time.perf_counter()
    config = resolve(JobRequest(PROMPT, preset=preset_name, steps=s.e2e_steps), prior).config  # the panel's Generate with its defaults
    result = generate(prior, PROMPT, config, refine=refine)
    sync(s.device)
    total = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(s.device) / 2**30 if s.device.type == "cuda" else None
    return {"preset": preset_name, "total_s": total, "peak_gib": peak, "glb_bytes": len(result.glb), **{f"{k}_s": v for k, v in result.seconds.items()}}


def run(s: Settings) -> Results:
    torch.manual_seed(0)
    prior, depth = build_prior(s)
    results = Results(device_name(s.device), {k: str(v) for k, v in vars(s).items()})
    if "floor" in s.parts or "iterations" in s.parts:
        embeddings = prior.text_embeddings([PROMPT, ""])
        seconds, peak = timed(floor_step(prior, embeddings, s), s)
        results.rows.append({"config": "floor", "method": "-", "representation": "-", "s": seconds, "peak_gib": peak})
        print(f"floor: {seconds * 1000:.1f} ms", flush=True)
    if "iterations" in s.parts:
        for representation in s.representations:
            for method in s.methods:
                row = {"config": "iteration", "method": method, "representation": representation}
                try:
                    row["s"], row["peak_gib"] = timed(iteration_step(prior, depth, method, representation, s), s)
                    print(f"{method} on {representation}: {row['s'] * 1000:.1f} ms", flush=True)
                except Exception as err:  # report and go on: one broken configuration must not hide the rest
                    row["error"] = f"{type(err).__name__}: {err}"
                    traceback.print_exc()
                results.rows.append(row)
                if s.device.type == "cuda":
                    torch.cuda.empty_cache()
    if "e2e" in s.parts:
        for name in s.e2e_presets:
            try:
                results.e2e.append(run_e2e(prior, name, s))
                print(f"{name} prompt -> GLB: {results.e2e[-1]['total_s']:.1f} s", flush=True)
            except Exception as err:
                results.e2e.append({"preset": name, "error": f"{type(err).__name__}: {err}"})
                traceback.print_exc()
    return results


# -- reporting ---------------------------------------------------------------------------------------
def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1000:.1f}"


def _gib(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def table(r: Results) -> str:
    floor = next((row["s"] for row in r.rows if row["config"] == "floor"), None)
    sds = {row["representation"]: row.get("s") for row in r.rows if row["method"] == "sds"}
    lines = ["| configuration | ms / iteration | x floor | x SDS (same representation) | peak GiB |", "|---|---|---|---|---|"]
    for row in r.rows:
        name = "floor (UNet x CFG branches + VAE encoder fwd/bwd)" if row["config"] == "floor" else f"{row['method'].upper()} on {row['representation']}"
        if "error" in row:
            lines.append(f"| {name} | failed: {row['error'][:120]} | | | |")
            continue
        ratio_floor = f"{row['s'] / floor:.2f}" if floor and row["config"] != "floor" else "-"
        base = sds.get(row["representation"])
        ratio_sds = f"{row['s'] / base:.2f}" if base and row["config"] != "floor" else "-"
        lines.append(f"| {name} | {_ms(row['s'])} | {ratio_floor} | {ratio_sds} | {_gib(row['peak_gib'])} |")
    if r.e2e:
        lines += ["", "| preset, prompt -> GLB | total s | coarse s | geometry s | texture s | export s | peak GiB |", "|---|---|---|---|---|---|---|"]
        for e in r.e2e:
            if "error" in e:
                lines.append(f"| {e['preset']} | failed: {e['error'][:120]} | | | | | |")
                continue
            parts = " | ".join(f"{e.get(k + '_s', float('nan')):.1f}" for k in ("coarse", "geometry", "texture", "export"))
            lines.append(f"| {e['preset']} | {e['total_s']:.1f} | {parts} | {_gib(e['peak_gib'])} |")
    return "\n".join(lines)


def targets(r: Results) -> list[str]:
    """Issue 9's targets (stated for one H100), checked against these figures."""
    out = [] if r.device_name and "CPU" not in r.device_name else ["(the targets are stated for one H100; these figures are not from a GPU)"]
    floor = next((row.get("s") for row in r.rows if row["config"] == "floor"), None)
    by = {(row["method"], row["representation"]): row.get("s") for row in r.rows if row["config"] == "iteration"}
    sds = by.get(("sds", "nerf"))
    if sds:
        out.append(f"SDS on NeRF {sds:.3f} s (<= 0.15 s: {'met' if sds <= 0.15 else 'NOT met'}), {sds / floor:.2f}x floor (<= 2x: {'met' if sds <= 2 * floor else 'NOT met'})")
        for method, limit in (("vsd", 1.3), ("ssd", 1.1), ("vdm", 1.1)):
            for rep in ("nerf", "gaussians"):
                base, value = by.get(("sds", rep)), by.get((method, rep))
                if base and value:
                    out.append(f"{method.upper()} on {rep} {value / base:.2f}x SDS (<= {limit}x: {'met' if value <= limit * base else 'NOT met'})")
    for e in r.e2e:
        limit = {"draft": 180, "standard": 600}.get(e["preset"])
        if "total_s" in e and limit:
            out.append(f"{e['preset']} prompt -> GLB {e['total_s']:.0f} s (<= {limit} s: {'met' if e['total_s'] <= limit else 'NOT met'})")
        if e["preset"] == "standard" and e.get("peak_gib") is not None:
            out.append(f"standard peak memory {e['peak_gib']:.1f} GiB (<= 20 GB: {'met' if e['peak_gib'] * 2**30 <= 20e9 else 'NOT met'})")
    return out


def write_benchmarks_md(r: Results, command: str, path: Path) -> None:
    """Replace (or add) this device's section of BENCHMARKS.md."""
    begin, end = f"<!-- gpu.py: {r.device_name} -->", f"<!-- /gpu.py: {r.device_name} -->"
    body = "\n".join(
        [
            begin,
            f"### benchmarks/gpu.py on {r.device_name}",
            "",
            f"`{command}`, {time.strftime('%Y-%m-%d')}, torch {torch.__version__}, prior {r.settings['dtype']}, "
            f"render {r.settings['render']} px x batch {r.settings['batch']}, channels-last {r.settings['channels_last']}, compile {r.settings['compile']}. "
            "SD 2.1-base architecture with random weights.",
            "",
            table(r),
            "",
            *[f"- {line}" for line in targets(r)],
            end,
        ]
    )
    text = path.read_text() if path.is_file() else "# Benchmarks\n"
    if begin in text:
        text = re.sub(re.escape(begin) + r".*?" + re.escape(end), lambda _: body, text, flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n" + body + "\n"
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    ap.add_argument("--dtype", default="auto", choices=["auto", "float16", "bfloat16", "float32"], help="the frozen networks' dtype (auto: float16 on CUDA)")
    ap.add_argument("--small", action="store_true", help="a CPU-sized network of the same architecture, small renders, few steps")
    ap.add_argument("--render", type=int, default=None, help="render resolution of an iteration (default 256; 32 with --small)")
    ap.add_argument("--batch", type=int, default=1, help="views per iteration (threestudio's SDS figure is batch 1)")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--representations", default=",".join(REPRESENTATIONS))
    ap.add_argument("--parts", default="floor,iterations,e2e", help="any of floor, iterations, e2e")
    ap.add_argument("--e2e-presets", default="draft,standard")
    ap.add_argument("--e2e-steps", type=int, default=None, help="override every stage's step count (smoke runs)")
    ap.add_argument("--no-channels-last", action="store_true")
    ap.add_argument("--compile", action="store_true", help="torch.compile the UNet")
    ap.add_argument("--no-write", action="store_true", help="do not write BENCHMARKS.md")
    ap.add_argument("--benchmarks-md", type=Path, default=ROOT / "BENCHMARKS.md")
    ap.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    args = ap.parse_args(argv)

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else ("cpu" if args.device == "auto" else args.device))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda, but PyTorch sees no CUDA GPU; run on a GPU machine or pass --device cpu --small")
    if device.type == "cpu" and not args.small:
        print("note: the full-size prior on a CPU takes seconds per UNet call; --small measures the same things at CPU size", flush=True)
    dtype_name = args.dtype if args.dtype != "auto" else ("float16" if device.type == "cuda" else "float32")
    s = Settings(
        device=device,
        dtype=getattr(torch, dtype_name),
        small=args.small,
        render=args.render or (32 if args.small else 256),
        batch=args.batch,
        warmup=1 if args.small else 3,
        repeats=args.repeats or (2 if args.small else 10),
        methods=tuple(args.methods.split(",")),
        representations=tuple(args.representations.split(",")),
        parts=tuple(args.parts.split(",")),
        e2e_presets=tuple(args.e2e_presets.split(",")),
        e2e_steps=args.e2e_steps if args.e2e_steps is not None else (3 if args.small else None),
        channels_last=device.type == "cuda" and not args.no_channels_last,
        compile=args.compile,
    )
    r = run(s)
    print(f"\n{r.device_name}\n{table(r)}")
    for line in targets(r):
        print("- " + line)
    if args.json:
        args.json.write_text(json.dumps({"device": r.device_name, "settings": r.settings, "rows": r.rows, "e2e": r.e2e}, indent=2))
    if not args.no_write:
        command = "python benchmarks/gpu.py " + " ".join(argv if argv is not None else sys.argv[1:])
        write_benchmarks_md(r, command.strip(), args.benchmarks_md)
        print(f"\nwritten to {args.benchmarks_md}")
    failed = [row for row in r.rows if "error" in row] + [e for e in r.e2e if "error" in e]
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    sys.exit(main())
