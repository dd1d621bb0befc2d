//! Stage 5: reconstruction (SPEC §6.4, §11): the clipped network estimate, and the `flow` and
//! `sample` reconstructions after any step.

use super::Recon;
use crate::diffusion::{abar_table, logsnr, normal, SchedulePoint, StepCoeffs, RECON_LADDER};
use crate::model::Denoiser;
use crate::step::{self, Geometry};
use crate::Result;

/// Clipped network x0 estimate at schedule point `p` (SPEC §6.1).
pub(crate) fn denoise(
    model: &dyn Denoiser,
    z: &[f32],
    p: &SchedulePoint,
    g: &Geometry,
) -> Result<Vec<f32>> {
    step::clip(model.predict_x0(z, g.ph, g.pw, p.abar, p.logsnr)?, g)
}

/// Reconstruction from the latent at point `p` (SPEC §11).
pub(crate) fn reconstruct(
    model: &dyn Denoiser,
    z: &[f32],
    p: &SchedulePoint,
    xhat: &[f32],
    recon: Recon,
    seed: u64,
    g: &Geometry,
) -> Result<Vec<f32>> {
    if recon == Recon::Denoise {
        return Ok(xhat.to_vec());
    }
    let tab = abar_table();
    let mut z = z.to_vec();
    let mut x0 = xhat.to_vec();
    let mut ab = p.abar;
    for (i, &t) in RECON_LADDER.iter().enumerate() {
        let ab2 = tab[t as usize];
        if ab2 <= ab {
            continue;
        }
        match recon {
            Recon::Flow => {
                let (sa, sb) = (ab.sqrt() as f32, (1.0 - ab).sqrt() as f32);
                let (sa2, sb2) = (ab2.sqrt() as f32, (1.0 - ab2).sqrt() as f32);
                for (zi, &xi) in z.iter_mut().zip(&x0) {
                    let eps = (*zi - sa * xi) / sb;
                    *zi = sa2 * xi + sb2 * eps;
                }
            }
            _ => {
                let co = StepCoeffs::new(ab, ab2);
                let (cx, cz) = (co.cx as f32, co.cz as f32);
                let sd = co.var.sqrt() as f32;
                for c in 0..3 {
                    for y in 0..g.ph {
                        for x in 0..g.pw {
                            let k = g.idx(c, y, x);
                            let nz =
                                normal(seed, crate::diffusion::domain::SAMPLE, i as u64, c, y, x);
                            z[k] = cx * x0[k] + cz * z[k] + sd * nz;
                        }
                    }
                }
            }
        }
        ab = ab2;
        let pt = SchedulePoint {
            t: f64::from(t),
            abar: ab2,
            logsnr: logsnr(ab2),
        };
        x0 = denoise(model, &z, &pt, g)?;
    }
    Ok(x0)
}
