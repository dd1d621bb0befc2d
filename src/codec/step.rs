//! Stage 5: one UQ coding step, shared by encoder and decoder (SPEC §6): geometry, dither
//! levels, the thumbnail, side information and symbol order, and the latent update.
//! Every function that both sides run is written once, here.

use rayon::prelude::*;

use crate::diffusion::{dither_level, dither_u, StepCoeffs};
use crate::entropy::{AdaptiveModel, RangeReader, SymbolSink, TableCache, NUM_SCALES};
use crate::{Error, Result};

/// Image and padded latent sizes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Geometry {
    pub h: usize,
    pub w: usize,
    pub ph: usize,
    pub pw: usize,
}

impl Geometry {
    pub fn idx(&self, c: usize, y: usize, x: usize) -> usize {
        (c * self.ph + y) * self.pw + x
    }
    pub fn len(&self) -> usize {
        3 * self.ph * self.pw
    }
    /// Blocks (rows, columns) of size `b` over the unpadded image (SPEC §6.3).
    pub fn blocks(&self, b: usize) -> (usize, usize) {
        (self.h.div_ceil(b), self.w.div_ceil(b))
    }
    /// Unpadded pixel ranges of block (by, bx).
    pub fn block_rect(&self, b: usize, by: usize, bx: usize) -> (usize, usize, usize, usize) {
        (
            by * b,
            ((by + 1) * b).min(self.h),
            bx * b,
            ((bx + 1) * b).min(self.w),
        )
    }
}

/// Dither levels of step `n` for every element of the padded latent (SPEC §5.1).
pub(crate) fn dither_levels(seed: u64, n: usize, g: &Geometry) -> Vec<u8> {
    let mut out = vec![0u8; g.len()];
    out.par_chunks_mut(g.pw).enumerate().for_each(|(row, dst)| {
        let (c, y) = (row / g.ph, row % g.ph);
        for (x, d) in dst.iter_mut().enumerate() {
            *d = dither_level(seed, n, c, y, x) as u8;
        }
    });
    out
}

/// Number of thumbnail levels (SPEC §6.4).
pub(crate) const LOC_LEVELS: usize = 64;

/// Thumbnail value of location index `l`: (2 l - 63) / 63.
pub(crate) fn loc_value(l: u8) -> f32 {
    (2.0 * f32::from(l) - 63.0) / 63.0
}

/// xhat of the first step from the per-(channel, block) thumbnail; padding takes the value of
/// the nearest image pixel's block (SPEC §6.4).
pub(crate) fn thumbnail_xhat(loc: &[u8], b: usize, g: &Geometry) -> Vec<f32> {
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
pub(crate) fn next_latent(
    z: &[f32],
    xhat: &[f32],
    k: &[i32],
    levels: &[u8],
    co: &StepCoeffs,
) -> Vec<f32> {
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
pub(crate) fn code_side<S: SymbolSink>(
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
pub(crate) type Side = (Option<Vec<u8>>, Vec<u8>);

/// Read the side information (inverse of [`code_side`]).
pub(crate) fn read_side(r: &mut RangeReader, first: bool, nby: usize, nbx: usize) -> Result<Side> {
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

/// Code the symbols (SPEC §6.3): for c, by, bx with scale index != 0, pixels of the block in
/// raster order, symbol k + K under the table (scale, dither level, K).
pub(crate) fn code_symbols<S: SymbolSink>(
    sink: &mut S,
    cache: &TableCache,
    scale: &[u8],
    k: &[i32],
    levels: &[u8],
    g: &Geometry,
    b: usize,
) -> Result<()> {
    let (nby, nbx) = g.blocks(b);
    let kk = cache.k_max() as i32;
    for c in 0..3 {
        for by in 0..nby {
            for bx in 0..nbx {
                let s = scale[(c * nby + by) * nbx + bx] as usize;
                if s == 0 {
                    continue;
                }
                let (y0, y1, x0, x1) = g.block_rect(b, by, bx);
                for y in y0..y1 {
                    for x in x0..x1 {
                        let i = g.idx(c, y, x);
                        let m = cache.get(s, levels[i] as usize);
                        sink.put(m, (k[i] + kk) as usize)?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// Read the symbols (inverse of [`code_symbols`]); k = 0 for skipped blocks and padding.
pub(crate) fn read_symbols(
    r: &mut RangeReader,
    cache: &TableCache,
    scale: &[u8],
    levels: &[u8],
    g: &Geometry,
    b: usize,
) -> Result<Vec<i32>> {
    let (nby, nbx) = g.blocks(b);
    let kk = cache.k_max() as i32;
    let mut k = vec![0i32; g.len()];
    for c in 0..3 {
        for by in 0..nby {
            for bx in 0..nbx {
                let s = scale[(c * nby + by) * nbx + bx] as usize;
                if s == 0 {
                    continue;
                }
                let (y0, y1, x0, x1) = g.block_rect(b, by, bx);
                for y in y0..y1 {
                    for x in x0..x1 {
                        let i = g.idx(c, y, x);
                        let m = cache.get(s, levels[i] as usize);
                        k[i] = r.get(m)? as i32 - kk;
                    }
                }
            }
        }
    }
    Ok(k)
}

/// Clip a network output to [-1, 1] (NaN -> 0) and check its length.
pub(crate) fn clip(mut v: Vec<f32>, g: &Geometry) -> Result<Vec<f32>> {
    if v.len() != g.len() {
        return Err(Error::Model(format!(
            "network returned {} values (expected 3 x {} x {} = {})",
            v.len(),
            g.ph,
            g.pw,
            g.len()
        )));
    }
    for a in &mut v {
        *a = if a.is_nan() { 0.0 } else { a.clamp(-1.0, 1.0) };
    }
    Ok(v)
}
