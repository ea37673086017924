"""Multi-resolution hash-grid encoding (Instant-NGP) in pure PyTorch: runs on the CPU and on CUDA.

Level l has resolution N_l = floor(N_min * b^l) with b = exp((ln N_max - ln N_min) / (L - 1)). A point's
feature at level l is the trilinear blend of the 8 surrounding grid vertices' entries in that level's
table; coarse levels whose (N_l + 1)^3 vertices fit the table are indexed densely (no collisions), finer
ones through the spatial hash  (x * 1) xor (y * 2654435761) xor (z * 805459861)  mod T.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

_PRIMES = (1, 2654435761, 805459861)


@dataclass(frozen=True)
class HashGridConfig:
    levels: int = 12  # L
    features: int = 2  # F per level
    log2_table: int = 15  # T = 2^log2_table entries per level (CPU: keep it small; see FINDINGS.md)
    base_resolution: int = 16  # N_min
    max_resolution: int = 256  # N_max

    def __post_init__(self) -> None:
        if self.levels < 1 or self.features < 1:
            raise ValueError(f"HashGridConfig needs levels >= 1 and features >= 1, got {self.levels}, {self.features}")
        if not 2 <= self.base_resolution <= self.max_resolution:
            raise ValueError(f"HashGridConfig needs 2 <= base_resolution <= max_resolution, got {self.base_resolution}, {self.max_resolution}")
        if not 8 <= self.log2_table <= 24:
            raise ValueError(f"HashGridConfig.log2_table must lie in [8, 24], got {self.log2_table}")

    @property
    def output_dim(self) -> int:
        return self.levels * self.features


class HashGrid(nn.Module):
    resolutions: Tensor  # registered buffers (see __init__)
    dense: Tensor
    level_offset: Tensor
    corners: Tensor

    def __init__(self, config: HashGridConfig = HashGridConfig()) -> None:
        super().__init__()
        self.config = config
        L, T = config.levels, 2**config.log2_table
        growth = math.exp((math.log(config.max_resolution) - math.log(config.base_resolution)) / max(L - 1, 1))
        resolutions = [int(math.floor(config.base_resolution * growth**level)) for level in range(L)]
        self.register_buffer("resolutions", torch.tensor(resolutions, dtype=torch.long), persistent=False)  # [L]
        dense = [(r + 1) ** 3 <= T for r in resolutions]
        self.register_buffer("dense", torch.tensor(dense), persistent=False)  # [L]
        self.register_buffer("level_offset", torch.arange(L, dtype=torch.long) * T, persistent=False)  # [L]
        self.table_size = T
        self.table = nn.Parameter(torch.empty(L * T, config.features).uniform_(-1e-4, 1e-4))  # [L*T, F]
        corners = torch.tensor([[(c >> 0) & 1, (c >> 1) & 1, (c >> 2) & 1] for c in range(8)], dtype=torch.long)
        self.register_buffer("corners", corners, persistent=False)  # [8, 3]

    def forward(self, u: Tensor) -> Tensor:
        """u [N, 3] in [0, 1]^3 -> features [N, L * F]."""
        N = u.shape[0]
        res = self.resolutions.to(u.dtype)  # [L]
        pos = u.clamp(0, 1)[:, None, :] * res[None, :, None]  # [N, L, 3]
        base = pos.floor().long().clamp(max=self.resolutions[None, :, None] - 1)  # [N, L, 3]
        frac = pos - base.to(u.dtype)  # [N, L, 3]
        vert = base[:, :, None, :] + self.corners[None, None]  # [N, L, 8, 3]
        # Dense index for levels that fit, hashed index otherwise.
        side = (self.resolutions + 1)[None, :, None]  # [1, L, 1]
        dense_idx = vert[..., 0] + side * (vert[..., 1] + side * vert[..., 2])  # [N, L, 8]
        hashed = (vert[..., 0] * _PRIMES[0]) ^ (vert[..., 1] * _PRIMES[1]) ^ (vert[..., 2] * _PRIMES[2])
        idx = torch.where(self.dense[None, :, None], dense_idx, hashed) % self.table_size
        idx = idx + self.level_offset[None, :, None]  # [N, L, 8]
        # Trilinear weights: the product over axes of (1 - frac, frac), as an outer product over
        # (z, y, x) so that the flat index z*4 + y*2 + x matches `corners` (bit 0 = x). Cheaper than
        # autograd's prod, whose backward guards against zeros.
        ax = torch.stack([1 - frac, frac], dim=-1)  # [N, L, 3, 2]
        wx, wy, wz = ax[:, :, 0], ax[:, :, 1], ax[:, :, 2]  # [N, L, 2] each
        w = (wz[..., :, None, None] * wy[..., None, :, None] * wx[..., None, None, :]).reshape(N, -1, 8)  # [N, L, 8]
        # index_select, not table[idx]: its backward (index_add) is about twice as fast on the CPU.
        feats = torch.index_select(self.table, 0, idx.reshape(-1)).reshape(N, -1, 8, self.config.features)  # [N, L, 8, F]
        return (feats * w[..., None]).sum(2).reshape(N, -1)  # [N, L * F]
