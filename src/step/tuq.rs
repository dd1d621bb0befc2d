//! Coder kind 2 (SPEC §6.7-§6.11): universal quantization in a transform domain. The residual
//! of the posterior mean is coded as k = round(T r + u), T an orthonormal colour transform
//! followed by a 2-D DCT-II on B x B tiles; the decoder moves the latent by
//! delta T^-1 (k - u). T is orthonormal, so the added noise keeps the posterior variance and
//! stays white. Symbols use the logistic tables of kind 1 with forward-adapted scales per
//! (component, band group, region); probabilities stay functions of integers (invariant D).

use rayon::prelude::*;

use super::{descend_scale, BodyInfo, Coded, Geometry, StepCoder, StepInput, StepStats};
use crate::diffusion::dither_u;
use crate::entropy::{
    AdaptiveModel, BitCounter, RangeReader, RangeWriter, SymbolSink, TableCache, K_MAX, NUM_SCALES,
};
use crate::format::Reader;
use crate::{Error, Result};

/// Tile sizes a file may use (SPEC §6.7).
pub(crate) const TILE_SIZES: [usize; 3] = [4, 8, 16];
/// Largest region side (SPEC §6.8).
const MAX_REGION: usize = 256;
/// Region sides the encoder tries.
const REGIONS: [usize; 4] = [16, 32, 64, 128];

/// Coder kind 2.
pub(crate) struct TransformUq;

/// The fixed fields of a kind-2 body (SPEC §4.3, §6.7).
struct Body {
    tile: u8,
    region: u16,
    k_max: u16,
    context: u8,
    words: Vec<u32>,
}

impl Body {
    fn to_bytes(&self) -> Vec<u8> {
        let mut o = Vec::with_capacity(10 + 4 * self.words.len());
        o.push(self.tile);
        o.extend_from_slice(&self.region.to_le_bytes());
        o.extend_from_slice(&self.k_max.to_le_bytes());
        o.push(self.context);
        super::put_words(&mut o, &self.words);
        o
    }

    fn parse(body: &[u8]) -> Result<Body> {
        let mut r = Reader::new(body, "STEP");
        let (tile, region) = read_tile_region(&mut r)?;
        let k_max = r.u16()?;
        if k_max == 0 || u32::from(k_max) > K_MAX {
            return Err(Error::Limits(format!(
                "symbol half-width K {k_max} (allowed 1..={K_MAX})"
            )));
        }
        let context = r.u8()?;
        if context > 1 {
            return Err(Error::format(format!(
                "context mode {context} (allowed 0 or 1)"
            )));
        }
        let words = super::read_words(&mut r)?;
        Ok(Body {
            tile,
            region,
            k_max,
            context,
            words,
        })
    }
}

/// Tile size B and region size R of a kind-2 or kind-3 body, checked (SPEC §4.3).
pub(crate) fn read_tile_region(r: &mut Reader) -> Result<(u8, u16)> {
    let tile = r.u8()?;
    if !TILE_SIZES.contains(&usize::from(tile)) {
        return Err(Error::format(format!(
            "tile size {tile} (allowed {TILE_SIZES:?})"
        )));
    }
    let region = r.u16()?;
    let rs = usize::from(region);
    if rs == 0 || rs > MAX_REGION || rs % usize::from(tile) != 0 {
        return Err(Error::format(format!(
            "region size {region} (allowed: a multiple of the tile size {tile}, at most {MAX_REGION})"
        )));
    }
    Ok((tile, region))
}

/// cos(pi m / (2 b)), normative (SPEC §6.9): reduced to [0, pi/2] by symmetry, then a
/// degree-24 Taylor polynomial in Horner form, f64 `+ - * /` only.
fn cos_pi_over(m: usize, b: usize) -> f64 {
    let m = m % (4 * b);
    let m = if m > 2 * b { 4 * b - m } else { m };
    let (m, sign) = if m > b { (2 * b - m, -1.0) } else { (m, 1.0) };
    let th = std::f64::consts::PI * m as f64 / (2 * b) as f64;
    let t2 = th * th;
    let mut p = 1.0f64;
    let mut k = 12u32;
    while k >= 1 {
        p = 1.0 - p * t2 / f64::from((2 * k) * (2 * k - 1));
        k -= 1;
    }
    sign * p
}

/// The orthonormal DCT-II matrix of size b, row u = frequency: basis[u * b + i] =
/// f32(alpha_u cos(pi (2 i + 1) u / (2 b))), alpha_0 = sqrt(1/b), else sqrt(2/b).
fn dct_basis(b: usize) -> Vec<f32> {
    let mut m = vec![0f32; b * b];
    for u in 0..b {
        let a = if u == 0 {
            (1.0 / b as f64).sqrt()
        } else {
            (2.0 / b as f64).sqrt()
        };
        for i in 0..b {
            m[u * b + i] = (a * cos_pi_over((2 * i + 1) * u, b)) as f32;
        }
    }
    m
}

/// Colour transform constants (SPEC §6.9): f32 of sqrt(1/3), sqrt(1/2), sqrt(1/6),
/// 2 sqrt(1/6).
fn colour_consts() -> [f32; 4] {
    [
        (1.0f64 / 3.0).sqrt() as f32,
        0.5f64.sqrt() as f32,
        (1.0f64 / 6.0).sqrt() as f32,
        (2.0 * (1.0f64 / 6.0).sqrt()) as f32,
    ]
}

/// Band group of frequency (u, v) (SPEC §6.8): by u + v: 0, 1, 2, 3-4, 5-7, 8-13, 14 and up.
pub(crate) fn group(u: usize, v: usize) -> usize {
    match u + v {
        0 => 0,
        1 => 1,
        2 => 2,
        3 | 4 => 3,
        5..=7 => 4,
        8..=13 => 5,
        _ => 6,
    }
}

/// Number of band groups of tile size b.
pub(crate) fn groups(b: usize) -> usize {
    group(b - 1, b - 1) + 1
}

/// Layout of one (tile, region) choice over the padded grid.
#[derive(Clone, Copy)]
pub(crate) struct Layout {
    pub b: usize,
    pub r: usize,
    pub ng: usize,
    pub nry: usize,
    pub nrx: usize,
}

impl Layout {
    pub fn new(g: &Geometry, b: usize, r: usize) -> Self {
        Layout {
            b,
            r,
            ng: groups(b),
            nry: g.ph.div_ceil(r),
            nrx: g.pw.div_ceil(r),
        }
    }
    pub fn units(&self) -> usize {
        3 * self.ng * self.nry * self.nrx
    }
    /// Side-information unit of component c, band group gr, region (ry, rx).
    pub fn unit(&self, c: usize, gr: usize, ry: usize, rx: usize) -> usize {
        ((c * self.ng + gr) * self.nry + ry) * self.nrx + rx
    }
    /// The coefficients (element indices) of every unit, each in the coefficient order of
    /// SPEC §6.10.
    pub fn members(&self, g: &Geometry) -> Vec<Vec<u32>> {
        let mut members: Vec<Vec<u32>> = vec![Vec::new(); self.units()];
        let _ = for_each_coeff(g, self.b, |c, y, x| {
            members[self.unit_of(c, y, x)].push(g.idx(c, y, x) as u32);
            Ok(())
        });
        members
    }

    /// The unit of coefficient (c, y, x) of the padded grid.
    pub fn unit_of(&self, c: usize, y: usize, x: usize) -> usize {
        let gr = group(y % self.b, x % self.b);
        self.unit(c, gr, y / self.r, x / self.r)
    }
}

/// The coefficient order (SPEC §6.10): c, tile row, tile column, u, v. Calls `f(c, y, x)` with
/// the coefficient's position on the padded grid.
pub(crate) fn for_each_coeff(
    g: &Geometry,
    b: usize,
    mut f: impl FnMut(usize, usize, usize) -> Result<()>,
) -> Result<()> {
    for c in 0..3 {
        for ty in 0..g.ph / b {
            for tx in 0..g.pw / b {
                for u in 0..b {
                    for v in 0..b {
                        f(c, ty * b + u, tx * b + v)?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// Forward transform T (encoder only): colour transform per pixel, then the 2-D DCT-II of
/// every b x b tile of each component. Planar in, planar coefficients out.
pub(crate) fn forward(r: &[f32], g: &Geometry, b: usize) -> Vec<f32> {
    let [ca, cb, cc, cd] = colour_consts();
    let n = g.ph * g.pw;
    let mut col = vec![0f32; g.len()];
    for i in 0..n {
        let (r0, r1, r2) = (r[i], r[n + i], r[2 * n + i]);
        col[i] = ca * r0 + ca * r1 + ca * r2;
        col[n + i] = cb * r0 - cb * r2;
        col[2 * n + i] = cc * r0 - cd * r1 + cc * r2;
    }
    let basis = dct_basis(b);
    let mut out = vec![0f32; g.len()];
    out.par_chunks_mut(g.pw * b)
        .enumerate()
        .for_each(|(band, dst)| {
            let c = band / (g.ph / b);
            let y0 = (band % (g.ph / b)) * b;
            let mut t = vec![0f32; b * b];
            for tx in 0..g.pw / b {
                let x0 = tx * b;
                // rows: t[i][v] = sum_j basis[v][j] x[i][j]
                for i in 0..b {
                    let row = &col[g.idx(c, y0 + i, x0)..g.idx(c, y0 + i, x0) + b];
                    for v in 0..b {
                        let mut acc = 0f32;
                        for j in 0..b {
                            acc += basis[v * b + j] * row[j];
                        }
                        t[i * b + v] = acc;
                    }
                }
                // columns: y[u][v] = sum_i basis[u][i] t[i][v]
                for u in 0..b {
                    for v in 0..b {
                        let mut acc = 0f32;
                        for i in 0..b {
                            acc += basis[u * b + i] * t[i * b + v];
                        }
                        dst[u * g.pw + x0 + v] = acc;
                    }
                }
            }
        });
    out
}

/// The latent update (SPEC §6.9): e = k - u per coefficient, then [`inverse_update`] with
/// the quantizer width delta.
fn next_latent(inp: &StepInput, xhat: &[f32], k: &[i32], b: usize) -> Vec<f32> {
    let e: Vec<f32> = k
        .par_iter()
        .zip(inp.levels.par_iter())
        .map(|(&k, &j)| k as f32 - dither_u(usize::from(j)))
        .collect();
    inverse_update(inp, xhat, &e, b, inp.co.f32s().2)
}

/// z' = (T^-1 e) * scale + mu with mu = cx xhat + cz z (SPEC §6.9 steps 2-4), f32 in the order
/// written there. `e` holds one value per coefficient (planar, tile layout of §6.7).
pub(crate) fn inverse_update(
    inp: &StepInput,
    xhat: &[f32],
    e: &[f32],
    b: usize,
    scale: f32,
) -> Vec<f32> {
    let g = &inp.g;
    let (cx, cz, _, _) = inp.co.f32s();
    let delta = scale;
    let basis = dct_basis(b);
    let n = g.ph * g.pw;
    // Inverse DCT per tile: columns first (t[i][v] = sum_u basis[u][i] e[u][v]), then rows
    // (w[i][j] = sum_v basis[v][j] t[i][v]).
    let mut w = vec![0f32; g.len()];
    w.par_chunks_mut(g.pw * b)
        .enumerate()
        .for_each(|(band, dst)| {
            let c = band / (g.ph / b);
            let y0 = (band % (g.ph / b)) * b;
            let mut et = vec![0f32; b * b];
            let mut t = vec![0f32; b * b];
            for tx in 0..g.pw / b {
                let x0 = tx * b;
                for u in 0..b {
                    for v in 0..b {
                        et[u * b + v] = e[g.idx(c, y0 + u, x0 + v)];
                    }
                }
                for i in 0..b {
                    for v in 0..b {
                        let mut acc = 0f32;
                        for u in 0..b {
                            acc += basis[u * b + i] * et[u * b + v];
                        }
                        t[i * b + v] = acc;
                    }
                }
                for i in 0..b {
                    for j in 0..b {
                        let mut acc = 0f32;
                        for v in 0..b {
                            acc += basis[v * b + j] * t[i * b + v];
                        }
                        dst[i * g.pw + x0 + j] = acc;
                    }
                }
            }
        });
    let [ca, cb, cc, cd] = colour_consts();
    let mut out = vec![0f32; g.len()];
    let (o0, rest) = out.split_at_mut(n);
    let (o1, o2) = rest.split_at_mut(n);
    o0.par_iter_mut()
        .zip(o1.par_iter_mut().zip(o2.par_iter_mut()))
        .enumerate()
        .for_each(|(i, (a0, (a1, a2)))| {
            let (w0, w1, w2) = (w[i], w[n + i], w[2 * n + i]);
            let r = [
                ca * w0 + cb * w1 + cc * w2,
                ca * w0 - cd * w2,
                ca * w0 - cb * w1 + cc * w2,
            ];
            let mut o = [0f32; 3];
            for c in 0..3 {
                let j = c * n + i;
                let mu = cx * xhat[j] + cz * inp.z[j];
                o[c] = r[c] * delta + mu;
            }
            *a0 = o[0];
            *a1 = o[1];
            *a2 = o[2];
        });
    out
}

/// Adaptive models of the side information (SPEC §6.8).
fn side_models() -> Vec<AdaptiveModel> {
    vec![AdaptiveModel::new(NUM_SCALES); 16]
}

/// Prediction and model number of the scale index of unit (c, gr, ry, rx) (SPEC §6.8).
fn scale_pred(s: &[u8], l: &Layout, c: usize, gr: usize, ry: usize, rx: usize) -> (u8, usize) {
    let p = if rx > 0 {
        s[l.unit(c, gr, ry, rx - 1)]
    } else if ry > 0 {
        s[l.unit(c, gr, ry - 1, rx)]
    } else if gr > 0 {
        s[l.unit(c, gr - 1, ry, rx)]
    } else if c > 0 {
        s[l.unit(c - 1, 0, 0, 0)]
    } else {
        16
    };
    (
        p,
        8 * usize::from(c > 0) + 2 * gr.min(3) + usize::from(p == 0),
    )
}

pub(crate) fn code_side<S: SymbolSink>(sink: &mut S, s: &[u8], l: &Layout) -> Result<()> {
    let mut m = side_models();
    for c in 0..3 {
        for gr in 0..l.ng {
            for ry in 0..l.nry {
                for rx in 0..l.nrx {
                    let (p, mi) = scale_pred(s, l, c, gr, ry, rx);
                    let i = l.unit(c, gr, ry, rx);
                    let d = (usize::from(s[i]) + NUM_SCALES - usize::from(p)) % NUM_SCALES;
                    sink.put_adaptive(&mut m[mi], d)?;
                }
            }
        }
    }
    Ok(())
}

pub(crate) fn read_side(r: &mut RangeReader, l: &Layout) -> Result<Vec<u8>> {
    let mut m = side_models();
    let mut s = vec![0u8; l.units()];
    for c in 0..3 {
        for gr in 0..l.ng {
            for ry in 0..l.nry {
                for rx in 0..l.nrx {
                    let (p, mi) = scale_pred(&s, l, c, gr, ry, rx);
                    let d = r.get_adaptive(&mut m[mi])?;
                    s[l.unit(c, gr, ry, rx)] = ((d + usize::from(p)) % NUM_SCALES) as u8;
                }
            }
        }
    }
    Ok(s)
}

/// Number of symbol contexts of context mode 1 (SPEC §6.10).
const NUM_CTX: usize = 24;
/// Scale offsets of context mode 1 lie in OFF_MIN..OFF_MIN + 32.
const OFF_MIN: i32 = -16;

/// Context of coefficient (c, y, x) in context mode 1 (SPEC §6.10), from integers decoded
/// before it: a = min(|k| of the same frequency in the left tile + in the upper tile, 3);
/// for c > 0, m = min(|k| of component 0 (and 1 when c = 2) at the same place, 2); for c = 0,
/// m = min(|k| of the previous coefficient of the same tile row, 2), 0 at v = 0.
fn context(k: &[i32], g: &Geometry, b: usize, c: usize, y: usize, x: usize) -> usize {
    let at = |cc: usize, yy: usize, xx: usize| k[g.idx(cc, yy, xx)].unsigned_abs();
    let mut a = 0u32;
    if x >= b {
        a += at(c, y, x - b);
    }
    if y >= b {
        a += at(c, y - b, x);
    }
    let m = match c {
        0 if !x.is_multiple_of(b) => at(0, y, x - 1),
        0 => 0,
        1 => at(0, y, x),
        _ => at(0, y, x) + at(1, y, x),
    };
    12 * usize::from(c > 0) + 3 * a.min(3) as usize + m.min(2) as usize
}

/// The effective scale index of a coefficient: base scale s (not 0) moved by its context's
/// offset, clamped to 1..=63.
fn effective(s: u8, off: i32) -> usize {
    (i32::from(s) + off).clamp(1, NUM_SCALES as i32 - 1) as usize
}

fn code_offsets<S: SymbolSink>(sink: &mut S, off: &[i32]) -> Result<()> {
    let m = crate::entropy::Model::uniform(32);
    for &o in off {
        sink.put(&m, (o - OFF_MIN) as usize)?;
    }
    Ok(())
}

fn read_offsets(r: &mut RangeReader) -> Result<Vec<i32>> {
    let m = crate::entropy::Model::uniform(32);
    (0..NUM_CTX)
        .map(|_| Ok(r.get(&m)? as i32 + OFF_MIN))
        .collect()
}

/// What one (tile, region) choice produces.
struct Plan {
    layout: Layout,
    k: Vec<i32>,
    k_max: u32,
    scale: Vec<u8>,
    /// Context mode 1: the offset of every context; None: mode 0.
    offsets: Option<Vec<i32>>,
    bits: f64,
}

/// Clamped symbols k = round(y + u) of the coefficients and the K that holds them.
pub(crate) fn symbols(y: &[f32], levels: &[u8]) -> (Vec<i32>, u32) {
    let mut k: Vec<i32> = y
        .par_iter()
        .zip(levels.par_iter())
        .map(|(&v, &j)| (v + dither_u(usize::from(j))).round() as i32)
        .collect();
    let kmax = k.iter().map(|v| v.unsigned_abs()).max().unwrap_or(0);
    let kmax = kmax.clamp(1, K_MAX);
    let lim = kmax as i32;
    for v in &mut k {
        *v = (*v).clamp(-lim, lim);
    }
    (k, kmax)
}

/// Choose every unit's scale index by real code length (0 where all its k are 0).
fn plan(
    y: &[f32],
    k: &[i32],
    k_max: u32,
    inp: &StepInput,
    l: Layout,
    cache: &TableCache,
) -> Result<Plan> {
    let members = l.members(&inp.g);
    let kk = k_max as i32;
    let res: Vec<(u8, f64)> = members
        .par_iter()
        .map(|idx| {
            if idx.iter().all(|&i| k[i as usize] == 0) {
                return (0u8, 0.0);
            }
            let sum_abs: f64 = idx.iter().map(|&i| f64::from(y[i as usize].abs())).sum();
            let est = sum_abs / idx.len() as f64 / 1.386;
            descend_scale(est, |s| {
                idx.iter()
                    .map(|&i| {
                        let i = i as usize;
                        f64::from(
                            cache
                                .get(s, usize::from(inp.levels[i]))
                                .bits((k[i] + kk) as usize),
                        )
                    })
                    .sum()
            })
        })
        .collect();
    let sym_bits: f64 = res.iter().map(|v| v.1).sum();
    let scale: Vec<u8> = res.into_iter().map(|v| v.0).collect();
    let mut side = BitCounter::default();
    code_side(&mut side, &scale, &l)?;
    Ok(Plan {
        layout: l,
        k: k.to_vec(),
        k_max,
        scale,
        offsets: None,
        bits: sym_bits + side.bits,
    })
}

/// Context mode 1 on top of a mode-0 plan: offsets per context and base scales, each chosen
/// by real code length given the other (two rounds).
fn plan_context(p0: &Plan, inp: &StepInput, cache: &TableCache) -> Result<Plan> {
    let g = &inp.g;
    let l = p0.layout;
    let k = &p0.k;
    let kk = p0.k_max as i32;
    let n = g.len();
    let mut ctx = vec![0u8; n];
    let mut unit = vec![0u32; n];
    for_each_coeff(g, l.b, |c, y, x| {
        let i = g.idx(c, y, x);
        ctx[i] = context(k, g, l.b, c, y, x) as u8;
        unit[i] = l.unit_of(c, y, x) as u32;
        Ok(())
    })?;
    let bits_of = |i: usize, s: usize| -> f64 {
        f64::from(
            cache
                .get(s, usize::from(inp.levels[i]))
                .bits((k[i] + kk) as usize),
        )
    };
    let mut members_ctx: Vec<Vec<u32>> = vec![Vec::new(); NUM_CTX];
    let members_unit = l.members(g);
    let mut scale = p0.scale.clone();
    for i in 0..n {
        if scale[unit[i] as usize] != 0 {
            members_ctx[usize::from(ctx[i])].push(i as u32);
        }
    }
    let mut off = vec![0i32; NUM_CTX];
    let mut sym_bits = 0.0;
    for _round in 0..2 {
        off = members_ctx
            .par_iter()
            .map(|idx| {
                let cost = |o: i32| -> f64 {
                    idx.iter()
                        .map(|&i| {
                            let i = i as usize;
                            bits_of(i, effective(scale[unit[i] as usize], o))
                        })
                        .sum()
                };
                let mut best = (0i32, cost(0));
                for o in OFF_MIN..OFF_MIN + 32 {
                    if o == 0 {
                        continue;
                    }
                    let c = cost(o);
                    if c < best.1 {
                        best = (o, c);
                    }
                }
                best.0
            })
            .collect();
        let res: Vec<(u8, f64)> = members_unit
            .par_iter()
            .enumerate()
            .map(|(u, idx)| {
                if p0.scale[u] == 0 {
                    return (0u8, 0.0);
                }
                let cost = |s: usize| -> f64 {
                    idx.iter()
                        .map(|&i| {
                            let i = i as usize;
                            bits_of(i, effective(s as u8, off[usize::from(ctx[i])]))
                        })
                        .sum()
                };
                let start = crate::entropy::sigma(usize::from(scale[u]));
                descend_scale(start, cost)
            })
            .collect();
        sym_bits = res.iter().map(|v| v.1).sum();
        scale = res.into_iter().map(|v| v.0).collect();
    }
    let mut side = BitCounter::default();
    code_side(&mut side, &scale, &l)?;
    code_offsets(&mut side, &off)?;
    Ok(Plan {
        layout: l,
        k: k.clone(),
        k_max: p0.k_max,
        scale,
        offsets: Some(off),
        bits: sym_bits + side.bits,
    })
}

fn code_symbols<S: SymbolSink>(
    sink: &mut S,
    cache: &TableCache,
    p: &Plan,
    inp: &StepInput,
) -> Result<()> {
    let g = &inp.g;
    let l = &p.layout;
    let kk = cache.k_max() as i32;
    for_each_coeff(g, l.b, |c, y, x| {
        let s = p.scale[l.unit_of(c, y, x)];
        if s != 0 {
            let i = g.idx(c, y, x);
            let s = match &p.offsets {
                Some(off) => effective(s, off[context(&p.k, g, l.b, c, y, x)]),
                None => usize::from(s),
            };
            sink.put(
                cache.get(s, usize::from(inp.levels[i])),
                (p.k[i] + kk) as usize,
            )?;
        }
        Ok(())
    })
}

fn read_symbols(
    r: &mut RangeReader,
    cache: &TableCache,
    scale: &[u8],
    offsets: Option<&[i32]>,
    l: &Layout,
    inp: &StepInput,
) -> Result<Vec<i32>> {
    let g = &inp.g;
    let kk = cache.k_max() as i32;
    let mut k = vec![0i32; g.len()];
    for_each_coeff(g, l.b, |c, y, x| {
        let s = scale[l.unit_of(c, y, x)];
        if s != 0 {
            let i = g.idx(c, y, x);
            let s = match offsets {
                Some(off) => effective(s, off[context(&k, g, l.b, c, y, x)]),
                None => usize::from(s),
            };
            k[i] = r.get(cache.get(s, usize::from(inp.levels[i])))? as i32 - kk;
        }
        Ok(())
    })?;
    Ok(k)
}

/// The encoder's residual of the posterior mean in units of delta (SPEC §6.7):
/// r = (cx / delta)(x - xhat).
pub(crate) fn residual(inp: &StepInput, x: &[f32], xhat: &[f32]) -> Vec<f32> {
    let gain = inp.co.f32s().3;
    x.par_iter()
        .zip(xhat.par_iter())
        .map(|(&a, &b)| (a - b) * gain)
        .collect()
}

/// The step's x0 estimate: the network's, or 0 at step 0 (SPEC §6.7).
pub(crate) fn xhat_of<'a>(inp: &'a StepInput, zeros: &'a mut Vec<f32>) -> &'a [f32] {
    match inp.xhat {
        Some(x) => x,
        None => {
            *zeros = vec![0f32; inp.g.len()];
            zeros
        }
    }
}

impl StepCoder for TransformUq {
    fn kind(&self) -> u8 {
        2
    }

    fn name(&self) -> &'static str {
        "transform UQ"
    }

    fn encode(&self, inp: &StepInput, x: &[f32]) -> Result<Coded> {
        let g = &inp.g;
        let mut zeros = Vec::new();
        let xhat = xhat_of(inp, &mut zeros);
        let r = residual(inp, x, xhat);
        let mut best: Option<Plan> = None;
        let mut caches: Vec<TableCache> = Vec::new();
        for &b in &TILE_SIZES {
            if !g.ph.is_multiple_of(b) || !g.pw.is_multiple_of(b) {
                continue;
            }
            let y = forward(&r, g, b);
            let (k, k_max) = symbols(&y, inp.levels);
            if !caches.iter().any(|c| c.k_max() == k_max) {
                caches.push(TableCache::new(k_max));
            }
            let cache = caches.iter().find(|c| c.k_max() == k_max).expect("cache");
            for &rs in &REGIONS {
                if rs < b {
                    continue;
                }
                let p = plan(&y, &k, k_max, inp, Layout::new(g, b, rs), cache)?;
                if best.as_ref().is_none_or(|q| p.bits < q.bits) {
                    best = Some(p);
                }
            }
        }
        let mut p = best.ok_or_else(|| {
            Error::param(format!(
                "padded size {}x{} has no allowed tile size",
                g.pw, g.ph
            ))
        })?;
        let cache = caches
            .iter()
            .find(|c| c.k_max() == p.k_max)
            .expect("cache of the chosen K");
        // DDPMC_NO_CONTEXT=1 keeps context mode 0 (for measuring what the context adds).
        if std::env::var_os("DDPMC_NO_CONTEXT").is_none() {
            let pc = plan_context(&p, inp, cache)?;
            if pc.bits < p.bits {
                p = pc;
            }
        }
        let mut w = RangeWriter::new();
        code_side(&mut w, &p.scale, &p.layout)?;
        if let Some(off) = &p.offsets {
            code_offsets(&mut w, off)?;
        }
        let side_bits = w.ideal_bits;
        code_symbols(&mut w, cache, &p, inp)?;
        let ideal_bits = w.ideal_bits;
        let body = Body {
            tile: p.layout.b as u8,
            region: p.layout.r as u16,
            k_max: p.k_max as u16,
            context: u8::from(p.offsets.is_some()),
            words: w.finish(),
        };
        let z = next_latent(inp, xhat, &p.k, p.layout.b);
        Ok(Coded {
            body: body.to_bytes(),
            z,
            stats: StepStats {
                ideal_bits,
                side_bits,
                block: p.layout.b,
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
        let b = usize::from(c.tile);
        if !g.ph.is_multiple_of(b) || !g.pw.is_multiple_of(b) {
            return Err(Error::format(format!(
                "tile size {b} does not divide the padded size {}x{}",
                g.pw, g.ph
            )));
        }
        let l = Layout::new(g, b, usize::from(c.region));
        let cache = TableCache::new(u32::from(c.k_max));
        let mut r = RangeReader::new(c.words)?;
        let scale = read_side(&mut r, &l)?;
        let offsets = if c.context == 1 {
            Some(read_offsets(&mut r)?)
        } else {
            None
        };
        let k = read_symbols(&mut r, &cache, &scale, offsets.as_deref(), &l, inp)?;
        let mut zeros = Vec::new();
        let xhat = xhat_of(inp, &mut zeros);
        let z = next_latent(inp, xhat, &k, b);
        Ok((z, k))
    }

    fn describe(&self, body: &[u8]) -> Result<BodyInfo> {
        let c = Body::parse(body)?;
        Ok(BodyInfo {
            block: u16::from(c.tile),
            k_max: c.k_max,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cos_is_accurate() {
        for b in [4usize, 8, 16] {
            for m in 0..8 * b {
                let want = (std::f64::consts::PI * m as f64 / (2 * b) as f64).cos();
                assert!((cos_pi_over(m, b) - want).abs() < 1e-14, "{m} {b}");
            }
        }
    }

    #[test]
    fn transform_is_orthonormal() {
        let g = Geometry {
            h: 16,
            w: 32,
            ph: 16,
            pw: 32,
        };
        for b in TILE_SIZES {
            // Forward then inverse (through next_latent with delta 1, cx 0, cz 0 would need
            // coefficients); check orthonormality of the basis and energy preservation.
            let m = dct_basis(b);
            for u in 0..b {
                for v in 0..b {
                    let dot: f32 = (0..b).map(|i| m[u * b + i] * m[v * b + i]).sum();
                    let want = if u == v { 1.0 } else { 0.0 };
                    assert!((dot - want).abs() < 1e-6);
                }
            }
            let r: Vec<f32> = (0..g.len())
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 30.0)
                .collect();
            let y = forward(&r, &g, b);
            let e0: f32 = r.iter().map(|v| v * v).sum();
            let e1: f32 = y.iter().map(|v| v * v).sum();
            assert!((e0 - e1).abs() < 1e-4 * e0, "{e0} {e1}");
        }
    }
}
