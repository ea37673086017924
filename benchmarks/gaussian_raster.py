"""The CPU Gaussian rasterisers side by side: the dense reference and the sparse (splat, pixel) compositor.

    python benchmarks/gaussian_raster.py [--counts 1000,3000,10000] [--resolutions 32,64] [--repeats 3]

For each splat count and resolution: milliseconds per forward + backward of a 4-view batch (as one
stage-one step renders), the speed-up of the sparse path measured in the same run, and the largest
difference between the two in colour, alpha and the means' gradients. Splats are drawn as a draft run
leaves them: centres in a ball of radius 0.45, scales 0.005-0.03, opacities 0.5-1.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from propdreamer.core.cameras import opencv_cameras, orbit_cameras
from propdreamer.core.gaussians.pairs import rasterize_pairs
from propdreamer.core.gaussians.projection import Splats
from propdreamer.core.gaussians.rasterize import rasterize_torch


def random_splats(n: int, generator: torch.Generator) -> list[torch.Tensor]:
    direction = torch.nn.functional.normalize(torch.randn(n, 3, generator=generator), dim=-1)
    means = direction * 0.45 * torch.rand(n, 1, generator=generator) ** (1 / 3)
    return [means, torch.randn(n, 4, generator=generator), 0.005 + 0.025 * torch.rand(n, 3, generator=generator), 0.5 + 0.5 * torch.rand(n, generator=generator)]


def timed(raster, leaves: list[torch.Tensor], colours: torch.Tensor, viewmats, Ks, res: int, repeats: int):
    times = []
    for _ in range(repeats):
        params = [t.clone().requires_grad_() for t in leaves]
        t0 = time.perf_counter()
        rgb, alpha, _, _ = raster(Splats(*params), colours, viewmats, Ks, res, res)
        (rgb.sum() + alpha.sum()).backward()
        times.append(time.perf_counter() - t0)
    return min(times), rgb.detach(), alpha.detach(), params[0].grad


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--counts", default="1000,3000,10000")
    ap.add_argument("--resolutions", default="32,64")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cams = orbit_cameras(torch.tensor([0.0, 20.0, 40.0, 60.0]), torch.tensor([0.0, 90.0, 180.0, 270.0]), torch.full((4,), 2.2), torch.full((4,), 40.0))
    print("splats,resolution,dense_ms,pairs_ms,speedup,max_diff_rgb,max_diff_alpha,max_diff_grad_means")
    for n in (int(c) for c in args.counts.split(",")):
        gen = torch.Generator().manual_seed(n)
        leaves, colours = random_splats(n, gen), torch.rand(4, n, 3, generator=gen)
        for res in (int(r) for r in args.resolutions.split(",")):
            viewmats, Ks = opencv_cameras(cams, res)
            dense = timed(rasterize_torch, leaves, colours, viewmats, Ks, res, args.repeats)
            pairs = timed(rasterize_pairs, leaves, colours, viewmats, Ks, res, args.repeats)
            diffs = [float((a - b).abs().max()) for a, b in zip(dense[1:], pairs[1:])]
            print(f"{n},{res},{dense[0] * 1e3:.1f},{pairs[0] * 1e3:.1f},{dense[0] / pairs[0]:.1f},{diffs[0]:.2e},{diffs[1]:.2e},{diffs[2]:.2e}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
