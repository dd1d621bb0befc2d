//! Bench stage: the `ddpmc bench` driver — dataset in, results folder out.
//!
//! Output folder:
//! - `results.csv`: `codec,setting,image,bpp,psnr,ms_ssim,ssimulacra2,enc_s,dec_s`, one row
//!   per image and rate point (rewritten after every codec x image, so an interrupted run keeps
//!   its rows); a metric that cannot be measured on an image is `n/a`;
//! - `<codec>.json`: per codec, CompressAI's results layout (`name`, `description`, `results`
//!   with the arrays `bpp`, `psnr-rgb`, `ms-ssim`, `ssimulacra2` over the codec's settings)
//!   plus the same arrays per image (`per_image`); `null` = not measured or not finite;
//! - `summary.md`, `summary.csv`: every codec at 0.25 / 0.5 / 1 / 2 bpp, and (md) the codecs'
//!   versions;
//! - `bd.md`, `bd.csv`: BD-rate and BD-PSNR of the progressive codec against each other codec
//!   (BD-rate on PSNR, MS-SSIM and SSIMULACRA2);
//! - `rd_psnr.{svg,png}`, `rd_msssim.{svg,png}`, `rd_ssimulacra2.{svg,png}`: the
//!   rate-distortion plots, legends with the codecs' versions;
//! - `filmstrip.png`: the first image decoded after each step (progressive codec only);
//! - `reference.md`: the classic rows against a reference interp table, when one is given.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use image::RgbImage;
use indicatif::{ProgressBar, ProgressStyle};

use super::plot::{self, Frame};
use super::rd::{self, Metric};
use super::{report, Decoded, RdCodec, Row};
use crate::{Error, FileOp, Result};

/// What to run and where to write.
pub struct BenchConfig {
    /// Folder of images (every format of [`IMAGE_EXTENSIONS`]).
    pub dataset: PathBuf,
    /// Output folder (created).
    pub out: PathBuf,
    /// Use only the first N images (sorted by name).
    pub limit: Option<usize>,
    /// Classic codecs to run (empty: none).
    pub classic: Vec<Box<dyn RdCodec>>,
    /// Stored classic rows to use instead of running `classic` (rows of images outside the
    /// selection, and rows of the progressive codec, are dropped).
    pub classic_rows: Option<Vec<Row>>,
    /// The progressive codec under test (ddpmc), whose points are `<preset>/<step>`.
    pub progressive: Option<Box<dyn RdCodec>>,
    /// Name of the progressive codec in tables (BD anchor side, filmstrip).
    pub progressive_name: String,
    /// Reference interp table (`codec,target_bpp,psnr,ms_ssim`) to compare with, if any.
    pub reference: Option<PathBuf>,
    /// Show a progress bar.
    pub progress: bool,
    /// The image of the filmstrip (file name); None: the first.
    pub filmstrip: Option<String>,
}

/// What a run produced, for the caller to print.
pub struct BenchOutcome {
    /// All rows.
    pub rows: Vec<Row>,
    /// The summary table (markdown).
    pub summary_md: String,
    /// The BD table (markdown).
    pub bd_md: String,
    /// Largest |dPSNR| against the reference table, when compared.
    pub reference_max_dpsnr: Option<f64>,
}

/// Extensions of the image formats the bench reads (the image crate's decoders this build
/// has).
pub const IMAGE_EXTENSIONS: [&str; 12] = [
    "png", "jpg", "jpeg", "bmp", "tif", "tiff", "ppm", "pgm", "pnm", "webp", "gif", "tga",
];

/// Image files of `dir` (every format of [`IMAGE_EXTENSIONS`]), sorted by name, at most
/// `limit`; other files are named in a note on stderr, not silently dropped.
pub fn list_images(dir: &Path, limit: Option<usize>) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::file(FileOp::ReadDir, dir, e))?;
    let mut v = Vec::new();
    let mut skipped = Vec::new();
    for p in rd.filter_map(|e| e.ok().map(|e| e.path())) {
        if !p.is_file() {
            continue;
        }
        let ext = p
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase())
            .unwrap_or_default();
        if IMAGE_EXTENSIONS.contains(&ext.as_str()) {
            v.push(p);
        } else {
            skipped.push(file_name(&p));
        }
    }
    v.sort();
    skipped.sort();
    if !skipped.is_empty() {
        eprintln!(
            "note: {} file(s) in {} are not images the bench reads, skipped: {}",
            skipped.len(),
            dir.display(),
            skipped.join(", ")
        );
    }
    if let Some(n) = limit {
        v.truncate(n);
    }
    if v.is_empty() {
        return Err(Error::param(format!(
            "no images in {} (it reads {})",
            dir.display(),
            IMAGE_EXTENSIONS.join(", ")
        )));
    }
    Ok(v)
}

/// The dataset's name for titles: its folder name, "Kodak" for kodak.
pub fn dataset_name(dir: &Path) -> String {
    let n = file_name(dir);
    if n.eq_ignore_ascii_case("kodak") {
        "Kodak".into()
    } else {
        n
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text)?;
    Ok(())
}

/// Frames of the filmstrip: the original, then the points of the preset with the most steps,
/// in step order, with bpp and PSNR.
fn filmstrip_frames(decoded: &[Decoded], original: &RgbImage, name: &str) -> Vec<Frame> {
    let pixels = f64::from(original.width()) * f64::from(original.height());
    let preset = |d: &Decoded| d.setting.split('/').next().unwrap_or("").to_string();
    let mut best: Option<(String, usize)> = None;
    for d in decoded {
        let p = preset(d);
        let n = decoded.iter().filter(|e| preset(e) == p).count();
        if best.as_ref().is_none_or(|b| n > b.1) {
            best = Some((p, n));
        }
    }
    let Some((p, _)) = best else {
        return Vec::new();
    };
    let mut frames = vec![Frame {
        image: original.clone(),
        caption: format!("{name} (original)"),
    }];
    frames.extend(decoded.iter().filter(|d| preset(d) == p).map(|d| {
        let psnr = super::metrics::psnr(original, &d.image).unwrap_or(f64::NAN);
        Frame {
            image: d.image.clone(),
            caption: format!(
                "step {}: {:.3} bpp, {}",
                d.setting.split('/').nth(1).unwrap_or("?"),
                d.bytes as f64 * 8.0 / pixels,
                if psnr.is_finite() {
                    format!("{psnr:.2} dB")
                } else {
                    "exact".into()
                }
            ),
        }
    }));
    frames
}

/// Runs the bench and writes the output folder.
pub fn run_bench(cfg: BenchConfig) -> Result<BenchOutcome> {
    let paths = list_images(&cfg.dataset, cfg.limit)?;
    let names: Vec<String> = paths.iter().map(|p| file_name(p)).collect();
    std::fs::create_dir_all(&cfg.out).map_err(|e| Error::file(FileOp::CreateDir, &cfg.out, e))?;
    let results = cfg.out.join("results.csv");

    let mut rows: Vec<Row> = Vec::new();
    if let Some(stored) = &cfg.classic_rows {
        rows.extend(
            stored
                .iter()
                .filter(|r| r.codec != cfg.progressive_name && names.contains(&r.image))
                .cloned(),
        );
        for n in &names {
            if !rows.iter().any(|r| &r.image == n) {
                eprintln!("warning: no stored classic rows for {n}");
            }
        }
    }
    let classic: &[Box<dyn RdCodec>] = if cfg.classic_rows.is_some() {
        &[]
    } else {
        &cfg.classic
    };
    let units = (classic.len() + usize::from(cfg.progressive.is_some())) * paths.len();
    let bar = if cfg.progress {
        ProgressBar::new(units as u64)
    } else {
        ProgressBar::hidden()
    };
    // Without a terminal (nohup, CI) the bar draws nothing: print a plain line per unit.
    let plain = cfg.progress && bar.is_hidden();
    let started = std::time::Instant::now();
    let mut done = 0usize;
    let mut line = |what: &str| {
        done += 1;
        if plain {
            eprintln!(
                "bench: {done}/{units} {what} ({:.0} s)",
                started.elapsed().as_secs_f64()
            );
        }
    };
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} (eta {eta}) {msg}")
            .map_err(|e| Error::param(e.to_string()))?
            .progress_chars("=> "),
    );

    let mut frames = Vec::new();
    for (path, name) in paths.iter().zip(&names) {
        let img: RgbImage = image::open(path)
            .map_err(|e| Error::image_file(FileOp::Read, path, e))?
            .to_rgb8();
        for codec in classic {
            bar.set_message(format!("{} {name}", codec.name()));
            rows.extend(super::measure(codec.as_ref(), name, &img)?);
            bar.inc(1);
            line(&format!("{} {name}", codec.name()));
            write(&results, &report::results_csv(&rows))?;
        }
        if let Some(codec) = &cfg.progressive {
            bar.set_message(format!("{} {name}", codec.name()));
            let decoded = codec.points(&img)?;
            rows.extend(super::rows_for(codec.name(), name, &img, &decoded)?);
            let chosen = cfg
                .filmstrip
                .as_deref()
                .map_or(frames.is_empty(), |f| f == name);
            if chosen {
                frames = filmstrip_frames(&decoded, &img, name);
            }
            bar.inc(1);
            line(&format!("{} {name}", codec.name()));
            write(&results, &report::results_csv(&rows))?;
        }
    }
    bar.finish_and_clear();
    if let (Some(f), true) = (&cfg.filmstrip, frames.is_empty()) {
        eprintln!("warning: no image named {f} in the dataset: no filmstrip");
    }
    let versions: BTreeMap<String, String> = classic
        .iter()
        .chain(cfg.progressive.iter())
        .filter_map(|c| Some((c.name().to_string(), c.version()?)))
        .collect();
    write_reports(
        rows,
        paths.len(),
        &frames,
        &cfg.out,
        &cfg.progressive_name,
        cfg.reference.as_deref(),
        Some(&dataset_name(&cfg.dataset)),
        versions,
    )
}

/// Notes on stderr for metrics that could not be measured on some images.
fn note_unmeasured(rows: &[Row]) {
    for (what, f) in [
        (
            "MS-SSIM (it needs both sides >= 161 pixels)",
            (|r: &Row| r.ms_ssim) as fn(&Row) -> f64,
        ),
        ("SSIMULACRA2", |r: &Row| r.ssimulacra2),
    ] {
        let mut images: Vec<&str> = rows
            .iter()
            .filter(|r| f(r).is_nan())
            .map(|r| r.image.as_str())
            .collect();
        images.sort_unstable();
        images.dedup();
        if !images.is_empty() {
            eprintln!(
                "note: {what} is n/a on {} image(s): {}",
                images.len(),
                images.join(", ")
            );
        }
    }
}

/// Writes every output file from finished rows (`images`: how many images they cover;
/// `frames`: the filmstrip, none to skip it; `versions`: codec -> version of the codecs that
/// ran, completed here with the versions of the classic tools on PATH). Used by
/// [`run_bench`], and alone to redo the tables and plots of a stored `results.csv`.
#[allow(clippy::too_many_arguments)]
pub fn write_reports(
    rows: Vec<Row>,
    images: usize,
    frames: &[Frame],
    out: &Path,
    progressive_name: &str,
    reference: Option<&Path>,
    dataset: Option<&str>,
    mut versions: BTreeMap<String, String>,
) -> Result<BenchOutcome> {
    std::fs::create_dir_all(out).map_err(|e| Error::file(FileOp::CreateDir, out, e))?;
    write(&out.join("results.csv"), &report::results_csv(&rows))?;
    note_unmeasured(&rows);
    let curves = rd::mean_curves(&rows);
    for codec in curves.keys() {
        if !versions.contains_key(codec) {
            if let Some(v) = super::classic::version_of(codec) {
                versions.insert(codec.clone(), v);
            }
        }
    }
    let on = match dataset {
        Some(d) => format!("{d} ({images} images)"),
        None => format!("{images} images"),
    };
    for codec in curves.keys() {
        let version = versions.get(codec).map(String::as_str);
        let json = report::codec_json(codec, version, &on, &rows);
        write(
            &out.join(format!("{}.json", report::file_stem(codec))),
            &json,
        )?;
    }
    let summary = report::summary(&curves);
    let summary_md = report::summary_md(&summary, images, &versions);
    write(&out.join("summary.md"), &summary_md)?;
    write(&out.join("summary.csv"), &report::summary_csv(&summary))?;
    let bd = report::bd_table(&curves, progressive_name);
    let bd_md = report::bd_md(progressive_name, &bd);
    write(&out.join("bd.md"), &bd_md)?;
    write(&out.join("bd.csv"), &report::bd_csv(progressive_name, &bd))?;
    for (metric, name, stem) in [
        (Metric::Psnr, "PSNR", "rd_psnr"),
        (Metric::MsSsim, "MS-SSIM", "rd_msssim"),
        (Metric::Ssimulacra2, "SSIMULACRA2", "rd_ssimulacra2"),
    ] {
        plot::rd_plot(
            &curves,
            metric,
            progressive_name,
            &versions,
            &format!("{on}: {name}"),
            &out.join(stem),
        )?;
    }
    if !frames.is_empty() {
        plot::filmstrip(frames)?.save(out.join("filmstrip.png"))?;
    }
    let mut reference_max_dpsnr = None;
    if let Some(r) = reference.filter(|r| r.is_file()) {
        let text = std::fs::read_to_string(r).map_err(|e| Error::file(FileOp::Read, r, e))?;
        let table = report::parse_interp_csv(&text)?;
        let (md, worst) = report::compare_with_reference(&summary, &table);
        let text = format!(
            "# Classic codecs against {}\n\n{} images here. Largest |dPSNR|: {worst:.3} dB.\n\n{md}",
            r.display(),
            images
        );
        write(&out.join("reference.md"), &text)?;
        reference_max_dpsnr = Some(worst);
    }
    Ok(BenchOutcome {
        rows,
        summary_md,
        bd_md,
        reference_max_dpsnr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::classic::ImageRsJpeg;

    /// A fake progressive codec: two presets, steps = quantised copies of the image.
    struct Fake;

    impl RdCodec for Fake {
        fn name(&self) -> &str {
            "ddpmc"
        }
        fn points(&self, img: &RgbImage) -> Result<Vec<Decoded>> {
            let mut out = Vec::new();
            for (preset, steps) in [("q1", 1u32), ("q3", 3)] {
                for s in 1..=steps {
                    let q = 64u32 >> (2 * s);
                    let mut im = img.clone();
                    im.iter_mut()
                        .for_each(|v| *v = ((*v as u32 / q.max(1)) * q.max(1)) as u8);
                    out.push(Decoded {
                        setting: format!("{preset}/{s}"),
                        bytes: (img.width() * img.height() / 40 * s) as u64,
                        image: im,
                        enc_s: 0.0,
                        dec_s: 0.0,
                    });
                }
            }
            Ok(out)
        }
    }

    #[test]
    fn end_to_end_on_a_tiny_dataset() {
        let base = std::env::temp_dir().join(format!("ddpmc-run-test-{}", std::process::id()));
        let data = base.join("data");
        std::fs::create_dir_all(&data).unwrap();
        for i in 0..3u32 {
            RgbImage::from_fn(96, 64, |x, y| {
                image::Rgb([(x * 2 + i * 9) as u8, (y * 3) as u8, ((x ^ y) * 2) as u8])
            })
            .save(data.join(format!("img{i}.png")))
            .unwrap();
        }
        std::fs::write(data.join("notes.txt"), "not an image").unwrap();
        let out = base.join("out");
        let cfg = BenchConfig {
            dataset: data.clone(),
            out: out.clone(),
            limit: Some(2),
            classic: vec![Box::new(ImageRsJpeg::new())],
            classic_rows: None,
            progressive: Some(Box::new(Fake)),
            progressive_name: "ddpmc".into(),
            reference: None,
            progress: false,
            filmstrip: Some("img1.png".into()),
        };
        let o = run_bench(cfg).unwrap();
        assert_eq!(o.rows.iter().filter(|r| r.codec == "ddpmc").count(), 2 * 4);
        for f in [
            "results.csv",
            "summary.md",
            "summary.csv",
            "bd.md",
            "bd.csv",
            "rd_psnr.svg",
            "rd_psnr.png",
            "rd_msssim.svg",
            "rd_msssim.png",
            "rd_ssimulacra2.svg",
            "rd_ssimulacra2.png",
            "filmstrip.png",
            "ddpmc.json",
            "jpeg_image_rs.json",
        ] {
            assert!(out.join(f).is_file(), "{f}");
        }
        // The JSON holds the mean arrays and one entry per image, in CompressAI's layout.
        let j: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("ddpmc.json")).unwrap())
                .unwrap();
        assert_eq!(j["name"], "ddpmc");
        assert!(j["description"].as_str().unwrap().contains("2 images"));
        for k in ["bpp", "psnr-rgb", "ms-ssim", "ssimulacra2"] {
            assert_eq!(j["results"][k].as_array().unwrap().len(), 4, "{k}");
            assert_eq!(
                j["per_image"]["img1.png"][k].as_array().unwrap().len(),
                4,
                "{k}"
            );
        }
        // 96x64 is too small for MS-SSIM: null, not a number; SSIMULACRA2 is measured.
        assert!(j["results"]["ms-ssim"][0].is_null());
        assert!(j["results"]["ssimulacra2"][0].is_f64());
        assert!(o
            .rows
            .iter()
            .all(|r| r.ms_ssim.is_nan() && r.ssimulacra2.is_finite()));
        assert!(o.summary_md.contains("| ddpmc | n/a | n/a | n/a | n/a |"));
        // The filmstrip: the chosen image's original and its four points, three per row.
        let strip = image::open(out.join("filmstrip.png")).unwrap();
        let cols = 3;
        assert_eq!(strip.width(), 6 + cols * (plot::FRAME_WIDTH + 6));
        let back = report::read_results_csv(&out.join("results.csv")).unwrap();
        assert_eq!(back.len(), o.rows.len());
        // Reusing the stored classic rows gives the same classic rows.
        let cfg = BenchConfig {
            dataset: data,
            out: base.join("out2"),
            limit: Some(1),
            classic: Vec::new(),
            classic_rows: Some(back),
            progressive: None,
            progressive_name: "ddpmc".into(),
            reference: None,
            progress: false,
            filmstrip: None,
        };
        let o2 = run_bench(cfg).unwrap();
        assert!(o2
            .rows
            .iter()
            .all(|r| r.image == "img0.png" && r.codec != "ddpmc"));
        assert!(!o2.rows.is_empty());
        assert!(list_images(&base.join("missing"), None).is_err());
        std::fs::remove_dir_all(&base).unwrap();
    }
}

#[cfg(test)]
mod list_tests {
    use super::*;

    #[test]
    fn every_image_format_is_listed_and_others_are_not() {
        let d = std::env::temp_dir().join(format!("ddpmc-list-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        for f in ["b.JPG", "a.png", "c.webp", "notes.txt", "d.tiff"] {
            std::fs::write(d.join(f), b"x").unwrap();
        }
        let names: Vec<String> = list_images(&d, None)
            .unwrap()
            .iter()
            .map(|p| file_name(p))
            .collect();
        assert_eq!(names, ["a.png", "b.JPG", "c.webp", "d.tiff"]);
        assert_eq!(list_images(&d, Some(2)).unwrap().len(), 2);
        std::fs::remove_dir_all(&d).unwrap();
        assert!(list_images(&d, None).is_err());
    }
}
