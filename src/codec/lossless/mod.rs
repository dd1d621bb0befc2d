//! The lossless end (SPEC §10): the LOSS chunk's residual coders, by kind.
//!
//! * kind 1 (`kind1.rs`): the residual against the network's reconstruction, classes under
//!   adaptive frequency models and uniform low bits (format 2; still decoded).
//! * kind 2 (`kind2.rs`): a colour transform, a self-correcting weighted predictor over causal
//!   neighbours (plus the reconstruction where a chain prefix exists), and binary adaptive
//!   models; with no prefix it needs no network.

pub(crate) mod kind1;
pub(crate) mod kind2;

pub(crate) use kind1::predict;

use sha2::{Digest, Sha256};

use crate::entropy::{hex, RangeReader, RangeWriter};
use crate::format::LossChunk;
use crate::{Error, Result};

/// Code the exact planar 3 x h x w samples `pix` with kind 2, against the 8-bit
/// reconstruction `recon` where a chain prefix exists, with each colour transform of
/// `transforms`; the smallest is kept.
pub(crate) fn encode(
    pix: &[u8],
    recon: Option<&[u8]>,
    h: usize,
    w: usize,
    transforms: &[u8],
) -> Result<LossChunk> {
    let sha256: [u8; 32] = Sha256::digest(pix).into();
    let mut best: Option<LossChunk> = None;
    for &t in transforms {
        let mut wr = RangeWriter::new();
        kind2::code(&mut wr, pix, recon, t, h, w)?;
        let words = wr.finish();
        if best.as_ref().is_none_or(|b| words.len() < b.words.len()) {
            best = Some(LossChunk {
                kind: 2,
                sha256,
                transform: t,
                words,
            });
        }
    }
    best.ok_or_else(|| Error::param("no colour transform to try"))
}

/// Decode a LOSS chunk to planar 3 x h x w samples and check them against its hash. `recon`
/// is the reconstruction at the end of the chain (None for a file with no steps).
pub(crate) fn decode(c: &LossChunk, recon: Option<&[u8]>, h: usize, w: usize) -> Result<Vec<u8>> {
    let mut r = RangeReader::new(c.words.clone())?;
    let pix = match (c.kind, recon) {
        (1, Some(pred)) => kind1::decode(&mut r, pred, h, w)?,
        (1, None) => return Err(Error::format(
            "LOSS kind 1 in a file with no steps (kind 1 codes against the chain's reconstruction)",
        )),
        (_, recon) => kind2::decode(&mut r, recon, c.transform, h, w)?,
    };
    let sha: [u8; 32] = Sha256::digest(&pix).into();
    if sha != c.sha256 {
        let why = if recon.is_some() {
            "the network ran differently here than when encoding, or the file is corrupt"
        } else {
            "the file is corrupt"
        };
        return Err(Error::format(format!(
            "lossless check failed: decoded pixels hash to {}, the file says {} ({why})",
            hex(&sha),
            hex(&c.sha256)
        )));
    }
    Ok(pix)
}

/// Real size in bits of kind 2 with colour transform `rct` (for `examples/lossless_sweep.rs`;
/// not a stable API).
#[doc(hidden)]
pub fn kind2_words(
    pix: &[u8],
    recon: Option<&[u8]>,
    rct: u8,
    h: usize,
    w: usize,
) -> Result<Vec<u32>> {
    let mut wr = RangeWriter::new();
    kind2::code(&mut wr, pix, recon, rct, h, w)?;
    Ok(wr.finish())
}

/// Decode kind 2 words (for `examples/lossless_sweep.rs`; not a stable API).
#[doc(hidden)]
pub fn kind2_decode(
    words: Vec<u32>,
    recon: Option<&[u8]>,
    rct: u8,
    h: usize,
    w: usize,
) -> Result<Vec<u8>> {
    let mut r = RangeReader::new(words)?;
    kind2::decode(&mut r, recon, rct, h, w)
}
