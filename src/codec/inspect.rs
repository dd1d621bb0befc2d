//! Stage 5: reading a file's structure without decoding (SPEC §2-§4): chunk boundaries and the
//! checked chunk table of `ddpmc info`.

use crate::format::{self, kind, Header, LossChunk, StepChunk};
use crate::step;
use crate::{Error, Result};

/// Offsets just after the preamble and after each chunk, following length fields only (no
/// checks: the decoder checks).
pub fn chunk_ends(bytes: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut pos = format::PREAMBLE_LEN;
    if bytes.len() < pos {
        return out;
    }
    out.push(pos);
    while bytes.len() >= pos + 8 {
        let n = u32::from_le_bytes([
            bytes[pos + 4],
            bytes[pos + 5],
            bytes[pos + 6],
            bytes[pos + 7],
        ]) as usize;
        let end = pos.saturating_add(12).saturating_add(n);
        if end > bytes.len() {
            break;
        }
        out.push(end);
        pos = end;
    }
    out
}

/// One chunk of a file, as listed by [`inspect`].
#[derive(Clone, Debug)]
pub struct ChunkInfo {
    /// Chunk type as text.
    pub kind: String,
    /// Offset of the chunk's first byte.
    pub offset: usize,
    /// Total bytes (12 + payload).
    pub len: usize,
    /// For STEP chunks: coder kind, block (or tile) size and K.
    pub step: Option<(u8, u16, u16)>,
}

/// What a file holds, without decoding (for `ddpmc info` and benchmarks).
#[derive(Clone, Debug)]
pub struct FileInfo {
    /// The header.
    pub header: Header,
    /// Chunks in order.
    pub chunks: Vec<ChunkInfo>,
    /// Total bytes.
    pub total_bytes: usize,
    /// True when the END chunk is present.
    pub complete: bool,
    /// The LOSS chunk's coder kind and (kind 2) colour transform, if there is one.
    pub loss: Option<(u8, u8)>,
    /// Bytes of the ICC profile the file carries (SPEC §4.5), if any.
    pub icc_bytes: Option<usize>,
}

impl FileInfo {
    /// Per STEP chunk: (its bytes, the byte length of the file truncated after it).
    pub fn step_bytes(&self) -> Vec<(usize, usize)> {
        self.chunks
            .iter()
            .filter(|c| c.kind == "STEP")
            .map(|c| (c.len, c.offset + c.len))
            .collect()
    }
}

/// The model id in a file's header, when the file starts with a readable header and has coding
/// steps (a file without steps names no model). Reads only up to the header; every error is
/// `None`, for the decoder to report.
pub(crate) fn header_model_id(bytes: &[u8]) -> Option<[u8; 32]> {
    format::check_preamble(bytes).ok()?;
    let mut pos = format::PREAMBLE_LEN;
    while let Some(c) = format::read_chunk(bytes.get(pos..)?).ok()? {
        if c.kind == kind::HEAD {
            let h = Header::parse(c.payload).ok()?;
            return (h.steps() > 0).then_some(h.model_id);
        }
        if format::is_critical(c.kind) {
            return None;
        }
        pos += c.len;
    }
    None
}

/// Read the header and chunk table of a file. Checks the signature, the CRCs, the header,
/// every STEP body's fixed fields and the chunk order of SPEC §3.3 (as the decoder does).
pub fn inspect(bytes: &[u8]) -> Result<FileInfo> {
    let major = format::check_preamble(bytes)?;
    let mut pos = format::PREAMBLE_LEN;
    let mut header: Option<Header> = None;
    let mut chunks = Vec::new();
    let mut complete = false;
    let mut steps = 0usize;
    let mut loss = false;
    let mut loss_kind = None;
    let mut icc_bytes = None;
    while let Some(c) = format::read_chunk(&bytes[pos..])? {
        let name = String::from_utf8_lossy(&c.kind).into_owned();
        if header.is_none() && c.kind != kind::HEAD && format::is_critical(c.kind) {
            return Err(Error::format(format!(
                "chunk {name:?} before the header (the first critical chunk must be HEAD)"
            )));
        }
        let total = header.as_ref().map_or(0, Header::steps);
        let mut step = None;
        match c.kind {
            kind::HEAD => {
                if header.is_some() {
                    return Err(Error::format("second HEAD chunk"));
                }
                let h = Header::parse(c.payload)?;
                format::check_steps(major, &h)?;
                header = Some(h);
            }
            kind::STEP => {
                let s = StepChunk::parse(c.payload)?;
                if usize::from(s.index) != steps || steps >= total || loss {
                    return Err(Error::format(format!(
                        "STEP chunk with index {} (expected {steps} of the header's {total} steps, before LOSS)",
                        s.index
                    )));
                }
                let (_, b) = step::checked_coder(major, s.coder, &s.body)?;
                step = Some((s.coder, b.block, b.k_max));
                steps += 1;
            }
            kind::LOSS => {
                if steps != total || loss {
                    return Err(Error::format(
                        "LOSS chunk out of place (it must follow the last STEP, once)",
                    ));
                }
                let l = LossChunk::parse(c.payload, major)?;
                loss_kind = Some((l.kind, l.transform));
                loss = true;
            }
            kind::END => {
                if steps != total {
                    return Err(Error::format(format!("END after {steps} of {total} steps")));
                }
                if total == 0 && !loss {
                    return Err(Error::format(
                        "END without a LOSS chunk in a file with no steps (it holds no image)",
                    ));
                }
                complete = true;
            }
            kind::ICCP if header.is_some() && steps == 0 && !loss && icc_bytes.is_none() => {
                icc_bytes = Some(c.payload.len());
            }
            k if format::is_critical(k) => {
                return Err(Error::format(format!(
                    "unknown critical chunk {name:?} (this decoder knows HEAD, STEP, LOSS, END)"
                )))
            }
            _ => {}
        }
        chunks.push(ChunkInfo {
            kind: name,
            offset: pos,
            len: c.len,
            step,
        });
        pos += c.len;
        if complete {
            break;
        }
    }
    let header = header.ok_or_else(|| Error::format("no HEAD chunk"))?;
    Ok(FileInfo {
        header,
        chunks,
        total_bytes: bytes.len(),
        complete,
        loss: loss_kind,
        icc_bytes,
    })
}
