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


def marching_cubes_table() -> tuple[torch.Tensor, torch.Tensor]:
    """Marching cubes triangles per corner configuration, in the layout of diffusers' Shap-E mesh decoder
    (`MeshDecoder.cases` [256, 5, 3] local edge indices, `masks` [256, 5]), derived here rather than
    copied: the real Shap-E weights carry the table; a model built from scratch has zeros (no surface).

    Corner (x, y, z) is bit x + 2y + 4z, set when the field is > 0 (inside). Local edges, as diffusers
    orders them: 0-3 along x at (y, z) = (0,0), (1,0), (0,1), (1,1); 4-7 along y at (x, z) in the same
    order; 8-11 along z at (x, y). On each cube face the crossed edges are joined in pairs (a face with
    four crossings cuts off its inside corners), the pairs chain into loops, each loop is fanned into
    triangles facing outside."""
    pos = [(c & 1, (c >> 1) & 1, (c >> 2) & 1) for c in range(8)]
    corner = {p: i for i, p in enumerate(pos)}
    edges = [(corner[(0, y, z)], corner[(1, y, z)]) for y, z in ((0, 0), (1, 0), (0, 1), (1, 1))]
    edges += [(corner[(x, 0, z)], corner[(x, 1, z)]) for x, z in ((0, 0), (1, 0), (0, 1), (1, 1))]
    edges += [(corner[(x, y, 0)], corner[(x, y, 1)]) for x, y in ((0, 0), (1, 0), (0, 1), (1, 1))]
    edge_of = {frozenset(e): i for i, e in enumerate(edges)}
    faces = []  # each cube face's corners in cyclic order
    for axis in range(3):
        for side in (0, 1):
            ring = [(0, 0), (1, 0), (1, 1), (0, 1)]
            faces.append([corner[tuple(side if k == axis else uv[[j for j in range(3) if j != axis].index(k)] for k in range(3))] for uv in ring])
    cases = torch.zeros(256, 5, 3, dtype=torch.long)
    masks = torch.zeros(256, 5, dtype=torch.bool)
    for case in range(256):
        inside = [(case >> c) & 1 for c in range(8)]
        links: dict[int, list[int]] = {}
        for face in faces:
            ring_edges = [edge_of[frozenset((face[i], face[(i + 1) % 4]))] for i in range(4)]
            crossed = [e for e in ring_edges if inside[edges[e][0]] != inside[edges[e][1]]]
            if len(crossed) == 4:  # ambiguous: cut off each inside corner
                pairs = [(ring_edges[i - 1], ring_edges[i]) for i in range(4) if inside[face[i]]]
            else:
                pairs = [tuple(crossed)] if crossed else []
            for a, b in pairs:
                links.setdefault(a, []).append(b)
                links.setdefault(b, []).append(a)
        triangles, seen = [], set()
        for start in links:
            if start in seen:
                continue
            loop, previous, current = [start], None, start
            seen.add(start)
            while True:
                nxt = [e for e in links[current] if e != previous and (e not in seen or (e == start and len(loop) > 2))]
                if not nxt or nxt[0] == start:
                    break
                previous, current = current, nxt[0]
                loop.append(current)
                seen.add(current)
            triangles += [[loop[0], loop[i], loop[i + 1]] for i in range(1, len(loop) - 1)]
        assert len(triangles) <= 5, (case, triangles)
        for t, tri in enumerate(triangles):
            mid = [torch.tensor(pos[edges[e][0]], dtype=torch.float32) / 2 + torch.tensor(pos[edges[e][1]], dtype=torch.float32) / 2 for e in tri]
            normal = torch.linalg.cross(mid[1] - mid[0], mid[2] - mid[0])
            outward = sum(
                torch.tensor(pos[b if inside[a] else a], dtype=torch.float32) - torch.tensor(pos[a if inside[a] else b], dtype=torch.float32) for a, b in (edges[e] for e in tri)
            )
            cases[case, t] = torch.tensor(tri if float(normal @ outward) > 0 else tri[::-1])
            masks[case, t] = True
    return cases, masks


def build_tiny_shap_e(folder: Path, seed: int = 0) -> Path:
    """A diffusers ShapEPipeline folder with random weights (~100 kB) whose decoder finds a surface.

    A random decoder's signed distance is negative everywhere (no surface). Here the renderer's
    latent-to-weights projections ignore the latent (zero weights: the MLP's weights are the
    projections' random biases), and the last layer's SDF bias is set so that half of the inner box is
    inside: a random blob, the same for every prompt, which is all a test of the plumbing needs."""
    from diffusers import HeunDiscreteScheduler, PriorTransformer, ShapEPipeline
    from diffusers.pipelines.shap_e import ShapERenderer
    from diffusers.pipelines.shap_e.renderer import volume_query_points
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer

    cases, masks = marching_cubes_table()
    torch.manual_seed(seed)
    save_tiny_clip_tokenizer(folder / "tokenizer")
    text_encoder = CLIPTextModelWithProjection(
        CLIPTextConfig(
            vocab_size=len(byte_vocab()), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=16, projection_dim=16
        )
    )
    d_latent, hidden = 16, 8
    prior = PriorTransformer(
        num_attention_heads=2,
        attention_head_dim=8,
        embedding_dim=d_latent,
        num_embeddings=32,
        embedding_proj_dim=16,
        time_embed_dim=4 * d_latent,
        num_layers=1,
        clip_embed_dim=2 * d_latent,
        additional_embeddings=0,
        time_embed_act_fn="gelu",
        norm_in_type="layer",
        encoder_hid_proj_type=None,
        added_emb_type=None,
    )
    _first_layer = "nerstf__mlp__0__weight"
    renderer = ShapERenderer(param_shapes=((hidden, 93), (hidden, 8), (hidden, 8), (hidden, 8)), d_latent=d_latent, d_hidden=hidden, n_output=12, background=(0.1, 0.1, 0.1))
    scheduler = HeunDiscreteScheduler(beta_schedule="exp", num_train_timesteps=1024, prediction_type="sample", use_karras_sigmas=True, clip_sample=True, clip_sample_range=1.0)
    with torch.no_grad():
        for projection in renderer.params_proj.projections.values():
            projection.proj.weight.zero_()
            projection.proj.bias.normal_(0, 1)
        first = renderer.params_proj.projections[_first_layer].proj.bias.view(hidden, 93)
        first[:, 3:] = 0  # only the raw position, none of its sines: a smooth field, a few large blobs
        params = renderer.params_proj(torch.zeros(1, 32, d_latent))
        for name, value in renderer.mlp.state_dict().items():
            if f"nerstf.{name}" in params:
                value.copy_(params[f"nerstf.{name}"][0])
        inner = volume_query_points(renderer.volume, 16)[None] * 0.5  # [1, 16^3, 3] in the middle half of the box
        sdf = renderer.mlp(position=inner, direction=None, ts=None, nerf_level="fine", rendering_mode="stf").signed_distance
        renderer.mlp.mlp[-1].bias[0] -= torch.atanh(sdf.clamp(-0.99, 0.99)).median()
        renderer.mesh_decoder.cases.copy_(cases)
        renderer.mesh_decoder.masks.copy_(masks)
    pipe = ShapEPipeline(prior=prior, text_encoder=text_encoder, tokenizer=CLIPTokenizer.from_pretrained(folder / "tokenizer"), scheduler=scheduler, shap_e_renderer=renderer)
    pipe.save_pretrained(folder)
    return folder
