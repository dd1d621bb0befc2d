//! Test helpers: small analytic denoisers (no network) and image metrics.
#![allow(dead_code)]

use ddpmc::model::Denoiser;
use ddpmc::Result;
use image::DynamicImage;

/// x0 estimate = shrunk mix of z and a 3x3 box blur of z, divided by sqrt(abar): a crude but
/// deterministic denoiser that gets better as the noise falls.
pub struct Analytic {
    pub id: [u8; 32],
}

impl Default for Analytic {
    fn default() -> Self {
        Analytic { id: [7; 32] }
    }
}

impl Denoiser for Analytic {
    fn predict_x0(&self, z: &[f32], h: usize, w: usize, abar: f64, _l: f64) -> Result<Vec<f32>> {
        let snr = abar / (1.0 - abar);
        let a = (snr / (snr + 200.0)) as f32;
        let noise_var = (1.0 - abar) * (f64::from(a) + (1.0 - f64::from(a)) / 9.0);
        let shrink = (abar.sqrt() / (abar + 0.25 * noise_var / 0.25)) as f32;
        let mut out = vec![0f32; z.len()];
        for c in 0..3 {
            for y in 0..h {
                for x in 0..w {
                    let mut s = 0f32;
                    for dy in [-1i64, 0, 1] {
                        for dx in [-1i64, 0, 1] {
                            let yy = (y as i64 + dy).clamp(0, h as i64 - 1) as usize;
                            let xx = (x as i64 + dx).clamp(0, w as i64 - 1) as usize;
                            s += z[(c * h + yy) * w + xx];
                        }
                    }
                    let i = (c * h + y) * w + x;
                    out[i] = shrink * (a * z[i] + (1.0 - a) * s / 9.0);
                }
            }
        }
        Ok(out)
    }
    fn multiple(&self) -> usize {
        16
    }
    fn id(&self) -> [u8; 32] {
        self.id
    }
}

/// Wraps a denoiser and adds `eps` to every output value.
/// The inner network with every output moved by a relative `eps` of alternating sign plus
/// an absolute `eps / 10` (enough to move every latent).
pub struct Perturbed<'a> {
    pub inner: &'a dyn Denoiser,
    pub eps: f32,
}

impl Denoiser for Perturbed<'_> {
    fn predict_x0(&self, z: &[f32], h: usize, w: usize, abar: f64, l: f64) -> Result<Vec<f32>> {
        let mut v = self.inner.predict_x0(z, h, w, abar, l)?;
        for (i, a) in v.iter_mut().enumerate() {
            let s = if (i * 2_654_435_761) % 7 < 3 {
                -1.0
            } else {
                1.0
            };
            *a = *a * (1.0 + s * self.eps) + 0.1 * self.eps;
        }
        Ok(v)
    }
    fn multiple(&self) -> usize {
        self.inner.multiple()
    }
    fn id(&self) -> [u8; 32] {
        self.inner.id()
    }
}

pub fn sample(name: &str) -> DynamicImage {
    image::open(format!("{}/samples/{name}", env!("CARGO_MANIFEST_DIR"))).expect("sample")
}

/// PSNR over RGB (8-bit).
pub fn psnr(a: &DynamicImage, b: &DynamicImage) -> f64 {
    let (a, b) = (a.to_rgb8(), b.to_rgb8());
    assert_eq!(a.dimensions(), b.dimensions());
    let mse = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
        .sum::<f64>()
        / a.as_raw().len() as f64;
    10.0 * (255.0f64 * 255.0 / mse.max(1e-12)).log10()
}
