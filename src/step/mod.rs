//! Stage 4: the step-coder layer (SPEC §6): one trait for every way of coding one diffusion
//! step t -> s, the registry of coders by kind, and what all coders share (geometry, dither
//! levels, the network estimate's clipping).
//!
//! A coder sees the step from both sides: on the encoder side it makes its choices on real
//! code lengths and writes the STEP body; on the decoder side it reads the body and moves the
//! latent. The chain (which step, which network call, which chunk) lives in `codec`; a new
//! coder touches only its own file, [`CODERS`] and the spec.

pub(crate) mod rcc;
pub(crate) mod tuq;
pub(crate) mod uq;

use rayon::prelude::*;

use crate::diffusion::{dither_level, StepCoeffs};
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

/// What both sides hold before step `n`.
pub(crate) struct StepInput<'a> {
    pub g: Geometry,
    /// The file's PRNG seed (SPEC §5).
    pub seed: u64,
    /// Step index (0-based).
    pub n: usize,
    /// Coefficients of the move (SPEC §6.1).
    pub co: StepCoeffs,
    /// The latent at the step's start point.
    pub z: &'a [f32],
    /// The clipped network estimate at the start point; None at step 0, where each coder
    /// defines its own estimate (SPEC §6.4).
    pub xhat: Option<&'a [f32]>,
    /// Dither levels of the step (SPEC §5.1).
    pub levels: &'a [u8],
}

/// Statistics of one coded step.
#[derive(Clone, Debug, Default)]
pub(crate) struct StepStats {
    /// Ideal code length of the body's symbols and side information.
    pub ideal_bits: f64,
    /// Ideal code length of the side information alone.
    pub side_bits: f64,
    /// Block (kind 1) or tile (kind 2) size.
    pub block: usize,
    /// Symbol half-width K.
    pub k_max: u32,
    /// Side-information units coded as skipped.
    pub skipped: usize,
    /// Side-information units in total.
    pub units: usize,
    /// Kind 3: the KL divergence of the coded units' Gaussian targets from their priors
    /// (the ideal channel's cost; SPEC §6.12), in bits.
    pub kl_bits: Option<f64>,
}

/// A step as one coder codes it.
pub(crate) struct Coded {
    /// The STEP body (SPEC §4.3: everything after index and kind).
    pub body: Vec<u8>,
    /// The latent at the step's end point, exactly as the decoder computes it.
    pub z: Vec<f32>,
    pub stats: StepStats,
}

/// Parameters of a STEP body, for `info`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BodyInfo {
    /// Block or tile size.
    pub block: u16,
    /// Symbol half-width K.
    pub k_max: u16,
}

/// One way of coding a step (SPEC §6.2).
pub(crate) trait StepCoder: Sync {
    /// The coder kind stored in the STEP chunk.
    fn kind(&self) -> u8;
    /// A short name for reports.
    fn name(&self) -> &'static str;
    /// Encoder: code step `inp` of the padded image `x` with the choices that give the fewest
    /// bits.
    fn encode(&self, inp: &StepInput, x: &[f32]) -> Result<Coded>;
    /// Decoder: the latent at the step's end point and the step's decoded symbols (k per
    /// element in the coder's own layout; for checks of invariant D).
    fn decode(&self, inp: &StepInput, body: &[u8]) -> Result<(Vec<f32>, Vec<i32>)>;
    /// Parse and check a body's fixed fields.
    fn describe(&self, body: &[u8]) -> Result<BodyInfo>;
}

/// Every coder this build knows, by kind.
pub(crate) static CODERS: [&dyn StepCoder; 3] = [&uq::Uq, &tuq::TransformUq, &rcc::Rcc::DEFAULT];

/// The kinds the encoder chooses from by default, by rate and distortion (SPEC §12), at a step
/// that starts at `t`: kind 3 alone at the low-SNR steps (t >= [`KIND3_ALONE_FROM_T`]), kinds 2
/// and 3 below. Kind 1 is used only when asked for: kind 2 codes the same steps in fewer bits.
pub(crate) fn default_coders(t: f64) -> &'static [u8] {
    if t >= KIND3_ALONE_FROM_T {
        &[3]
    } else {
        &[2, 3]
    }
}

/// From this t up the default tries kind 3 alone: there kind 2 needs 1.7-1.9x its bits and
/// lost every choice measured (all steps from t = 1000, 150 and 70 of the tuning, Kodak and
/// held-out images), so trying it only cost encode time (half of a default encode). Below it
/// both are tried: kind 3 wins at 40 -> 20 and 20 -> 12, kind 2 mostly at 12 -> 4 and 4 -> 1
/// (`results/ladder-sweep/tune-coders-per-step.txt`).
pub(crate) const KIND3_ALONE_FROM_T: f64 = 70.0;

/// Weight of the distortion in the encoder's choice of coder (SPEC §12): the coder with the
/// smallest ln(bits of the file so far) - PSNR / RD_DB_PER_LN is kept, PSNR that of the
/// network's estimate at the step's end point. 5 dB per e-fold of the rate is the slope of the
/// codec's own rate-distortion curve around its default rate.
pub(crate) const RD_DB_PER_LN: f64 = 5.0;

/// The coder of `kind`.
pub(crate) fn coder(kind: u8) -> Result<&'static dyn StepCoder> {
    CODERS
        .iter()
        .copied()
        .find(|c| c.kind() == kind)
        .ok_or_else(|| {
            let known: Vec<String> = CODERS
                .iter()
                .map(|c| format!("{} = {}", c.kind(), c.name()))
                .collect();
            Error::format(format!(
                "step coder kind {kind} (this decoder knows {})",
                known.join(", ")
            ))
        })
}

/// Append a body's word count (u32) and its words (u32 LE each), SPEC §4.3.
pub(crate) fn put_words(o: &mut Vec<u8>, words: &[u32]) {
    o.extend_from_slice(&(words.len() as u32).to_le_bytes());
    for w in words {
        o.extend_from_slice(&w.to_le_bytes());
    }
}

/// Read a body's word count and words, and check that nothing follows.
pub(crate) fn read_words(r: &mut crate::format::Reader) -> Result<Vec<u32>> {
    let n = r.u32()?;
    let words = r.words(n)?;
    r.done()?;
    Ok(words)
}

/// The coder of a STEP chunk of a file of format `major`, with its body's fixed fields
/// checked (SPEC §2: version 1 holds kind 1 only). One check for the decoder and `inspect`.
pub(crate) fn checked_coder(
    major: u8,
    kind: u8,
    body: &[u8],
) -> Result<(&'static dyn StepCoder, BodyInfo)> {
    let coder = coder(kind)?;
    if major < 2 && kind != 1 {
        return Err(Error::format(format!(
            "step coder kind {kind} in a version-{major} file (version 1 has kind 1 only)"
        )));
    }
    let info = coder.describe(body)?;
    Ok((coder, info))
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

/// Choose a scale index for a set of symbols by real code length: local descent from the
/// moment estimate `est` (in units of delta). `cost(s)` is the bits under scale index s. The
/// code length is unimodal in the scale index in practice; a miss costs bits, never
/// correctness.
pub(crate) fn descend_scale(est: f64, cost: impl Fn(usize) -> f64) -> (u8, f64) {
    let top = crate::entropy::NUM_SCALES - 1;
    let i0 = crate::entropy::nearest_scale(est);
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
}
