//! `ddpmc encode`.

use std::path::PathBuf;

use ddpmc::codec::{encode_with_report, EncodeOptions};

/// Encode an image into a progressive .ddpmc file.
#[derive(clap::Args)]
pub struct Args {
    /// Input image (PNG, JPEG, ...; the format is read from the content); `-` reads standard
    /// input.
    input: PathBuf,
    /// Output file, `-` for standard output [default: the input with extension .ddpmc].
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Quality preset: the number of coding steps on the ladder
    /// 1000 -> 150 -> 70 -> 40 -> 20 -> 12 -> 4 -> 1 (1 = smallest, 7 = best) [default: 3]. With
    /// --lossless it is the progressive prefix kept before the exact residual, and 0 is
    /// allowed (no steps: the smallest and fastest lossless file, decoded without a network).
    #[arg(short, long, value_parser = clap::value_parser!(u8).range(0..=ddpmc::diffusion::PRESETS as i64), conflicts_with = "bpp", requires_if("0", "lossless"))]
    quality: Option<u8>,
    /// Target size in bits per pixel; the file lands at or just under it.
    #[arg(long, conflicts_with = "lossless")]
    bpp: Option<f64>,
    /// Make the decoded image bit-exact. Without --quality the encoder keeps the prefix of
    /// coding steps (0..=7) that gives the smallest file; usually none.
    #[arg(long)]
    lossless: bool,
    /// Model weights (safetensors) [default: the built-in default model].
    #[arg(long)]
    model: Option<PathBuf>,
    /// Seed of the shared randomness (dither and starting noise).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Step coders the encoder may choose from at every step, by rate and distortion
    /// (comma-separated kinds: 1 = UQ in the pixel domain, 2 = UQ in a colour + DCT domain,
    /// 3 = Gaussian steps by reverse-channel coding in the same domain) [default: 3 on the steps
    /// that start at t >= 70, 2,3 below].
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u8).range(1..=3))]
    coders: Vec<u8>,
    /// Overwrite the output file if it exists.
    #[arg(short, long)]
    force: bool,
    /// No progress bar or summary.
    #[arg(long, conflicts_with = "verbose")]
    quiet: bool,
    /// Also print each step: timesteps, coder kind, tile or block size, K, bytes and the
    /// share of side information.
    #[arg(short, long)]
    verbose: bool,
}

/// Run the command.
pub fn run(a: Args) -> ddpmc::Result<()> {
    let out = crate::output_path(&a.input, a.output.as_deref(), "ddpmc")?;
    crate::check_overwrite(&out, a.force)?;
    if let (Ok(i), Ok(o)) = (a.input.canonicalize(), out.canonicalize()) {
        if i == o {
            return Err(ddpmc::Error::Parameter(format!(
                "the output {} is the input image (choose another -o)",
                out.display()
            )));
        }
    }
    crate::check_writable(&out)?;
    let (img, icc, notices) = read_image(&a.input)?;
    for n in &notices {
        if !a.quiet {
            eprintln!("notice: {n}");
        }
    }
    let model = crate::load_model(a.model.as_deref())?;
    let opts = EncodeOptions {
        quality: a.quality.unwrap_or(if a.lossless {
            ddpmc::diffusion::PRESETS
        } else {
            EncodeOptions::default().quality
        }),
        bpp: a.bpp,
        lossless: a.lossless,
        prefix_search: a.lossless && a.quality.is_none(),
        seed: a.seed,
        coders: a.coders.clone(),
        icc_profile: icc,
    };
    let bar = (!a.quiet).then(|| crate::bar(0, "encoding"));
    let mut progress = |done: usize, total: usize| {
        if let Some(b) = &bar {
            b.set_length(total as u64);
            b.set_position(done as u64);
        }
    };
    let (bytes, rep) = encode_with_report(&img, model.as_ref(), &opts, &mut progress)?;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    for n in &rep.notices {
        eprintln!("notice: {n}");
    }
    crate::write_output(&out, &bytes, a.force)?;
    if a.verbose {
        let px = f64::from(img.width()) * f64::from(img.height());
        for (i, r) in rep.steps.iter().enumerate() {
            eprintln!(
                "step {}: t {:.0} -> {:.0}, coder {}, block {}, K {}, {} bytes ({:.4} bpp, side information {:.1} %, {}/{} units skipped, {:.2} s){}",
                i + 1,
                r.t_start,
                r.t_end,
                r.coder,
                r.block,
                r.k_max,
                r.chunk_bytes,
                r.chunk_bytes as f64 * 8.0 / px,
                100.0 * r.side_bits / r.ideal_bits.max(1e-9),
                r.skipped_blocks,
                r.blocks,
                r.seconds,
                r.kl_bits.map_or(String::new(), |kl| format!(
                    "; KL of the coded units {:.4} bpp, real bits {:.2}x the KL",
                    kl / px,
                    r.chunk_bytes as f64 * 8.0 / kl.max(1e-9)
                ))
            );
        }
        if let Some(l) = rep.loss_bytes {
            eprintln!("lossless: {l} bytes ({:.4} bpp)", l as f64 * 8.0 / px);
        }
    }
    if !a.quiet {
        let px = f64::from(img.width()) * f64::from(img.height());
        eprintln!(
            "{} -> {}: {} bytes, {:.4} bpp, {} step{}{}",
            crate::shown(&a.input, true),
            crate::shown(&out, false),
            bytes.len(),
            bytes.len() as f64 * 8.0 / px,
            rep.steps.len(),
            if rep.steps.len() == 1 { "" } else { "s" },
            if rep.loss_bytes.is_some() {
                " + lossless"
            } else {
                ""
            }
        );
    }
    Ok(())
}

/// Decode the input image: the format is taken from the content (not the extension), and the
/// size limits of SPEC §9 apply before any pixel is decoded (a small file that claims a huge
/// image is refused at once). Errors name the path. Also returns the image's ICC profile and
/// notices: an EXIF orientation is applied (the image is coded upright), and only the first
/// frame of an animation is coded.
fn read_image(
    path: &std::path::Path,
) -> ddpmc::Result<(image::DynamicImage, Option<Vec<u8>>, Vec<String>)> {
    use ddpmc::{Error, FileOp};
    use image::ImageDecoder;
    use std::io::Read;
    let io = |e: std::io::Error| Error::file(FileOp::Read, path, e);
    let ctx = |e: image::ImageError| Error::image_file(FileOp::Read, path, e);
    let open = || -> ddpmc::Result<Box<dyn ReadSeek>> {
        Ok(Box::new(std::io::BufReader::new(
            std::fs::File::open(path).map_err(io)?,
        )))
    };
    let stdin_buf = if crate::is_std(path) {
        let mut buf = Vec::new();
        std::io::stdin()
            .lock()
            .take(STDIN_MAX)
            .read_to_end(&mut buf)
            .map_err(io)?;
        Some(buf)
    } else {
        None
    };
    let reader = || -> ddpmc::Result<Box<dyn ReadSeek>> {
        match &stdin_buf {
            Some(b) => Ok(Box::new(std::io::Cursor::new(b.clone()))),
            None => open(),
        }
    };
    let mut r = image::ImageReader::new(reader()?)
        .with_guessed_format()
        .map_err(io)?;
    let side = ddpmc::format::limits::MAX_SIDE;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(side);
    limits.max_image_height = Some(side);
    // The largest image the codec takes (2^24 padded pixels), as 16-bit RGBA, with room.
    limits.max_alloc = Some(ddpmc::format::limits::MAX_PIXELS * 8 + (64 << 20));
    r.limits(limits.clone());
    let format = r.format();
    let mut dec = r.into_decoder().map_err(ctx)?;
    let icc = dec.icc_profile().map_err(ctx)?.filter(|p| !p.is_empty());
    let orientation = dec.orientation().map_err(ctx)?;
    let mut img = image::DynamicImage::from_decoder(dec).map_err(ctx)?;
    let mut notices = Vec::new();
    if orientation != image::metadata::Orientation::NoTransforms {
        img.apply_orientation(orientation);
        notices.push(format!(
            "EXIF orientation {orientation:?} applied: the image is coded upright ({}x{})",
            img.width(),
            img.height()
        ));
    }
    if format == Some(image::ImageFormat::Gif) {
        let mut g = image::codecs::gif::GifDecoder::new(reader()?).map_err(ctx)?;
        g.set_limits(limits).map_err(ctx)?;
        use image::AnimationDecoder;
        if g.into_frames().take(2).count() > 1 {
            notices.push("animated GIF: only its first frame is coded".into());
        }
    }
    Ok((img, icc, notices))
}

/// Largest image file read from standard input.
const STDIN_MAX: u64 = 1 << 30;

trait ReadSeek: std::io::BufRead + std::io::Seek {}
impl<T: std::io::BufRead + std::io::Seek> ReadSeek for T {}
