//! `ddpmc bench --lossless`: lossless sizes of ddpmc next to PNG, WebP lossless and JPEG XL,
//! per image, with every file decoded back and compared with the source.
//!
//! - ddpmc: `--lossless` (the prefix of 0..=7 steps with the smallest file) and, per
//!   `--settings q<N>L`, a fixed progressive prefix of N steps;
//! - PNG: the image crate's encoder at its best compression with adaptive filters;
//! - WebP lossless: `cwebp -lossless -exact -m 6 -q 100` (where cwebp and dwebp are on PATH);
//! - JPEG XL: `cjxl -d 0 -e 7` (where cjxl and djxl are on PATH).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use image::RgbImage;

use super::classic::on_path;
use crate::codec::{decode, encode, EncodeOptions, Recon};
use crate::model::Denoiser;
use crate::{Error, Result};

/// One lossless file: codec, image, size and wall times.
#[derive(Clone, Debug)]
pub struct LosslessRow {
    /// Codec and setting.
    pub codec: String,
    /// Image file name.
    pub image: String,
    /// Pixels.
    pub pixels: usize,
    /// File bytes.
    pub bytes: usize,
    /// Encode wall time, seconds.
    pub encode_s: f64,
    /// Decode wall time, seconds.
    pub decode_s: f64,
}

impl LosslessRow {
    /// Bits per pixel.
    pub fn bpp(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.pixels as f64
    }
}

fn mismatch(codec: &str, image: &str) -> Error {
    Error::Image(format!(
        "{codec} did not give back the exact image of {image} (lossless bench)"
    ))
}

/// ddpmc with `quality` steps (None: the prefix search).
fn run_ddpmc(
    model: &dyn Denoiser,
    img: &RgbImage,
    name: &str,
    quality: Option<u8>,
) -> Result<LosslessRow> {
    let opts = EncodeOptions {
        quality: quality.unwrap_or(5),
        lossless: true,
        prefix_search: quality.is_none(),
        ..Default::default()
    };
    let dynimg = image::DynamicImage::ImageRgb8(img.clone());
    let t = Instant::now();
    let bytes = encode(&dynimg, model, &opts)?;
    let encode_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let out = decode(&bytes, model, None, Recon::Denoise)?;
    let decode_s = t.elapsed().as_secs_f64();
    let codec = match quality {
        None => "ddpmc --lossless".to_string(),
        Some(q) => format!("ddpmc --lossless -q {q}"),
    };
    if !out.lossless || out.image.to_rgb8().as_raw() != img.as_raw() {
        return Err(mismatch(&codec, name));
    }
    Ok(LosslessRow {
        codec,
        image: name.into(),
        pixels: img.len() / 3,
        bytes: bytes.len(),
        encode_s,
        decode_s,
    })
}

fn run_png(img: &RgbImage, name: &str) -> Result<LosslessRow> {
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    use image::ImageEncoder;
    let t = Instant::now();
    let mut buf = Vec::new();
    PngEncoder::new_with_quality(&mut buf, CompressionType::Best, FilterType::Adaptive)
        .write_image(
            img.as_raw(),
            img.width(),
            img.height(),
            image::ExtendedColorType::Rgb8,
        )
        .map_err(|e| Error::Image(format!("PNG encoder: {e}")))?;
    let encode_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let back = image::load_from_memory(&buf)
        .map_err(|e| Error::Image(format!("PNG decoder: {e}")))?
        .to_rgb8();
    let decode_s = t.elapsed().as_secs_f64();
    if back.as_raw() != img.as_raw() {
        return Err(mismatch("PNG", name));
    }
    Ok(LosslessRow {
        codec: "PNG (image-rs, best)".into(),
        image: name.into(),
        pixels: img.len() / 3,
        bytes: buf.len(),
        encode_s,
        decode_s,
    })
}

/// One image as the command-line tools see it: its PNG, its pixels, its name, a work folder.
struct Job<'a> {
    src: &'a Path,
    img: &'a RgbImage,
    name: &'a str,
    tmp: &'a Path,
}

fn run_tool(codec: &str, enc: &[&str], dec: &str, ext: &str, job: &Job) -> Result<LosslessRow> {
    let Job {
        src,
        img,
        name,
        tmp,
    } = *job;
    let coded = tmp.join(format!("ll.{ext}"));
    let back_png = tmp.join("ll_back.png");
    let run = |c: &mut Command, what: &str| -> Result<()> {
        let o = c
            .output()
            .map_err(|e| Error::Image(format!("{what}: {e}")))?;
        if !o.status.success() {
            return Err(Error::Image(format!(
                "{what} failed on {name}: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            )));
        }
        Ok(())
    };
    let t = Instant::now();
    let mut c = Command::new(enc[0]);
    match enc[0] {
        "cwebp" => c.args(&enc[1..]).arg(src).arg("-o").arg(&coded),
        _ => c.arg(src).arg(&coded).args(&enc[1..]),
    };
    run(&mut c, enc[0])?;
    let encode_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut c = Command::new(dec);
    match dec {
        "dwebp" => c.arg(&coded).arg("-o").arg(&back_png),
        _ => c.arg(&coded).arg(&back_png),
    };
    run(&mut c, dec)?;
    let decode_s = t.elapsed().as_secs_f64();
    let back = image::open(&back_png)
        .map_err(|e| Error::Image(format!("{dec} output: {e}")))?
        .to_rgb8();
    if back.as_raw() != img.as_raw() {
        return Err(mismatch(codec, name));
    }
    let bytes = std::fs::metadata(&coded)?.len() as usize;
    Ok(LosslessRow {
        codec: codec.into(),
        image: name.into(),
        pixels: img.len() / 3,
        bytes,
        encode_s,
        decode_s,
    })
}

/// Measure every image of `images`: ddpmc (the prefix search, then each fixed prefix of
/// `prefixes`), PNG, and WebP lossless and JPEG XL where their tools are on PATH.
pub fn run_lossless(
    model: &dyn Denoiser,
    images: &[PathBuf],
    prefixes: &[u8],
    progress: &mut dyn FnMut(usize, usize, &str),
) -> Result<Vec<LosslessRow>> {
    let tmp = std::env::temp_dir().join(format!("ddpmc-bench-ll-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let webp = on_path("cwebp") && on_path("dwebp");
    let jxl = on_path("cjxl") && on_path("djxl");
    let mut rows = Vec::new();
    for (i, path) in images.iter().enumerate() {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        progress(i, images.len(), &name);
        let img = image::open(path)
            .map_err(|e| Error::image_file(crate::FileOp::Read, path, e))?
            .to_rgb8();
        // The tools read an 8-bit RGB PNG, so that every codec codes the same samples.
        let src = tmp.join("src.png");
        img.save(&src)
            .map_err(|e| Error::Image(format!("{}: {e}", src.display())))?;
        rows.push(run_ddpmc(model, &img, &name, None)?);
        for &q in prefixes {
            rows.push(run_ddpmc(model, &img, &name, Some(q))?);
        }
        rows.push(run_png(&img, &name)?);
        let job = Job {
            src: &src,
            img: &img,
            name: &name,
            tmp: &tmp,
        };
        if webp {
            rows.push(run_tool(
                "WebP lossless (cwebp -lossless -exact -m 6 -q 100)",
                &[
                    "cwebp",
                    "-quiet",
                    "-lossless",
                    "-exact",
                    "-m",
                    "6",
                    "-q",
                    "100",
                ],
                "dwebp",
                "webp",
                &job,
            )?);
        }
        if jxl {
            rows.push(run_tool(
                "JPEG XL (cjxl -d 0 -e 7)",
                &["cjxl", "--quiet", "-d", "0", "-e", "7"],
                "djxl",
                "jxl",
                &job,
            )?);
        }
    }
    progress(images.len(), images.len(), "");
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(rows)
}

/// The codecs of `rows` in first-seen order.
fn codecs(rows: &[LosslessRow]) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for r in rows {
        if !v.contains(&r.codec) {
            v.push(r.codec.clone());
        }
    }
    v
}

/// `lossless.csv`: one row per (image, codec).
pub fn to_csv(rows: &[LosslessRow]) -> String {
    let mut s = String::from("image,codec,pixels,bytes,bpp,encode_s,decode_s\n");
    for r in rows {
        s += &format!(
            "{},\"{}\",{},{},{:.4},{:.3},{:.3}\n",
            r.image,
            r.codec,
            r.pixels,
            r.bytes,
            r.bpp(),
            r.encode_s,
            r.decode_s
        );
    }
    s
}

/// `lossless.md`: mean bpp per codec with ratios to PNG and JPEG XL, then bpp per image.
pub fn to_markdown(rows: &[LosslessRow], dataset: &str) -> String {
    let cs = codecs(rows);
    let mut images: Vec<&str> = rows.iter().map(|r| r.image.as_str()).collect();
    images.dedup();
    let mean = |c: &str, f: &dyn Fn(&LosslessRow) -> f64| -> f64 {
        let v: Vec<f64> = rows.iter().filter(|r| r.codec == c).map(f).collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    };
    let png = cs
        .iter()
        .find(|c| c.starts_with("PNG"))
        .map(|c| mean(c, &|r| r.bpp()));
    let jxl = cs
        .iter()
        .find(|c| c.starts_with("JPEG XL"))
        .map(|c| mean(c, &|r| r.bpp()));
    let mut s = format!(
        "# Lossless on {dataset} ({} images)\n\nMean bits per pixel (every file decoded back and compared with the source); times are wall seconds per image on this machine.\n\n| codec | mean bpp | x PNG | x JPEG XL | encode s | decode s |\n|---|---|---|---|---|---|\n",
        images.len()
    );
    for c in &cs {
        let b = mean(c, &|r| r.bpp());
        let ratio = |d: Option<f64>| d.map_or("-".to_string(), |d| format!("{:.3}", b / d));
        s += &format!(
            "| {c} | {b:.3} | {} | {} | {:.2} | {:.2} |\n",
            ratio(png),
            ratio(jxl),
            mean(c, &|r| r.encode_s),
            mean(c, &|r| r.decode_s)
        );
    }
    s += "\nPer image (bpp):\n\n| image |";
    for c in &cs {
        s += &format!(" {c} |");
    }
    s += "\n|---|";
    s += &"---|".repeat(cs.len());
    s += "\n";
    for im in &images {
        s += &format!("| {im} |");
        for c in &cs {
            match rows.iter().find(|r| r.image == *im && &r.codec == c) {
                Some(r) => s += &format!(" {:.3} |", r.bpp()),
                None => s += " - |",
            }
        }
        s += "\n";
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_name_every_codec_and_image() {
        let row = |codec: &str, image: &str, bytes: usize| LosslessRow {
            codec: codec.into(),
            image: image.into(),
            pixels: 100,
            bytes,
            encode_s: 0.1,
            decode_s: 0.1,
        };
        let rows = vec![
            row("ddpmc --lossless", "a.png", 100),
            row("PNG (image-rs, best)", "a.png", 200),
            row("JPEG XL (cjxl -d 0 -e 7)", "a.png", 80),
            row("ddpmc --lossless", "b.png", 50),
            row("PNG (image-rs, best)", "b.png", 100),
        ];
        let md = to_markdown(&rows, "set");
        // ddpmc: mean 6 bpp; PNG: mean 12; JPEG XL: 6.4 (one image).
        assert!(
            md.contains("| ddpmc --lossless | 6.000 | 0.500 | 0.938 |"),
            "{md}"
        );
        assert!(md.contains("| b.png | 4.000 | 8.000 | - |"), "{md}");
        assert_eq!(to_csv(&rows).lines().count(), 6);
    }
}
