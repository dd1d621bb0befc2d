//! Stage 1: the noise schedule (f64), the coding step t -> s and the normative counter-based
//! PRNG (SPEC §5, §6).
//!
//! Everything the decoder needs to agree on bit for bit is computed here with IEEE-754
//! `+ - * / sqrt` only, from numbers stored in the file header.

/// Number of diffusion steps of the training schedule.
pub const T_MAX: u32 = 1000;

/// Coding-step preset ladder (timesteps); `--quality q` keeps the first `q` steps after 1000.
/// Chosen by real size on training images with coder kinds 2 and 3 (SPEC §12): UQ pays a
/// fixed cost per step and wants few, wide steps at high SNR; the Gaussian steps of kind 3 cost
/// less over shorter moves, so the low-SNR part (t >= 20) is finer.
pub const LADDER: [u32; 8] = [1000, 150, 70, 40, 20, 12, 4, 1];

/// Number of quality presets (steps of the full ladder).
pub const PRESETS: u8 = (LADDER.len() - 1) as u8;

/// Timesteps of the `flow` and `sample` reconstructions (SPEC §11; independent of the coding
/// ladder, so that a file decodes to the same image whatever ladder coded it).
pub const RECON_LADDER: [u32; 7] = [1000, 400, 150, 50, 15, 5, 2];

/// abar_t for t = 0..=1000 of the linear schedule beta_i = 1e-4 + (0.02 - 1e-4) (i - 1) / 999.
/// abar_0 = 1. Used by the encoder only: the decoder reads abar from the header (SPEC §4.2).
pub fn abar_table() -> Vec<f64> {
    let mut out = Vec::with_capacity(T_MAX as usize + 1);
    let mut a = 1.0f64;
    out.push(a);
    for i in 1..=T_MAX {
        let beta = 1e-4 + (0.02 - 1e-4) * f64::from(i - 1) / f64::from(T_MAX - 1);
        a *= 1.0 - beta;
        out.push(a);
    }
    out
}

/// log-SNR = ln(abar / (1 - abar)).
pub fn logsnr(abar: f64) -> f64 {
    (abar / (1.0 - abar)).ln()
}

/// Inverse of [`logsnr`]: abar = 1 / (1 + exp(-lambda)).
pub fn abar_from_logsnr(lambda: f64) -> f64 {
    1.0 / (1.0 + (-lambda).exp())
}

/// One point of a coding schedule as stored in the header (SPEC §4.2).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SchedulePoint {
    /// Nominal timestep (informative; may be fractional after rate control).
    pub t: f64,
    /// Cumulative signal fraction abar_t, in (0, 1).
    pub abar: f64,
    /// The network's conditioning input, ln(abar / (1 - abar)).
    pub logsnr: f64,
}

impl SchedulePoint {
    /// The point at integer timestep `t` of the training schedule.
    pub fn at(t: u32) -> Self {
        let abar = abar_table()[t.min(T_MAX) as usize];
        SchedulePoint {
            t: f64::from(t),
            abar,
            logsnr: logsnr(abar),
        }
    }

    /// The point with log-SNR `lambda`; its nominal t is interpolated in log-SNR between the
    /// neighbouring integer timesteps.
    pub fn from_logsnr(lambda: f64) -> Self {
        let tab = abar_table();
        let mut t = if lambda > logsnr(tab[1]) {
            1.0
        } else {
            f64::from(T_MAX)
        };
        for i in 2..=T_MAX as usize {
            let l_hi = logsnr(tab[i - 1]);
            let l_lo = logsnr(tab[i]);
            if lambda <= l_hi && lambda >= l_lo {
                t = (i - 1) as f64 + (l_hi - lambda) / (l_hi - l_lo);
                break;
            }
        }
        SchedulePoint {
            t,
            abar: abar_from_logsnr(lambda),
            logsnr: lambda,
        }
    }
}

/// Coefficients of one coding step t -> s (SPEC §6.1), computed in f64 from header values.
#[derive(Clone, Copy, Debug)]
pub struct StepCoeffs {
    /// Weight of x (or xhat) in the posterior mean.
    pub cx: f64,
    /// Weight of z_t in the posterior mean.
    pub cz: f64,
    /// Posterior variance.
    pub var: f64,
    /// Quantizer width sqrt(12 var).
    pub delta: f64,
}

impl StepCoeffs {
    /// Coefficients for abar_t < abar_s (both in (0, 1)).
    pub fn new(abar_t: f64, abar_s: f64) -> Self {
        let a_ts = abar_t / abar_s;
        let b_ts = 1.0 - a_ts;
        let cx = abar_s.sqrt() * b_ts / (1.0 - abar_t);
        let cz = a_ts.sqrt() * (1.0 - abar_s) / (1.0 - abar_t);
        let var = b_ts * (1.0 - abar_s) / (1.0 - abar_t);
        let delta = (12.0 * var).sqrt();
        StepCoeffs { cx, cz, var, delta }
    }

    /// The f32 constants applied to arrays: (cx, cz, delta, cx / delta).
    pub fn f32s(&self) -> (f32, f32, f32, f32) {
        (
            self.cx as f32,
            self.cz as f32,
            self.delta as f32,
            (self.cx / self.delta) as f32,
        )
    }
}

/// PRNG domains (SPEC §5).
pub mod domain {
    /// Dither levels of the coding steps.
    pub const DITHER: u64 = 1;
    /// The starting latent z_T.
    pub const START: u64 = 2;
    /// Noise of the `sample` reconstruction.
    pub const SAMPLE: u64 = 3;
}

const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The normative counter-based PRNG (SPEC §5): a 64-bit value from
/// (seed, domain, step, channel, y, x).
pub fn prng(seed: u64, domain: u64, step: u64, channel: u64, y: u64, x: u64) -> u64 {
    let mut h = seed;
    for v in [domain, step, channel, y, x] {
        h = mix(h.wrapping_add(GAMMA) ^ v);
    }
    h
}

/// Number of dither levels.
pub const DITHER_LEVELS: usize = 64;

/// Dither level j in 0..64 of one element of coding step `step` (SPEC §5.1).
pub fn dither_level(seed: u64, step: usize, c: usize, y: usize, x: usize) -> usize {
    (prng(
        seed,
        domain::DITHER,
        step as u64,
        c as u64,
        y as u64,
        x as u64,
    ) >> 58) as usize
}

/// Dither value u = (j + 0.5) / 64 - 0.5, exact in f32.
pub fn dither_u(j: usize) -> f32 {
    (j as f32 + 0.5) / 64.0 - 0.5
}

/// Approximately standard-normal number from integers (SPEC §5.2): sum of twelve 16-bit
/// uniforms, centred and scaled by 2^-16; exactly representable in f32.
pub fn normal(seed: u64, dom: u64, step: u64, c: usize, y: usize, x: usize) -> f32 {
    let mut s: i64 = 0;
    for w in 0..3u64 {
        let r = prng(seed, dom, step * 4 + w, c as u64, y as u64, x as u64);
        for q in 0..4 {
            s += ((r >> (16 * q)) & 0xFFFF) as i64;
        }
    }
    // 12 * 32767.5 = 393210
    ((s as f64 - 393_210.0) / 65_536.0) as f32
}

/// The starting latent z_T, planar 3 x h x w (padded size), SPEC §5.2.
pub fn start_latent(seed: u64, h: usize, w: usize) -> Vec<f32> {
    let mut z = vec![0f32; 3 * h * w];
    for c in 0..3 {
        for y in 0..h {
            for x in 0..w {
                z[(c * h + y) * w + x] = normal(seed, domain::START, 0, c, y, x);
            }
        }
    }
    z
}

/// Number of entries of the Gaussian quantile table (SPEC §5.3).
pub const GAUSS_LEN: usize = 1 << 16;

/// Standard normal CDF, normative form (SPEC §5.3): for x >= 0,
/// 0.5 + phi(x) * sum_{n>=0} x^(2n+1) / (1 * 3 * ... * (2n+1)) (terms added until one is
/// below 1e-17 of the sum, at most 200), phi(x) = exp_neg(-x * x / 2) / 2.5066282746310002;
/// for x < 0, 1 - CDF(-x). f64 `+ - * /` only.
fn normal_cdf(x: f64) -> f64 {
    if x < 0.0 {
        return 1.0 - normal_cdf(-x);
    }
    let phi = crate::entropy::exp_neg(-x * x / 2.0) / 2.506_628_274_631_000_2;
    let mut term = x;
    let mut sum = x;
    let x2 = x * x;
    let mut k = 1u32;
    while k <= 200 && term > 1e-17 * sum {
        term = term * x2 / f64::from(2 * k + 1);
        sum += term;
        k += 1;
    }
    0.5 + phi * sum
}

/// The Gaussian quantile table (SPEC §5.3): entry i is f32 of the x with
/// CDF(x) = (i + 0.5) / 65536, found for i >= 32768 by 8 Newton steps
/// x <- x - (CDF(x) - p) / phi(x) from the previous entry's x (0 for i = 32768), and
/// table\[i\] = -table\[65535 - i\] below. Built once.
pub fn gauss_table() -> &'static [f32] {
    static T: std::sync::OnceLock<Vec<f32>> = std::sync::OnceLock::new();
    T.get_or_init(|| {
        let mut t = vec![0f32; GAUSS_LEN];
        let half = GAUSS_LEN / 2;
        let mut x = 0.0f64;
        for i in half..GAUSS_LEN {
            let p = (i as f64 + 0.5) / GAUSS_LEN as f64;
            for _ in 0..8 {
                let phi = crate::entropy::exp_neg(-x * x / 2.0) / 2.506_628_274_631_000_2;
                x -= (normal_cdf(x) - p) / phi;
            }
            t[i] = x as f32;
            t[GAUSS_LEN - 1 - i] = -(x as f32);
        }
        t
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_endpoints() {
        let t = abar_table();
        assert_eq!(t.len(), 1001);
        assert!((t[1] - 0.9999).abs() < 1e-12);
        assert!(t[1000] > 3e-5 && t[1000] < 5e-5);
        let p = SchedulePoint::from_logsnr(logsnr(t[150]));
        assert!((p.t - 150.0).abs() < 1e-6, "{}", p.t);
    }

    #[test]
    fn gauss_table_is_accurate_and_pinned() {
        let t = gauss_table();
        // A few quantiles of the standard normal.
        let q = |p: f64| t[(p * GAUSS_LEN as f64 - 0.5).round() as usize];
        assert!((q(0.975) - 1.959_964).abs() < 1e-4, "{}", q(0.975));
        assert!(
            (t[GAUSS_LEN - 1] - 4.324_919).abs() < 1e-5,
            "{}",
            t[GAUSS_LEN - 1]
        );
        assert!((q(0.5 + 0.5 / 65536.0)).abs() < 1e-4);
        let m: f64 = t.iter().map(|&v| f64::from(v)).sum::<f64>() / GAUSS_LEN as f64;
        let v: f64 = t.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / GAUSS_LEN as f64;
        assert!(m.abs() < 1e-9 && (v - 1.0).abs() < 1e-3, "{m} {v}");
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for v in t {
            h.update(v.to_le_bytes());
        }
        // Pinned in SPEC §5.3.
        assert_eq!(
            crate::entropy::hex(&h.finalize()),
            "1cfbba1e07e34386a57626f82aeb43e6ed54ba70a3ea6b7d964dc66a841074a8"
        );
    }

    #[test]
    fn prng_pinned() {
        // Pinned in SPEC §5.
        assert_eq!(prng(0, 1, 0, 0, 0, 0), 0x4aca_f818_68eb_8265);
        assert_eq!(prng(42, 2, 0, 1, 2, 3), 0x0e6d_559f_a6c6_e77d);
        assert_ne!(prng(0, 1, 0, 0, 0, 0), prng(0, 1, 0, 0, 0, 1));
        let n: Vec<f32> = (0..20000).map(|i| normal(7, 2, 0, 0, 0, i)).collect();
        let m = n.iter().sum::<f32>() / n.len() as f32;
        let v = n.iter().map(|a| (a - m) * (a - m)).sum::<f32>() / n.len() as f32;
        assert!(m.abs() < 0.03 && (v - 1.0).abs() < 0.05, "{m} {v}");
        assert_eq!(dither_u(0), -0.4921875);
        assert_eq!(dither_u(63), 0.4921875);
    }
}
