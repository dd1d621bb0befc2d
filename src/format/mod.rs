//! Stage 4: the container (SPEC §2-§4, §9): signature, version, chunks with length and
//! CRC-32, the header, and the payload layouts of STEP and LOSS chunks.
//!
//! Nothing here trusts the input: every count is checked against [`limits`] before it sizes
//! an allocation, and every error names the value and the allowed range.

use crate::diffusion::SchedulePoint;
use crate::{Error, Result};

/// File signature (SPEC §2).
pub const SIGNATURE: [u8; 8] = [0x8B, b'D', b'D', b'P', b'M', b'C', 0x0D, 0x0A];
/// Newest format major version, read and written (SPEC §2); files with a major version outside
/// [`OLDEST_MAJOR`]..=[`VERSION_MAJOR`] are refused. Encoders write the lowest version that
/// holds the file: 2 for files without a LOSS chunk of kind 2, else 3.
pub const VERSION_MAJOR: u8 = 3;
/// Oldest major version read (version 1 files hold only coder kind 1).
pub const OLDEST_MAJOR: u8 = 1;
/// Format minor version written when a file holds no ancillary chunk defined after x.0;
/// higher minor versions are read (they only add ancillary chunks).
pub const VERSION_MINOR: u8 = 0;
/// Minor version of a file with an `iccp` chunk (SPEC §4.5).
pub const MINOR_ICCP: u8 = 1;
/// Bytes before the first chunk: signature + major + minor.
pub const PREAMBLE_LEN: usize = 10;

/// Chunk types (SPEC §3.2). A type whose first byte is an upper-case ASCII letter is
/// critical; any other type is ancillary and skipped when unknown.
pub mod kind {
    /// Header.
    pub const HEAD: [u8; 4] = *b"HEAD";
    /// One coding step.
    pub const STEP: [u8; 4] = *b"STEP";
    /// Lossless residual.
    pub const LOSS: [u8; 4] = *b"LOSS";
    /// End of file.
    pub const END: [u8; 4] = *b"END ";
    /// Ancillary: the source image's ICC colour profile (SPEC §4.5).
    pub const ICCP: [u8; 4] = *b"iccp";
}

/// Decoder limits (SPEC §9).
pub mod limits {
    /// Largest width or height.
    pub const MAX_SIDE: u32 = 16384;
    /// Largest pixel count (padded).
    pub const MAX_PIXELS: u64 = 1 << 24;
    /// Largest number of coding steps.
    pub const MAX_STEPS: usize = 32;
    /// Largest chunk payload.
    pub const MAX_CHUNK: u32 = 1 << 30;
    /// Allowed padding multiples: 1..=MAX_MULTIPLE.
    pub const MAX_MULTIPLE: u16 = 256;
    /// Allowed block sizes.
    pub const BLOCK_SIZES: [u16; 6] = [4, 8, 16, 32, 64, 128];
    /// Largest ICC profile carried (SPEC §4.5).
    pub const MAX_ICC: usize = 1 << 24;
}

/// Is this chunk type critical?
pub fn is_critical(kind: [u8; 4]) -> bool {
    kind[0].is_ascii_uppercase()
}

/// Append a chunk: type, u32 LE length, payload, CRC-32 (of type and payload) u32 LE.
pub fn write_chunk(out: &mut Vec<u8>, kind: [u8; 4], payload: &[u8]) {
    out.extend_from_slice(&kind);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
    let mut h = crc32fast::Hasher::new();
    h.update(&kind);
    h.update(payload);
    out.extend_from_slice(&h.finalize().to_le_bytes());
}

/// Write the preamble (signature and version `major`.`minor`).
pub fn write_preamble(out: &mut Vec<u8>, major: u8, minor: u8) {
    out.extend_from_slice(&SIGNATURE);
    out.push(major);
    out.push(minor);
}

/// Check the preamble at the start of `buf` (at least [`PREAMBLE_LEN`] bytes); returns the
/// major version.
pub fn check_preamble(buf: &[u8]) -> Result<u8> {
    if buf.len() < PREAMBLE_LEN {
        return Err(Error::format(format!(
            "file too short: {} bytes (a ddpmc file starts with {PREAMBLE_LEN} bytes of signature and version)",
            buf.len()
        )));
    }
    if buf[..8] != SIGNATURE {
        return Err(Error::format("not a ddpmc file (signature mismatch)"));
    }
    if !(OLDEST_MAJOR..=VERSION_MAJOR).contains(&buf[8]) {
        return Err(Error::format(format!(
            "unsupported format major version {} (this decoder reads {OLDEST_MAJOR}..={VERSION_MAJOR})",
            buf[8]
        )));
    }
    Ok(buf[8])
}

/// One chunk as read from a buffer.
#[derive(Debug, Clone, Copy)]
pub struct ChunkRef<'a> {
    /// Chunk type.
    pub kind: [u8; 4],
    /// Payload bytes.
    pub payload: &'a [u8],
    /// Total bytes of the chunk (12 + payload).
    pub len: usize,
}

/// Read one chunk from the start of `buf`. `Ok(None)` if `buf` holds only part of it.
pub fn read_chunk(buf: &[u8]) -> Result<Option<ChunkRef<'_>>> {
    if buf.len() < 8 {
        return Ok(None);
    }
    let kind = [buf[0], buf[1], buf[2], buf[3]];
    let n = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    if n > limits::MAX_CHUNK {
        return Err(Error::Limits(format!(
            "chunk length {n} (allowed 0..={})",
            limits::MAX_CHUNK
        )));
    }
    let total = 12 + n as usize;
    if buf.len() < total {
        return Ok(None);
    }
    let payload = &buf[8..8 + n as usize];
    let stored = u32::from_le_bytes([
        buf[total - 4],
        buf[total - 3],
        buf[total - 2],
        buf[total - 1],
    ]);
    let mut h = crc32fast::Hasher::new();
    h.update(&kind);
    h.update(payload);
    let crc = h.finalize();
    if crc != stored {
        return Err(Error::format(format!(
            "CRC mismatch in chunk {:?}: stored {stored:08x}, computed {crc:08x}",
            String::from_utf8_lossy(&kind)
        )));
    }
    Ok(Some(ChunkRef {
        kind,
        payload,
        len: total,
    }))
}

/// A bounds-checked little-endian reader over a payload.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// Read `buf`, naming it `what` in errors.
    pub fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader { buf, pos: 0, what }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.buf.len() - self.pos < n {
            return Err(Error::format(format!(
                "{} payload too short: needs {} more bytes at offset {}, has {}",
                self.what,
                n,
                self.pos,
                self.buf.len() - self.pos
            )));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    /// u8.
    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    /// u16 LE.
    pub fn u16(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    /// u32 LE.
    pub fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes(b.try_into().unwrap_or([0; 4])))
    }
    /// u64 LE.
    pub fn u64(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
    }
    /// f64 LE (IEEE-754 binary64).
    pub fn f64(&mut self) -> Result<f64> {
        Ok(f64::from_bits(self.u64()?))
    }
    /// 32 bytes.
    pub fn bytes32(&mut self) -> Result<[u8; 32]> {
        let b = self.take(32)?;
        let mut o = [0u8; 32];
        o.copy_from_slice(b);
        Ok(o)
    }
    /// `n` u32 LE words; `n` is checked against the bytes left before allocating.
    pub fn words(&mut self, n: u32) -> Result<Vec<u32>> {
        let b = self.take(n as usize * 4)?;
        Ok(b.chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
    /// Error unless every byte was read.
    pub fn done(&self) -> Result<()> {
        if self.pos != self.buf.len() {
            return Err(Error::format(format!(
                "{} payload has {} trailing bytes",
                self.what,
                self.buf.len() - self.pos
            )));
        }
        Ok(())
    }
}

/// Colour type of the decoded output (SPEC §4.1). Coding always uses 3 channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Colour {
    /// Gray: coded as three equal channels, written back as one.
    Gray = 0,
    /// RGB.
    Rgb = 1,
}

/// The HEAD chunk (SPEC §4).
#[derive(Clone, Debug, PartialEq)]
pub struct Header {
    /// Image width (unpadded).
    pub width: u32,
    /// Image height (unpadded).
    pub height: u32,
    /// Output colour type.
    pub colour: Colour,
    /// Bit depth of the source image (informative: 8 or 16).
    pub source_depth: u8,
    /// Padding multiple (the model's).
    pub multiple: u16,
    /// SHA-256 of the model's weights file.
    pub model_id: [u8; 32],
    /// Seed of the PRNG.
    pub seed: u64,
    /// Conditioning kind of the network input (0 = log-SNR).
    pub conditioning: u8,
    /// Schedule points: entry 0 is the start (t = 1000), step n goes from entry n to n + 1.
    pub schedule: Vec<SchedulePoint>,
}

impl Header {
    /// Number of coding steps.
    pub fn steps(&self) -> usize {
        self.schedule.len() - 1
    }

    /// Padded height and width.
    pub fn padded(&self) -> (usize, usize) {
        let m = self.multiple as usize;
        (
            (self.height as usize).div_ceil(m) * m,
            (self.width as usize).div_ceil(m) * m,
        )
    }

    /// Payload bytes before the schedule points (each point is 24 bytes).
    pub fn fixed_len() -> usize {
        4 + 4 + 1 + 1 + 2 + 32 + 8 + 1 + 1
    }

    /// Serialise the payload.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut o = Vec::new();
        o.extend_from_slice(&self.width.to_le_bytes());
        o.extend_from_slice(&self.height.to_le_bytes());
        o.push(self.colour as u8);
        o.push(self.source_depth);
        o.extend_from_slice(&self.multiple.to_le_bytes());
        o.extend_from_slice(&self.model_id);
        o.extend_from_slice(&self.seed.to_le_bytes());
        o.push(self.conditioning);
        o.push(self.steps() as u8);
        for p in &self.schedule {
            o.extend_from_slice(&p.t.to_le_bytes());
            o.extend_from_slice(&p.abar.to_le_bytes());
            o.extend_from_slice(&p.logsnr.to_le_bytes());
        }
        o
    }

    /// Parse and validate the payload.
    pub fn parse(payload: &[u8]) -> Result<Header> {
        let mut r = Reader::new(payload, "HEAD");
        let width = r.u32()?;
        let height = r.u32()?;
        for (name, v) in [("width", width), ("height", height)] {
            if v == 0 || v > limits::MAX_SIDE {
                return Err(Error::Limits(format!(
                    "image {name} {v} (allowed 1..={})",
                    limits::MAX_SIDE
                )));
            }
        }
        let colour = match r.u8()? {
            0 => Colour::Gray,
            1 => Colour::Rgb,
            c => {
                return Err(Error::format(format!(
                    "colour type {c} (allowed 0 = gray, 1 = RGB)"
                )))
            }
        };
        let source_depth = r.u8()?;
        let multiple = r.u16()?;
        if multiple == 0 || multiple > limits::MAX_MULTIPLE {
            return Err(Error::Limits(format!(
                "padding multiple {multiple} (allowed 1..={})",
                limits::MAX_MULTIPLE
            )));
        }
        let model_id = r.bytes32()?;
        let seed = r.u64()?;
        let conditioning = r.u8()?;
        if conditioning != 0 {
            return Err(Error::format(format!(
                "conditioning kind {conditioning} (allowed 0 = log-SNR)"
            )));
        }
        let steps = r.u8()? as usize;
        if steps > limits::MAX_STEPS {
            return Err(Error::Limits(format!(
                "step count {steps} (allowed 0..={})",
                limits::MAX_STEPS
            )));
        }
        let mut schedule = Vec::with_capacity(steps + 1);
        for i in 0..=steps {
            let p = SchedulePoint {
                t: r.f64()?,
                abar: r.f64()?,
                logsnr: r.f64()?,
            };
            if !(p.t.is_finite()
                && (0.0..=1000.0).contains(&p.t)
                && p.logsnr.is_finite()
                && p.logsnr.abs() <= MAX_LOGSNR
                && p.abar > 0.0
                && p.abar < 1.0)
            {
                return Err(Error::format(format!(
                    "schedule point {i}: t {}, abar {}, log-SNR {} (need 0 <= t <= 1000, |log-SNR| <= {MAX_LOGSNR}, 0 < abar < 1)",
                    p.t, p.abar, p.logsnr
                )));
            }
            if let Some(prev) = schedule.last() {
                let prev: &SchedulePoint = prev;
                if p.abar <= prev.abar {
                    return Err(Error::format(format!(
                        "schedule point {i}: abar {} must exceed the previous point's {}",
                        p.abar, prev.abar
                    )));
                }
            }
            schedule.push(p);
        }
        r.done()?;
        let h = Header {
            width,
            height,
            colour,
            source_depth,
            multiple,
            model_id,
            seed,
            conditioning,
            schedule,
        };
        let (ph, pw) = h.padded();
        if (ph as u64) * (pw as u64) > limits::MAX_PIXELS {
            return Err(Error::Limits(format!(
                "padded image {pw}x{ph} has {} pixels (allowed up to {})",
                ph as u64 * pw as u64,
                limits::MAX_PIXELS
            )));
        }
        Ok(h)
    }
}

/// A STEP chunk's payload (SPEC §4.3): the step index, the coder kind and the coder's body,
/// which the step-coder layer parses.
#[derive(Clone, Debug, PartialEq)]
pub struct StepChunk {
    /// Step index, 0-based; must be the next step.
    pub index: u8,
    /// Coder kind (SPEC §6.2).
    pub coder: u8,
    /// The coder's body.
    pub body: Vec<u8>,
}

impl StepChunk {
    /// Serialise.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut o = Vec::with_capacity(2 + self.body.len());
        o.push(self.index);
        o.push(self.coder);
        o.extend_from_slice(&self.body);
        o
    }

    /// Parse the index and kind; the body is checked by its coder.
    pub fn parse(payload: &[u8]) -> Result<StepChunk> {
        let mut r = Reader::new(payload, "STEP");
        let index = r.u8()?;
        let coder = r.u8()?;
        Ok(StepChunk {
            index,
            coder,
            body: payload[2..].to_vec(),
        })
    }
}

/// Largest |log-SNR| of a schedule point (SPEC §4.2): the training schedule spans about
/// -10.1 (t = 1000) to 9.2 (t = 1).
pub const MAX_LOGSNR: f64 = 40.0;

/// Step count 0 (SPEC §4.1) is allowed from format version 3 on, with a LOSS chunk.
pub fn check_steps(major: u8, h: &Header) -> Result<()> {
    if h.steps() == 0 && major < 3 {
        return Err(Error::format(format!(
            "step count 0 in a version-{major} file (allowed from version 3)"
        )));
    }
    Ok(())
}

/// LOSS coder kinds (SPEC §4.4, §10): 1 = the residual against the reconstruction (every
/// version), 2 = colour transform + weighted predictor (version 3).
pub const LOSS_KINDS: [u8; 2] = [1, 2];

/// A LOSS chunk's payload (SPEC §4.4).
#[derive(Clone, Debug, PartialEq)]
pub struct LossChunk {
    /// Coder kind (1 or 2; version 1 and 2 files hold kind 1 only, without the kind byte).
    pub kind: u8,
    /// SHA-256 of the coded 8-bit samples (planar, 3 channels, unpadded).
    pub sha256: [u8; 32],
    /// Kind 2: the colour transform (0..=2); 0 for kind 1.
    pub transform: u8,
    /// Range-coded words of the residual.
    pub words: Vec<u32>,
}

impl LossChunk {
    /// Serialise for a file of format `major`.
    pub fn to_bytes(&self, major: u8) -> Vec<u8> {
        let mut o = Vec::new();
        if major >= 3 {
            o.push(self.kind);
        }
        o.extend_from_slice(&self.sha256);
        if self.kind == 2 {
            o.push(self.transform);
        }
        o.extend_from_slice(&(self.words.len() as u32).to_le_bytes());
        for w in &self.words {
            o.extend_from_slice(&w.to_le_bytes());
        }
        o
    }

    /// Parse the payload of a file of format `major`.
    pub fn parse(payload: &[u8], major: u8) -> Result<LossChunk> {
        let mut r = Reader::new(payload, "LOSS");
        let kind = if major >= 3 { r.u8()? } else { 1 };
        if !LOSS_KINDS.contains(&kind) {
            return Err(Error::format(format!(
                "LOSS coder kind {kind} (this decoder knows {LOSS_KINDS:?})"
            )));
        }
        let sha256 = r.bytes32()?;
        let transform = if kind == 2 { r.u8()? } else { 0 };
        if transform > 2 {
            return Err(Error::format(format!(
                "LOSS colour transform {transform} (allowed 0..=2)"
            )));
        }
        let n = r.u32()?;
        let words = r.words(n)?;
        r.done()?;
        Ok(LossChunk {
            kind,
            sha256,
            transform,
            words,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_round_trip_and_crc() {
        let mut v = Vec::new();
        write_chunk(&mut v, kind::STEP, b"hello");
        let c = read_chunk(&v).unwrap().unwrap();
        assert_eq!(c.payload, b"hello");
        assert_eq!(c.len, v.len());
        assert!(read_chunk(&v[..v.len() - 1]).unwrap().is_none());
        v[9] ^= 1;
        assert!(read_chunk(&v).is_err());
        assert!(is_critical(kind::HEAD) && !is_critical(*b"note"));
    }
}
