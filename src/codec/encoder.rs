//! Stage 5: the encoder (SPEC §6, §11): block sizes, scale indices and K chosen on real code
//! lengths; the encoder's latent follows exactly the decoder's path.

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use super::step::{self, Geometry};
use super::{lossless, ImageData, StepReport};
use crate::diffusion::{dither_u, start_latent, SchedulePoint, StepCoeffs};
use crate::entropy::{nearest_scale, BitCounter, RangeWriter, TableCache, K_MAX, NUM_SCALES};
use crate::format::{self, coder, kind, Header, LossChunk, StepChunk};
use crate::model::Denoiser;
use crate::Result;

/// Candidate block sizes of the first step and of the later steps.
const FIRST_BLOCKS: [usize; 3] = [16, 32, 64];
const LATER_BLOCKS: [usize; 4] = [8, 16, 32, 64];

/// What one candidate block size would produce.
struct Plan {
    b: usize,
    loc: Option<Vec<u8>>,
    xhat: Vec<f32>,
    k: Vec<i32>,
    k_max: u32,
    scale: Vec<u8>,
    bits: f64,
    side_bits: f64,
}

/// Clamped symbols for the unpadded pixels, k = round(r + u), and the K that holds them.
fn symbols(
    x: &[f32],
    xhat: &[f32],
    levels: &[u8],
    g: &Geometry,
    gain: f32,
) -> (Vec<i32>, Vec<f32>, u32) {
    let mut k = vec![0i32; g.len()];
    let mut r = vec![0f32; g.len()];
    let mut kmax = 1i32;
    for c in 0..3 {
        for y in 0..g.h {
            for xx in 0..g.w {
                let i = g.idx(c, y, xx);
                let v = (x[i] - xhat[i]) * gain;
                let q = (v + dither_u(levels[i] as usize)).round() as i32;
                r[i] = v;
                k[i] = q;
                kmax = kmax.max(q.abs());
            }
        }
    }
    let kmax = (kmax as u32).min(K_MAX);
    let lim = kmax as i32;
    for v in &mut k {
        *v = (*v).clamp(-lim, lim);
    }
    (k, r, kmax)
}

/// Choose the scale index of every (channel, block) by real code length; index 0 (skip)
/// where every k of the block is 0.
fn choose_scales(
    k: &[i32],
    r: &[f32],
    levels: &[u8],
    g: &Geometry,
    b: usize,
    cache: &TableCache,
) -> (Vec<u8>, f64) {
    let (nby, nbx) = g.blocks(b);
    let kk = cache.k_max() as i32;
    let res: Vec<(u8, f64)> = (0..3 * nby * nbx)
        .into_par_iter()
        .map(|bi| {
            let c = bi / (nby * nbx);
            let (by, bx) = ((bi / nbx) % nby, bi % nbx);
            let (y0, y1, x0, x1) = g.block_rect(b, by, bx);
            let mut idx = Vec::with_capacity((y1 - y0) * (x1 - x0));
            let mut sum_abs = 0f64;
            let mut all_zero = true;
            for y in y0..y1 {
                for x in x0..x1 {
                    let i = g.idx(c, y, x);
                    idx.push(i);
                    sum_abs += f64::from(r[i].abs());
                    all_zero &= k[i] == 0;
                }
            }
            if all_zero {
                return (0u8, 0.0);
            }
            let est = sum_abs / idx.len() as f64 / 1.386;
            let cost = |s: usize| -> f64 {
                idx.iter()
                    .map(|&i| {
                        f64::from(cache.get(s, levels[i] as usize).bits((k[i] + kk) as usize))
                    })
                    .sum()
            };
            // Local descent from the moment estimate: the code length is unimodal in the
            // scale index in practice; a miss costs bits, never correctness.
            let top = NUM_SCALES - 1;
            let i0 = nearest_scale(est);
            let mut best = (i0, cost(i0));
            for dir in [-1i64, 1] {
                let mut i = best.0 as i64 + dir;
                let mut moved = false;
                while (1..=top as i64).contains(&i) {
                    let c = cost(i as usize);
                    if c < best.1 {
                        best = (i as usize, c);
                        moved = true;
                        i += dir;
                    } else {
                        break;
                    }
                }
                if moved {
                    break;
                }
            }
            (best.0 as u8, best.1)
        })
        .collect();
    let bits = res.iter().map(|v| v.1).sum();
    (res.into_iter().map(|v| v.0).collect(), bits)
}

/// Plan a step for block size `b`.
#[allow(clippy::too_many_arguments)]
fn plan(
    x: &[f32],
    net_xhat: Option<&[f32]>,
    levels: &[u8],
    g: &Geometry,
    b: usize,
    gain: f32,
    caches: &mut Vec<TableCache>,
) -> Result<Plan> {
    let (nby, nbx) = g.blocks(b);
    let (loc, xhat) = match net_xhat {
        Some(xh) => (None, xh.to_vec()),
        None => {
            let mut loc = vec![0u8; 3 * nby * nbx];
            for c in 0..3 {
                for by in 0..nby {
                    for bx in 0..nbx {
                        let (y0, y1, x0, x1) = g.block_rect(b, by, bx);
                        let mut s = 0f64;
                        for y in y0..y1 {
                            for xx in x0..x1 {
                                s += f64::from(x[g.idx(c, y, xx)]);
                            }
                        }
                        let m = s / ((y1 - y0) * (x1 - x0)) as f64;
                        loc[(c * nby + by) * nbx + bx] =
                            ((m + 1.0) * 31.5).round().clamp(0.0, 63.0) as u8;
                    }
                }
            }
            let xh = step::thumbnail_xhat(&loc, b, g);
            (Some(loc), xh)
        }
    };
    let (k, r, k_max) = symbols(x, &xhat, levels, g, gain);
    let ci = match caches.iter().position(|c| c.k_max() == k_max) {
        Some(i) => i,
        None => {
            caches.push(TableCache::new(k_max));
            caches.len() - 1
        }
    };
    let cache = &caches[ci];
    let (scale, sym_bits) = choose_scales(&k, &r, levels, g, b, cache);
    let mut side = BitCounter::default();
    step::code_side(&mut side, loc.as_deref(), &scale, nby, nbx)?;
    Ok(Plan {
        b,
        loc,
        xhat,
        k,
        k_max,
        scale,
        bits: sym_bits + side.bits,
        side_bits: side.bits,
    })
}

/// Everything the encoder produces for one schedule.
pub(crate) struct Encoded {
    pub bytes: Vec<u8>,
    pub steps: Vec<StepReport>,
    pub loss_bytes: Option<usize>,
    /// State before each step (when asked for), to resume schedules sharing a prefix.
    pub snapshots: Vec<Snapshot>,
}

/// The encoder's state before step `n`: latent, the network's estimate at it (n > 0), and
/// the STEP chunks and reports of steps 0..n.
#[derive(Clone)]
pub(crate) struct Snapshot {
    n: usize,
    z: Vec<f32>,
    xhat: Option<Vec<f32>>,
    chunks: Vec<u8>,
    reports: Vec<StepReport>,
}

/// Encode `img` along `schedule` (entry 0 = start).
pub(crate) fn encode_schedule(
    img: &ImageData,
    model: &dyn Denoiser,
    schedule: &[SchedulePoint],
    lossless: bool,
    seed: u64,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Encoded> {
    encode_resumable(img, model, schedule, lossless, seed, progress, None, false)
}

/// [`encode_schedule`], optionally starting from `resume` (a snapshot taken on a schedule
/// with the same first `resume.n + 1` points) and keeping a snapshot before every step.
#[allow(clippy::too_many_arguments)]
pub(crate) fn encode_resumable(
    img: &ImageData,
    model: &dyn Denoiser,
    schedule: &[SchedulePoint],
    lossless: bool,
    seed: u64,
    progress: &mut dyn FnMut(usize, usize),
    resume: Option<&Snapshot>,
    keep: bool,
) -> Result<Encoded> {
    let m = model.multiple().max(1);
    let g = Geometry {
        h: img.height,
        w: img.width,
        ph: img.height.div_ceil(m) * m,
        pw: img.width.div_ceil(m) * m,
    };
    let header = Header {
        width: img.width as u32,
        height: img.height as u32,
        colour: img.colour,
        source_depth: img.source_depth,
        multiple: m as u16,
        model_id: model.id(),
        seed,
        conditioning: 0,
        schedule: schedule.to_vec(),
    };
    let mut out = Vec::new();
    format::write_preamble(&mut out);
    format::write_chunk(&mut out, kind::HEAD, &header.to_bytes());

    // x, padded by edge replication (SPEC §6.5).
    let mut x = vec![0f32; g.len()];
    for c in 0..3 {
        for y in 0..g.ph {
            for xx in 0..g.pw {
                let p = img.pixels[(c * g.h + y.min(g.h - 1)) * g.w + xx.min(g.w - 1)];
                x[g.idx(c, y, xx)] = f32::from(p) / 127.5 - 1.0;
            }
        }
    }
    let nsteps = schedule.len() - 1;
    let (first, mut z, mut reports, mut net_xhat) = match resume {
        Some(r) => {
            out.extend_from_slice(&r.chunks);
            (r.n, r.z.clone(), r.reports.clone(), r.xhat.clone())
        }
        None => (
            0,
            start_latent(seed, g.ph, g.pw),
            Vec::with_capacity(nsteps),
            None,
        ),
    };
    let mut snapshots = Vec::new();
    let head_len = out.len() - resume.map_or(0, |r| r.chunks.len());
    for n in first..nsteps {
        progress(n, nsteps + usize::from(lossless));
        let (pt, ps) = (schedule[n], schedule[n + 1]);
        if n > 0 && !(n == first && net_xhat.is_some()) {
            net_xhat = Some(super::denoise(model, &z, &pt, &g)?);
        }
        if keep {
            snapshots.push(Snapshot {
                n,
                z: z.clone(),
                xhat: net_xhat.clone(),
                chunks: out[head_len..].to_vec(),
                reports: reports.clone(),
            });
        }
        let co = StepCoeffs::new(pt.abar, ps.abar);
        let gain = co.f32s().3;
        let levels = step::dither_levels(seed, n, &g);
        let mut caches = Vec::new();
        let cands: &[usize] = if n == 0 { &FIRST_BLOCKS } else { &LATER_BLOCKS };
        let mut best: Option<Plan> = None;
        for &b in cands {
            let p = plan(&x, net_xhat.as_deref(), &levels, &g, b, gain, &mut caches)?;
            if best.as_ref().map_or(true, |q| p.bits < q.bits) {
                best = Some(p);
            }
        }
        let p = best.expect("at least one candidate block size");
        let cache = caches
            .iter()
            .find(|c| c.k_max() == p.k_max)
            .expect("cache of the chosen K");
        let (nby, nbx) = g.blocks(p.b);
        let mut w = RangeWriter::new();
        step::code_side(&mut w, p.loc.as_deref(), &p.scale, nby, nbx)?;
        let side_ideal = w.ideal_bits;
        step::code_symbols(&mut w, cache, &p.scale, &p.k, &levels, &g, p.b)?;
        let ideal = w.ideal_bits;
        let chunk = StepChunk {
            index: n as u8,
            coder: coder::UQ_LOGISTIC,
            block: p.b as u16,
            k_max: p.k_max as u16,
            words: w.finish(),
        };
        let payload = chunk.to_bytes();
        format::write_chunk(&mut out, kind::STEP, &payload);
        z = step::next_latent(&z, &p.xhat, &p.k, &levels, &co);
        debug_assert!((p.side_bits - side_ideal).abs() < 1e-6 * side_ideal.max(1.0));
        reports.push(StepReport {
            t_start: pt.t,
            t_end: ps.t,
            block: p.b,
            k_max: p.k_max,
            chunk_bytes: payload.len() + 12,
            ideal_bits: ideal,
            side_bits: side_ideal,
            skipped_blocks: p.scale.iter().filter(|&&s| s == 0).count(),
            blocks: p.scale.len(),
        });
    }
    let mut loss_bytes = None;
    if lossless {
        progress(nsteps, nsteps + 1);
        let last = schedule[nsteps];
        let xh = super::denoise(model, &z, &last, &g)?;
        let pred = super::crop_pred(&xh, &g);
        let mut w = RangeWriter::new();
        lossless::code(&mut w, &img.pixels, &pred, g.h, g.w)?;
        let chunk = LossChunk {
            sha256: Sha256::digest(&img.pixels).into(),
            words: w.finish(),
        };
        let payload = chunk.to_bytes();
        format::write_chunk(&mut out, kind::LOSS, &payload);
        loss_bytes = Some(payload.len() + 12);
    }
    format::write_chunk(&mut out, kind::END, &[]);
    progress(
        nsteps + usize::from(lossless),
        nsteps + usize::from(lossless),
    );
    Ok(Encoded {
        bytes: out,
        steps: reports,
        loss_bytes,
        snapshots,
    })
}
