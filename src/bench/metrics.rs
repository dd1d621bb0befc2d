//! Bench stage: distortion metrics — PSNR, MS-SSIM and SSIMULACRA2 over 8-bit RGB.
//!
//! Both follow the definitions used for every published Kodak curve (CompressAI, and the
//! `pytorch_msssim` package), so that numbers in `results.csv` compare with numbers in papers
//! and with `../shared/reference/`:
//!
//! - PSNR: `10 log10(255^2 / MSE)`, the MSE taken over all pixels and all three channels of
//!   one image; curves average the per-image PSNR (not the MSE).
//! - MS-SSIM: 5 scales, Gaussian window of 11 taps with sigma 1.5 applied as a *valid*
//!   separable filter (no padding), K1 = 0.01, K2 = 0.03, data range 255, scale weights
//!   0.0448 / 0.2856 / 0.3001 / 0.2363 / 0.1333, 2x2 average pooling between scales (an odd
//!   side is zero-padded by one on each end, the padding counted in the average, as
//!   `avg_pool2d(padding = side % 2)` does), negative contrast terms clamped to 0; computed per
//!   colour channel and averaged over the three channels.
//! - SSIMULACRA2: the perceptual metric of libjxl's `ssimulacra2` tool (100 = identical, 90
//!   visually lossless, 70 high quality, 50 medium, lower scores worse; it can go negative),
//!   computed by the `ssimulacra2` crate on the images read as sRGB with BT.709 primaries.
//!
//! MS-SSIM needs both sides of at least [`MS_SSIM_MIN_SIDE`] pixels, SSIMULACRA2 at least
//! [`SSIMULACRA2_MIN_SIDE`]; on smaller images the bench writes them `n/a`.

use crate::{Error, Result};
use image::RgbImage;

/// MS-SSIM scale weights, finest scale first.
pub const MS_SSIM_WEIGHTS: [f64; 5] = [0.0448, 0.2856, 0.3001, 0.2363, 0.1333];
/// Gaussian window length.
pub const WIN_SIZE: usize = 11;
/// Gaussian window standard deviation.
pub const WIN_SIGMA: f64 = 1.5;
const K1: f64 = 0.01;
const K2: f64 = 0.03;
const DATA_RANGE: f64 = 255.0;

/// Smallest image side MS-SSIM accepts: the window must still fit after four poolings
/// (`side > (WIN_SIZE - 1) * 2^4`).
pub const MS_SSIM_MIN_SIDE: u32 = ((WIN_SIZE as u32) - 1) * 16 + 1;

fn check_same_size(a: &RgbImage, b: &RgbImage) -> Result<()> {
    if a.dimensions() != b.dimensions() {
        return Err(Error::param(format!(
            "images differ in size: {}x{} vs {}x{} (expected equal sizes)",
            a.width(),
            a.height(),
            b.width(),
            b.height()
        )));
    }
    if a.width() == 0 || a.height() == 0 {
        return Err(Error::param("empty image (expected width, height >= 1)"));
    }
    Ok(())
}

/// Mean squared error over all pixels and channels, in 8-bit units.
pub fn mse(a: &RgbImage, b: &RgbImage) -> Result<f64> {
    check_same_size(a, b)?;
    let sum: u64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(&x, &y)| {
            let d = x as i64 - y as i64;
            (d * d) as u64
        })
        .sum();
    Ok(sum as f64 / a.as_raw().len() as f64)
}

/// PSNR over RGB in dB: `10 log10(255^2 / MSE)`; `f64::INFINITY` for identical images.
pub fn psnr(a: &RgbImage, b: &RgbImage) -> Result<f64> {
    let m = mse(a, b)?;
    if m == 0.0 {
        return Ok(f64::INFINITY);
    }
    Ok(10.0 * (DATA_RANGE * DATA_RANGE / m).log10())
}

/// One channel as f64, row-major.
#[derive(Clone, Debug)]
struct Plane {
    w: usize,
    h: usize,
    v: Vec<f64>,
}

impl Plane {
    fn channel(img: &RgbImage, c: usize) -> Plane {
        let v = img.as_raw().chunks_exact(3).map(|p| p[c] as f64).collect();
        Plane {
            w: img.width() as usize,
            h: img.height() as usize,
            v,
        }
    }

    fn mul(&self, o: &Plane) -> Plane {
        Plane {
            w: self.w,
            h: self.h,
            v: self.v.iter().zip(&o.v).map(|(a, b)| a * b).collect(),
        }
    }

    /// Valid (unpadded) separable filtering with `win` along both axes; a side shorter than
    /// the window is left unfiltered, as `pytorch_msssim` does.
    fn filter_valid(&self, win: &[f64]) -> Plane {
        let n = win.len();
        // Horizontal pass.
        let (w1, tmp) = if self.w >= n {
            let w1 = self.w - n + 1;
            let mut out = vec![0.0; w1 * self.h];
            for y in 0..self.h {
                let row = &self.v[y * self.w..(y + 1) * self.w];
                for x in 0..w1 {
                    out[y * w1 + x] = win.iter().zip(&row[x..x + n]).map(|(k, v)| k * v).sum();
                }
            }
            (w1, out)
        } else {
            (self.w, self.v.clone())
        };
        // Vertical pass.
        if self.h >= n {
            let h1 = self.h - n + 1;
            let mut out = vec![0.0; w1 * h1];
            for (k, &wk) in win.iter().enumerate() {
                for y in 0..h1 {
                    let src = &tmp[(y + k) * w1..(y + k + 1) * w1];
                    let dst = &mut out[y * w1..(y + 1) * w1];
                    for (d, s) in dst.iter_mut().zip(src) {
                        *d += wk * s;
                    }
                }
            }
            Plane {
                w: w1,
                h: h1,
                v: out,
            }
        } else {
            Plane {
                w: w1,
                h: self.h,
                v: tmp,
            }
        }
    }

    /// 2x2 average pooling, stride 2; an odd side gets one zero on each end (counted in the
    /// average), as `avg_pool2d(kernel 2, padding = side % 2)`.
    fn pool2(&self) -> Plane {
        let (px, py) = (self.w % 2, self.h % 2);
        let w2 = (self.w + 2 * px - 2) / 2 + 1;
        let h2 = (self.h + 2 * py - 2) / 2 + 1;
        let get = |x: isize, y: isize| -> f64 {
            if x < 0 || y < 0 || x >= self.w as isize || y >= self.h as isize {
                0.0
            } else {
                self.v[y as usize * self.w + x as usize]
            }
        };
        let mut v = Vec::with_capacity(w2 * h2);
        for j in 0..h2 {
            for i in 0..w2 {
                let x0 = (2 * i) as isize - px as isize;
                let y0 = (2 * j) as isize - py as isize;
                v.push(
                    (get(x0, y0) + get(x0 + 1, y0) + get(x0, y0 + 1) + get(x0 + 1, y0 + 1)) / 4.0,
                );
            }
        }
        Plane { w: w2, h: h2, v }
    }
}

/// The normalised 1-D Gaussian window (`WIN_SIZE` taps, sigma `WIN_SIGMA`).
pub fn gaussian_window() -> Vec<f64> {
    let half = (WIN_SIZE / 2) as f64;
    let g: Vec<f64> = (0..WIN_SIZE)
        .map(|i| {
            let d = i as f64 - half;
            (-(d * d) / (2.0 * WIN_SIGMA * WIN_SIGMA)).exp()
        })
        .collect();
    let s: f64 = g.iter().sum();
    g.into_iter().map(|x| x / s).collect()
}

/// Mean SSIM and mean contrast-structure term of one channel at one scale.
fn ssim_cs(x: &Plane, y: &Plane, win: &[f64]) -> (f64, f64) {
    let c1 = (K1 * DATA_RANGE).powi(2);
    let c2 = (K2 * DATA_RANGE).powi(2);
    let mu1 = x.filter_valid(win);
    let mu2 = y.filter_valid(win);
    let xx = x.mul(x).filter_valid(win);
    let yy = y.mul(y).filter_valid(win);
    let xy = x.mul(y).filter_valid(win);
    let n = mu1.v.len();
    let (mut ssim_sum, mut cs_sum) = (0.0, 0.0);
    for i in 0..n {
        let (m1, m2) = (mu1.v[i], mu2.v[i]);
        let s1 = xx.v[i] - m1 * m1;
        let s2 = yy.v[i] - m2 * m2;
        let s12 = xy.v[i] - m1 * m2;
        let cs = (2.0 * s12 + c2) / (s1 + s2 + c2);
        let l = (2.0 * m1 * m2 + c1) / (m1 * m1 + m2 * m2 + c1);
        cs_sum += cs;
        ssim_sum += l * cs;
    }
    (ssim_sum / n as f64, cs_sum / n as f64)
}

/// MS-SSIM of one channel.
fn ms_ssim_plane(mut x: Plane, mut y: Plane, win: &[f64]) -> f64 {
    let levels = MS_SSIM_WEIGHTS.len();
    let mut val = 1.0;
    for (i, &wt) in MS_SSIM_WEIGHTS.iter().enumerate() {
        let (ssim, cs) = ssim_cs(&x, &y, win);
        if i + 1 < levels {
            val *= cs.max(0.0).powf(wt);
            x = x.pool2();
            y = y.pool2();
        } else {
            val *= ssim.max(0.0).powf(wt);
        }
    }
    val
}

/// An error unless both sides of `a` are at least `min` pixels, as `metric` needs.
fn check_min_side(a: &RgbImage, min: u32, metric: &str) -> Result<()> {
    let side = a.width().min(a.height());
    if side < min {
        return Err(Error::param(format!(
            "image side {side} too small for {metric} (expected >= {min})"
        )));
    }
    Ok(())
}

/// Smallest image side SSIMULACRA2 accepts.
pub const SSIMULACRA2_MIN_SIDE: u32 = 8;

/// SSIMULACRA2 score of `distorted` against the original `a` (100 for identical images).
/// Both sides must be at least [`SSIMULACRA2_MIN_SIDE`] pixels.
pub fn ssimulacra2(a: &RgbImage, distorted: &RgbImage) -> Result<f64> {
    use ssimulacra2::{ColorPrimaries, Rgb, TransferCharacteristic};
    check_same_size(a, distorted)?;
    check_min_side(a, SSIMULACRA2_MIN_SIDE, "SSIMULACRA2")?;
    let to_rgb = |img: &RgbImage| {
        let data: Vec<[f32; 3]> = img
            .as_raw()
            .chunks_exact(3)
            .map(|p| {
                [
                    f32::from(p[0]) / 255.0,
                    f32::from(p[1]) / 255.0,
                    f32::from(p[2]) / 255.0,
                ]
            })
            .collect();
        Rgb::new(
            data,
            img.width() as usize,
            img.height() as usize,
            TransferCharacteristic::SRGB,
            ColorPrimaries::BT709,
        )
        .map_err(|e| Error::param(format!("SSIMULACRA2 input: {e:?}")))
    };
    ssimulacra2::compute_frame_ssimulacra2(to_rgb(a)?, to_rgb(distorted)?)
        .map_err(|e| Error::param(format!("SSIMULACRA2: {e}")))
}

/// MS-SSIM over RGB (mean of the three channels' MS-SSIM), in [0, 1]; 1 for identical images.
/// Both sides must exceed [`MS_SSIM_MIN_SIDE`] - 1 pixels.
pub fn ms_ssim(a: &RgbImage, b: &RgbImage) -> Result<f64> {
    check_same_size(a, b)?;
    check_min_side(a, MS_SSIM_MIN_SIDE, "5-scale MS-SSIM")?;
    let win = gaussian_window();
    let sum: f64 = (0..3)
        .map(|c| ms_ssim_plane(Plane::channel(a, c), Plane::channel(b, c), &win))
        .sum();
    Ok(sum / 3.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn textured(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([
                (40 + (x * 7 + y * 3) % 170) as u8,
                (60 + (x * x + y) % 130) as u8,
                (30 + (x ^ y) % 190) as u8,
            ])
        })
    }

    #[test]
    fn psnr_identical_is_infinite() {
        let a = textured(32, 16);
        assert_eq!(psnr(&a, &a).unwrap(), f64::INFINITY);
    }

    #[test]
    fn psnr_known_noise() {
        // +-5 on every sample (no clipping): MSE = 25, PSNR = 10 log10(65025 / 25).
        let a = textured(40, 24);
        let mut b = a.clone();
        for (i, v) in b.iter_mut().enumerate() {
            *v = if i % 2 == 0 { *v + 5 } else { *v - 5 };
        }
        assert_eq!(mse(&a, &b).unwrap(), 25.0);
        let expected = 10.0 * (65025.0f64 / 25.0).log10();
        assert!((psnr(&a, &b).unwrap() - expected).abs() < 1e-12);
        assert!((expected - 34.1514).abs() < 1e-4);
        // One channel off by 3 everywhere: MSE = 9 / 3 = 3.
        let c = RgbImage::from_fn(8, 8, |_, _| image::Rgb([10, 10, 10]));
        let d = RgbImage::from_fn(8, 8, |_, _| image::Rgb([13, 10, 10]));
        assert_eq!(mse(&c, &d).unwrap(), 3.0);
    }

    #[test]
    fn size_mismatch_is_an_error() {
        assert!(psnr(&textured(8, 8), &textured(8, 9)).is_err());
        assert!(ms_ssim(&textured(100, 100), &textured(100, 100)).is_err());
    }

    #[test]
    fn window_is_normalised_and_symmetric() {
        let w = gaussian_window();
        assert_eq!(w.len(), 11);
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!((w[0] - w[10]).abs() < 1e-15);
        // exp(-25 / 4.5) relative to the centre tap.
        assert!((w[0] / w[5] - (-25.0f64 / 4.5).exp()).abs() < 1e-12);
    }

    #[test]
    fn ms_ssim_identical_is_one() {
        let a = textured(176, 168);
        assert!((ms_ssim(&a, &a).unwrap() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn ms_ssim_constant_offset_by_hand() {
        // Flat images: every variance is 0, so cs = C2 / C2 = 1 at every scale, and only the
        // last scale's luminance term remains: ((2 m1 m2 + C1) / (m1^2 + m2^2 + C1))^0.1333.
        let a = RgbImage::from_pixel(176, 176, image::Rgb([100, 100, 100]));
        let b = RgbImage::from_pixel(176, 176, image::Rgb([110, 110, 110]));
        let c1 = 2.55f64 * 2.55;
        let l = (2.0 * 100.0 * 110.0 + c1) / (100.0f64 * 100.0 + 110.0 * 110.0 + c1);
        let expected = l.powf(0.1333);
        assert!((ms_ssim(&a, &b).unwrap() - expected).abs() < 1e-12);
    }

    #[test]
    fn ms_ssim_falls_with_noise() {
        let a = textured(192, 176);
        let noisy = |amp: i32| {
            let mut b = a.clone();
            for (i, v) in b.iter_mut().enumerate() {
                let n = ((i as i64 * 2654435761) % 7) as i32 - 3; // -3..=3
                *v = (*v as i32 + n * amp).clamp(0, 255) as u8;
            }
            b
        };
        let s1 = ms_ssim(&a, &noisy(1)).unwrap();
        let s4 = ms_ssim(&a, &noisy(4)).unwrap();
        assert!(s1 < 1.0 && s4 < s1 && s4 > 0.0, "{s1} {s4}");
    }

    #[test]
    fn ssimulacra2_orders_distortions() {
        let a = textured(64, 48);
        let same = ssimulacra2(&a, &a).unwrap();
        assert!((same - 100.0).abs() < 1e-6, "{same}");
        let noisy = |amp: i32| {
            let mut b = a.clone();
            for (i, v) in b.iter_mut().enumerate() {
                let n = ((i as i64 * 2654435761) % 7) as i32 - 3;
                *v = (*v as i32 + n * amp).clamp(0, 255) as u8;
            }
            b
        };
        let s1 = ssimulacra2(&a, &noisy(1)).unwrap();
        let s6 = ssimulacra2(&a, &noisy(6)).unwrap();
        assert!(s1 < same && s6 < s1, "{s1} {s6}");
        assert!(ssimulacra2(&textured(7, 40), &textured(7, 40)).is_err());
        assert!(ssimulacra2(&a, &textured(64, 40)).is_err());
    }

    #[test]
    fn pooling_odd_side_counts_padding() {
        // 3 wide: windows [-1,0] and [1,2]; the padded zero is counted in the average.
        let p = Plane {
            w: 3,
            h: 2,
            v: vec![4.0, 8.0, 12.0, 4.0, 8.0, 12.0],
        };
        let q = p.pool2();
        assert_eq!((q.w, q.h), (2, 1));
        assert_eq!(q.v, vec![2.0, 10.0]);
    }
}
