//! Coder kind 3 (SPEC §6.12-§6.16): the paper's Gaussian step, sent by reverse-channel coding.
//!
//! The decoder gets a sample of the posterior q(z_s | z_t, x) = N(mu_q, var) itself, not a
//! quantized version of it: in the transform domain of kind 2 (§6.9), the target per
//! coefficient is N(m, 1) with m = T(mu_q - mu_p) / sqrt(var), the prior N(0, 1 + tau^2) with
//! tau from a scale index per (component, band group, region). The coefficients of a unit are
//! dealt into chunks of about 8 bits of KL; per chunk both sides draw 2^L candidates from the
//! prior (windows of a per-step table of normals, SPEC §6.13), the encoder picks one by
//! ordered random coding (Gumbel-max over log q/p with the arrival times of a Poisson
//! process, which favours early candidates), and only its index is sent. The index model
//! depends on integers only (invariant D); the decoder regenerates the chosen candidate.

use rayon::prelude::*;

use super::tuq::{self, Layout};
use super::{BodyInfo, Coded, StepCoder, StepInput, StepStats};
use crate::diffusion::{gauss_table, prng};
use crate::entropy::{
    nearest_scale, sigma, AdaptiveModel, BitCounter, Model, RangeReader, RangeWriter, SymbolSink,
    NUM_SCALES,
};
use crate::format::Reader;
use crate::{Error, Result};

/// PRNG domains of kind 3 (SPEC §5): the per-step table of normals, candidate windows,
/// samples of skipped units, and the encoder's own randomness (not normative).
const DOM_TABLE: u64 = 4;
const DOM_WINDOW: u64 = 5;
const DOM_SKIP: u64 = 6;
const DOM_ENC: u64 = 7;

/// Length of the per-step table of normals (SPEC §6.13); the table is extended by its first
/// MAX_CHUNK entries so that no window wraps.
const TABLE_LEN: usize = 1 << 22;
/// Largest chunk length (SPEC §6.14).
const MAX_CHUNK: usize = 1024;
/// Largest log2 of the candidate count a file may use.
const MAX_LOG2N: u8 = 16;
/// Bit-length classes of a chunk count (J - 1 < 2^16 + 1).
const COUNT_CLASSES: usize = 18;

/// Encoder settings: chunks of about 12 bits of KL and 2^14 candidates, i.e. two bits above
/// the chunk's KL; units under 1 bit of KL skipped (sampled from the prior). Chosen on the
/// tuning images (`results/ladder-sweep/README.md`): an index drawn from 2^(C+2) candidates
/// costs little more than C bits, where the exact ordered random coding of smaller chunks
/// pays about log2(C + 1) bits per chunk; the truncation's small bias costs less PSNR than
/// the bits it saves.
const ENC_LOG2N: u8 = 14;
const ENC_CHUNK_BITS: f64 = 12.0;
const ENC_SKIP_BITS: f64 = 1.0;
/// Tile and region sizes the encoder tries.
const ENC_TILES: [usize; 2] = [8, 16];
const ENC_REGIONS: [usize; 3] = [32, 64, 128];

/// Coder kind 3, with the encoder's chunk size (bits of KL) and log2 of its candidate count.
pub(crate) struct Rcc {
    pub chunk_bits: f64,
    pub log2n: u8,
}

impl Rcc {
    /// The encoder's settings.
    pub const DEFAULT: Rcc = Rcc {
        chunk_bits: ENC_CHUNK_BITS,
        log2n: ENC_LOG2N,
    };
}

/// The fixed fields of a kind-3 body (SPEC §4.3).
struct Body {
    tile: u8,
    region: u16,
    log2n: u8,
    words: Vec<u32>,
}

impl Body {
    fn to_bytes(&self) -> Vec<u8> {
        let mut o = Vec::with_capacity(8 + 4 * self.words.len());
        o.push(self.tile);
        o.extend_from_slice(&self.region.to_le_bytes());
        o.push(self.log2n);
        super::put_words(&mut o, &self.words);
        o
    }

    fn parse(body: &[u8]) -> Result<Body> {
        let mut r = Reader::new(body, "STEP");
        let (tile, region) = tuq::read_tile_region(&mut r)?;
        let log2n = r.u8()?;
        if !(1..=MAX_LOG2N).contains(&log2n) {
            return Err(Error::format(format!(
                "log2 of the candidate count {log2n} (allowed 1..={MAX_LOG2N})"
            )));
        }
        let words = super::read_words(&mut r)?;
        Ok(Body {
            tile,
            region,
            log2n,
            words,
        })
    }
}

/// The per-step table of normals (SPEC §6.13): entry 4 q + f (q < TABLE_LEN / 4) is the
/// Gaussian quantile (SPEC §5.3) indexed by 16-bit field f of prng(seed, 4, n, 0, 0, q);
/// entries TABLE_LEN.. repeat the first MAX_CHUNK.
fn step_table(seed: u64, n: usize) -> Vec<f32> {
    let g = gauss_table();
    let mut t: Vec<f32> = (0..TABLE_LEN / 4)
        .into_par_iter()
        .flat_map_iter(|q| {
            let r = prng(seed, DOM_TABLE, n as u64, 0, 0, q as u64);
            (0..4).map(move |f| g[((r >> (16 * f)) & 0xFFFF) as usize])
        })
        .collect();
    t.extend_from_within(..MAX_CHUNK);
    t
}

/// Start of chunk `chunk`'s candidates (SPEC §6.14): prng(seed, 5, n, chunk, 0, 0) mod
/// TABLE_LEN. Candidate j of a chunk of length d is the window at (start + j d) mod TABLE_LEN:
/// consecutive, disjoint windows while 2^L d <= TABLE_LEN.
fn chunk_start(seed: u64, n: usize, chunk: u64) -> usize {
    (prng(seed, DOM_WINDOW, n as u64, chunk, 0, 0) % TABLE_LEN as u64) as usize
}

fn window(start: usize, j: u64, d: usize) -> usize {
    ((start as u64 + j * d as u64) % TABLE_LEN as u64) as usize
}

/// Prior standard deviation of scale index s: f32(sqrt(1 + sigma_s^2)) (SPEC §6.12).
fn prior_sd(s: u8) -> f32 {
    let t = sigma(usize::from(s));
    (1.0 + t * t).sqrt() as f32
}

/// Bit length of v (0 for 0).
fn bitlen(v: u32) -> usize {
    (32 - v.leading_zeros()) as usize
}

/// The uniform models of 2^(b-1) symbols for the low bits of class b, built once per body
/// (building one per coded value would cost more than the coding at 12-bit indices).
#[derive(Default)]
struct Uniforms(Vec<Option<Model>>);

impl Uniforms {
    fn of_class(&mut self, b: usize) -> &Model {
        if self.0.len() <= b {
            self.0.resize_with(b + 1, || None);
        }
        self.0[b].get_or_insert_with(|| Model::uniform(1 << (b - 1)))
    }
}

/// Code v as its bit-length class under `m` and, for class b >= 2, its b - 1 low bits under
/// a uniform model (SPEC §6.15).
fn put_class<S: SymbolSink>(
    sink: &mut S,
    m: &mut AdaptiveModel,
    u: &mut Uniforms,
    v: u32,
) -> Result<()> {
    let b = bitlen(v);
    sink.put_adaptive(m, b)?;
    if b >= 2 {
        let low = v - (1 << (b - 1));
        sink.put(u.of_class(b), low as usize)?;
    }
    Ok(())
}

fn get_class(r: &mut RangeReader, m: &mut AdaptiveModel, u: &mut Uniforms) -> Result<u32> {
    let b = r.get_adaptive(m)?;
    Ok(match b {
        0 => 0,
        1 => 1,
        _ => (1u32 << (b - 1)) + r.get(u.of_class(b))? as u32,
    })
}

/// Chunk q (of `count`) of a unit: its members e = q, q + count, q + 2 count, ...
fn chunk_of(members: &[u32], q: usize, count: usize) -> impl Iterator<Item = usize> + '_ {
    members.iter().skip(q).step_by(count).map(|&i| i as usize)
}

/// Side information of a step: scale index and chunk count per unit.
struct Side {
    scale: Vec<u8>,
    count: Vec<u32>,
}

fn code_side<S: SymbolSink>(sink: &mut S, side: &Side, l: &Layout) -> Result<()> {
    tuq::code_side(sink, &side.scale, l)?;
    let mut m = AdaptiveModel::new(COUNT_CLASSES);
    let mut uni = Uniforms::default();
    for (u, &s) in side.scale.iter().enumerate() {
        if s != 0 {
            put_class(sink, &mut m, &mut uni, side.count[u] - 1)?;
        }
    }
    Ok(())
}

fn read_side(r: &mut RangeReader, l: &Layout, members: &[Vec<u32>]) -> Result<Side> {
    let scale = tuq::read_side(r, l)?;
    let mut m = AdaptiveModel::new(COUNT_CLASSES);
    let mut uni = Uniforms::default();
    let mut count = vec![0u32; scale.len()];
    for (u, &s) in scale.iter().enumerate() {
        if s != 0 {
            let c = get_class(r, &mut m, &mut uni)? + 1;
            let n = members[u].len();
            if c as usize > n || n.div_ceil(c as usize) > MAX_CHUNK {
                return Err(Error::format(format!(
                    "chunk count {c} of a unit with {n} coefficients (chunks hold 1..={MAX_CHUNK})"
                )));
            }
            count[u] = c;
        }
    }
    Ok(Side { scale, count })
}

/// The transform-domain sample w (SPEC §6.14): for coded units, the chosen candidates scaled
/// by the prior's deviation; for skipped units, a fresh normal per coefficient.
fn sample(
    inp: &StepInput,
    seed: u64,
    members: &[Vec<u32>],
    side: &Side,
    index: &[u32],
    table: &[f32],
) -> Vec<f32> {
    let g = &inp.g;
    let gt = gauss_table();
    let n = inp.n;
    let mut w = vec![0f32; g.len()];
    let mut chunk_id = 0u64;
    for (u, mem) in members.iter().enumerate() {
        let s = side.scale[u];
        if s == 0 {
            for &i in mem {
                let i = i as usize;
                let (c, rest) = (i / (g.ph * g.pw), i % (g.ph * g.pw));
                let (y, x) = (rest / g.pw, rest % g.pw);
                let r = prng(seed, DOM_SKIP, n as u64, c as u64, y as u64, x as u64);
                w[i] = gt[(r & 0xFFFF) as usize];
            }
            continue;
        }
        let sd = prior_sd(s);
        let count = side.count[u] as usize;
        for q in 0..count {
            let d = chunk_of(mem, q, count).count();
            let start = chunk_start(seed, n, chunk_id);
            let o = window(start, u64::from(index[chunk_id as usize]), d);
            for (e, i) in chunk_of(mem, q, count).enumerate() {
                w[i] = sd * table[o + e];
            }
            chunk_id += 1;
        }
    }
    w
}

/// Estimated bits of one unit with scale index s: the KL of its coefficients (in bits) and
/// the chunk count it would use.
fn unit_kl(sum_m2: f64, n: usize, s: usize) -> f64 {
    let t = sigma(s);
    let s2 = 1.0 + t * t;
    let nats = n as f64 * (0.5 / s2 - 0.5 + 0.5 * s2.ln()) + 0.5 * sum_m2 / s2;
    nats / std::f64::consts::LN_2
}

/// One (tile, region) plan: side information and estimated bits.
struct Plan {
    layout: Layout,
    m: Vec<f32>,
    side: Side,
    members: Vec<Vec<u32>>,
    bits: f64,
    /// KL of the coded units' targets from their priors, in bits.
    kl_bits: f64,
}

fn plan(inp: &StepInput, m: Vec<f32>, l: Layout, chunk_bits: f64) -> Result<Plan> {
    let members = l.members(&inp.g);
    let res: Vec<(u8, u32, f64)> = members
        .par_iter()
        .map(|mem| {
            let s2: f64 = mem.iter().map(|&i| f64::from(m[i as usize]).powi(2)).sum();
            let n = mem.len();
            let tau = (s2 / n as f64).sqrt();
            let i0 = nearest_scale(tau);
            let mut best = (i0, unit_kl(s2, n, i0));
            for i in [i0.saturating_sub(1).max(1), (i0 + 1).min(NUM_SCALES - 1)] {
                let k = unit_kl(s2, n, i);
                if k < best.1 {
                    best = (i, k);
                }
            }
            if best.1 < ENC_SKIP_BITS {
                return (0u8, 0u32, 0.0);
            }
            let count = ((best.1 / chunk_bits).round() as usize)
                .max(n.div_ceil(MAX_CHUNK))
                .clamp(1, n) as u32;
            (best.0 as u8, count, best.1)
        })
        .collect();
    let side = Side {
        scale: res.iter().map(|r| r.0).collect(),
        count: res.iter().map(|r| r.1).collect(),
    };
    let mut c = BitCounter::default();
    code_side(&mut c, &side, &l)?;
    // Index cost: the KL plus about one bit per chunk (measured overhead of ordered random
    // coding at these chunk sizes).
    let bits = c.bits + res.iter().map(|r| r.2 + f64::from(r.1)).sum::<f64>();
    Ok(Plan {
        layout: l,
        m,
        side,
        members,
        bits,
        kl_bits: res.iter().map(|r| r.2).sum(),
    })
}

/// ln(x) for x > 0 to about 1e-6 (encoder only: it perturbs the choice's randomness, not
/// what the decoder computes): exponent and mantissa split, then the series of
/// 2 atanh((m - 1) / (m + 1)) on m in [sqrt(1/2), sqrt(2)).
#[inline(always)]
fn fast_ln(x: f32) -> f32 {
    let bits = x.to_bits();
    let e = ((bits >> 23) & 0xFF) as i32 - 127;
    let m = f32::from_bits((bits & 0x007F_FFFF) | 0x3F80_0000);
    // Branch-free, so that loops over it vectorise.
    let big = m > std::f32::consts::SQRT_2;
    let m = if big { m * 0.5 } else { m };
    let e = if big { e + 1 } else { e };
    let y = (m - 1.0) / (m + 1.0);
    let y2 = y * y;
    let p = y * (2.0 + y2 * (2.0 / 3.0 + y2 * (2.0 / 5.0 + y2 * (2.0 / 7.0 + y2 * (2.0 / 9.0)))));
    e as f32 * std::f32::consts::LN_2 + p
}

/// Scale of the search's 8-bit table: the table's values lie within +-4.5.
const TQ_SCALE: f32 = 28.0;
/// Largest magnitude of a chunk's 16-bit coefficients in the search: products with the 8-bit
/// table sum to at most 1024 x 127 x 2047 < 2^31 over the largest chunk.
const BQ_MAX: f32 = 2047.0;
/// Candidates scored together (the search checks its stopping bound once per group).
const GROUP: usize = 8;

/// The encoder's choice of every chunk's candidate: ordered random coding, i.e. the index j
/// maximising log q/p(candidate j) - ln T_j, T_j the arrival times of a unit-rate Poisson
/// process (the encoder's own randomness).
fn choose(inp: &StepInput, seed: u64, p: &Plan, table: &[f32], log2n: u8) -> Vec<u32> {
    let n = inp.n;
    let big_n = 1usize << log2n;
    // The encoder's own randomness: a per-step table of unit exponentials; chunk c takes the
    // inter-arrival times of its Poisson process from a window at its own random start (each
    // chunk needs its own process: a shared one would bias every chunk the same way).
    let expo: Vec<f32> = (0..TABLE_LEN)
        .into_par_iter()
        .map(|i| {
            let r = prng(seed, DOM_ENC, n as u64, 0, i as u64, 0);
            let uni = ((r >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
            (-uni.ln()) as f32
        })
        .collect();
    // (unit, q, chunk id) of every chunk.
    let mut chunks = Vec::new();
    let mut id = 0u64;
    for (u, &s) in p.side.scale.iter().enumerate() {
        if s != 0 {
            for q in 0..p.side.count[u] as usize {
                chunks.push((u, q, id));
                id += 1;
            }
        }
    }
    let search = Search::new(table);
    chunks
        .par_iter()
        .map_init(
            || vec![0f32; big_n],
            |g, &(u, q, id)| {
                let s = p.side.scale[u];
                let t = sigma(usize::from(s));
                let sd = f64::from(prior_sd(s));
                let count = p.side.count[u] as usize;
                let mem = &p.members[u];
                let alpha = -0.5 * t * t;
                let beta: Vec<f64> = chunk_of(mem, q, count)
                    .map(|i| sd * f64::from(p.m[i]) / f64::from(TQ_SCALE))
                    .collect();
                // log q/p of any candidate is at most sum beta^2 / (4 |alpha|).
                let bound = beta.iter().map(|&b| b * b).sum::<f64>()
                    * f64::from(TQ_SCALE * TQ_SCALE)
                    / (-4.0 * alpha);
                let top = beta.iter().fold(0f64, |a, &b| a.max(b.abs()));
                let scale = if top > 0.0 {
                    f64::from(BQ_MAX) / top
                } else {
                    1.0
                };
                let mut bq: Vec<i16> = beta.iter().map(|&b| (b * scale).round() as i16).collect();
                bq.resize(beta.len().div_ceil(16) * 16, 0);
                let e0 = (prng(seed, DOM_ENC, n as u64, 1, id, 0) % TABLE_LEN as u64) as usize;
                let c = Cand {
                    d: beta.len(),
                    bq: &bq,
                    inv_scale: (1.0 / scale) as f32,
                    alpha_q: (alpha / f64::from(TQ_SCALE * TQ_SCALE)) as f32,
                    expo: &expo,
                    bound: bound as f32,
                    start: chunk_start(seed, n, id),
                    e0,
                };
                search.scan(&c, g)
            },
        )
        .collect()
}

/// The search's copies of the table of normals: 8-bit values (a quarter of the memory
/// traffic; their error of about 0.01 moves log q/p by a few hundredths of a nat, far below
/// the spread of the arrival-time term), zero-padded so that 16-value loads never leave it.
struct Search {
    tq: Vec<i8>,
    #[cfg(target_arch = "x86_64")]
    avx2: bool,
}

impl Search {
    fn new(table: &[f32]) -> Search {
        let mut tq: Vec<i8> = table
            .par_iter()
            .map(|&v| (v * TQ_SCALE).round().clamp(-127.0, 127.0) as i8)
            .collect();
        tq.resize(tq.len() + 16, 0);
        Search {
            tq,
            #[cfg(target_arch = "x86_64")]
            avx2: std::arch::is_x86_feature_detected!("avx2"),
        }
    }

    /// The index j < g.len() maximising log q/p(candidate j) - ln T_j (`g` is scratch space).
    fn scan(&self, c: &Cand, g: &mut [f32]) -> u32 {
        #[cfg(target_arch = "x86_64")]
        if self.avx2 {
            // SAFETY: the CPU has AVX2 (checked in `new`).
            return unsafe { self.scan_avx2(c, g) };
        }
        arrivals(c, g);
        self.scan_with(c, g, |o| dot(&self.tq, o, c.bq, c.d))
    }

    /// [`Search::scan`] compiled for AVX2.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn scan_avx2(&self, c: &Cand, g: &mut [f32]) -> u32 {
        arrivals(c, g);
        self.scan_with(c, g, |o| dot_avx2(&self.tq, o, c.bq, c.d))
    }

    /// The scan with a given window dot product (exact integers, so every version chooses
    /// the same index).
    #[inline(always)]
    fn scan_with(&self, c: &Cand, g: &[f32], dot: impl Fn(usize) -> (i32, i32)) -> u32 {
        let d = c.d;
        let mut best = (0u32, f32::NEG_INFINITY);
        let mut o = c.start;
        for (j0, gg) in g.chunks(GROUP).enumerate() {
            if gg[0] + c.bound < best.1 {
                break;
            }
            for (k, &gj) in gg.iter().enumerate() {
                let (dp, ss) = dot(o);
                let score = dp as f32 * c.inv_scale + (c.alpha_q * ss as f32 + gj);
                if score > best.1 {
                    best = ((j0 * GROUP + k) as u32, score);
                }
                o += d;
                if o >= TABLE_LEN {
                    o -= TABLE_LEN;
                }
            }
        }
        best.0
    }
}

/// One chunk's search: its 16-bit coefficients (zero-padded to a multiple of 16), the scales
/// and its two random starts.
struct Cand<'a> {
    d: usize,
    bq: &'a [i16],
    /// beta = bq * inv_scale in the 8-bit table's units.
    inv_scale: f32,
    /// alpha in the 8-bit table's units.
    alpha_q: f32,
    expo: &'a [f32],
    bound: f32,
    start: usize,
    e0: usize,
}

/// -ln of the chunk's arrival times, into `g`.
#[inline(always)]
fn arrivals(c: &Cand, g: &mut [f32]) {
    let mut arrival = 0f32;
    let mut e = c.e0;
    for v in g.iter_mut() {
        arrival += c.expo[e];
        e = if e + 1 == TABLE_LEN { 0 } else { e + 1 };
        *v = arrival;
    }
    for v in g.iter_mut() {
        *v = -fast_ln(*v);
    }
}

/// Sum of tq[o + k] bq[k] over the padded coefficients, and the sum of squares of the window
/// tq[o..o + d].
#[inline(always)]
fn dot(tq: &[i8], o: usize, bq: &[i16], d: usize) -> (i32, i32) {
    let x = &tq[o..o + bq.len()];
    let dot = x
        .iter()
        .zip(bq)
        .map(|(&x, &b)| i32::from(x) * i32::from(b))
        .sum();
    let sq = x[..d].iter().map(|&x| i32::from(x) * i32::from(x)).sum();
    (dot, sq)
}

/// Lane masks of a chunk's last 16 values: `MASKS[16 - r..32 - r]` keeps the first r.
static MASKS: [i16; 32] = [
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0,
];

/// [`dot`] with AVX2: 16 products per multiply-add of 16-bit pairs.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dot_avx2(tq: &[i8], o: usize, bq: &[i16], d: usize) -> (i32, i32) {
    use std::arch::x86_64::*;
    debug_assert!(o + bq.len() <= tq.len() && bq.len().is_multiple_of(16) && bq.len() >= d);
    let (mut acc, mut acc2) = (_mm256_setzero_si256(), _mm256_setzero_si256());
    let (px, pb) = (tq.as_ptr().add(o), bq.as_ptr());
    let full = d / 16 * 16;
    for k in (0..full).step_by(16) {
        let x = _mm256_cvtepi8_epi16(_mm_loadu_si128(px.add(k) as *const __m128i));
        let b = _mm256_loadu_si256(pb.add(k) as *const __m256i);
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(x, b));
        acc2 = _mm256_add_epi32(acc2, _mm256_madd_epi16(x, x));
    }
    if full < d {
        let m = _mm256_loadu_si256(MASKS.as_ptr().add(16 - (d - full)) as *const __m256i);
        let x = _mm256_cvtepi8_epi16(_mm_loadu_si128(px.add(full) as *const __m128i));
        let x = _mm256_and_si256(x, m);
        let b = _mm256_loadu_si256(pb.add(full) as *const __m256i);
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(x, b));
        acc2 = _mm256_add_epi32(acc2, _mm256_madd_epi16(x, x));
    }
    // Both horizontal sums at once: lanes 0-3 of `s` from acc, 4-7 from acc2.
    let lo = _mm256_permute2x128_si256(acc, acc2, 0x20);
    let hi = _mm256_permute2x128_si256(acc, acc2, 0x31);
    let s = _mm256_add_epi32(lo, hi);
    let s = _mm256_add_epi32(s, _mm256_shuffle_epi32(s, 0b01_00_11_10));
    let s = _mm256_add_epi32(s, _mm256_shuffle_epi32(s, 0b10_11_00_01));
    (_mm256_extract_epi32(s, 0), _mm256_extract_epi32(s, 4))
}

impl StepCoder for Rcc {
    fn kind(&self) -> u8 {
        3
    }

    fn name(&self) -> &'static str {
        "Gaussian (reverse-channel coded)"
    }

    fn encode(&self, inp: &StepInput, x: &[f32]) -> Result<Coded> {
        let g = &inp.g;
        let seed = inp.seed;
        let mut zeros = Vec::new();
        let xhat = tuq::xhat_of(inp, &mut zeros);
        let r = tuq::residual(inp, x, xhat);
        let root12 = 12f32.sqrt();
        let mut best: Option<Plan> = None;
        for &b in &ENC_TILES {
            if !g.ph.is_multiple_of(b) || !g.pw.is_multiple_of(b) {
                continue;
            }
            let m: Vec<f32> = tuq::forward(&r, g, b).iter().map(|v| v * root12).collect();
            for &rs in &ENC_REGIONS {
                let p = plan(inp, m.clone(), Layout::new(g, b, rs), self.chunk_bits)?;
                if best.as_ref().is_none_or(|q| p.bits < q.bits) {
                    best = Some(p);
                }
            }
        }
        let p = best.ok_or_else(|| {
            Error::param(format!(
                "padded size {}x{} has no allowed tile size",
                g.pw, g.ph
            ))
        })?;
        let table = step_table(seed, inp.n);
        let index = choose(inp, seed, &p, &table, self.log2n);
        let mut w = RangeWriter::new();
        code_side(&mut w, &p.side, &p.layout)?;
        let side_bits = w.ideal_bits;
        let mut im = AdaptiveModel::new(usize::from(self.log2n) + 1);
        let mut uni = Uniforms::default();
        for &j in &index {
            put_class(&mut w, &mut im, &mut uni, j)?;
        }
        let ideal_bits = w.ideal_bits;
        let body = Body {
            tile: p.layout.b as u8,
            region: p.layout.r as u16,
            log2n: self.log2n,
            words: w.finish(),
        };
        let wv = sample(inp, seed, &p.members, &p.side, &index, &table);
        let sd = inp.co.var.sqrt() as f32;
        let z = tuq::inverse_update(inp, xhat, &wv, p.layout.b, sd);
        Ok(Coded {
            body: body.to_bytes(),
            z,
            stats: StepStats {
                ideal_bits,
                side_bits,
                block: p.layout.b,
                k_max: 0,
                skipped: p.side.scale.iter().filter(|&&s| s == 0).count(),
                units: p.side.scale.len(),
                kl_bits: Some(p.kl_bits),
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
        let members = l.members(&inp.g);
        let mut r = RangeReader::new(c.words)?;
        let side = read_side(&mut r, &l, &members)?;
        let chunks: u64 = side.count.iter().map(|&v| u64::from(v)).sum();
        let mut im = AdaptiveModel::new(usize::from(c.log2n) + 1);
        let mut uni = Uniforms::default();
        let mut index = Vec::with_capacity(chunks.min(1 << 24) as usize);
        for _ in 0..chunks {
            let j = get_class(&mut r, &mut im, &mut uni)?;
            index.push(j);
        }
        let table = step_table(inp.seed, inp.n);
        let w = sample(inp, inp.seed, &members, &side, &index, &table);
        let mut zeros = Vec::new();
        let xhat = tuq::xhat_of(inp, &mut zeros);
        let sd = inp.co.var.sqrt() as f32;
        let z = tuq::inverse_update(inp, xhat, &w, b, sd);
        let mut sym: Vec<i32> = side.scale.iter().map(|&s| i32::from(s)).collect();
        sym.extend(side.count.iter().map(|&v| v as i32));
        sym.extend(index.iter().map(|&v| v as i32));
        Ok((z, sym))
    }

    fn describe(&self, body: &[u8]) -> Result<BodyInfo> {
        let c = Body::parse(body)?;
        Ok(BodyInfo {
            block: u16::from(c.tile),
            k_max: u16::from(c.log2n),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diffusion::{abar_table, StepCoeffs};
    use crate::step::{dither_levels, Geometry};

    /// The coded latent has the posterior's mean and variance: (z' - mu_q) / sqrt(var) is
    /// standard normal over the image; and the decoder rebuilds the encoder's latent exactly.
    /// The integer search picks the same index with and without AVX2, and an index whose
    /// exact log q/p - ln T is within a small tolerance of the best one.
    #[test]
    fn search_versions_agree_with_the_exact_score() {
        let table = step_table(5, 2);
        let search = Search::new(&table);
        let expo: Vec<f32> = (0..TABLE_LEN)
            .map(|i| {
                -(((prng(5, DOM_ENC, 2, 0, i as u64, 0) >> 11) as f64 + 0.5) / (1u64 << 53) as f64)
                    .ln() as f32
            })
            .collect();
        let mut g = vec![0f32; 1 << 10];
        let mut g2 = vec![0f32; 1 << 10];
        for case in 0..60u64 {
            let d = [1usize, 7, 16, 31, 40, 129, 1024][case as usize % 7];
            let alpha = -0.5 * [0.3f64, 1.0, 3.0][case as usize % 3].powi(2);
            let beta: Vec<f64> = (0..d)
                .map(|k| crate::diffusion::normal(case, 11, 0, 0, 0, k) as f64 * 0.08)
                .collect();
            let top = beta.iter().fold(0f64, |a, &b| a.max(b.abs()));
            let scale = f64::from(BQ_MAX) / top;
            let mut bq: Vec<i16> = beta.iter().map(|&b| (b * scale).round() as i16).collect();
            bq.resize(d.div_ceil(16) * 16, 0);
            let c = Cand {
                d,
                bq: &bq,
                inv_scale: (1.0 / scale) as f32,
                alpha_q: alpha as f32,
                expo: &expo,
                bound: f32::INFINITY,
                start: (prng(case, 1, 0, 0, 0, 0) % TABLE_LEN as u64) as usize,
                e0: (prng(case, 2, 0, 0, 0, 0) % TABLE_LEN as u64) as usize,
            };
            arrivals(&c, &mut g);
            let j = search.scan_with(&c, &g, |o| dot(&search.tq, o, c.bq, c.d));
            assert_eq!(j, search.scan(&c, &mut g2), "case {case}");
            // Exact scores in f64 from the 8-bit table.
            let score = |j: usize| {
                let o = window(c.start, j as u64, d);
                let x = &search.tq[o..o + d];
                x.iter()
                    .zip(&beta)
                    .map(|(&v, &b)| f64::from(v) * (b + alpha * f64::from(v)))
                    .sum::<f64>()
                    + f64::from(g[j])
            };
            let best = (0..g.len()).map(score).fold(f64::NEG_INFINITY, f64::max);
            assert!(
                score(j as usize) > best - 1e-2 * (1.0 + best.abs()),
                "case {case}"
            );
        }
    }

    #[test]
    fn fast_ln_is_accurate() {
        for i in 1..2000 {
            let x = i as f32 * 0.37;
            assert!(
                (fast_ln(x) - x.ln()).abs() < 2e-6 * x.ln().abs().max(1.0),
                "{x}"
            );
        }
    }

    #[test]
    fn coded_latent_has_the_posterior_marginals() {
        let g = Geometry {
            h: 64,
            w: 96,
            ph: 64,
            pw: 96,
        };
        let tab = abar_table();
        // Exact sampling (chunks of 4 bits, 2^12 candidates) carries all of the target; the
        // default settings truncate the index two bits above a 12-bit chunk, which leans the
        // sample towards the prior by a bounded amount (a rate-distortion trade, SPEC §6.16);
        // both keep the posterior's mean and variance.
        let exact = Rcc {
            chunk_bits: 4.0,
            log2n: 12,
        };
        for ((t, s), rcc, lean) in [
            ((1000usize, 400usize), &exact, 0.08),
            ((400, 150), &exact, 0.08),
            ((150, 50), &exact, 0.08),
            ((1000, 400), &Rcc::DEFAULT, 0.2),
            ((400, 150), &Rcc::DEFAULT, 0.2),
            ((150, 50), &Rcc::DEFAULT, 0.2),
        ] {
            let co = StepCoeffs::new(tab[t], tab[s]);
            let x: Vec<f32> = (0..g.len())
                .map(|i| (((i * 7919) % 255) as f32 / 127.5 - 1.0) * 0.8)
                .collect();
            let xhat: Vec<f32> = x
                .iter()
                .enumerate()
                .map(|(i, &v)| (v + 0.2 * ((i * 104_729 % 17) as f32 / 8.0 - 1.0)).clamp(-1.0, 1.0))
                .collect();
            let z: Vec<f32> = (0..g.len())
                .map(|i| crate::diffusion::normal(3, 9, 0, 0, 0, i))
                .collect();
            let levels = dither_levels(1, 1, &g);
            let inp = StepInput {
                g,
                n: 1,
                seed: 11,
                co,
                z: &z,
                xhat: Some(&xhat),
                levels: &levels,
            };
            let coded = rcc.encode(&inp, &x).unwrap();
            let (cx, cz, _, _) = co.f32s();
            let sd = co.var.sqrt() as f32;
            let e: Vec<f64> = (0..g.len())
                .map(|i| f64::from((coded.z[i] - (cx * x[i] + cz * z[i])) / sd))
                .collect();
            let mean = e.iter().sum::<f64>() / e.len() as f64;
            let var = e.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / e.len() as f64;
            // The sample carries the information: e is uncorrelated with m = (mu_q - mu_p) / sd.
            let m: Vec<f64> = (0..g.len())
                .map(|i| f64::from(cx * (x[i] - xhat[i]) / sd))
                .collect();
            let slope = e.iter().zip(&m).map(|(a, b)| a * b).sum::<f64>()
                / m.iter().map(|b| b * b).sum::<f64>();
            let m2 = m.iter().map(|b| b * b).sum::<f64>() / m.len() as f64;
            eprintln!(
                "t {t}, log2n {}: mean {mean} var {var} slope {slope} mean m^2 {m2}",
                rcc.log2n
            );
            assert!(mean.abs() < 0.03, "t {t}: mean {mean}");
            if t < 1000 {
                // (At t = 1000 most units carry under 1 bit and are sampled from the prior.)
                assert!(
                    slope.abs() < lean,
                    "t {t}, log2n {}: the sample leans to the prior: {slope}",
                    rcc.log2n
                );
            }
            assert!((var - 1.0).abs() < 0.06, "t {t}: variance {var}");
            let (z2, _) = rcc.decode(&inp, &coded.body).unwrap();
            assert!(z2 == coded.z, "t {t}: decoder differs from encoder");
        }
    }
}
