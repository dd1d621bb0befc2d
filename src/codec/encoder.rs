//! Stage 5: the encoder's chain (SPEC §6, §11, §12): per step, every allowed step coder codes
//! the step with its own choices on real code lengths, and the encoder keeps the one with the
//! best rate and distortion (the network's estimate after the step, which the next step needs
//! anyway); the encoder's latent follows exactly the decoder's path.

use super::{lossless, ImageData, StepReport};
use crate::diffusion::{start_latent, SchedulePoint, StepCoeffs};
use crate::format::{self, kind, Header, LossChunk, StepChunk};
use crate::model::Denoiser;
use crate::step::{self, Coded, Geometry, StepInput};
use crate::Result;
use rayon::prelude::*;

/// Chain-wide encoder settings.
#[derive(Clone, Copy)]
pub(crate) struct ChainOpts<'a> {
    /// Append a LOSS chunk.
    pub lossless: bool,
    /// With `lossless`: keep the chain prefix (0..=S steps) whose file is smallest, trying
    /// them in order and stopping at the first that is larger than the one before.
    pub prefix_search: bool,
    /// PRNG seed.
    pub seed: u64,
    /// Coder kinds the encoder may choose from (empty: [`step::default_coders`]).
    pub coders: &'a [u8],
    /// The source's ICC profile, carried in an `iccp` chunk after HEAD.
    pub icc: Option<&'a [u8]>,
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
    // The coders allowed at a step that starts at t.
    let coders_at = |t: f64| -> Vec<&dyn step::StepCoder> {
        let allowed = if opts.coders.is_empty() {
            step::default_coders(t)
        } else {
            opts.coders
        };
        step::CODERS
            .iter()
            .copied()
            .filter(|c| allowed.contains(&c.kind()))
            .collect()
    };
    if !opts.coders.is_empty() && coders_at(0.0).is_empty() {
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
    // The file of the first n steps: preamble, HEAD, STEP chunks, LOSS (if any), END. With
    // no steps the file needs no network: model id zero, no padding (SPEC §4.1).
    let model_id = model.id();
    let assemble = |n: usize, steps: &[u8], loss: Option<&LossChunk>| -> Vec<u8> {
        let header = Header {
            width: img.width as u32,
            height: img.height as u32,
            colour: img.colour,
            source_depth: img.source_depth,
            multiple: if n == 0 { 1 } else { m as u16 },
            model_id: if n == 0 { [0; 32] } else { model_id },
            seed,
            conditioning: 0,
            schedule: schedule[..=n].to_vec(),
        };
        let major = if n == 0 || loss.is_some_and(|l| l.kind >= 2) {
            3
        } else {
            2
        };
        let mut out = Vec::new();
        let minor = if opts.icc.is_some() {
            format::MINOR_ICCP
        } else {
            format::VERSION_MINOR
        };
        format::write_preamble(&mut out, major, minor);
        format::write_chunk(&mut out, kind::HEAD, &header.to_bytes());
        if let Some(icc) = opts.icc {
            format::write_chunk(&mut out, kind::ICCP, icc);
        }
        out.extend_from_slice(steps);
        if let Some(l) = loss {
            format::write_chunk(&mut out, kind::LOSS, &l.to_bytes(major));
        }
        format::write_chunk(&mut out, kind::END, &[]);
        out
    };
    let search = lossless && opts.prefix_search;
    // The smallest lossless file so far: (prefix length, file size, LOSS chunk).
    let mut best_loss: Option<(usize, usize, LossChunk)> = None;
    // Every colour transform for the first prefix tried, then the one that won it.
    let mut transforms: Vec<u8> = vec![0, 1, 2];
    let mut try_prefix = |n: usize, steps: &[u8], recon: Option<&[u8]>| -> Result<bool> {
        let l = lossless::encode(&img.pixels, recon, g.h, g.w, &transforms)?;
        transforms = vec![l.transform];
        let size = assemble(n, steps, Some(&l)).len();
        let better = best_loss.as_ref().is_none_or(|b| size < b.1);
        if better {
            best_loss = Some((n, size, l));
        }
        Ok(better)
    };

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
    let mut out = Vec::new(); // the STEP chunks
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
    let mut searched_all = true;
    // The network estimate at the end point of the step just coded, when the coder choice
    // already computed it.
    let mut next_xhat: Option<Vec<f32>> = None;
    let npx = (g.h * g.w) as f64;
    for n in first..nsteps {
        progress(n, nsteps + usize::from(lossless));
        let started = std::time::Instant::now();
        let (pt, ps) = (schedule[n], schedule[n + 1]);
        if let Some(xh) = next_xhat.take() {
            net_xhat = Some(xh);
        } else if n > 0 && !(n == first && net_xhat.is_some()) {
            net_xhat = Some(super::denoise(model, &z, &pt, &g)?);
        }
        if search {
            let recon = net_xhat.as_ref().map(|x| super::crop_pred(x, &g));
            if !try_prefix(n, &out, recon.as_deref())? {
                searched_all = false;
                break;
            }
        }
        if keep {
            snapshots.push(Snapshot {
                n,
                z: z.clone(),
                xhat: net_xhat.clone(),
                chunks: out.clone(),
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
        // With several coders, the choice is by rate and distortion.
        let here = coders_at(pt.t);
        let rd = here.len() > 1;
        // Every allowed coder codes the step (and, to compare, the network estimates its end
        // point), side by side on the thread pool: one coder's serial parts overlap the
        // other's. The choice does not depend on the order they finish in.
        let file_bits = out.len() as f64 * 8.0;
        let tried: Vec<(u8, Coded, f64, Option<Vec<f32>>)> = here
            .par_iter()
            .map(|c| -> Result<_> {
                let coded = c.encode(&inp, &x)?;
                let bits = coded.body.len() as f64 * 8.0;
                if !rd {
                    return Ok((c.kind(), coded, bits, None));
                }
                let xh = super::denoise(model, &coded.z, &ps, &g)?;
                let mut se = 0f64;
                for ch in 0..3 {
                    for y in 0..g.h {
                        for xx in 0..g.w {
                            let i = g.idx(ch, y, xx);
                            se += f64::from(xh[i] - x[i]).powi(2);
                        }
                    }
                }
                let mse = (se / (3.0 * npx)).max(1e-12);
                let psnr = 10.0 * (4.0 / mse).log10();
                let cost = (file_bits + bits).ln() - psnr / step::RD_DB_PER_LN;
                Ok((c.kind(), coded, cost, Some(xh)))
            })
            .collect::<Result<_>>()?;
        // The first of the cheapest, in the order of `here`.
        let mut best: Option<(u8, Coded, f64, Option<Vec<f32>>)> = None;
        for t in tried {
            if best.as_ref().is_none_or(|b| t.2 < b.2) {
                best = Some(t);
            }
        }
        let (kind_n, coded, _, xh) = best.expect("at least one coder");
        next_xhat = xh;
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
            kl_bits: st.kl_bits,
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    let (bytes, loss_bytes) = if lossless {
        if searched_all {
            progress(nsteps, nsteps + 1);
            let recon = if nsteps == 0 {
                None
            } else {
                let xh = super::denoise(model, &z, &schedule[nsteps], &g)?;
                Some(super::crop_pred(&xh, &g))
            };
            try_prefix(nsteps, &out, recon.as_deref())?;
        }
        let (n, _, l) = best_loss.expect("a lossless prefix was coded");
        reports.truncate(n);
        let steps_end = reports.iter().map(|r| r.chunk_bytes).sum::<usize>();
        let bytes = assemble(n, &out[..steps_end], Some(&l));
        (bytes, Some(l.to_bytes(3).len() + 12))
    } else {
        (assemble(nsteps, &out, None), None)
    };
    progress(
        nsteps + usize::from(lossless),
        nsteps + usize::from(lossless),
    );
    Ok(Encoded {
        bytes,
        steps: reports,
        loss_bytes,
        snapshots,
    })
}
