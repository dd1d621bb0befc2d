//! Bench stage: rate-distortion curves — mean curves, log-bpp interpolation, Bjontegaard deltas.
//!
//! A codec's curve is the mean over images of bpp and of each metric, per setting, as in
//! ../shared/reference/kodak_classic_rd.csv. Values at a target bpp are interpolated linearly
//! in ln(bpp) between the two neighbouring points of the curve's upper envelope (never
//! extrapolated). BD-rate and BD-PSNR follow Bjontegaard (VCEG-M33): a least-squares cubic in
//! log-rate, integrated over the overlapping range of the two curves.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use super::Row;

/// One point of a codec's mean curve.
#[derive(Clone, Debug, PartialEq)]
pub struct CurvePoint {
    /// The codec setting the point averages.
    pub setting: String,
    /// Mean bits per pixel.
    pub bpp: f64,
    /// Mean PSNR (dB).
    pub psnr: f64,
    /// Mean MS-SSIM (NaN when an image of the mean has none).
    pub ms_ssim: f64,
    /// Mean SSIMULACRA2 (NaN when an image of the mean has none).
    pub ssimulacra2: f64,
    /// How many images the point averages.
    pub n: usize,
}

/// Which distortion metric a curve or a delta is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// PSNR over RGB, dB.
    Psnr,
    /// MS-SSIM over RGB.
    MsSsim,
    /// SSIMULACRA2 score.
    Ssimulacra2,
}

impl CurvePoint {
    /// The point's value of `metric`.
    pub fn value(&self, metric: Metric) -> f64 {
        match metric {
            Metric::Psnr => self.psnr,
            Metric::MsSsim => self.ms_ssim,
            Metric::Ssimulacra2 => self.ssimulacra2,
        }
    }
}

/// Mean curve of every codec in `rows`: per (codec, setting), the mean of bpp and of the
/// metrics over images, settings in order of first appearance. Codecs come out sorted by name.
/// Infinite PSNR (lossless points) makes that point's PSNR infinite; curves skip such points.
pub fn mean_curves(rows: &[Row]) -> BTreeMap<String, Vec<CurvePoint>> {
    let mut out: BTreeMap<String, Vec<CurvePoint>> = BTreeMap::new();
    for r in rows {
        let curve = out.entry(r.codec.clone()).or_default();
        match curve.iter_mut().find(|p| p.setting == r.setting) {
            Some(p) => {
                p.bpp += r.bpp;
                p.psnr += r.psnr;
                p.ms_ssim += r.ms_ssim;
                p.ssimulacra2 += r.ssimulacra2;
                p.n += 1;
            }
            None => curve.push(CurvePoint {
                setting: r.setting.clone(),
                bpp: r.bpp,
                psnr: r.psnr,
                ms_ssim: r.ms_ssim,
                ssimulacra2: r.ssimulacra2,
                n: 1,
            }),
        }
    }
    for curve in out.values_mut() {
        for p in curve.iter_mut() {
            let n = p.n as f64;
            p.bpp /= n;
            p.psnr /= n;
            p.ms_ssim /= n;
            p.ssimulacra2 /= n;
        }
    }
    out
}

/// The upper envelope of a curve for one metric: finite points with bpp > 0, sorted by bpp,
/// each strictly better than every point at a lower rate. For a monotone ladder this is the
/// ladder itself; for several presets of a progressive codec it is their best frontier.
pub fn envelope(curve: &[CurvePoint], metric: Metric) -> Vec<(f64, f64)> {
    let mut pts: Vec<(f64, f64)> = curve
        .iter()
        .map(|p| (p.bpp, p.value(metric)))
        .filter(|(b, v)| b.is_finite() && *b > 0.0 && v.is_finite())
        .collect();
    pts.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.total_cmp(&a.1)));
    let mut out: Vec<(f64, f64)> = Vec::new();
    for (b, v) in pts {
        let better = match out.last() {
            Some(&(_, best)) => v > best,
            None => true,
        };
        if better {
            out.push((b, v));
        }
    }
    out
}

/// Value at `target` bpp, linear in ln(bpp) between the neighbouring points of `env` (as
/// returned by [`envelope`]); `None` outside the curve's range.
pub fn interp_log_bpp(env: &[(f64, f64)], target: f64) -> Option<f64> {
    if target.partial_cmp(&0.0) != Some(Ordering::Greater) || env.is_empty() {
        return None;
    }
    for w in env.windows(2) {
        let ((b0, v0), (b1, v1)) = (w[0], w[1]);
        if target >= b0 && target <= b1 {
            let f = (target / b0).ln() / (b1 / b0).ln();
            return Some(v0 + f * (v1 - v0));
        }
    }
    match env {
        [(b, v)] if *b == target => Some(*v),
        _ => None,
    }
}

/// Least-squares polynomial fit of degree `deg` (coefficients lowest first) of y on x. Uses
/// normal equations on x centred and scaled to [-1, 1], then expands back.
fn polyfit(xs: &[f64], ys: &[f64], deg: usize) -> Option<Vec<f64>> {
    let n = deg + 1;
    if xs.len() < n {
        return None;
    }
    let (lo, hi) = xs
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        });
    let c = 0.5 * (lo + hi);
    let s = if hi > lo { 0.5 * (hi - lo) } else { 1.0 };
    // Normal equations A^T A p = A^T y in u = (x - c) / s.
    let mut m = vec![vec![0.0f64; n + 1]; n];
    for (&x, &y) in xs.iter().zip(ys) {
        let u = (x - c) / s;
        let pw: Vec<f64> = (0..n).map(|k| u.powi(k as i32)).collect();
        for i in 0..n {
            for j in 0..n {
                m[i][j] += pw[i] * pw[j];
            }
            m[i][n] += pw[i] * y;
        }
    }
    // Gaussian elimination with partial pivoting.
    for col in 0..n {
        let piv = (col..n).max_by(|&a, &b| m[a][col].abs().total_cmp(&m[b][col].abs()))?;
        if m[piv][col].abs() < 1e-300 {
            return None;
        }
        m.swap(col, piv);
        let pivot = m[col].clone();
        for (r, row) in m.iter_mut().enumerate() {
            if r != col {
                let f = row[col] / pivot[col];
                for (x, p) in row.iter_mut().zip(&pivot).skip(col) {
                    *x -= f * p;
                }
            }
        }
    }
    let q: Vec<f64> = (0..n).map(|i| m[i][n] / m[i][i]).collect();
    // Expand sum q_k ((x - c) / s)^k into powers of x.
    let mut p = vec![0.0; n];
    for (k, &qk) in q.iter().enumerate() {
        // (x - c)^k = sum_j binom(k, j) x^j (-c)^(k - j)
        let mut binom = 1.0;
        for (j, pj) in p.iter_mut().enumerate().take(k + 1) {
            if j > 0 {
                binom = binom * (k + 1 - j) as f64 / j as f64;
            }
            *pj += qk / s.powi(k as i32) * binom * (-c).powi((k - j) as i32);
        }
    }
    Some(p)
}

/// Definite integral of the polynomial `p` (lowest first) from `a` to `b`.
fn polyint(p: &[f64], a: f64, b: f64) -> f64 {
    let prim = |x: f64| -> f64 {
        p.iter()
            .enumerate()
            .map(|(k, c)| c * x.powi(k as i32 + 1) / (k as f64 + 1.0))
            .sum()
    };
    prim(b) - prim(a)
}

/// Fit degree: cubic, or lower when a curve has fewer than 4 points.
fn degree(a: usize, b: usize) -> Option<usize> {
    let n = a.min(b);
    (n >= 2).then(|| (n - 1).min(3))
}

/// BD-rate of `test` against `anchor` in percent (negative: `test` needs fewer bits for the
/// same quality), over the overlapping quality range; `None` when the ranges do not overlap
/// or a curve has fewer than 2 points. Curves are `(bpp, value)` envelopes.
pub fn bd_rate(anchor: &[(f64, f64)], test: &[(f64, f64)]) -> Option<f64> {
    let deg = degree(anchor.len(), test.len())?;
    let (ra, qa): (Vec<f64>, Vec<f64>) = anchor.iter().map(|&(b, v)| (b.ln(), v)).unzip();
    let (rt, qt): (Vec<f64>, Vec<f64>) = test.iter().map(|&(b, v)| (b.ln(), v)).unzip();
    let lo = min(&qa).max(min(&qt));
    let hi = max(&qa).min(max(&qt));
    if hi.partial_cmp(&lo) != Some(Ordering::Greater) {
        return None;
    }
    let pa = polyfit(&qa, &ra, deg)?;
    let pt = polyfit(&qt, &rt, deg)?;
    let avg = (polyint(&pt, lo, hi) - polyint(&pa, lo, hi)) / (hi - lo);
    Some((avg.exp() - 1.0) * 100.0)
}

/// BD-PSNR (or BD-metric) of `test` against `anchor`: mean quality difference over the
/// overlapping ln(bpp) range; `None` when the ranges do not overlap.
pub fn bd_quality(anchor: &[(f64, f64)], test: &[(f64, f64)]) -> Option<f64> {
    let deg = degree(anchor.len(), test.len())?;
    let (ra, qa): (Vec<f64>, Vec<f64>) = anchor.iter().map(|&(b, v)| (b.ln(), v)).unzip();
    let (rt, qt): (Vec<f64>, Vec<f64>) = test.iter().map(|&(b, v)| (b.ln(), v)).unzip();
    let lo = min(&ra).max(min(&rt));
    let hi = max(&ra).min(max(&rt));
    if hi.partial_cmp(&lo) != Some(Ordering::Greater) {
        return None;
    }
    let pa = polyfit(&ra, &qa, deg)?;
    let pt = polyfit(&rt, &qt, deg)?;
    Some((polyint(&pt, lo, hi) - polyint(&pa, lo, hi)) / (hi - lo))
}

/// The overlapping quality range of two envelopes, if any: the range [`bd_rate`] integrates
/// over.
pub fn quality_overlap(anchor: &[(f64, f64)], test: &[(f64, f64)]) -> Option<(f64, f64)> {
    let q = |c: &[(f64, f64)]| c.iter().map(|p| p.1).collect::<Vec<f64>>();
    let (qa, qt) = (q(anchor), q(test));
    if qa.is_empty() || qt.is_empty() {
        return None;
    }
    let lo = min(&qa).max(min(&qt));
    let hi = max(&qa).min(max(&qt));
    (hi > lo).then_some((lo, hi))
}

/// The overlapping bpp range of two envelopes, if any: the range [`bd_quality`] integrates
/// over.
pub fn overlap(anchor: &[(f64, f64)], test: &[(f64, f64)]) -> Option<(f64, f64)> {
    let lo = anchor.first()?.0.max(test.first()?.0);
    let hi = anchor.last()?.0.min(test.last()?.0);
    (hi > lo).then_some((lo, hi))
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(codec: &str, setting: &str, image: &str, bpp: f64, psnr: f64) -> Row {
        Row {
            codec: codec.into(),
            setting: setting.into(),
            image: image.into(),
            bpp,
            psnr,
            ms_ssim: 0.9,
            ssimulacra2: 70.0,
            enc_s: 0.0,
            dec_s: 0.0,
        }
    }

    /// psnr = 30 + 6 log2(bpp): linear in log-rate, so every fit is exact.
    fn curve(rates: &[f64], shift_db: f64, rate_scale: f64) -> Vec<(f64, f64)> {
        rates
            .iter()
            .map(|&r| (r * rate_scale, 30.0 + 6.0 * r.log2() + shift_db))
            .collect()
    }

    #[test]
    fn means_per_setting() {
        let rows = vec![
            row("a", "1", "x", 0.2, 30.0),
            row("a", "1", "y", 0.4, 32.0),
            row("a", "2", "x", 1.0, 40.0),
        ];
        let c = mean_curves(&rows);
        let a = &c["a"];
        assert_eq!(a.len(), 2);
        assert!((a[0].bpp - 0.3).abs() < 1e-12 && (a[0].psnr - 31.0).abs() < 1e-12);
        assert_eq!(a[0].n, 2);
        assert_eq!(a[1].setting, "2");
    }

    #[test]
    fn log_bpp_interpolation() {
        // The reference's jpeg points 10 and 8 give its 0.25 bpp value (26.533).
        let env = vec![(0.21216, 25.8354), (0.25783, 26.6643)];
        let v = interp_log_bpp(&env, 0.25).unwrap();
        assert!((v - 26.533).abs() < 5e-4, "{v}");
        // Halfway in log: sqrt(b0 b1) gives the mean of the values.
        let env = vec![(0.25, 30.0), (1.0, 36.0)];
        assert!((interp_log_bpp(&env, 0.5).unwrap() - 33.0).abs() < 1e-12);
        assert_eq!(interp_log_bpp(&env, 0.25), Some(30.0));
        assert_eq!(interp_log_bpp(&env, 2.0), None);
        assert_eq!(interp_log_bpp(&env, 0.1), None);
        assert_eq!(interp_log_bpp(&[], 0.5), None);
    }

    #[test]
    fn envelope_drops_dominated_and_lossless_points() {
        let pts = [(1.0, 30.0), (0.5, 28.0), (0.8, 27.0), (3.0, f64::INFINITY)];
        let curve: Vec<CurvePoint> = pts
            .iter()
            .map(|&(b, p)| CurvePoint {
                setting: String::new(),
                bpp: b,
                psnr: p,
                ms_ssim: 0.9,
                ssimulacra2: 70.0,
                n: 1,
            })
            .collect();
        assert_eq!(
            envelope(&curve, Metric::Psnr),
            vec![(0.5, 28.0), (1.0, 30.0)]
        );
    }

    #[test]
    fn polyfit_recovers_a_cubic() {
        let xs: Vec<f64> = (0..8).map(|i| -1.0 + 0.3 * i as f64).collect();
        let ys: Vec<f64> = xs
            .iter()
            .map(|x| 2.0 - x + 0.5 * x * x + 0.25 * x * x * x)
            .collect();
        let p = polyfit(&xs, &ys, 3).unwrap();
        for (a, b) in p.iter().zip([2.0, -1.0, 0.5, 0.25]) {
            assert!((a - b).abs() < 1e-9, "{p:?}");
        }
        assert!((polyint(&[0.0, 0.0, 3.0], 0.0, 2.0) - 8.0).abs() < 1e-12);
    }

    #[test]
    fn bd_rate_of_a_rate_scaled_curve() {
        let rates = [0.1, 0.25, 0.5, 1.0, 2.0];
        let anchor = curve(&rates, 0.0, 1.0);
        // Same quality at 90 % of the rate: BD-rate -10 %.
        let test = curve(&rates, 0.0, 0.9);
        let r = bd_rate(&anchor, &test).unwrap();
        assert!((r + 10.0).abs() < 1e-6, "{r}");
        // BD-PSNR of the same: 6 dB per doubling, so -6 log2(0.9) dB.
        let q = bd_quality(&anchor, &test).unwrap();
        assert!((q + 6.0 * 0.9f64.log2()).abs() < 1e-6, "{q}");
        // Against itself: zero.
        assert!(bd_rate(&anchor, &anchor).unwrap().abs() < 1e-9);
    }

    #[test]
    fn bd_psnr_of_a_shifted_curve() {
        let rates = [0.1, 0.25, 0.5, 1.0];
        let anchor = curve(&rates, 0.0, 1.0);
        let test = curve(&rates, 1.5, 1.0);
        assert!((bd_quality(&anchor, &test).unwrap() - 1.5).abs() < 1e-9);
        // +1.5 dB at 6 dB per doubling = 2^(-0.25) of the rate.
        let r = bd_rate(&anchor, &test).unwrap();
        assert!((r - (2f64.powf(-0.25) - 1.0) * 100.0).abs() < 1e-6, "{r}");
    }

    #[test]
    fn bd_without_overlap_is_none() {
        let anchor = curve(&[0.1, 0.2, 0.3, 0.4], 0.0, 1.0);
        let test = curve(&[1.0, 2.0, 3.0, 4.0], 0.0, 1.0);
        assert_eq!(bd_quality(&anchor, &test), None);
        assert_eq!(bd_rate(&anchor, &test), None);
        assert_eq!(overlap(&anchor, &test), None);
        assert_eq!(bd_rate(&anchor[..1], &anchor), None);
    }

    #[test]
    fn bd_with_few_points_lowers_the_degree() {
        let anchor = curve(&[0.25, 1.0], 0.0, 1.0);
        let test = curve(&[0.25, 1.0], 2.0, 1.0);
        assert!((bd_quality(&anchor, &test).unwrap() - 2.0).abs() < 1e-9);
    }
}

#[cfg(test)]
mod overlap_tests {
    use super::*;

    #[test]
    fn bd_rate_range_is_the_quality_overlap() {
        let anchor = [(0.2, 28.0), (0.5, 31.0), (1.0, 34.0), (2.0, 37.0)];
        let test = [(0.4, 29.0), (0.8, 32.0), (1.6, 35.0), (3.2, 38.0)];
        assert_eq!(quality_overlap(&anchor, &test), Some((29.0, 37.0)));
        assert_eq!(overlap(&anchor, &test), Some((0.4, 2.0)));
        // The test curve needs more bits than the anchor at every PSNR of that range.
        let r = bd_rate(&anchor, &test).unwrap();
        assert!(r > 0.0 && r < 100.0, "{r}");
        assert_eq!(quality_overlap(&anchor[..1], &test[3..]), None);
    }
}
