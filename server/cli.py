"""The `propdreamer` entry point: the core subcommands plus `serve` and `submit`."""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from pathlib import Path
from urllib.parse import urlparse

from ..core import cli as core_cli

DEFAULT_BIND = "tcp://127.0.0.1:5757"
DEFAULT_PIPELINE = "propdreamer.core.jobs:run_job"


def _read_key(path: str | None) -> bytes | None:
    if not path:
        return None
    key_path = Path(path).expanduser()
    if not key_path.is_file():
        raise FileNotFoundError(f"key file {key_path} does not exist; create one with `propdreamer serve --new-key {key_path}`")
    if key_path.stat().st_mode & 0o077:
        raise ValueError(f"key file {key_path} is readable by other users; run `chmod 600 {key_path}`")
    key = key_path.read_bytes().strip()
    if len(key) < 32:
        raise ValueError(f"key in {key_path} is shorter than 32 bytes; make a new one with --new-key")
    return key


def _write_new_key(path: str) -> None:
    import secrets

    key_path = Path(path).expanduser()
    key_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32) + "\n")
    print(f"wrote a new shared key to {key_path} (mode 0600); give the same file to the add-on or `propdreamer submit --key-file`")


def _is_loopback(bind: str) -> bool:
    host = urlparse(bind).hostname or ""
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _cmd_serve(args: argparse.Namespace) -> int:
    import logging

    from .app import ServerConfig, serve
    from .worker import WorkerConfig

    if args.new_key:
        _write_new_key(args.new_key)
        return 0
    if args.new_artist_key:
        from .artist_keys import new_artist_key

        if not args.artist_keys:
            raise ValueError("--new-artist-key NAME writes into the key folder named by --artist-keys DIR")
        path = new_artist_key(args.artist_keys, args.new_artist_key)
        print(f"wrote {path} (mode 0600); give it to {args.new_artist_key}: the add-on's Key file, with '{args.new_artist_key}' as its Client id")
        return 0
    if args.artist_keys and args.key_file:
        raise ValueError("choose one: --key-file (one key shared by everyone) or --artist-keys DIR (one key per artist)")
    key = _read_key(args.key_file)
    if not _is_loopback(args.bind) and key is None and not args.artist_keys:
        raise ValueError(
            f"refusing to listen on {args.bind} without keys: anyone on the network could use the GPU. Add --key-file (make one with --new-key PATH) "
            "or --artist-keys DIR (one key per artist), or bind to tcp://127.0.0.1:PORT"
        )
    logging.getLogger().setLevel(logging.INFO)
    device = args.device
    if device == "auto" or args.prior == "auto":
        import torch

        device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    if args.prior == "auto":
        from ..core.priors.loading import auto_prior

        args.prior = auto_prior(device == "cuda")
    config = ServerConfig(
        bind=args.bind,
        spool=Path(args.spool),
        key=key,
        artist_keys=Path(args.artist_keys) if args.artist_keys else None,
        share_jobs=args.share_jobs,
        prior=args.prior,
        device=device,
        max_input_faces=args.max_input_faces,
        worker=WorkerConfig(pipeline=args.pipeline, settings={"prior": args.prior, "device": device, "shap_e": args.shap_e}),
        workers=args.workers,
        devices=args.devices,
        ray=args.ray,
        ray_workers=args.ray_workers,
        ray_resources={"num_gpus": args.ray_gpus_per_worker} if args.ray_gpus_per_worker else None,
        queue_order=args.queue_order,
    )
    serve(config)
    return 0


def _cmd_submit(args: argparse.Namespace) -> int:
    from .client import CHUNK_BYTES, Client, ServerError

    request, mesh_path = core_cli.job_request(args)
    mesh = mesh_path.read_bytes() if mesh_path else None
    client = Client(args.server, key=_read_key(args.key_file), timeout_s=args.timeout)
    try:
        welcome = client.request("hello")
    except TimeoutError:
        raise ConnectionError(f"no PropDreamer server answered at {args.server}; start one with `propdreamer serve --bind {args.server}`") from None
    try:
        accepted = client.submit(request.to_body(), mesh, int(welcome.body.get("max_chunk_bytes", CHUNK_BYTES))).body  # a large mesh goes in chunks
    except ServerError as err:
        raise ValueError(f"the server refused the job: {err}") from None
    job = accepted["job"]
    print(f"job {job} on {args.server} (prior {welcome.body['prior']}, {welcome.body['device']})", file=sys.stderr)
    for warning in accepted.get("warnings", []):
        print(f"warning: {warning}", file=sys.stderr)
    try:
        while True:
            message = client.receive(1.0)
            if message is None or message.type != "event" or message.body.get("job") != job:
                continue
            event = message.body
            kind_ = event["event"]
            if kind_ == "progress":
                eta = f" ETA {event['eta_s']:.0f}s" if event.get("eta_s") is not None else ""
                done = int(30 * (event["step"] + 1) / max(event["total"], 1))
                print(f"\r{event['stage']:>8s} [{'#' * done}{'.' * (30 - done)}] {event['step'] + 1}/{event['total']}{eta}   ", end="", file=sys.stderr, flush=True)
            elif kind_ == "resolved":
                from ..core.request import settings_summary

                print(f"\rrunning: {settings_summary(event['settings'])}", file=sys.stderr)
                for warning in event.get("warnings", []):
                    print(f"warning: {warning}", file=sys.stderr)
            elif kind_ == "queued" and event.get("position"):
                print(f"\rqueued, position {event['position']}   ", end="", file=sys.stderr, flush=True)
            elif kind_ in ("failed", "cancelled", "interrupted"):
                print(file=sys.stderr)
                print(f"job {kind_}: {event.get('reason', '')}", file=sys.stderr)
                return 1
            elif kind_ == "done":
                print(file=sys.stderr)
                break
    except KeyboardInterrupt:
        print("\ncancelling...", file=sys.stderr)
        client.request("cancel", {"job": job})
        return 130
    data = client.fetch(job)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    client.request("ack", {"job": job})
    print(f"wrote {out} ({len(data)} bytes)")
    client.close()
    return 0


def add_server_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the inference server (ZeroMQ + msgpack)")
    p.add_argument("--bind", default=DEFAULT_BIND, help=f"where to listen (default {DEFAULT_BIND}: loopback only)")
    p.add_argument(
        "--prior",
        default="auto",
        help="'auto' (default: Stable Diffusion on CUDA when its weights are cached locally, else the builtin prior), 'builtin', a local diffusers folder or a Hub id",
    )
    p.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    p.add_argument("--workers", type=int, default=1, help="worker processes on --device, each running one job at a time (e.g. CPU workers)")
    p.add_argument("--devices", default=None, metavar="LIST", help="one worker per device, e.g. cuda:0,cuda:1 (instead of --workers)")
    p.add_argument(
        "--ray",
        default=None,
        metavar="ADDRESS",
        help="run jobs on a Ray cluster: 'auto' (the cluster this machine belongs to, started with `ray start`) or its address; one actor per GPU (needs propdreamer[cluster])",
    )
    p.add_argument("--ray-workers", type=int, default=None, help="actors on the Ray cluster (default: one per GPU it has)")
    p.add_argument(
        "--ray-gpus-per-worker",
        type=float,
        default=None,
        help="the GPU share one actor asks Ray for (default 1; a fraction packs several actors on one GPU, e.g. small draft jobs, or a simulation)",
    )
    p.add_argument(
        "--queue-order",
        default="fifo",
        choices=["fifo", "longest-first"],
        help="the order queued jobs start in: fifo (default: each job after those sent before it) or longest-first "
        "(a studio's batches on many workers finish sooner; drafts wait behind standard jobs)",
    )
    p.add_argument(
        "--shap-e",
        default=None,
        metavar="SPEC",
        help="the Shap-E model (default openai/shap-e) for jobs that start from its shape (init shap-e, or auto for VDM on Gaussians): a Hub id or a local diffusers folder",
    )
    p.add_argument("--spool", default="~/.cache/propdreamer/spool", help="folder where jobs and results are kept")
    p.add_argument("--key-file", default=None, help="shared key (0600) for signed messages; required off loopback")
    p.add_argument("--new-key", default=None, metavar="PATH", help="write a new random key file and exit")
    p.add_argument(
        "--artist-keys",
        default=None,
        metavar="DIR",
        help="one key per artist: DIR/<client id>.key; a client id is usable only with its own key (instead of --key-file; files added or removed take effect at once)",
    )
    p.add_argument("--new-artist-key", default=None, metavar="NAME", help="write DIR/NAME.key for the artist NAME (with --artist-keys DIR) and exit")
    p.add_argument("--share-jobs", action="store_true", help="let every client see, cancel and fetch every job")
    p.add_argument("--pipeline", default=DEFAULT_PIPELINE, help="the job function, 'module:function'")
    p.add_argument("--max-input-faces", type=int, default=500_000, help="the most triangles a refine / texture job's mesh may have")
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("submit", help="send a job to a server, show its progress and write the result")
    p.add_argument("prompt")
    p.add_argument("--server", default=DEFAULT_BIND)
    p.add_argument("-o", "--output", required=True, help="where to write the result GLB")
    core_cli.add_request_args(p)
    p.add_argument("--key-file", default=None)
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each server reply")
    p.set_defaults(func=_cmd_submit)


def main(argv: list[str] | None = None) -> int:
    return core_cli.main(argv, extra=add_server_commands)


if __name__ == "__main__":
    sys.exit(main())
