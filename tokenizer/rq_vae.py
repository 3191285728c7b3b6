"""RQ-VAE (TIGER / GR2): an MLP autoencoder whose latent is quantized by residual codebooks.

Pieces and why:
- k-means initialisation of every codebook (faiss, on the initial latents' residuals): starts all
  codes in populated regions, so few are dead from the start.
- EMA codebook updates (``ema=True``, decay ``ema_decay``): codewords track the mean of the latents
  assigned to them instead of chasing them by gradient; more codes stay in use (GR2: 97.5% unique).
  Without EMA the codebooks learn by the VQ-VAE codebook loss.
- Commitment loss (``beta``) keeps the encoder's latents close to their codewords.
- Dead-code restart: a code no item used in an epoch is moved onto a random current residual.
- Random last level (``random_last_level``): the last level's code is drawn uniformly (seeded)
  instead of taken from the nearest codeword, as GR2 does. Items with identical text have identical
  embeddings, so any deterministic quantizer gives them one ID; a random last code spreads them.
  The last codebook is still trained, so ``encode(x, random_last=False)`` and ``decode`` stay useful.

Determinism: the same config, seed, input and thread count give the same codes; the random last
level depends on the row order of the batch passed to ``encode`` (row i gets the i-th draw).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Self

import faiss
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from tokenizer.base import Quantizer, check_codes, check_embeddings

_EPS = 1e-5
_CHUNK = 1 << 15  # rows encoded at once: bounds the (rows x codebook) distance matrix


@dataclass
class RQVAEConfig:
    levels: int = 3
    codebook_size: int = 256
    hidden_dims: tuple[int, ...] = (256, 128)
    latent_dim: int = 32
    epochs: int = 40
    batch_size: int = 1024
    lr: float = 1e-3
    beta: float = 0.25  # commitment loss weight
    ema: bool = True
    ema_decay: float = 0.99
    kmeans_init: bool = True
    restart_dead_codes: bool = True
    random_last_level: bool = True
    seed: int = 0
    num_threads: int | None = None  # torch threads while fitting; None leaves torch's setting alone
    show_progress: bool = True


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.SiLU())
    return nn.Sequential(*layers)


class RQVAENet(nn.Module):
    """Encoder, decoder and the residual codebooks (parameters, or EMA-updated buffers)."""

    def __init__(self, dim: int, cfg: RQVAEConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = _mlp([dim, *cfg.hidden_dims, cfg.latent_dim])
        self.decoder = _mlp([cfg.latent_dim, *reversed(cfg.hidden_dims), dim])
        shape = (cfg.levels, cfg.codebook_size, cfg.latent_dim)
        codebooks = torch.randn(shape) * 0.1
        if cfg.ema:
            self.register_buffer("codebooks", codebooks)
            self.register_buffer("ema_size", torch.ones(cfg.levels, cfg.codebook_size))
            self.register_buffer("ema_sum", codebooks.clone())
        else:
            self.codebooks = nn.Parameter(codebooks)
        self.register_buffer("x_mean", torch.zeros(dim))
        self.register_buffer("x_scale", torch.ones(()))

    def nearest(self, r: torch.Tensor, level: int) -> torch.Tensor:
        e = self.codebooks[level]
        d = (r * r).sum(1, keepdim=True) - 2 * r @ e.T + (e * e).sum(1)[None, :]
        return d.argmin(1)

    def quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Nearest-codeword residual quantization: (straight-through z_q, codes, commit, codebook loss)."""
        r, q_sum = z, torch.zeros_like(z)
        codes, commit, cb_loss = [], z.new_zeros(()), z.new_zeros(())
        for level in range(self.cfg.levels):
            idx = self.nearest(r.detach(), level)
            # One-hot matmul instead of indexing: indexing's backward (scatter-add) is not bitwise
            # deterministic on CPU, and tiny float differences flip code assignments over epochs.
            onehot = F.one_hot(idx, self.cfg.codebook_size).to(r.dtype)
            q = onehot @ self.codebooks[level]
            commit = commit + F.mse_loss(r, q.detach())
            if self.cfg.ema:
                if self.training:
                    self._ema_update(level, r.detach(), onehot)
            else:
                cb_loss = cb_loss + F.mse_loss(q, r.detach())
            q_sum = q_sum + q.detach()
            r = r - q.detach()
            codes.append(idx)
        z_q = z + (q_sum - z).detach()
        return z_q, torch.stack(codes, 1), commit, cb_loss

    @torch.no_grad()
    def _ema_update(self, level: int, r: torch.Tensor, onehot: torch.Tensor) -> None:
        k, decay = self.cfg.codebook_size, self.cfg.ema_decay
        counts = onehot.sum(0)
        sums = onehot.T @ r
        self.ema_size[level].mul_(decay).add_(counts, alpha=1 - decay)
        self.ema_sum[level].mul_(decay).add_(sums, alpha=1 - decay)
        n = self.ema_size[level].sum()
        size = (self.ema_size[level] + _EPS) / (n + k * _EPS) * n  # Laplace smoothing: no division by 0
        self.codebooks[level].copy_(self.ema_sum[level] / size[:, None])

    @torch.no_grad()
    def set_codewords(self, level: int, which: torch.Tensor, values: torch.Tensor, size: float) -> None:
        """Overwrite some codewords (k-means init, dead-code restart), keeping the EMA state consistent."""
        self.codebooks.data[level, which] = values
        if self.cfg.ema:
            self.ema_size[level, which] = size
            self.ema_sum[level, which] = values * size

    def latents(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder((x - self.x_mean) / self.x_scale)

    def reconstruct(self, z_q: torch.Tensor) -> torch.Tensor:
        return self.decoder(z_q) * self.x_scale + self.x_mean


@contextlib.contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


class RQVAE(Quantizer):
    method = "rq-vae"
    config_class = RQVAEConfig

    def __init__(self, config: RQVAEConfig | None = None):
        super().__init__(config)
        if not 0.0 < self.config.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1), got {self.config.ema_decay}")
        self.net: RQVAENet | None = None
        self.history: list[dict[str, float]] = []  # per epoch: loss parts and codebook usage

    # -- training ---------------------------------------------------------------------------
    def fit(self, x: np.ndarray) -> Self:
        x = self._check_fit_input(x)
        cfg = self.config
        with _torch_threads(cfg.num_threads), torch.random.fork_rng():
            torch.manual_seed(cfg.seed)
            gen = torch.Generator().manual_seed(cfg.seed)
            xt = torch.from_numpy(x)
            net = RQVAENet(x.shape[1], cfg)
            net.x_mean.copy_(xt.mean(0))
            net.x_scale.copy_((xt - xt.mean(0)).pow(2).mean().sqrt().clamp_min(_EPS))
            if cfg.kmeans_init:
                self._kmeans_init(net, xt)
            opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
            self.history = []
            bar = tqdm(range(cfg.epochs), desc="rq-vae", unit="epoch", disable=not cfg.show_progress)
            for _epoch in bar:
                net.train()
                usage = torch.zeros(cfg.levels, cfg.codebook_size)
                totals = np.zeros(3)
                for batch in torch.randperm(len(xt), generator=gen).split(cfg.batch_size):
                    xb = xt[batch]
                    z_q, codes, commit, cb_loss = net.quantize(net.latents(xb))
                    recon = F.mse_loss(net.decoder(z_q), (xb - net.x_mean) / net.x_scale)
                    loss = recon + cfg.beta * commit + cb_loss
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    for level in range(cfg.levels):
                        usage[level] += torch.bincount(codes[:, level], minlength=cfg.codebook_size)
                    totals += np.array([recon.item(), commit.item(), cb_loss.item()]) * len(batch)
                recon, commit, cb = totals / len(xt)
                used = (usage > 0).float().mean(1)
                self.history.append({"recon": recon, "commit": commit, "codebook": cb,
                                     **{f"used_{lv}": float(u) for lv, u in enumerate(used)}})
                bar.set_postfix(recon=f"{recon:.4f}", commit=f"{commit:.4f}",
                                used="/".join(f"{u:.2f}" for u in used.tolist()))
                if cfg.restart_dead_codes and (usage == 0).any():
                    self._restart_dead(net, xt, usage == 0, gen)
            net.eval()
        self.net, self.dim = net, x.shape[1]
        return self

    @torch.no_grad()
    def _kmeans_init(self, net: RQVAENet, xt: torch.Tensor) -> None:
        r = net.latents(xt).numpy().astype(np.float32)
        k = self.config.codebook_size
        for level in range(self.config.levels):
            km = faiss.Kmeans(r.shape[1], k, niter=20, seed=self.config.seed + level, verbose=False,
                              min_points_per_centroid=1, max_points_per_centroid=1 << 30)
            km.train(r)
            _, idx = km.index.search(r, 1)
            counts = np.bincount(idx[:, 0], minlength=k)
            size = torch.from_numpy(counts * min(1.0, self.config.batch_size / len(r))).float()
            net.codebooks.data[level] = torch.from_numpy(km.centroids)
            if self.config.ema:
                net.ema_size[level] = size
                net.ema_sum[level] = net.codebooks[level] * size[:, None]
            r = r - km.centroids[idx[:, 0]]

    @torch.no_grad()
    def _restart_dead(self, net: RQVAENet, xt: torch.Tensor, dead: torch.Tensor, gen: torch.Generator) -> None:
        net.eval()
        r = net.latents(xt)
        for level in range(self.config.levels):
            which = dead[level].nonzero().flatten()
            if len(which):
                pick = torch.randint(len(r), (len(which),), generator=gen)
                net.set_codewords(level, which, r[pick], size=1.0)
            r = r - net.codebooks[level][net.nearest(r, level)]

    # -- inference --------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, x: np.ndarray, random_last: bool | None = None) -> np.ndarray:
        """Codes of each row; the last level is drawn at random when ``random_last_level`` is on."""
        x = check_embeddings(x, self._require_fitted())
        random_last = self.config.random_last_level if random_last is None else random_last
        with _torch_threads(self.config.num_threads):
            chunks = [self.net.quantize(self.net.latents(part))[1] for part in torch.from_numpy(x).split(_CHUNK)]
        codes = torch.cat(chunks).numpy().astype(np.int64) if chunks else np.zeros((0, self.levels), np.int64)
        if random_last:
            rng = np.random.default_rng([self.config.seed, 0x5EED])
            codes[:, -1] = rng.integers(0, self.codebook_size, size=len(codes))
        return codes

    @torch.no_grad()
    def decode(self, codes: np.ndarray) -> np.ndarray:
        self._require_fitted()
        codes = torch.from_numpy(check_codes(codes, self.levels, self.codebook_size))
        z_q = sum(self.net.codebooks[level][codes[:, level]] for level in range(self.levels))
        return self.net.reconstruct(z_q).numpy().astype(np.float32)

    def _state(self) -> dict[str, np.ndarray]:
        return {k: v.detach().numpy() for k, v in self.net.state_dict().items()}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        net = RQVAENet(self.dim, self.config)
        expected = net.state_dict()
        for k, v in arrays.items():
            if k in expected and tuple(expected[k].shape) != tuple(v.shape):
                raise ValueError(f"{k} has shape {tuple(v.shape)}, expected {tuple(expected[k].shape)}")
            if not np.isfinite(v).all():
                raise ValueError(f"{k} contains NaN/inf")
        net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in arrays.items()}, strict=True)
        net.eval()
        self.net = net
