//! `ddpmc decode`.

use std::path::PathBuf;

use ddpmc::codec::{chunk_ends, Decoder, Limits, Recon};

/// Exit status of a decode that wrote the image of an incomplete file: the data ended before
/// the END chunk (truncated), or `--partial` stepped over a corrupt chunk.
pub const EXIT_PARTIAL: u8 = 3;

/// How a decode that wrote an image ended.
pub enum Outcome {
    /// The file was whole (or `--steps N` stopped reading on purpose).
    Whole,
    /// The image is that of the last complete step of a truncated or corrupt file.
    Partial,
}

/// How to turn the latent into an image.
#[derive(Clone, Copy, clap::ValueEnum)]
enum ReconArg {
    /// One network call: the denoised estimate (best PSNR).
    Denoise,
    /// Deterministic steps to the end of the chain (sharper).
    Flow,
    /// Ancestral sampling to the end of the chain (most realistic).
    Sample,
}

/// Decode a .ddpmc file, or its first steps, into an image.
#[derive(clap::Args)]
#[command(
    after_help = "Exit status: 0 the file decoded whole (or up to --steps); 1 an error, \
no image written (corrupt chunk, model mismatch, a limit exceeded ...); 2 a usage error; 3 the \
image of the last complete step was written but the file is incomplete (truncated before its \
END chunk, or a corrupt chunk stepped over with --partial)."
)]
pub struct Args {
    /// Input .ddpmc file; `-` reads standard input.
    input: PathBuf,
    /// Output image; the extension picks the format; `-` writes PNG to standard output
    /// [default: the input with extension .decoded.png].
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Decode only the first N steps (N >= 1) [default: all].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    steps: Option<u64>,
    /// Reconstruction after the last decoded step.
    #[arg(long, value_enum, default_value = "denoise")]
    recon: ReconArg,
    /// Also write a PNG after every step into this folder (step_01.png, ...).
    #[arg(long)]
    frames: Option<PathBuf>,
    /// On a corrupt chunk, write the image of the last good step instead of failing.
    #[arg(long)]
    partial: bool,
    /// Refuse a file whose image has more than N pixels (padded to the model's multiple of
    /// 16), before any work [default: 16777216 = 4096x4096, the format's bound].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    max_pixels: Option<u64>,
    /// Refuse a file that would need more than N coding steps decoded (after --steps), before
    /// any work [default: 32, the format's bound].
    #[arg(long, value_name = "N")]
    max_steps: Option<u64>,
    /// Stop with an error rather than run more than N network passes over the image (a step
    /// takes one; --recon flow or sample up to 7 more) [default: 256].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    max_passes: Option<u64>,
    /// Model weights (safetensors) [default: the built-in model the file names; ddpmc builds in
    /// the default model and every default since b48].
    #[arg(long)]
    model: Option<PathBuf>,
    /// Overwrite the output file if it exists.
    #[arg(short, long)]
    force: bool,
    /// No progress bar or summary.
    #[arg(long)]
    quiet: bool,
    /// Also print each step as it is decoded: bytes read so far, bits per pixel and time.
    #[arg(short, long)]
    verbose: bool,
}

/// Run the command.
pub fn run(a: Args) -> ddpmc::Result<Outcome> {
    let out = crate::output_path(&a.input, a.output.as_deref(), "decoded.png")?;
    crate::check_overwrite(&out, a.force)?;
    crate::check_writable(&out)?;
    let format = if crate::is_std(&out) {
        Ok(image::ImageFormat::Png)
    } else {
        image::ImageFormat::from_path(&out)
    }
    .map_err(|_| {
        ddpmc::Error::Parameter(format!(
            "cannot tell the image format from {} (use .png, .bmp, .tiff, .ppm ...)",
            out.display()
        ))
    })?;
    let bytes = crate::read_ddpmc(&a.input)?;
    let model = crate::decoding_model(a.model.as_deref(), &bytes)?;
    let recon = match a.recon {
        ReconArg::Denoise => Recon::Denoise,
        ReconArg::Flow => Recon::Flow,
        ReconArg::Sample => Recon::Sample,
    };
    if let Some(dir) = &a.frames {
        std::fs::create_dir_all(dir)
            .map_err(|e| ddpmc::Error::file(ddpmc::FileOp::CreateDir, dir, e))?;
        // Frames are step_01.png, step_02.png ...: never overwrite earlier ones unasked.
        for n in 1..=ddpmc::format::limits::MAX_STEPS {
            crate::check_overwrite(&dir.join(format!("step_{n:02}.png")), a.force)?;
        }
    }
    let steps = a.steps.map(|s| s as usize);
    let mut limits = Limits::default();
    if let Some(n) = a.max_pixels {
        limits.max_pixels = n;
    }
    if let Some(n) = a.max_steps {
        limits.max_steps = n as usize;
    }
    if let Some(n) = a.max_passes {
        limits.max_passes = n;
    }
    let mut d = Decoder::with_limits(model, limits);
    d.set_max_steps(steps);
    let bar = (!a.quiet).then(|| crate::bar(0, "decoding"));
    let mut pos = 0;
    let mut failure = None;
    let mut frames_written = 0;
    let mut verbose_steps = 0;
    let started = std::time::Instant::now();
    // With --steps N, reading stops after step N: later chunks (even corrupt ones) do not
    // matter to the image asked for.
    let mut stopped = false;
    for end in chunk_ends(&bytes) {
        if steps.is_some_and(|s| d.steps_done() >= s) {
            stopped = true;
            break;
        }
        if let Err(e) = d.push(&bytes[pos..end]) {
            failure = Some(e);
            break;
        }
        pos = end;
        if a.verbose && d.steps_done() > verbose_steps {
            verbose_steps = d.steps_done();
            if let Some(h) = d.header() {
                let px = f64::from(h.width) * f64::from(h.height);
                let msg = format!(
                    "step {verbose_steps}: {} bytes read ({:.4} bpp), {:.2} s",
                    d.bytes_consumed(),
                    d.bytes_consumed() as f64 * 8.0 / px,
                    started.elapsed().as_secs_f64()
                );
                match &bar {
                    Some(b) if !b.is_hidden() => b.println(msg),
                    _ => eprintln!("{msg}"),
                }
            }
        }
        if let (Some(b), Some(t)) = (&bar, d.steps_total()) {
            b.set_length(steps.map_or(t, |s| s.min(t)) as u64);
            b.set_position(d.steps_done() as u64);
        }
        if let Some(dir) = &a.frames {
            while frames_written < d.steps_done() {
                frames_written += 1;
                let f = dir.join(format!("step_{frames_written:02}.png"));
                let png =
                    crate::image_bytes(&d.image(recon)?, image::ImageFormat::Png, d.icc_profile())?;
                crate::write_atomic(&f, &png, a.force)?;
            }
        }
    }
    if failure.is_none() && !stopped && pos < bytes.len() {
        failure = d.push(&bytes[pos..]).err();
    }
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let mut partial = false;
    if let Some(e) = failure {
        if !(a.partial && d.steps_done() > 0) || matches!(e, ddpmc::Error::Limits(_)) {
            return Err(e);
        }
        partial = true;
        eprintln!(
            "warning: {e}; writing the image after the last good step ({})",
            d.steps_done()
        );
    }
    let total = d.steps_total().unwrap_or(0);
    if d.steps_done() == 0 && !d.is_lossless() {
        return Err(ddpmc::Error::Format(if total == 0 {
            "no LOSS chunk in a file with no coding steps (truncated?)".into()
        } else {
            "no complete coding step in the file (truncated?)".into()
        }));
    }
    if let Some(n) = steps.filter(|&n| n > total) {
        eprintln!(
            "notice: --steps {n}, but the file has {total} step{}: decoded {}",
            if total == 1 { "" } else { "s" },
            if total == 1 { "it" } else { "them all" }
        );
    }
    if !d.is_finished() && !stopped && !partial {
        partial = true;
        eprintln!(
            "warning: the file is truncated: decoded {} of {total} steps (whole chunks only)",
            d.steps_done()
        );
    }
    let img = d.image(recon)?;
    crate::write_output(
        &out,
        &crate::image_bytes(&img, format, d.icc_profile())?,
        a.force,
    )?;
    if !a.quiet {
        let done = if total == 0 {
            "no coding steps".to_string()
        } else {
            format!(
                "{} of {total} step{}",
                d.steps_done(),
                if total == 1 { "" } else { "s" }
            )
        };
        eprintln!(
            "{} -> {}: {}x{}, {done}{}",
            crate::shown(&a.input, true),
            crate::shown(&out, false),
            img.width(),
            img.height(),
            if d.is_lossless() {
                ", lossless (verified)"
            } else {
                ""
            }
        );
    }
    Ok(if partial {
        Outcome::Partial
    } else {
        Outcome::Whole
    })
}
