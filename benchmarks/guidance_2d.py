"""The SteinDreamer Fig. 2 experiment on PropDreamer's builtin prior: 2D distillation with every method.

    python benchmarks/guidance_2d.py [--steps 300] [--out out/bench_guidance]

For each prompt and method, from the same starting image, it records along the run:
- the update's variance: g drawn `--draws` times (fresh t and eps) at fixed parameters, variance over the
  draws, averaged over elements;
- the diffusion-classifier confidence for the prompt: a softmax over the captions that share the prompt's
  colour or shape of -(D / 2) * mean denoising error (D = elements of z), i.e. the posterior under a
  uniform-t ELBO;
- the seconds one iteration takes (guidance, its auxiliary step, backward, optimiser), and its ratio to
  SDS measured in the same run.
It writes guidance_2d.csv and guidance_2d.png into --out and prints a summary table.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from pathlib import Path

import torch

from propdreamer.core.builtin_prior.classifier import ClassifierConfig, denoising_errors
from propdreamer.core.builtin_prior.vocabulary import COLOURS, SHAPES, caption, parse_caption
from propdreamer.core.distill2d import Distill2DConfig
from propdreamer.core.guidance import METHODS, build_guidance
from propdreamer.core.priors import PriorConfig, load_prior

DEFAULT_PROMPTS = ["a red cube", "a blue torus", "a green cylinder", "a yellow cone"]
VIEW = ", front view"


def confidence(prior, image, prompt: str, config: ClassifierConfig) -> float:
    colour, shape = parse_caption(prompt)
    rivals = [(c, shape) for c in COLOURS] + [(colour, s) for s in SHAPES if s != shape]
    errors = denoising_errors(prior, image[None], [caption(c, s, VIEW) for c, s in rivals], config)[0]  # [K]
    D = image.numel() if not prior.latent else prior.encode(image[None]).numel()
    return torch.softmax(-(D / 2) * errors, dim=0)[0].item()  # rivals[0] is the prompt itself


def update_variance(guidance, x, prompt: str, step: int, steps: int, draws: int, seed: int) -> float:
    gen = torch.Generator().manual_seed(10_000 + seed * 1000 + step)
    gs = []
    for _ in range(draws):
        ctx = guidance.context(x.detach(), [prompt] * x.shape[0], step, steps, generator=gen)
        g, _ = guidance.update(ctx)
        gs.append(g.detach())
    return torch.stack(gs).var(dim=0).mean().item()


def run_one(prior, method: str, prompt: str, args, writer) -> dict:
    torch.manual_seed(args.seed)
    config = Distill2DConfig(method=method, steps=args.steps, seed=args.seed)
    guidance = build_guidance(method, prior, **config.guidance_overrides(prior.defaults))
    gen = torch.Generator().manual_seed(args.seed)
    theta = (config.init_logit + 0.1 * torch.randn((1, 3, prior.image_size, prior.image_size), generator=gen)).requires_grad_(True)
    optimiser = torch.optim.Adam([theta], lr=config.lr)
    clf = ClassifierConfig(timesteps=args.classifier_timesteps)
    full_prompt = prompt + VIEW
    step_seconds, reached = [], None
    for step in range(args.steps + 1):
        x = torch.sigmoid(theta)
        if step % args.every == 0 or step == args.steps:
            var = update_variance(guidance, x, full_prompt, step, args.steps, args.draws, args.seed)
            conf = confidence(prior, x.detach()[0], prompt, clf)
            if reached is None and conf >= args.target:
                reached = step
            writer.writerow({"method": method, "prompt": prompt, "step": step, "variance": f"{var:.6g}", "confidence": f"{conf:.4f}"})
        if step == args.steps:
            break
        t0 = time.perf_counter()
        out = guidance(x, [full_prompt], step, args.steps, generator=gen)
        optimiser.zero_grad(set_to_none=True)
        out.loss.backward()
        optimiser.step()
        step_seconds.append(time.perf_counter() - t0)
    return {"seconds_per_step": statistics.median(step_seconds), "steps_to_target": reached}


def plot(rows: list[dict], methods: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_var, ax_conf) = plt.subplots(1, 2, figsize=(11, 4))
    for method in methods:
        mine = [r for r in rows if r["method"] == method]
        steps = sorted({int(r["step"]) for r in mine})
        var = [statistics.mean(float(r["variance"]) for r in mine if int(r["step"]) == s) for s in steps]
        conf = [statistics.mean(float(r["confidence"]) for r in mine if int(r["step"]) == s) for s in steps]
        ax_var.plot(steps, var, label=method.upper())
        ax_conf.plot(steps, conf, label=method.upper())
    ax_var.set(yscale="log", xlabel="step", ylabel="update variance (mean over prompts)", title="Variance of g at fixed parameters")
    ax_conf.set(xlabel="step", ylabel="classifier confidence", title="Confidence for the prompt", ylim=(0, 1.02))
    ax_var.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--prior", default="builtin")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--prompts", default=",".join(DEFAULT_PROMPTS), help="comma-separated 'a {colour} {shape}' prompts")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--every", type=int, default=25, help="measure variance and confidence every N steps")
    p.add_argument("--draws", type=int, default=16, help="noise draws per variance estimate")
    p.add_argument("--classifier-timesteps", type=int, default=6)
    p.add_argument("--target", type=float, default=0.9, help="classifier confidence that counts as reached")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", default="out/bench_guidance")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    methods = args.methods.split(",")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        p.error(f"unknown method(s) {unknown}; choose from {list(METHODS)}")
    prompts = [s.strip() for s in args.prompts.split(",")]
    for prompt in prompts:
        if None in parse_caption(prompt):
            p.error(f"prompt '{prompt}' must name one of the builtin prior's colours {list(COLOURS)} and shapes {list(SHAPES)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    prior = load_prior(PriorConfig(source=args.prior, device="cpu"))

    results: dict[str, list[dict]] = {m: [] for m in methods}
    with open(out / "guidance_2d.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["method", "prompt", "step", "variance", "confidence"])
        writer.writeheader()
        for prompt in prompts:
            for method in methods:  # interleaved, so slow drift of the machine affects every method alike
                results[method].append(run_one(prior, method, prompt, args, writer))
                print(f"  {prompt:20s} {method:5s} {results[method][-1]}", flush=True)
    with open(out / "guidance_2d.csv") as f:
        rows = list(csv.DictReader(f))
    plot(rows, methods, out / "guidance_2d.png")

    sds_cost = statistics.mean(r["seconds_per_step"] for r in results["sds"]) if "sds" in results else None
    print(f"\nprior {args.prior}, {len(prompts)} prompts, {args.steps} steps, variance over {args.draws} draws every {args.every} steps")
    print(f"{'method':8s} {'mean variance':>14s} {'final variance':>15s} {'steps to conf>=' + str(args.target):>20s} {'s / iter':>9s} {'x SDS':>6s}")
    for method in methods:
        mine = [r for r in rows if r["method"] == method]
        mean_var = statistics.mean(float(r["variance"]) for r in mine)
        last = max(int(r["step"]) for r in mine)
        final_var = statistics.mean(float(r["variance"]) for r in mine if int(r["step"]) == last)
        reached = [r["steps_to_target"] for r in results[method]]
        hit = [s for s in reached if s is not None]
        steps_txt = f"{statistics.median(hit):.0f} ({len(hit)}/{len(reached)})" if hit else f"never (0/{len(reached)})"
        cost = statistics.mean(r["seconds_per_step"] for r in results[method])
        ratio = f"{cost / sds_cost:.2f}" if sds_cost else "-"
        print(f"{method:8s} {mean_var:14.4g} {final_var:15.4g} {steps_txt:>20s} {cost:9.4f} {ratio:>6s}")
    print(f"\nwrote {out / 'guidance_2d.csv'} and {out / 'guidance_2d.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
