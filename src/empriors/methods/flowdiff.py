"""FlowDiff: a conditional normalizing flow and a diffusion prior trained jointly on corrupted
data (PAPERS.md 3), on tensors (no I/O).

The paper has no public code; every choice below is ours and documented here and in the README.

Objective. For observations (A_i, y_i), the flow q_phi(x | y) is trained by amortized
variational inference, minimising over phi

    L(phi) = E_i E_{x ~ q_phi(x | y_i)} [ log q_phi(x | y_i) + |y_i - A_i x|^2 / (2 sigma_y^2)
                                          + B_theta(x) ],

with B_theta(x) >= -log p_theta(x) - C the diffusion model's denoising bound
(:func:`empriors.diffusion.diffusion_bound`), estimated with one (t, z) per sample and
differentiated through the reparameterised sample x (rsample). The diffusion prior theta is
trained on flow samples by the usual denoising loss, which is the same bound up to its
weighting over noise levels.

Schedule (our choice): block-coordinate descent on the joint objective in rounds, exposed as
EM's per-iteration file targets. Round k:
- E-step (iter_k/samples_*.h5): x_i ~ q_phi_{k-1}(x | y_i) for every observation; round 1 has
  no flow yet and draws MMPS posterior samples under the Gaussian q0 (as DiffEM's lap 1).
- M-step (iter_k/prior.pt): (a) theta_k = the diffusion prior trained on those flow samples,
  from theta_{k-1} (EM-MMPS's M-step); (b) phi_k = the flow trained on L with theta_k frozen,
  from phi_{k-1} (fresh at round 1).
Evaluation samples the diffusion prior theta_k; MRI reconstructions use the flow.

Flow (our choice). zuko's neural spline flow (NSF, coupling transforms: passes=2, so sampling
and density cost one network pass each) over a fixed representation of x:
    x = mu + Q diag(sqrt(lambda)) u + (I - Q Q^T) r,   u ~ NSF(u | h(y)),   r ~ N(0, s^2 I),
with (mu, Q, lambda) the Gaussian q0 (its r principal axes; the manifold's q0 is full rank, so
Q spans R^n and r is absent) and s a learned residual scale. The density of x is
    log q(x | y) = log NSF(u | h) - (1/2) sum log lambda
                   - |(I - QQ^T)(x - mu)|^2 / (2 s^2) - (n - r)/2 log(2 pi s^2)
(Q orthonormal: the change of variables is a rotation plus a scaling). Images use q0's rank
(64 for MRI): a flow over a low-dimensional learned-by-q0 representation, as the issue allows;
the residual keeps the density proper on R^n. ``flow.rank`` above q0's completes Q with
orthonormal directions of q0's residual (variance D): the 8x8 digits demo uses all 64 axes.
The context h(y) is the observation as network input c(A, y)
(:meth:`LinearOperator.condition`): for the manifold [y, vec A] itself; for images, where c
is the zero-filled image, its coordinates Q^T (c - mu) on the same axes (r numbers instead of
H W: a 320x320 context would dominate the flow's parameters). Either is standardised by
fixed statistics of the observations at round 1.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import zuko
from torch import Tensor, nn
from tqdm.auto import tqdm

from empriors.config import ExperimentSettings, FlowSettings
from empriors.diffusion import Denoiser, VESchedule, diffusion_bound
from empriors.gaussian import LowRankGaussian
from empriors.methods import em_mmps
from empriors.methods.prior import Prior
from empriors.operators import LinearOperator


class PosteriorFlow(nn.Module):
    """q_phi(x | y) on R^n: a conditional NSF over whitened q0 coordinates u plus an isotropic
    Gaussian residual (module docstring). Buffers: mean (n,), basis Q (n, r), scales
    sqrt(lambda) (r,), context statistics (m,); parameters: the NSF and log s."""

    def __init__(
        self,
        gaussian: LowRankGaussian,
        context_mean: Tensor,
        context_std: Tensor,
        transforms: int,
        hidden: tuple[int, ...],
        project_context: bool = False,
    ):
        super().__init__()
        g = gaussian.to(dtype=torch.float32)
        self.register_buffer("mean", g.mean.clone())
        self.register_buffer("basis", g.basis.clone())
        self.register_buffer("scales", g.variances.clamp_min(1e-8).sqrt().clone())
        self.register_buffer("context_mean", context_mean.float().clone())
        self.register_buffer("context_std", context_std.float().clamp_min(1e-6).clone())
        self.register_buffer("project_context", torch.tensor(project_context))
        self.log_residual = nn.Parameter(torch.tensor(0.5 * math.log(max(g.residual, 1e-8))))
        self.transforms, self.hidden = transforms, tuple(hidden)
        rank, context = self.basis.shape[1], self.context_mean.shape[0]
        self.nsf = zuko.flows.NSF(
            rank, context, transforms=transforms, hidden_features=list(hidden), passes=2
        )

    @property
    def residual_dim(self) -> int:
        return self.basis.shape[0] - self.basis.shape[1]

    def _context(self, condition: Tensor) -> Tensor:
        return (self.raw_context(condition) - self.context_mean) / self.context_std

    def raw_context(self, condition: Tensor) -> Tensor:
        """c (B, m) -> h (B, m'): Q^T (c - mu) for signal-shaped c (images), else c."""
        if self.project_context:
            return (condition.float() - self.mean) @ self.basis
        return condition.float()

    def _residual_log_prob(self, r: Tensor) -> Tensor:
        if self.residual_dim == 0:
            return r.new_zeros(r.shape[0])
        var = torch.exp(2 * self.log_residual)
        return -r.square().sum(1) / (2 * var) - 0.5 * self.residual_dim * torch.log(
            2 * math.pi * var
        )

    def log_prob(self, x: Tensor, condition: Tensor) -> Tensor:
        """log q(x | c). x: (B, n), c: (B, m) -> (B,)."""
        centred = x - self.mean
        coords = centred @ self.basis
        r = centred - coords @ self.basis.T
        u = coords / self.scales
        lp = self.nsf(self._context(condition)).log_prob(u) - self.scales.log().sum()
        return lp + self._residual_log_prob(r)

    def rsample_and_log_prob(self, condition: Tensor) -> tuple[Tensor, Tensor]:
        """x ~ q(x | c) (reparameterised, global RNG) and log q(x | c). (B, m) -> (B, n), (B,)."""
        u, lp = self.nsf(self._context(condition)).rsample_and_log_prob()
        x = self.mean + (u * self.scales) @ self.basis.T
        lp = lp - self.scales.log().sum()
        if self.residual_dim:
            e = torch.randn_like(x)
            r = torch.exp(self.log_residual) * (e - (e @ self.basis) @ self.basis.T)
            x = x + r
            lp = lp + self._residual_log_prob(r)
        return x, lp


def representation(gaussian: LowRankGaussian, rank: int | None) -> LowRankGaussian:
    """q0's axes, completed to ``rank`` (None: q0's rank) by orthonormal directions of its
    residual, each with variance D. The completion is the QR of [Q, I_n]: its first r
    columns span Q, the others its orthogonal complement (deterministic, no random draw)."""
    g = gaussian.to(dtype=torch.float64)
    if rank is None or rank <= g.rank:
        return g
    if rank > g.dim:
        raise ValueError(f"flow.rank {rank} exceeds the data dimension {g.dim}")
    full, _ = torch.linalg.qr(torch.cat([g.basis, torch.eye(g.dim, dtype=g.basis.dtype)], 1))
    basis = torch.cat([g.basis, full[:, g.rank : rank]], 1)
    extra = torch.full((rank - g.rank,), g.residual, dtype=g.variances.dtype)
    return LowRankGaussian(g.mean, basis, torch.cat([g.variances, extra]), g.residual)


def build_flow(
    gaussian: LowRankGaussian, condition: Tensor, settings: FlowSettings
) -> PosteriorFlow:
    """A flow over q0's representation (``settings.rank`` axes) with context statistics of
    ``condition`` (N, m)."""
    gaussian = representation(gaussian, settings.rank)
    project = condition.shape[1] == gaussian.dim
    flow = PosteriorFlow(
        gaussian,
        torch.zeros(gaussian.rank if project else condition.shape[1]),
        torch.ones(1),
        settings.transforms,
        settings.hidden,
        project,
    )
    with torch.no_grad():
        h = flow.raw_context(condition)
    flow.context_mean.copy_(h.mean(0))
    flow.context_std = h.std(0).clamp_min(1e-6)
    return flow


def flow_from_state(
    state: dict[str, Tensor], transforms: int, hidden: tuple[int, ...]
) -> PosteriorFlow:
    """Rebuild a saved flow (its buffers fix the shapes; the checkpoint records the sizes)."""
    gaussian = LowRankGaussian(state["mean"], state["basis"], state["scales"].square(), 1.0)
    flow = PosteriorFlow(
        gaussian,
        state["context_mean"],
        state["context_std"],
        transforms,
        hidden,
        bool(state["project_context"]),
    )
    flow.load_state_dict(state)
    return flow.eval()


@torch.no_grad()
def flow_sample(
    flow: PosteriorFlow,
    op: LinearOperator,
    y: Tensor,
    batch_size: int,
    seed: int,
    device: torch.device,
) -> Tensor:
    """x_i ~ q_phi(x | y_i) for every observation. y: (N, *O) -> (N, n)."""
    torch.manual_seed(seed)  # zuko samples from the global RNG
    flow = flow.to(device).eval()
    out = []
    for start in range(0, y.shape[0], batch_size):
        yb = y[start : start + batch_size].to(device=device, dtype=torch.float32)
        opb = op[start : start + batch_size].to(device=device, dtype=torch.float32)
        out.append(flow.rsample_and_log_prob(opb.condition(yb))[0].cpu())
    return torch.cat(out)


def amortized_loss(
    flow: PosteriorFlow,
    denoiser: Denoiser,
    op: LinearOperator,
    y: Tensor,
    sigma_y: float,
    schedule: VESchedule,
) -> Tensor:
    """L(phi) per feature on a batch: mean_i [log q(x_i|y_i) + |y_i - A_i x_i|^2/(2 sigma_y^2)
    + B_theta(x_i)] / n with x_i ~ q(. | y_i) reparameterised. y: (B, *O) -> scalar."""
    x, log_q = flow.rsample_and_log_prob(op.condition(y))
    likelihood = (y - op(x)).flatten(1).square().sum(1) / (2 * sigma_y**2)
    return (log_q + likelihood + diffusion_bound(denoiser, x, schedule)).mean() / x.shape[1]


def train_flow(
    flow: PosteriorFlow,
    denoiser: Denoiser,
    op: LinearOperator,
    y: Tensor,
    settings: FlowSettings,
    schedule: VESchedule,
    seed: int,
    device: torch.device,
    progress: bool = True,
) -> list[float]:
    """Adam on :func:`amortized_loss` with theta frozen; batches of observations drawn with
    replacement. Returns the mean loss per 1% of the run."""
    torch.manual_seed(seed)
    flow.to(device).train()
    denoiser = denoiser.to(device).eval().requires_grad_(False)
    params = [p for p in flow.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=settings.lr)
    losses, window = [], []
    log_every = max(1, settings.steps // 100)
    for _ in tqdm(range(settings.steps), desc="flow", disable=not progress, mininterval=5):
        index = torch.randint(y.shape[0], (settings.batch_size,))
        opb = op[index].to(device=device, dtype=torch.float32)
        loss = amortized_loss(
            flow, denoiser, opb, y[index].to(device, torch.float32), settings.sigma_y, schedule
        )
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"FlowDiff flow loss is {loss.item()}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if settings.clip:
            nn.utils.clip_grad_norm_(params, settings.clip)
        optimizer.step()
        window.append(loss.item())
        if len(window) == log_every:
            losses.append(sum(window) / len(window))
            window = []
    if window:
        losses.append(sum(window) / len(window))
    flow.cpu().eval()
    return losses


def m_step(
    samples: Tensor,
    previous: Prior,
    op: LinearOperator,
    y: Tensor,
    settings: ExperimentSettings,
    seed: int,
    resume_path: Path | None,
    progress: bool = True,
) -> tuple[Prior, list[float], list[float]]:
    """Round k: theta_k trained on the flow samples (EM-MMPS's M-step), then phi_k trained on
    the amortized objective with theta_k frozen. Returns the prior and both loss curves."""
    prior, losses = em_mmps.m_step(samples, previous, settings, seed, resume_path, progress)
    if previous.flow is not None:
        flow = previous.flow
    else:
        flow = build_flow(previous.gaussian, op.condition(y).float(), settings.flow)
    flow_losses = train_flow(
        flow,
        prior.network,
        op,
        y,
        settings.flow,
        settings.schedule,
        seed,
        settings.device,
        progress,
    )
    prior.network.requires_grad_(True)
    return Prior(prior.gaussian, prior.network.cpu(), flow), losses, flow_losses
