//! Stage 3: entropy coding (SPEC §7, §8). The only module that touches constriction.
//!
//! * [`exp_neg`], [`sigma`], [`logistic_table`]: the normative integer probability tables of
//!   the symbol model, built with IEEE-754 `+ - * /` only (no libm, no FMA).
//! * [`TableCache`]: those tables, built lazily per (scale index, dither level) for one K.
//! * [`AdaptiveModel`]: integer adaptive frequency model for side information and the lossless
//!   residual.
//! * [`SymbolSink`]: one trait with a real range coder ([`RangeWriter`]) and a bit-counting
//!   twin ([`BitCounter`]), so that rate estimation and real coding share one code path.

use std::sync::OnceLock;

use std::borrow::Borrow;
use std::num::NonZeroU32;

use constriction::stream::model::{
    DecoderModel, DefaultContiguousCategoricalEntropyModel, EncoderModel, EntropyModel,
};
use constriction::stream::queue::{DefaultRangeDecoder, DefaultRangeEncoder};
use constriction::stream::{Decode, Encode};

use crate::{Error, Result};

/// Fixed-point precision of every probability table: probabilities sum to 2^24 (SPEC §7.3).
pub const PRECISION: u32 = 24;
/// 2^PRECISION.
pub const TOTAL: u32 = 1 << PRECISION;
/// Number of scale indices, including index 0 = skip (SPEC §7.1).
pub const NUM_SCALES: usize = 64;
/// Largest symbol support half-width K a file may use (SPEC §9 limits).
pub const K_MAX: u32 = 1024;
/// Number of dither levels (SPEC §5.1).
pub const LEVELS: usize = crate::diffusion::DITHER_LEVELS;

/// Fourth roots of two, as f64 literals (SPEC §7.1).
const ROOTS: [f64; 4] = [
    1.0,
    1.189_207_115_002_721,
    std::f64::consts::SQRT_2,
    1.681_792_830_507_429,
];
/// Smallest scale, in units of delta.
const SIGMA_MIN: f64 = 0.002;

/// Scale sigma_i (in units of delta) of scale index `i` in 1..64:
/// (0.002 * ROOTS[(i-1) % 4]) * 2^((i-1) / 4). From 0.002 to about 92.7.
pub fn sigma(i: usize) -> f64 {
    debug_assert!((1..NUM_SCALES).contains(&i));
    let mut s = SIGMA_MIN * ROOTS[(i - 1) % 4];
    for _ in 0..(i - 1) / 4 {
        s *= 2.0;
    }
    s
}

/// The scale index whose sigma is nearest (in log) to `s` (encoder helper, not normative).
pub fn nearest_scale(s: f64) -> usize {
    if s <= SIGMA_MIN {
        return 1;
    }
    let i = 1.0 + 4.0 * (s / SIGMA_MIN).log2();
    (i.round() as usize).clamp(1, NUM_SCALES - 1)
}

const E_INV: f64 = 0.367_879_441_171_442_33; // exp(-1)

/// exp(y) for y <= 0, normative (SPEC §7.2): 0 for y < -64; otherwise
/// E_INV^n * P(f) with n = trunc(-y), f = y + n, and P the degree-20 Taylor polynomial in
/// Horner form. Only `+ - * /` and truncation.
pub fn exp_neg(y: f64) -> f64 {
    if y.is_nan() || y < -64.0 {
        return 0.0;
    }
    if y >= 0.0 {
        return 1.0;
    }
    let n = (-y) as u32; // truncation, exact
    let f = y + f64::from(n);
    let mut p = 1.0f64;
    let mut k = 20u32;
    while k >= 1 {
        p = 1.0 + p * f / f64::from(k);
        k -= 1;
    }
    for _ in 0..n {
        p *= E_INV;
    }
    p
}

/// Logistic CDF 1 / (1 + exp(-x / s)), normative form (SPEC §7.2).
fn logistic_cdf(x: f64, s: f64) -> f64 {
    let y = x / s;
    if y >= 0.0 {
        1.0 / (1.0 + exp_neg(-y))
    } else {
        let e = exp_neg(y);
        e / (1.0 + e)
    }
}

/// Quantise real probabilities to integers >= 1 summing to 2^24 (SPEC §7.3):
/// q_n = 1 + trunc(p_n * (2^24 - N)); the remainder goes to the first largest q_n.
pub fn quantize(p: &[f64]) -> Vec<u32> {
    let n = p.len() as u32;
    let free = f64::from(TOTAL - n);
    let mut q: Vec<u32> = p
        .iter()
        .map(|&v| {
            let v = if v > 0.0 { v } else { 0.0 };
            1 + ((v * free) as u32).min(TOTAL - n)
        })
        .collect();
    let sum: u64 = q.iter().map(|&v| u64::from(v)).sum();
    let mut best = 0;
    for i in 1..q.len() {
        if q[i] > q[best] {
            best = i;
        }
    }
    // sum <= N + free (each trunc <= p*free and sum p ~ 1 up to rounding): fix either way.
    if sum <= u64::from(TOTAL) {
        q[best] += TOTAL - sum as u32;
    } else {
        let mut excess = sum - u64::from(TOTAL);
        while excess > 0 {
            let mut b = 0;
            for i in 1..q.len() {
                if q[i] > q[b] {
                    b = i;
                }
            }
            let take = excess.min(u64::from(q[b] - 1));
            q[b] -= take as u32;
            excess -= take;
        }
    }
    q
}

/// The normative table of scale index `scale` (1..64), dither level `j`, half-width `k_max`:
/// P(k) for k in -K..=K (symbol k + K), the logistic of scale sigma integrated over
/// [k - u - 1/2, k - u + 1/2] with the tails folded into the end bins (SPEC §7.2).
pub fn logistic_table(scale: usize, j: usize, k_max: u32) -> Vec<u32> {
    let s = sigma(scale);
    let u = f64::from(crate::diffusion::dither_u(j));
    let kk = i64::from(k_max);
    let mut p = Vec::with_capacity(2 * k_max as usize + 1);
    let mut lo = 0.0f64; // CDF at the lower edge; the first bin takes the lower tail
    for k in -kk..=kk {
        let hi = if k == kk {
            1.0
        } else {
            logistic_cdf(k as f64 - u + 0.5, s)
        };
        p.push(hi - lo);
        lo = hi;
    }
    quantize(&p)
}

/// A fixed-point categorical model: integer probabilities, their code lengths, and the
/// constriction model built from them.
pub struct Model {
    probs: Vec<u32>,
    bits: Vec<f32>,
    inner: DefaultContiguousCategoricalEntropyModel,
}

impl Model {
    /// Build from integer probabilities (each >= 1, sum 2^24).
    pub fn new(probs: Vec<u32>) -> Self {
        let inner =
            DefaultContiguousCategoricalEntropyModel::from_nonzero_fixed_point_probabilities(
                &probs, false,
            )
            .expect("probabilities are nonzero and sum to 2^24 by construction");
        let bits = probs
            .iter()
            .map(|&p| (f64::from(PRECISION) - f64::from(p).log2()) as f32)
            .collect();
        Model { probs, bits, inner }
    }

    /// Uniform model over `n` symbols (n <= 2^16).
    pub fn uniform(n: usize) -> Self {
        let n32 = n as u32;
        let base = TOTAL / n32;
        let mut probs = vec![base; n];
        probs[0] += TOTAL - base * n32;
        Model::new(probs)
    }

    /// Number of symbols.
    pub fn len(&self) -> usize {
        self.probs.len()
    }

    /// Always false: models have at least one symbol.
    pub fn is_empty(&self) -> bool {
        self.probs.is_empty()
    }

    /// Integer probabilities.
    pub fn probs(&self) -> &[u32] {
        &self.probs
    }

    /// Ideal code length of symbol `s` in bits, -log2(p / 2^24).
    pub fn bits(&self, s: usize) -> f32 {
        self.bits[s]
    }
}

/// The symbol tables of one K, built lazily per (scale index, dither level) and shared.
pub struct TableCache {
    k_max: u32,
    tables: Vec<OnceLock<Model>>,
}

impl TableCache {
    /// An empty cache for half-width `k_max` (1..=K_MAX).
    pub fn new(k_max: u32) -> Self {
        TableCache {
            k_max,
            tables: (0..(NUM_SCALES - 1) * LEVELS)
                .map(|_| OnceLock::new())
                .collect(),
        }
    }

    /// K.
    pub fn k_max(&self) -> u32 {
        self.k_max
    }

    /// The model of scale index `scale` (1..64) and dither level `j`.
    pub fn get(&self, scale: usize, j: usize) -> &Model {
        self.tables[(scale - 1) * LEVELS + j]
            .get_or_init(|| Model::new(logistic_table(scale, j, self.k_max)))
    }
}

/// Integer adaptive frequency model (SPEC §8.1): counts start at 1, the coded symbol's count
/// grows by 32, all counts are halved (rounding up) when their total exceeds 2^16.
#[derive(Clone)]
pub struct AdaptiveModel {
    counts: Vec<u32>,
    total: u32,
}

impl AdaptiveModel {
    /// A fresh model over `n` symbols.
    pub fn new(n: usize) -> Self {
        AdaptiveModel {
            counts: vec![1; n],
            total: n as u32,
        }
    }

    /// The current fixed-point model: P_i = 1 + floor(c_i (2^24 - n) / total), remainder to
    /// the first largest.
    pub fn model(&self) -> Model {
        let n = self.counts.len() as u64;
        let free = u64::from(TOTAL) - n;
        let mut probs: Vec<u32> = self
            .counts
            .iter()
            .map(|&c| (1 + u64::from(c) * free / u64::from(self.total)) as u32)
            .collect();
        let sum: u64 = probs.iter().map(|&p| u64::from(p)).sum();
        let mut best = 0;
        for i in 1..probs.len() {
            if probs[i] > probs[best] {
                best = i;
            }
        }
        probs[best] += (u64::from(TOTAL) - sum) as u32;
        Model::new(probs)
    }

    /// Record symbol `s`.
    pub fn update(&mut self, s: usize) {
        self.counts[s] += 32;
        self.total += 32;
        if self.total > 1 << 16 {
            self.total = 0;
            for c in &mut self.counts {
                *c = (*c).div_ceil(2);
                self.total += *c;
            }
        }
    }
}

/// Precision of the binary models of [`AdaptiveBit`]: probabilities are in units of 2^-16.
pub const BIT_PRECISION: usize = 16;
const BIT_ONE: u32 = 1 << BIT_PRECISION;
/// Smallest and largest probability of a 1 an [`AdaptiveBit`] reaches (SPEC §10.6).
const BIT_MIN: u32 = 32;
const BIT_MAX: u32 = BIT_ONE - BIT_MIN;

/// An integer adaptive binary model (SPEC §10.6): the probability of a 1 in units of 2^-16,
/// starting at 1/2; after each bit it moves toward it by 1/(n + 2) of the distance
/// (truncating division), where n counts the bits seen, up to `limit`.
#[derive(Clone, Copy, Debug)]
pub struct AdaptiveBit {
    p1: u32,
    n: u32,
}

impl AdaptiveBit {
    /// A fresh model (probability 1/2).
    pub const fn new() -> Self {
        AdaptiveBit {
            p1: BIT_ONE / 2,
            n: 0,
        }
    }

    /// Probability of a 1, in units of 2^-16 (32..=65504).
    pub fn p1(&self) -> u32 {
        self.p1
    }

    /// Record `bit`; `limit` caps the count n (the slowest rate is 1/(limit + 2)).
    #[inline]
    pub fn update(&mut self, bit: bool, limit: u32) {
        let target = if bit { BIT_ONE as i32 } else { 0 };
        let p = self.p1 as i32;
        let p = p + (target - p) / (self.n as i32 + 2);
        self.p1 = (p as u32).clamp(BIT_MIN, BIT_MAX);
        if self.n < limit {
            self.n += 1;
        }
    }

    /// Ideal code length of `bit` in bits.
    pub fn bits(&self, bit: bool) -> f64 {
        let p = if bit { self.p1 } else { BIT_ONE - self.p1 };
        f64::from(BIT_PRECISION as u32) - f64::from(p).log2()
    }
}

impl Default for AdaptiveBit {
    fn default() -> Self {
        Self::new()
    }
}

/// The constriction model of one binary decision: 0 takes [0, 2^16 - p1), 1 the rest.
struct BinModel(u32);

impl EntropyModel<BIT_PRECISION> for BinModel {
    type Symbol = bool;
    type Probability = u32;
}

impl EncoderModel<BIT_PRECISION> for BinModel {
    #[inline]
    fn left_cumulative_and_probability(
        &self,
        symbol: impl Borrow<bool>,
    ) -> Option<(u32, NonZeroU32)> {
        let p0 = BIT_ONE - self.0;
        if *symbol.borrow() {
            Some((p0, NonZeroU32::new(self.0)?))
        } else {
            Some((0, NonZeroU32::new(p0)?))
        }
    }
}

impl DecoderModel<BIT_PRECISION> for BinModel {
    #[inline]
    fn quantile_function(&self, quantile: u32) -> (bool, u32, NonZeroU32) {
        let p0 = BIT_ONE - self.0;
        // p0 and p1 are clamped to 32..=65504 by AdaptiveBit, so both are nonzero.
        if quantile < p0 {
            (false, 0, NonZeroU32::new(p0).unwrap_or(NonZeroU32::MIN))
        } else {
            (true, p0, NonZeroU32::new(self.0).unwrap_or(NonZeroU32::MIN))
        }
    }
}

/// Where symbols go: a real range coder or a bit counter; every step coder of `crate::step`
/// writes through it, so its size estimates and its real bits share one path.
pub trait SymbolSink {
    /// Code symbol `s` under `model`.
    fn put(&mut self, model: &Model, s: usize) -> Result<()>;
    /// Code `s` under an adaptive model and update it.
    fn put_adaptive(&mut self, m: &mut AdaptiveModel, s: usize) -> Result<()> {
        let model = m.model();
        self.put(&model, s)?;
        m.update(s);
        Ok(())
    }
    /// Code `bit` under an adaptive binary model and update it (count limit `limit`).
    fn put_bit(&mut self, m: &mut AdaptiveBit, bit: bool, limit: u32) -> Result<()>;
}

/// Counts ideal code lengths, sum of -log2 p (bits).
#[derive(Default, Clone, Copy, Debug)]
pub struct BitCounter {
    /// Bits so far.
    pub bits: f64,
}

impl SymbolSink for BitCounter {
    fn put(&mut self, model: &Model, s: usize) -> Result<()> {
        self.bits += f64::from(model.bits(s));
        Ok(())
    }
    fn put_bit(&mut self, m: &mut AdaptiveBit, bit: bool, limit: u32) -> Result<()> {
        self.bits += m.bits(bit);
        m.update(bit, limit);
        Ok(())
    }
}

/// The real coder: constriction's `DefaultRangeEncoder` (32-bit words, 64-bit state), which
/// also counts ideal bits.
pub struct RangeWriter {
    enc: DefaultRangeEncoder,
    /// Ideal code length of the categorical symbols written so far (not the binary ones).
    pub ideal_bits: f64,
}

impl Default for RangeWriter {
    fn default() -> Self {
        RangeWriter {
            enc: DefaultRangeEncoder::new(),
            ideal_bits: 0.0,
        }
    }
}

impl RangeWriter {
    /// A fresh encoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// The compressed words.
    pub fn finish(self) -> Vec<u32> {
        self.enc
            .into_compressed()
            .unwrap_or_else(|never| match never {})
    }
}

impl SymbolSink for RangeWriter {
    fn put(&mut self, model: &Model, s: usize) -> Result<()> {
        self.ideal_bits += f64::from(model.bits(s));
        self.enc
            .encode_symbol(s, &model.inner)
            .map_err(|e| Error::format(format!("range encoder: {e:?}")))
    }
    #[inline]
    fn put_bit(&mut self, m: &mut AdaptiveBit, bit: bool, limit: u32) -> Result<()> {
        self.enc
            .encode_symbol(bit, BinModel(m.p1()))
            .map_err(|e| Error::format(format!("range encoder: {e:?}")))?;
        m.update(bit, limit);
        Ok(())
    }
}

/// Reads symbols back: constriction's `DefaultRangeDecoder`.
pub struct RangeReader {
    dec: DefaultRangeDecoder,
}

impl RangeReader {
    /// A decoder over compressed words.
    pub fn new(words: Vec<u32>) -> Result<Self> {
        let dec = DefaultRangeDecoder::from_compressed(words)
            .map_err(|e| Error::format(format!("range decoder: {e:?}")))?;
        Ok(RangeReader { dec })
    }

    /// Decode one symbol under `model`.
    pub fn get(&mut self, model: &Model) -> Result<usize> {
        self.dec
            .decode_symbol(&model.inner)
            .map_err(|_| Error::format("entropy-coded data is invalid"))
    }

    /// Decode one symbol under an adaptive model and update it.
    pub fn get_adaptive(&mut self, m: &mut AdaptiveModel) -> Result<usize> {
        let s = self.get(&m.model())?;
        m.update(s);
        Ok(s)
    }

    /// Decode one bit under an adaptive binary model and update it (count limit `limit`).
    #[inline]
    pub fn get_bit(&mut self, m: &mut AdaptiveBit, limit: u32) -> Result<bool> {
        let b = self
            .dec
            .decode_symbol(BinModel(m.p1()))
            .map_err(|_| Error::format("entropy-coded data is invalid"))?;
        m.update(b, limit);
        Ok(b)
    }
}

/// SHA-256 over every table of half-width `k_max`: for scale 1..64, level 0..64, the
/// probabilities as u32 LE (SPEC §7.4 pins it for K = 8).
pub fn table_set_hash(k_max: u32) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for scale in 1..NUM_SCALES {
        for j in 0..LEVELS {
            for p in logistic_table(scale, j, k_max) {
                h.update(p.to_le_bytes());
            }
        }
    }
    h.finalize().into()
}

/// Lower-case hex of bytes.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_accurate() {
        for i in 0..2000 {
            let y = -(i as f64) * 0.031;
            let e = exp_neg(y);
            assert!(
                (e - y.exp()).abs() <= 1e-14 * y.exp().max(1e-300) + 1e-300,
                "{y}"
            );
        }
    }

    #[test]
    fn scales_span() {
        assert_eq!(sigma(1), 0.002);
        assert!(sigma(63) > 90.0 && sigma(63) < 100.0);
        assert_eq!(nearest_scale(sigma(17)), 17);
    }

    #[test]
    fn tables_valid() {
        for &k in &[1u32, 8, 40] {
            for &s in &[1usize, 20, 63] {
                for j in [0usize, 31, 63] {
                    let t = logistic_table(s, j, k);
                    assert_eq!(t.len(), 2 * k as usize + 1);
                    assert!(t.iter().all(|&p| p >= 1));
                    assert_eq!(t.iter().map(|&p| u64::from(p)).sum::<u64>(), 1 << 24);
                }
            }
        }
    }

    #[test]
    fn table_hash_pinned() {
        // Also in SPEC §7.4.
        assert_eq!(
            hex(&table_set_hash(8)),
            "5e7be9d91dbc5b475dc81c98a147f4535e43a19e5b27853df287cc824b743a66"
        );
    }

    #[test]
    fn range_round_trip() {
        let cache = TableCache::new(5);
        let mut w = RangeWriter::new();
        let mut am = AdaptiveModel::new(7);
        for i in 0..500usize {
            w.put(cache.get(1 + i % 63, i % 64), i % 11).unwrap();
            w.put_adaptive(&mut am, i % 3).unwrap();
        }
        let words = w.finish();
        let mut r = RangeReader::new(words).unwrap();
        let mut am = AdaptiveModel::new(7);
        for i in 0..500usize {
            assert_eq!(r.get(cache.get(1 + i % 63, i % 64)).unwrap(), i % 11);
            assert_eq!(r.get_adaptive(&mut am).unwrap(), i % 3);
        }
    }
}
