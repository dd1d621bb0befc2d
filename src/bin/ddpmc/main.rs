//! The `ddpmc` command line: one module per command (SPEC §13 describes the file format the
//! commands read and write).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ddpmc::model::{default_model, Denoiser};
use ddpmc::{Error, FileOp};

mod bench;
mod decode;
mod encode;
mod info;
mod serve;

/// ddpmc: progressive lossy-to-lossless image coding with a denoising diffusion model.
///
/// A .ddpmc file is a chain of steps from noise towards the image; any prefix of whole steps
/// decodes to a picture, and an optional last chunk makes it exact.
#[derive(Parser)]
#[command(name = "ddpmc", version = version(), about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Worker threads for the network and the coders [default: one per CPU; the output never
    /// depends on it].
    #[arg(long, global = true, value_parser = clap::value_parser!(u16).range(1..=1024))]
    threads: Option<u16>,
}

#[derive(Subcommand)]
enum Command {
    /// Encode an image (PNG, JPEG, BMP, TIFF, PNM, WebP, GIF, TGA) into a .ddpmc file.
    Encode(encode::Args),
    /// Decode a .ddpmc file (or its first steps) into an image.
    Decode(decode::Args),
    /// Show what a .ddpmc file holds: size, model, schedule, bytes per step.
    Info(info::Args),
    /// Rate-distortion table, CSV and plots against classic codecs.
    Bench(bench::Args),
    /// Play the progressive decode of .ddpmc files in a browser (local server).
    Serve(serve::Args),
}

/// `--version`: the crate's version and the default model (name and model id), the two
/// things that decide the bytes an encode writes.
fn version() -> &'static str {
    let m = &ddpmc::model::BUILTIN_MODELS[0];
    let v = format!(
        "{} (default model {}, id {})",
        env!("CARGO_PKG_VERSION"),
        m.name,
        m.id
    );
    Box::leak(v.into_boxed_str())
}

/// The network: the built-in default model, or the safetensors file at `path` (any
/// architecture this build knows: `ddpmc::model::load_file`).
pub(crate) fn load_model(path: Option<&Path>) -> ddpmc::Result<Box<dyn Denoiser>> {
    Ok(match path {
        Some(p) => ddpmc::model::load_file(p)?,
        None => Box::new(default_model()?),
    })
}

/// The model that decodes `file`: the weights at `path` when given (loaded once, for the life
/// of the process), else the built-in model the file's header names.
pub(crate) fn decoding_model(
    path: Option<&Path>,
    file: &[u8],
) -> ddpmc::Result<&'static dyn Denoiser> {
    Ok(match path {
        Some(p) => given_model(p)?,
        None => ddpmc::model::model_for_file(file)?,
    })
}

/// The weights at `path`, loaded for the life of the process (decoders borrow their model).
pub(crate) fn given_model(path: &Path) -> ddpmc::Result<&'static dyn Denoiser> {
    Ok(Box::leak(ddpmc::model::load_file(path)?))
}

/// Write `bytes` to `out` through a temporary file in the same folder, flushed to the disk
/// (`sync_all`) and then moved onto `out`, so that a failure (a full disk, a dropped
/// connection) never leaves a partial or empty output file nor replaces a good one. Every
/// error names the path. A symbolic link is followed: the file it points to is written and the
/// link stays. Unless `replace`, the move is a hard link that fails when `out` exists, so
/// that of two runs writing one output without `--force` the second fails instead of silently
/// replacing the first one's file.
pub(crate) fn write_atomic(out: &Path, bytes: &[u8], replace: bool) -> ddpmc::Result<()> {
    use std::io::Write;
    let out = &resolve_links(out);
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp: PathBuf = out.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let r = (|| {
        let mut f =
            std::fs::File::create(&tmp).map_err(|e| Error::file(FileOp::Create, &tmp, e))?;
        f.write_all(bytes)
            .map_err(|e| Error::file(FileOp::Write, &tmp, e))?;
        f.sync_all()
            .map_err(|e| Error::file(FileOp::Write, &tmp, e))?;
        drop(f);
        if replace {
            return std::fs::rename(&tmp, out).map_err(|e| Error::file(FileOp::Rename, out, e));
        }
        match std::fs::hard_link(&tmp, out) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(ddpmc::Error::Parameter(format!(
                    "{} exists (written meanwhile by another run?); use --force to overwrite",
                    out.display()
                )))
            }
            // A file system without hard links: check, then rename.
            Err(_) if !out.exists() => {
                std::fs::rename(&tmp, out).map_err(|e| Error::file(FileOp::Rename, out, e))
            }
            Err(e) => Err(Error::file(FileOp::Rename, out, e)),
        }
    })();
    let _ = std::fs::remove_file(&tmp);
    r
}

/// `p` with symbolic links followed (at most 40), also to a target that does not exist yet.
fn resolve_links(p: &Path) -> PathBuf {
    let mut p = p.to_path_buf();
    for _ in 0..40 {
        match std::fs::read_link(&p) {
            Ok(t) if t.is_absolute() => p = t,
            Ok(t) => p = p.parent().unwrap_or(Path::new(".")).join(t),
            Err(_) => break,
        }
    }
    p
}

/// Encode `img` as `format` in memory (the image crate's file savers drop the error of their
/// last flush; encoding to memory and writing with [`write_atomic`] loses nothing).
pub(crate) fn image_bytes(
    img: &image::DynamicImage,
    format: image::ImageFormat,
    icc: Option<&[u8]>,
) -> ddpmc::Result<Vec<u8>> {
    use image::ImageEncoder;
    let mut buf = std::io::Cursor::new(Vec::new());
    let Some(icc) = icc else {
        img.write_to(&mut buf, format)?;
        return Ok(buf.into_inner());
    };
    // Formats that hold a colour profile get it back; the others are written without.
    let with = |e: &mut dyn FnMut() -> Result<(), image::error::UnsupportedError>| e().is_ok();
    let ok = match format {
        image::ImageFormat::Png => {
            let mut e = image::codecs::png::PngEncoder::new(&mut buf);
            let kept = with(&mut || e.set_icc_profile(icc.to_vec()));
            img.write_with_encoder(e)?;
            kept
        }
        image::ImageFormat::Tiff => {
            let mut e = image::codecs::tiff::TiffEncoder::new(&mut buf);
            let kept = with(&mut || e.set_icc_profile(icc.to_vec()));
            img.write_with_encoder(e)?;
            kept
        }
        _ => {
            img.write_to(&mut buf, format)?;
            false
        }
    };
    if !ok {
        eprintln!("notice: the colour profile is not written ({format:?} output cannot hold it here; use .png or .tiff)");
    }
    Ok(buf.into_inner())
}

/// Check before any work that `out` can be written: a file can be created in its folder.
pub(crate) fn check_writable(out: &Path) -> ddpmc::Result<()> {
    if is_std(out) {
        return Ok(());
    }
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let probe = dir.join(format!(".ddpmc-probe-{}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(Error::file(FileOp::WriteInto, dir, e)),
    }
}

/// Largest .ddpmc file the commands read (SPEC §9 bounds every chunk to 2^30 bytes; a file
/// of S = 32 steps at the largest image stays far below this).
const MAX_FILE: u64 = 1 << 32;

/// Read a .ddpmc file: the signature is checked on the first bytes before the rest is read,
/// and at most [`MAX_FILE`] bytes are read, so `/dev/zero` or a huge non-ddpmc file fails at
/// once instead of filling memory. Errors name the path.
pub(crate) fn read_ddpmc(path: &Path) -> ddpmc::Result<Vec<u8>> {
    use std::io::Read;
    let io = |e: std::io::Error| Error::file(FileOp::Read, path, e);
    let mut f: Box<dyn Read> = if is_std(path) {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::fs::File::open(path).map_err(io)?)
    };
    let mut bytes = Vec::with_capacity(ddpmc::format::PREAMBLE_LEN);
    (&mut f)
        .take(ddpmc::format::PREAMBLE_LEN as u64)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.is_empty() {
        return Err(ddpmc::Error::Format(format!(
            "{} is empty",
            shown(path, true)
        )));
    }
    if !ddpmc::format::SIGNATURE.starts_with(&bytes[..bytes.len().min(8)]) {
        return Err(ddpmc::Error::Format(format!(
            "{} is not a ddpmc file (signature mismatch)",
            shown(path, true)
        )));
    }
    (&mut f)
        .take(MAX_FILE + 1 - bytes.len() as u64)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(ddpmc::Error::Limits(format!(
            "{} is larger than {MAX_FILE} bytes",
            shown(path, true)
        )));
    }
    Ok(bytes)
}

/// The output path: `output` if given, else the input with extension `ext`; reading standard
/// input needs an explicit output.
pub(crate) fn output_path(
    input: &Path,
    output: Option<&Path>,
    ext: &str,
) -> ddpmc::Result<PathBuf> {
    match (output, is_std(input)) {
        (Some(o), _) => Ok(o.to_path_buf()),
        (None, true) => Err(ddpmc::Error::Parameter(
            "reading standard input: give -o FILE (or -o - for standard output)".into(),
        )),
        (None, false) => Ok(input.with_extension(ext)),
    }
}

/// Is `path` the `-` that stands for standard input or output?
pub(crate) fn is_std(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// A path for messages: `-` is shown as standard input (`input`) or standard output.
pub(crate) fn shown(path: &Path, input: bool) -> String {
    if is_std(path) && input {
        "standard input".to_string()
    } else if is_std(path) {
        "standard output".to_string()
    } else {
        path.display().to_string()
    }
}

/// Write the output: to standard output for `-` (flushed, errors reported), else atomically
/// to the file (see [`write_atomic`]).
pub(crate) fn write_output(out: &Path, bytes: &[u8], replace: bool) -> ddpmc::Result<()> {
    if is_std(out) {
        use std::io::Write;
        let mut o = std::io::stdout().lock();
        return o
            .write_all(bytes)
            .and_then(|()| o.flush())
            .map_err(|e| Error::file(FileOp::Write, out, e));
    }
    write_atomic(out, bytes, replace)
}

/// Refuse to overwrite `out` unless `force`.
pub(crate) fn check_overwrite(out: &Path, force: bool) -> ddpmc::Result<()> {
    if !is_std(out) && out.exists() && !force {
        return Err(ddpmc::Error::Parameter(format!(
            "{} exists (use --force to overwrite)",
            out.display()
        )));
    }
    Ok(())
}

/// A progress bar on stderr.
pub(crate) fn bar(len: u64, what: &str) -> indicatif::ProgressBar {
    let b = indicatif::ProgressBar::new(len);
    b.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} steps {elapsed}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    b.set_message(what.to_string());
    b
}

fn main() -> ExitCode {
    // The network allocates and frees large buffers on every call; keeping them mapped
    // saves about 10 % of decode CPU time (doc/SPEED.md). Output does not change.
    ddpmc::model::tune_allocator();
    // A reader that closes the pipe early (`ddpmc info f | head -1`) ends the process quietly,
    // as it does other Unix tools, instead of a panic in `println!`.
    #[cfg(unix)]
    // SAFETY: sets the default action of one signal, before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let mut partial = false;
    if let Some(n) = cli.threads {
        if let Err(e) = rayon::ThreadPoolBuilder::new()
            .num_threads(usize::from(n))
            .build_global()
        {
            eprintln!("error: --threads {n}: {e}");
            return ExitCode::FAILURE;
        }
    }
    let r = match cli.command {
        Command::Encode(a) => encode::run(a),
        Command::Decode(a) => decode::run(a).map(|o| match o {
            decode::Outcome::Whole => (),
            decode::Outcome::Partial => partial = true,
        }),
        Command::Info(a) => info::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Serve(a) => serve::run(a),
    };
    match r {
        Ok(()) if partial => ExitCode::from(decode::EXIT_PARTIAL),
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
