"""The paper's linear beta schedule and the coding chain's marginals (DESIGN.md sections 1, 2, 5)."""

import math

import torch

T = 1000


def abar_table() -> torch.Tensor:
    """abar[t] for t = 0..T (abar[0] = 1), float64, linear betas 1e-4..0.02."""
    betas = torch.linspace(1e-4, 0.02, T, dtype=torch.float64)
    ab = torch.cumprod(1.0 - betas, dim=0)
    return torch.cat([torch.ones(1, dtype=torch.float64), ab])


ABAR = abar_table()


def logsnr_of_abar(abar):
    return torch.log(abar) - torch.log1p(-abar)


def abar_of_logsnr(lam):
    return torch.sigmoid(lam)


LOGSNR_T = float(logsnr_of_abar(ABAR[T]))      # about -10.1
LOGSNR_MAX = float(logsnr_of_abar(ABAR[1]))   # about 9.2
CODEC_LO = float(logsnr_of_abar(ABAR[800]))
CODEC_HI = float(logsnr_of_abar(ABAR[2]))


# The timesteps where the ladder (diffusion::LADDER = 1000, 150, 70, 40, 20, 12, 4, 1) calls the
# network before a step, and the bits (bpp) of the step each one starts: the tuning set's means
# with the default coders (results/ladder-sweep/tune-coders-per-step.txt, kinds 2 and 3). The
# earlier ladder 1000, 150, 40, 12, 4, 1 had points 150, 40, 12, 4 and bits 1.09, 1.51, 1.75,
# 2.48 (Kodak, UQ).
LADDER_POINTS = [150, 70, 40, 20, 12, 4]
LADDER_BITS = [0.372, 0.409, 0.727, 0.591, 1.975, 2.613]


def sample_logsnr(n: int, gen: torch.Generator, ladder_frac: float = 0.0) -> torch.Tensor:
    """Noise levels where the codec works: 80 % uniform in log-SNR over t = 2..800,
    20 % uniform over the integer timesteps 1..T. With ladder_frac > 0, that share of the
    batch is instead drawn at the ladder's network points, weighted by the bits of the step
    each starts, with a log-SNR jitter of 0.25."""
    u = torch.rand(n, generator=gen, dtype=torch.float64)
    lam = CODEC_LO + (CODEC_HI - CODEC_LO) * u
    t = torch.randint(1, T + 1, (n,), generator=gen)
    lam_t = logsnr_of_abar(ABAR[t])
    pick = torch.rand(n, generator=gen) < 0.2
    lam = torch.where(pick, lam_t, lam)
    if ladder_frac > 0:
        w = torch.tensor(LADDER_BITS, dtype=torch.float64)
        idx = torch.multinomial(w, n, replacement=True, generator=gen)
        pts = torch.tensor(LADDER_POINTS)[idx]
        jit = 0.25 * torch.randn(n, generator=gen, dtype=torch.float64)
        lam_l = (logsnr_of_abar(ABAR[pts]) + jit).clamp(LOGSNR_T, LOGSNR_MAX)
        on = torch.rand(n, generator=gen) < ladder_frac
        lam = torch.where(on, lam_l, lam)
    return lam


def gaussian_marginal(x, lam, gen):
    """z = sqrt(abar) x + sqrt(1 - abar) eps (the paper's q(z_t | x))."""
    abar = abar_of_logsnr(lam).float()[:, None, None, None]
    eps = torch.randn(x.shape, generator=gen)
    return abar.sqrt() * x + (1 - abar).sqrt() * eps


def chain_marginal(x, lam, gen, max_inter: int = 5):
    """The coding chain's exact marginal at log-SNR lam: z_T ~ N(0, I), then steps
    t -> s through random intermediate noise levels, each z_s = mu_q(x, z_t) + uniform
    noise of the posterior variance (subtractive dither makes it exactly uniform)."""
    n = x.shape[0]
    z = torch.randn(x.shape, generator=gen)
    abar_T = float(ABAR[T])
    ab_t = torch.full((n,), abar_T, dtype=torch.float64)
    k = torch.randint(0, max_inter + 1, (n,), generator=gen)
    u = torch.rand(n, max_inter, generator=gen, dtype=torch.float64)
    u = torch.sort(u, dim=1).values  # increasing fraction: T side first
    lam_T = torch.full((n,), LOGSNR_T, dtype=torch.float64)
    for j in range(max_inter + 1):
        if j < max_inter:
            inter = lam_T + (lam - lam_T) * u[:, j]
            lam_s = torch.where(j < k, inter, lam)
        else:
            lam_s = lam
        active = (j <= k)
        ab_s = abar_of_logsnr(lam_s)
        # steps already finished keep z (ab_s == ab_t makes the step the identity)
        ab_s = torch.where(active, ab_s, ab_t)
        a_ts = ab_t / ab_s
        b_ts = -torch.expm1(torch.log(ab_t) - torch.log(ab_s))
        one_m_t = 1 - ab_t
        cx = (ab_s.sqrt() * b_ts / one_m_t)
        cz = (a_ts.sqrt() * (1 - ab_s) / one_m_t)
        var = b_ts * (1 - ab_s) / one_m_t
        cx = torch.where(active, cx, torch.zeros_like(cx))
        cz = torch.where(active, cz, torch.ones_like(cz))
        var = torch.where(active, var, torch.zeros_like(var))
        delta = torch.sqrt(12 * var).float()[:, None, None, None]
        noise = torch.rand(x.shape, generator=gen) - 0.5
        z = cx.float()[:, None, None, None] * x + cz.float()[:, None, None, None] * z + delta * noise
        ab_t = torch.where(active, ab_s, ab_t)
    return z


def v_target(x, z, lam):
    """v for the effective noise of z: eps_eff = (z - sqrt(abar) x) / sqrt(1 - abar)."""
    abar = abar_of_logsnr(lam).float()[:, None, None, None]
    eps = (z - abar.sqrt() * x) / (1 - abar).sqrt()
    return abar.sqrt() * eps - (1 - abar).sqrt() * x


def x0_from_v(z, v, lam):
    abar = abar_of_logsnr(lam).float()[:, None, None, None]
    return abar.sqrt() * z - (1 - abar).sqrt() * v
