//! Stage 5: the encoder's chain (SPEC §6, §11): per step, every allowed step coder codes the
//! step with its own choices on real code lengths, and the smallest body is kept; the
//! encoder's latent follows exactly the decoder's path.

use sha2::{Digest, Sha256};

use super::{lossless, ImageData, StepReport};
use crate::diffusion::{start_latent, SchedulePoint, StepCoeffs};
use crate::entropy::RangeWriter;
use crate::format::{self, kind, Header, LossChunk, StepChunk};
use crate::model::Denoiser;
use crate::step::{self, Coded, Geometry, StepInput};
use crate::Result;

/// Chain-wide encoder settings.
#[derive(Clone, Copy)]
pub(crate) struct ChainOpts<'a> {
    /// Append a LOSS chunk.
    pub lossless: bool,
    /// PRNG seed.
    pub seed: u64,
    /// Coder kinds the encoder may choose from (empty: [`step::DEFAULT_CODERS`]).
    pub coders: &'a [u8],
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
    opts: &ChainOpts,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Encoded> {
    encode_resumable(img, model, schedule, opts, progress, None, false)
}

/// [`encode_schedule`], optionally starting from `resume` (a snapshot taken on a schedule
/// with the same first `resume.n + 1` points) and keeping a snapshot before every step.
#[allow(clippy::too_many_arguments)]
pub(crate) fn encode_resumable(
    img: &ImageData,
    model: &dyn Denoiser,
    schedule: &[SchedulePoint],
    opts: &ChainOpts,
    progress: &mut dyn FnMut(usize, usize),
    resume: Option<&Snapshot>,
    keep: bool,
) -> Result<Encoded> {
    let (lossless, seed) = (opts.lossless, opts.seed);
    let allowed: &[u8] = if opts.coders.is_empty() {
        &step::DEFAULT_CODERS
    } else {
        opts.coders
    };
    let coders: Vec<&dyn step::StepCoder> = step::CODERS
        .iter()
        .copied()
        .filter(|c| allowed.contains(&c.kind()))
        .collect();
    if coders.is_empty() {
        return Err(crate::Error::param(format!(
            "step coder kinds {:?} (this encoder knows {:?})",
            opts.coders,
            step::CODERS.iter().map(|c| c.kind()).collect::<Vec<_>>()
        )));
    }
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
        let levels = step::dither_levels(seed, n, &g);
        let inp = StepInput {
            g,
            seed,
            n,
            co,
            z: &z,
            xhat: net_xhat.as_deref(),
            levels: &levels,
        };
        let mut best: Option<(u8, Coded)> = None;
        for c in &coders {
            let coded = c.encode(&inp, &x)?;
            if best
                .as_ref()
                .map_or(true, |b| coded.body.len() < b.1.body.len())
            {
                best = Some((c.kind(), coded));
            }
        }
        let (kind_n, coded) = best.expect("at least one coder");
        let chunk = StepChunk {
            index: n as u8,
            coder: kind_n,
            body: coded.body,
        };
        let payload = chunk.to_bytes();
        format::write_chunk(&mut out, kind::STEP, &payload);
        z = coded.z;
        let st = coded.stats;
        reports.push(StepReport {
            t_start: pt.t,
            t_end: ps.t,
            coder: kind_n,
            block: st.block,
            k_max: st.k_max,
            chunk_bytes: payload.len() + 12,
            ideal_bits: st.ideal_bits,
            side_bits: st.side_bits,
            skipped_blocks: st.skipped,
            blocks: st.units,
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
