//! Bench stage: classic codecs — command-line tools and the image crate's JPEG encoder.
//!
//! Settings follow ../shared/reference/kodak_classic_rd.csv, which was measured with the same
//! Debian tools on this kind of machine:
//!
//! | codec | encoder call | decoder | setting ladder |
//! |---|---|---|---|
//! | jpeg | `cjpeg -quality Q -optimize` (4:2:0) | djpeg | Q = 3 .. 95 |
//! | webp | `cwebp -q Q -m 6` | dwebp | Q = 0 .. 100 |
//! | jpeg2000 | `opj_compress -r 24/B` (.j2k codestream) | opj_decompress | B = 0.08 .. 4 bpp |
//! | avif | `avifenc --min Q --max Q -s 4` | avifdec | quantizer Q = 63 .. 8 |
//! | jxl | `cjxl -d D` (effort 7) | djxl | distance D = 16 .. 0.3 |
//! | hevc444_heic | `heif-enc -q Q -p chroma=444` (x265) | heif-convert | Q = 10 .. 65 |
//! | jpeg_image_rs | `image::codecs::jpeg::JpegEncoder` quality Q | image crate | Q = 2 .. 95 |
//!
//! Times are wall-clock seconds of the tool's process (start-up included), so they compare
//! codecs only roughly.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use image::RgbImage;

use super::{Decoded, RdCodec};
use crate::{Error, Result};

/// A classic codec driven through its command-line encoder and decoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    /// libjpeg-turbo `cjpeg` / `djpeg`.
    Jpeg,
    /// libwebp `cwebp` / `dwebp`.
    Webp,
    /// OpenJPEG `opj_compress` / `opj_decompress`.
    Jpeg2000,
    /// libavif `avifenc` / `avifdec` (libaom).
    Avif,
    /// libjxl `cjxl` / `djxl`.
    Jxl,
    /// libheif `heif-enc` / `heif-convert` (x265, 4:4:4).
    Heic,
}

impl Tool {
    /// Every tool, in table order.
    pub const ALL: [Tool; 6] = [
        Tool::Jpeg,
        Tool::Webp,
        Tool::Jpeg2000,
        Tool::Avif,
        Tool::Jxl,
        Tool::Heic,
    ];

    /// Codec name in `results.csv` (the reference's names).
    pub fn name(self) -> &'static str {
        match self {
            Tool::Jpeg => "jpeg",
            Tool::Webp => "webp",
            Tool::Jpeg2000 => "jpeg2000",
            Tool::Avif => "avif",
            Tool::Jxl => "jxl",
            Tool::Heic => "hevc444_heic",
        }
    }

    /// Encoder and decoder executables.
    pub fn programs(self) -> [&'static str; 2] {
        match self {
            Tool::Jpeg => ["cjpeg", "djpeg"],
            Tool::Webp => ["cwebp", "dwebp"],
            Tool::Jpeg2000 => ["opj_compress", "opj_decompress"],
            Tool::Avif => ["avifenc", "avifdec"],
            Tool::Jxl => ["cjxl", "djxl"],
            Tool::Heic => ["heif-enc", "heif-convert"],
        }
    }

    /// The setting ladder of the reference table.
    pub fn ladder(self) -> &'static [&'static str] {
        match self {
            Tool::Jpeg => &[
                "3", "5", "8", "10", "15", "20", "30", "40", "50", "60", "70", "80", "85", "90",
                "95",
            ],
            Tool::Webp => &[
                "0", "5", "10", "20", "30", "40", "50", "60", "70", "80", "90", "95", "100",
            ],
            Tool::Jpeg2000 => &[
                "0.08", "0.12", "0.18", "0.25", "0.35", "0.5", "0.7", "1.0", "1.4", "2.0", "2.8",
                "4.0",
            ],
            Tool::Avif => &[
                "63", "58", "53", "48", "43", "38", "33", "28", "23", "18", "13", "8",
            ],
            Tool::Jxl => &[
                "16", "12", "9", "7", "5", "4", "3", "2", "1.5", "1.0", "0.7", "0.5", "0.3",
            ],
            Tool::Heic => &[
                "10", "15", "20", "25", "30", "35", "40", "45", "50", "55", "60", "65",
            ],
        }
    }

    /// The tool's version as it reports it ("libjpeg-turbo 2.1.5", "libavif 0.11.1, aom
    /// v3.6.0"), or None when the tool is missing or says nothing recognisable.
    pub fn version(self) -> Option<String> {
        let [enc, _] = self.programs();
        let arg = match self {
            Tool::Jpeg | Tool::Webp => "-version",
            Tool::Jpeg2000 => "-h",
            Tool::Avif | Tool::Jxl | Tool::Heic => "--version",
        };
        let out = Command::new(enc)
            .arg(arg)
            .stdin(std::process::Stdio::null())
            .output()
            .ok()?;
        let text = format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        parse_version(self, &text)
    }

    /// Whether both executables are on PATH.
    pub fn available(self) -> bool {
        self.programs().iter().all(|p| on_path(p))
    }

    /// Extension of the coded file.
    fn ext(self) -> &'static str {
        match self {
            Tool::Jpeg => "jpg",
            Tool::Webp => "webp",
            Tool::Jpeg2000 => "j2k",
            Tool::Avif => "avif",
            Tool::Jxl => "jxl",
            Tool::Heic => "heic",
        }
    }

    /// Encoder command for `setting`, reading `ppm` or `png`, writing `out`.
    fn encode_cmd(self, setting: &str, ppm: &Path, png: &Path, out: &Path) -> Result<Command> {
        let [enc, _] = self.programs();
        let mut c = Command::new(enc);
        match self {
            Tool::Jpeg => {
                c.args(["-quality", setting, "-optimize", "-outfile"])
                    .arg(out)
                    .arg(ppm);
            }
            Tool::Webp => {
                c.args(["-quiet", "-q", setting, "-m", "6"])
                    .arg(png)
                    .arg("-o")
                    .arg(out);
            }
            Tool::Jpeg2000 => {
                let bpp: f64 =
                    setting
                        .parse()
                        .ok()
                        .filter(|b: &f64| *b > 0.0)
                        .ok_or_else(|| {
                            Error::param(format!("jpeg2000 setting {setting:?} (expected bpp > 0)"))
                        })?;
                c.arg("-i")
                    .arg(ppm)
                    .arg("-o")
                    .arg(out)
                    .args(["-r", &format!("{}", 24.0 / bpp)]);
            }
            Tool::Avif => {
                c.args(["--min", setting, "--max", setting])
                    .args(AVIF_EXTRA)
                    .arg(png)
                    .arg(out);
            }
            Tool::Jxl => {
                c.arg(png).arg(out).args(["-d", setting]);
            }
            Tool::Heic => {
                c.args(["-q", setting, "-p", "chroma=444"])
                    .arg(png)
                    .arg("-o")
                    .arg(out);
            }
        }
        Ok(c)
    }

    /// Decoder command from `coded` to `out` (PPM or PNG by extension).
    fn decode_cmd(self, coded: &Path, out: &Path) -> Command {
        let [_, dec] = self.programs();
        let mut c = Command::new(dec);
        match self {
            Tool::Jpeg => {
                c.arg("-outfile").arg(out).arg(coded);
            }
            Tool::Webp => {
                c.arg("-quiet").arg(coded).arg("-o").arg(out);
            }
            Tool::Jpeg2000 => {
                c.arg("-i").arg(coded).arg("-o").arg(out);
            }
            Tool::Avif | Tool::Jxl | Tool::Heic => {
                c.arg(coded).arg(out);
            }
        }
        c
    }

    /// Decoded-image file name the decoder writes.
    fn decoded_name(self) -> &'static str {
        match self {
            Tool::Jpeg | Tool::Jpeg2000 => "dec.ppm",
            _ => "dec.png",
        }
    }
}

/// The word after `key` in `text` (up to a space, comma, bracket or line end; a final full
/// stop dropped).
fn word_after<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let i = text.find(key)? + key.len();
    let w = text[i..]
        .trim_start()
        .split(|c: char| c.is_whitespace() || c == ',' || c == '(' || c == ')' || c == '[')
        .next()?
        .trim_end_matches('.');
    (!w.is_empty()).then_some(w)
}

/// The version in a tool's `-version` / `--version` / `-h` text.
fn parse_version(tool: Tool, text: &str) -> Option<String> {
    let v = match tool {
        Tool::Jpeg => format!(
            "libjpeg-turbo {}",
            word_after(text, "libjpeg-turbo version")?
        ),
        Tool::Webp => {
            let w = text.split_whitespace().next()?;
            if !w.starts_with(|c: char| c.is_ascii_digit()) {
                return None;
            }
            format!("libwebp {w}")
        }
        Tool::Jpeg2000 => format!(
            "OpenJPEG {}",
            word_after(text, "openjp2 library")?.trim_start_matches('v')
        ),
        Tool::Avif => {
            let lib = word_after(text, "Version:")?;
            match word_after(text, "aom [enc/dec]:") {
                Some(aom) => format!("libavif {lib}, aom {aom}"),
                None => format!("libavif {lib}"),
            }
        }
        Tool::Jxl => format!(
            "libjxl {}",
            word_after(text, "cjxl")?.trim_start_matches('v')
        ),
        Tool::Heic => format!("libheif {}, x265", word_after(text, "libheif version:")?),
    };
    Some(v)
}

/// The version of the classic codec named `name` in `results.csv`, as the tools on PATH report
/// it now (the image crate's encoder has none to report).
pub fn version_of(name: &str) -> Option<String> {
    Tool::ALL
        .into_iter()
        .find(|t| t.name() == name)
        .filter(|t| t.available())
        .and_then(Tool::version)
}

/// Extra avifenc arguments: speed 4 (the default, 6, is 0.4 dB below the reference table).
const AVIF_EXTRA: &[&str] = &["-s", "4"];

/// Whether `program` is an executable file in a PATH directory.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|d| {
            let p = d.join(program);
            p.is_file()
                && std::fs::metadata(&p)
                    .map(|m| {
                        use std::os::unix::fs::PermissionsExt;
                        m.permissions().mode() & 0o111 != 0
                    })
                    .unwrap_or(false)
        })
    })
}

/// A scratch folder removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Scratch> {
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "ddpmc-bench-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p)?;
        Ok(Scratch(p))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(mut c: Command) -> Result<f64> {
    let t = Instant::now();
    let out = c.output()?;
    let s = t.elapsed().as_secs_f64();
    if !out.status.success() {
        return Err(Error::param(format!(
            "{:?} failed ({}): {}",
            c,
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(s)
}

/// Writes binary PPM (P6), the input cjpeg and opj_compress read.
fn write_ppm(img: &RgbImage, path: &Path) -> Result<()> {
    let mut data = format!("P6\n{} {}\n255\n", img.width(), img.height()).into_bytes();
    data.extend_from_slice(img.as_raw());
    std::fs::write(path, data)?;
    Ok(())
}

/// A classic codec run through its command-line tools.
#[derive(Clone, Debug)]
pub struct CliCodec {
    tool: Tool,
    settings: Vec<String>,
}

impl CliCodec {
    /// `tool` over its reference ladder.
    pub fn new(tool: Tool) -> CliCodec {
        CliCodec {
            tool,
            settings: tool.ladder().iter().map(|s| s.to_string()).collect(),
        }
    }

    /// `tool` over the given settings.
    pub fn with_settings(tool: Tool, settings: Vec<String>) -> CliCodec {
        CliCodec { tool, settings }
    }
}

impl RdCodec for CliCodec {
    fn name(&self) -> &str {
        self.tool.name()
    }

    fn version(&self) -> Option<String> {
        self.tool.version()
    }

    fn points(&self, img: &RgbImage) -> Result<Vec<Decoded>> {
        let dir = Scratch::new()?;
        let ppm = dir.0.join("in.ppm");
        let png = dir.0.join("in.png");
        write_ppm(img, &ppm)?;
        img.save(&png)?;
        let coded = dir.0.join(format!("coded.{}", self.tool.ext()));
        let dec = dir.0.join(self.tool.decoded_name());
        let mut out = Vec::with_capacity(self.settings.len());
        for s in &self.settings {
            let enc_s = run(self.tool.encode_cmd(s, &ppm, &png, &coded)?)?;
            let bytes = std::fs::metadata(&coded)?.len();
            let dec_s = run(self.tool.decode_cmd(&coded, &dec))?;
            let image = image::open(&dec)?.to_rgb8();
            if image.dimensions() != img.dimensions() {
                return Err(Error::param(format!(
                    "{} at {s} decoded to {:?} (expected {:?})",
                    self.tool.name(),
                    image.dimensions(),
                    img.dimensions()
                )));
            }
            out.push(Decoded {
                setting: s.clone(),
                bytes,
                image,
                enc_s,
                dec_s,
            });
        }
        Ok(out)
    }
}

/// The image crate's baseline JPEG encoder (4:2:0), decoded by the image crate.
#[derive(Clone, Debug)]
pub struct ImageRsJpeg {
    qualities: Vec<u8>,
}

impl ImageRsJpeg {
    /// Codec name in `results.csv`.
    pub const NAME: &'static str = "jpeg_image_rs";

    /// The default ladder, qualities 2 .. 95.
    pub fn new() -> ImageRsJpeg {
        ImageRsJpeg {
            qualities: vec![2, 3, 5, 8, 10, 15, 20, 30, 40, 50, 60, 70, 80, 85, 90, 95],
        }
    }
}

impl Default for ImageRsJpeg {
    fn default() -> Self {
        Self::new()
    }
}

impl RdCodec for ImageRsJpeg {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn points(&self, img: &RgbImage) -> Result<Vec<Decoded>> {
        self.qualities
            .iter()
            .map(|&q| {
                let t = Instant::now();
                let mut buf = Vec::new();
                image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, q)
                    .encode_image(img)?;
                let enc_s = t.elapsed().as_secs_f64();
                let t = Instant::now();
                let image =
                    image::load_from_memory_with_format(&buf, image::ImageFormat::Jpeg)?.to_rgb8();
                let dec_s = t.elapsed().as_secs_f64();
                Ok(Decoded {
                    setting: q.to_string(),
                    bytes: buf.len() as u64,
                    image,
                    enc_s,
                    dec_s,
                })
            })
            .collect()
    }
}

/// Every classic codec available here: the CLI tools found on PATH (optionally only those
/// named in `only`) and always the image crate's JPEG. Returns the codecs and the names of
/// tools that were asked for but are missing.
pub fn available_codecs(only: Option<&[String]>) -> (Vec<Box<dyn RdCodec>>, Vec<&'static str>) {
    let wanted = |name: &str| only.is_none_or(|o| o.iter().any(|x| x == name));
    let mut codecs: Vec<Box<dyn RdCodec>> = Vec::new();
    let mut missing = Vec::new();
    for t in Tool::ALL {
        if !wanted(t.name()) {
            continue;
        }
        if t.available() {
            codecs.push(Box::new(CliCodec::new(t)));
        } else {
            missing.push(t.name());
        }
    }
    if wanted(ImageRsJpeg::NAME) {
        codecs.push(Box::new(ImageRsJpeg::new()));
    }
    (codecs, missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img() -> RgbImage {
        RgbImage::from_fn(48, 32, |x, y| {
            image::Rgb([(x * 5) as u8, (y * 7) as u8, ((x + y) * 3) as u8])
        })
    }

    #[test]
    fn image_rs_jpeg_rate_grows_with_quality() {
        let c = ImageRsJpeg {
            qualities: vec![10, 90],
        };
        let p = c.points(&img()).unwrap();
        assert_eq!(p.len(), 2);
        assert!(p[0].bytes < p[1].bytes);
        assert_eq!(p[1].image.dimensions(), (48, 32));
        let rows = crate::bench::measure(&c, "x.png", &img()).unwrap();
        assert!(rows[0].psnr < rows[1].psnr);
        assert!(rows[0].ms_ssim.is_nan()); // too small for 5 scales
    }

    #[test]
    fn ladders_and_names_are_consistent() {
        for t in Tool::ALL {
            assert!(t.ladder().len() >= 12, "{}", t.name());
        }
        assert!(!on_path("surely-not-a-real-program-name"));
        let (codecs, _) = available_codecs(Some(&["jpeg_image_rs".to_string()]));
        assert_eq!(codecs.len(), 1);
    }

    #[test]
    fn versions_are_read_from_the_tools_texts() {
        let v = |t, s: &str| parse_version(t, s);
        assert_eq!(
            v(Tool::Jpeg, "libjpeg-turbo version 2.1.5 (build 20230203)\n").as_deref(),
            Some("libjpeg-turbo 2.1.5")
        );
        assert_eq!(v(Tool::Webp, "1.2.4\n").as_deref(), Some("libwebp 1.2.4"));
        assert_eq!(v(Tool::Webp, "Usage: cwebp\n"), None);
        assert_eq!(
            v(
                Tool::Jpeg2000,
                "\nThis is opj_compress.\nIt has been compiled against openjp2 library v2.5.0.\n"
            )
            .as_deref(),
            Some("OpenJPEG 2.5.0")
        );
        assert_eq!(
            v(
                Tool::Avif,
                "Version: 0.11.1 (dav1d [dec]:1.0.0, aom [enc/dec]:v3.6.0, rav1e [enc]:0.5.1)\n"
            )
            .as_deref(),
            Some("libavif 0.11.1, aom v3.6.0")
        );
        assert_eq!(
            v(Tool::Jxl, "cjxl v0.7.0 [AVX3,AVX2]\nCopyright").as_deref(),
            Some("libjxl 0.7.0")
        );
        assert_eq!(
            v(
                Tool::Heic,
                "heif-enc: unrecognized option\n heif-enc  libheif version: 1.15.1\n"
            )
            .as_deref(),
            Some("libheif 1.15.1, x265")
        );
        assert_eq!(v(Tool::Jxl, ""), None);
        assert_eq!(version_of("jpeg_image_rs"), None);
    }

    #[test]
    fn cli_tools_when_present() {
        // Runs only where the tool is installed; checks the call works end to end.
        for t in [Tool::Jpeg, Tool::Jpeg2000] {
            if !t.available() {
                continue;
            }
            let c = CliCodec::with_settings(t, vec![t.ladder()[7].to_string()]);
            let p = c.points(&img()).unwrap();
            assert_eq!(p.len(), 1);
            assert!(p[0].bytes > 0);
        }
    }
}
