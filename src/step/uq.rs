//! Coder kind 1 (SPEC §6.3, §6.4, §7, §8): universal quantization in the pixel domain with the
//! logistic symbol model, forward-adapted block scales and, at step 0, a block thumbnail as the
//! x0 estimate. Both sides of the step are here.

use rayon::prelude::*;

use super::{descend_scale, BodyInfo, Coded, Geometry, StepCoder, StepInput, StepStats};
use crate::diffusion::{dither_u, StepCoeffs};
use crate::entropy::{
    AdaptiveModel, BitCounter, RangeReader, RangeWriter, SymbolSink, TableCache, K_MAX, NUM_SCALES,
};
use crate::format::{limits, Reader};
use crate::{Error, Result};

/// Candidate block sizes of the first step and of the later steps.
const FIRST_BLOCKS: [usize; 3] = [16, 32, 64];
const LATER_BLOCKS: [usize; 4] = [8, 16, 32, 64];

/// Coder kind 1.
pub(crate) struct Uq;

/// The fixed fields of a kind-1 body (SPEC §4.3).
struct Body {
    block: u16,
    k_max: u16,
    words: Vec<u32>,
}

impl Body {
    fn to_bytes(&self) -> Vec<u8> {
        let mut o = Vec::with_capacity(8 + 4 * self.words.len());
        o.extend_from_slice(&self.block.to_le_bytes());
        o.extend_from_slice(&self.k_max.to_le_bytes());
        super::put_words(&mut o, &self.words);
        o
    }

    fn parse(body: &[u8]) -> Result<Body> {
        let mut r = Reader::new(body, "STEP");
        let block = r.u16()?;
        if !limits::BLOCK_SIZES.contains(&block) {
            return Err(Error::format(format!(
                "block size {block} (allowed {:?})",
                limits::BLOCK_SIZES
            )));
        }
        let k_max = r.u16()?;
        if k_max == 0 || u32::from(k_max) > K_MAX {
            return Err(Error::Limits(format!(
                "symbol half-width K {k_max} (allowed 1..={K_MAX})"
            )));
        }
        let words = super::read_words(&mut r)?;
        Ok(Body {
            block,
            k_max,
            words,
        })
    }
}

impl StepCoder for Uq {
    fn kind(&self) -> u8 {
        1
    }

    fn name(&self) -> &'static str {
        "UQ logistic"
    }

    fn encode(&self, inp: &StepInput, x: &[f32]) -> Result<Coded> {
        let g = &inp.g;
        let gain = inp.co.f32s().3;
        let mut caches = Vec::new();
        let cands: &[usize] = if inp.n == 0 {
            &FIRST_BLOCKS
        } else {
            &LATER_BLOCKS
        };
        let mut best: Option<Plan> = None;
        for &b in cands {
            let p = plan(x, inp.xhat, inp.levels, g, b, gain, &mut caches)?;
            if best.as_ref().is_none_or(|q| p.bits < q.bits) {
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
        code_side(&mut w, p.loc.as_deref(), &p.scale, nby, nbx)?;
        let side_bits = w.ideal_bits;
        code_symbols(&mut w, cache, &p.scale, &p.k, inp.levels, g, p.b)?;
        let ideal_bits = w.ideal_bits;
        let body = Body {
            block: p.b as u16,
            k_max: p.k_max as u16,
            words: w.finish(),
        };
        let z = next_latent(inp.z, &p.xhat, &p.k, inp.levels, &inp.co);
        Ok(Coded {
            body: body.to_bytes(),
            z,
            stats: StepStats {
                ideal_bits,
                side_bits,
                block: p.b,
                k_max: p.k_max,
                skipped: p.scale.iter().filter(|&&s| s == 0).count(),
                units: p.scale.len(),
                kl_bits: None,
            },
        })
    }

    fn decode(&self, inp: &StepInput, body: &[u8]) -> Result<(Vec<f32>, Vec<i32>)> {
        let c = Body::parse(body)?;
        let g = &inp.g;
        let b = usize::from(c.block);
        let (nby, nbx) = g.blocks(b);
        let cache = TableCache::new(u32::from(c.k_max));
        let mut r = RangeReader::new(c.words)?;
        let (loc, scale) = read_side(&mut r, inp.n == 0, nby, nbx)?;
        let k = read_symbols(&mut r, &cache, &scale, inp.levels, g, b)?;
        let z = match (loc, inp.xhat) {
            (Some(loc), _) => {
                let xh = thumbnail_xhat(&loc, b, g);
                next_latent(inp.z, &xh, &k, inp.levels, &inp.co)
            }
            (None, Some(xh)) => next_latent(inp.z, xh, &k, inp.levels, &inp.co),
            (None, None) => return Err(Error::format("step without an x0 estimate")),
        };
        Ok((z, k))
    }

    fn describe(&self, body: &[u8]) -> Result<BodyInfo> {
        let c = Body::parse(body)?;
        Ok(BodyInfo {
            block: c.block,
            k_max: c.k_max,
        })
    }
}

/// What one candidate block size would produce.
struct Plan {
    b: usize,
    loc: Option<Vec<u8>>,
    xhat: Vec<f32>,
    k: Vec<i32>,
    k_max: u32,
    scale: Vec<u8>,
    bits: f64,
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
            descend_scale(est, cost)
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
            let xh = thumbnail_xhat(&loc, b, g);
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
    code_side(&mut side, loc.as_deref(), &scale, nby, nbx)?;
    Ok(Plan {
        b,
        loc,
        xhat,
        k,
        k_max,
        scale,
        bits: sym_bits + side.bits,
    })
}

/// Number of thumbnail levels (SPEC §6.4).
const LOC_LEVELS: usize = 64;

/// Thumbnail value of location index `l`: (2 l - 63) / 63.
fn loc_value(l: u8) -> f32 {
    (2.0 * f32::from(l) - 63.0) / 63.0
}

/// xhat of the first step from the per-(channel, block) thumbnail; padding takes the value of
/// the nearest image pixel's block (SPEC §6.4).
fn thumbnail_xhat(loc: &[u8], b: usize, g: &Geometry) -> Vec<f32> {
    let (nby, nbx) = g.blocks(b);
    let mut out = vec![0f32; g.len()];
    for c in 0..3 {
        for y in 0..g.ph {
            let by = y.min(g.h - 1) / b;
            for x in 0..g.pw {
                let bx = x.min(g.w - 1) / b;
                out[g.idx(c, y, x)] = loc_value(loc[(c * nby + by) * nbx + bx]);
            }
        }
    }
    out
}

/// z_s = (k - u) delta + (cx xhat + cz z_t), element-wise in f32 (SPEC §6.1).
fn next_latent(z: &[f32], xhat: &[f32], k: &[i32], levels: &[u8], co: &StepCoeffs) -> Vec<f32> {
    let (cx, cz, delta, _) = co.f32s();
    z.par_iter()
        .zip(xhat.par_iter())
        .zip(k.par_iter().zip(levels.par_iter()))
        .map(|((&z, &xh), (&k, &j))| {
            let mu = cx * xh + cz * z;
            (k as f32 - dither_u(j as usize)) * delta + mu
        })
        .collect()
}

/// Prediction of a scale index (SPEC §8.2): channel c > 0 uses channel c - 1 of the same
/// block; channel 0 its left neighbour, else its upper neighbour, else 16.
fn scale_pred(scale: &[u8], c: usize, by: usize, bx: usize, nby: usize, nbx: usize) -> u8 {
    let b = by * nbx + bx;
    if c > 0 {
        scale[((c - 1) * nby) * nbx + b]
    } else if bx > 0 {
        scale[b - 1]
    } else if by > 0 {
        scale[b - nbx]
    } else {
        16
    }
}

/// Spatial prediction of a location index and its context (SPEC §8.2): the median edge
/// detector of left a, upper b and upper-left d (same channel) where all exist; else left,
/// else upper, else 32. Context: 0 when a, b, d are not all present or |a - d| + |b - d| = 0,
/// 1 when it is 1..=2, 2 above.
fn loc_med(loc: &[u8], c: usize, by: usize, bx: usize, nby: usize, nbx: usize) -> (i32, usize) {
    let i = (c * nby + by) * nbx + bx;
    if bx > 0 && by > 0 {
        let (a, b, d) = (
            i32::from(loc[i - 1]),
            i32::from(loc[i - nbx]),
            i32::from(loc[i - nbx - 1]),
        );
        let p = if d >= a.max(b) {
            a.min(b)
        } else if d <= a.min(b) {
            a.max(b)
        } else {
            a + b - d
        };
        let act = (a - d).abs() + (b - d).abs();
        (
            p,
            if act == 0 {
                0
            } else if act <= 2 {
                1
            } else {
                2
            },
        )
    } else if bx > 0 {
        (i32::from(loc[i - 1]), 0)
    } else if by > 0 {
        (i32::from(loc[i - nbx]), 0)
    } else {
        (32, 0)
    }
}

/// Prediction of a location index (SPEC §8.2): the spatial prediction, plus for channel
/// c > 0 the spatial prediction error of channel c - 1 at the same block; clamped to 0..=63.
/// Returns (prediction, model number 3 c + context).
fn loc_pred(loc: &[u8], c: usize, by: usize, bx: usize, nby: usize, nbx: usize) -> (u8, usize) {
    let (mut p, ctx) = loc_med(loc, c, by, bx, nby, nbx);
    if c > 0 {
        let (q, _) = loc_med(loc, c - 1, by, bx, nby, nbx);
        p += i32::from(loc[((c - 1) * nby + by) * nbx + bx]) - q;
    }
    (p.clamp(0, LOC_LEVELS as i32 - 1) as u8, 3 * c + ctx)
}

struct SideModels {
    loc: Vec<AdaptiveModel>,
    scale: Vec<AdaptiveModel>,
}

impl SideModels {
    fn new() -> Self {
        SideModels {
            loc: vec![AdaptiveModel::new(LOC_LEVELS); 9],
            scale: vec![AdaptiveModel::new(NUM_SCALES); 4],
        }
    }
}

fn scale_ctx(c: usize, pred: u8) -> usize {
    usize::from(c > 0) * 2 + usize::from(pred == 0)
}

/// Code the side information (SPEC §8.2): for c, by, bx: the location (first step only),
/// then the scale index, each as (value - prediction) mod 64 under an adaptive model.
fn code_side<S: SymbolSink>(
    sink: &mut S,
    loc: Option<&[u8]>,
    scale: &[u8],
    nby: usize,
    nbx: usize,
) -> Result<()> {
    let mut m = SideModels::new();
    for c in 0..3 {
        for by in 0..nby {
            for bx in 0..nbx {
                let i = (c * nby + by) * nbx + bx;
                if let Some(loc) = loc {
                    let (p, mi) = loc_pred(loc, c, by, bx, nby, nbx);
                    let d = (usize::from(loc[i]) + LOC_LEVELS - usize::from(p)) % LOC_LEVELS;
                    sink.put_adaptive(&mut m.loc[mi], d)?;
                }
                let p = scale_pred(scale, c, by, bx, nby, nbx);
                let d = (usize::from(scale[i]) + NUM_SCALES - usize::from(p)) % NUM_SCALES;
                sink.put_adaptive(&mut m.scale[scale_ctx(c, p)], d)?;
            }
        }
    }
    Ok(())
}

/// Side information as decoded: optional locations and the scale indices.
type Side = (Option<Vec<u8>>, Vec<u8>);

/// Read the side information (inverse of [`code_side`]).
fn read_side(r: &mut RangeReader, first: bool, nby: usize, nbx: usize) -> Result<Side> {
    let n = 3 * nby * nbx;
    let mut loc = if first { Some(vec![0u8; n]) } else { None };
    let mut scale = vec![0u8; n];
    let mut m = SideModels::new();
    for c in 0..3 {
        for by in 0..nby {
            for bx in 0..nbx {
                let i = (c * nby + by) * nbx + bx;
                if let Some(loc) = loc.as_mut() {
                    let (p, mi) = loc_pred(loc, c, by, bx, nby, nbx);
                    let d = r.get_adaptive(&mut m.loc[mi])?;
                    loc[i] = ((d + usize::from(p)) % LOC_LEVELS) as u8;
                }
                let p = scale_pred(&scale, c, by, bx, nby, nbx);
                let d = r.get_adaptive(&mut m.scale[scale_ctx(c, p)])?;
                scale[i] = ((d + usize::from(p)) % NUM_SCALES) as u8;
            }
        }
    }
    Ok((loc, scale))
}

/// The coded elements of a step in symbol order (SPEC §6.3): for c, by, bx with scale index
/// s != 0, the block's pixels in raster order; yields (element index, s). The one definition
/// of the order, shared by [`code_symbols`] and [`read_symbols`].
fn coded_elements<'a>(
    scale: &'a [u8],
    g: &'a Geometry,
    b: usize,
) -> impl Iterator<Item = (usize, usize)> + 'a {
    let (nby, nbx) = g.blocks(b);
    (0..3 * nby * nbx)
        .filter(move |&bi| scale[bi] != 0)
        .flat_map(move |bi| {
            let c = bi / (nby * nbx);
            let (y0, y1, x0, x1) = g.block_rect(b, (bi / nbx) % nby, bi % nbx);
            let s = scale[bi] as usize;
            (y0..y1).flat_map(move |y| (x0..x1).map(move |x| (g.idx(c, y, x), s)))
        })
}

/// Code the symbols: symbol k + K under the table (scale, dither level, K).
fn code_symbols<S: SymbolSink>(
    sink: &mut S,
    cache: &TableCache,
    scale: &[u8],
    k: &[i32],
    levels: &[u8],
    g: &Geometry,
    b: usize,
) -> Result<()> {
    let kk = cache.k_max() as i32;
    for (i, s) in coded_elements(scale, g, b) {
        sink.put(cache.get(s, levels[i] as usize), (k[i] + kk) as usize)?;
    }
    Ok(())
}

/// Read the symbols (inverse of [`code_symbols`]); k = 0 for skipped blocks and padding.
fn read_symbols(
    r: &mut RangeReader,
    cache: &TableCache,
    scale: &[u8],
    levels: &[u8],
    g: &Geometry,
    b: usize,
) -> Result<Vec<i32>> {
    let kk = cache.k_max() as i32;
    let mut k = vec![0i32; g.len()];
    for (i, s) in coded_elements(scale, g, b) {
        k[i] = r.get(cache.get(s, levels[i] as usize))? as i32 - kk;
    }
    Ok(k)
}
