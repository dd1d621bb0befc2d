//! Stage 5: presets and rate control (SPEC §12, informative): the preset schedules, and the
//! search of the schedule that lands a file at a target size.

use super::{encoder, ImageData};
use crate::diffusion::{abar_table, logsnr, SchedulePoint, LADDER, PRESETS};
use crate::format::{self, Header};
use crate::model::Denoiser;
use crate::{Error, Result};

/// The preset schedule of quality `q` (1..=[`PRESETS`]).
pub fn preset_schedule(q: u8) -> Result<Vec<SchedulePoint>> {
    if !(1..=PRESETS).contains(&q) {
        return Err(Error::param(format!("quality {q} (allowed 1..={PRESETS})")));
    }
    Ok(LADDER[..=q as usize]
        .iter()
        .map(|&t| SchedulePoint::at(t))
        .collect())
}

/// The rate-control schedule of `q` ladder steps whose last step is stretched to end at
/// log-SNR `lambda`: 1000, the ladder points 1..q-1, then `lambda`.
pub fn schedule_to(q: usize, lambda: f64) -> Vec<SchedulePoint> {
    let mut s: Vec<SchedulePoint> = LADDER[..q].iter().map(|&t| SchedulePoint::at(t)).collect();
    s.push(SchedulePoint::from_logsnr(lambda));
    s
}

/// Rate control (SPEC §12, informative): one encode of the full ladder gives the size of
/// every preset (their chunks are prefixes of it); the last step of the largest preset that
/// fits is then stretched, bisecting its end point in log-SNR on real sizes.
pub(super) fn rate_control(
    data: &ImageData,
    model: &dyn Denoiser,
    target: usize,
    chain: &encoder::ChainOpts,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(encoder::Encoded, f64)> {
    let tab = abar_table();
    let full = preset_schedule(PRESETS)?;
    let top = usize::from(PRESETS);
    let enc = encoder::encode_resumable(data, model, &full, chain, progress, None, true)?;
    // Size of preset q = preamble + HEAD with q + 1 points + first q STEP chunks + END.
    let head_full = 12 + Header::fixed_len() + 24 * full.len();
    let mut fits = 0;
    for q in 1..=top {
        let steps: usize = enc.steps[..q].iter().map(|s| s.chunk_bytes).sum();
        let size = format::PREAMBLE_LEN + head_full - 24 * (top - q) + steps + 12;
        if size <= target {
            fits = q;
        }
    }
    let q = fits.max(1);
    // Bracket of the stretched end point.
    let lo = if fits == 0 {
        logsnr(tab[900])
    } else {
        full[q].logsnr
    };
    let hi = logsnr(tab[1]);
    // Every trial shares the first q - 1 steps with the full ladder: resume after them.
    let snap = &enc.snapshots[q - 1];
    let run = |l: f64, progress: &mut dyn FnMut(usize, usize)| {
        let s = schedule_to(q, l);
        encoder::encode_resumable(data, model, &s, chain, progress, Some(snap), false)
    };
    let mut best = if fits == 0 {
        let e = run(lo, progress)?;
        if e.bytes.len() > target {
            return Err(Error::param(format!(
                "target of {target} bytes is below the smallest file for this image ({} bytes, {:.4} bpp)",
                e.bytes.len(),
                e.bytes.len() as f64 * 8.0 / (data.width * data.height) as f64
            )));
        }
        (e, lo)
    } else {
        let e = encoder::encode_resumable(
            data,
            model,
            &full[..=q],
            chain,
            progress,
            Some(snap),
            false,
        )?;
        (e, full[q].logsnr)
    };
    let (mut lo, mut hi) = (lo, hi);
    for _ in 0..9 {
        let mid = 0.5 * (lo + hi);
        let e = run(mid, progress)?;
        if e.bytes.len() <= target {
            lo = mid;
            best = (e, mid);
        } else {
            hi = mid;
        }
    }
    Ok(best)
}
