//! Bench stage: pictures — rate-distortion plots (SVG and PNG) and the progressive filmstrip.
//!
//! Text is drawn with DejaVu Sans, embedded in the binary (`fonts/`, Bitstream Vera licence,
//! see fonts/DejaVu-LICENSE.txt), so plots render on machines without system fonts.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Once;

use image::RgbImage;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::rd::{self, CurvePoint, Metric};
use crate::{Error, Result};

static FONT: &[u8] = include_bytes!("fonts/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The embedded file is a valid TrueType font; a failure here only loses text.
        let _ = plotters::style::register_font(FAMILY, FontStyle::Normal, FONT);
    });
}

fn err<E: std::fmt::Display>(e: E) -> Error {
    Error::Image(format!("plot: {e}"))
}

const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
    RGBColor(0, 0, 0),
];

/// Colour of the progressive codec (not in `COLORS`).
const PROGRESSIVE_COLOR: RGBColor = RGBColor(214, 39, 40);

/// A named polyline of the plot.
struct Series {
    label: String,
    points: Vec<(f64, f64)>,
    /// Text next to each point (the progressive codec's presets), or empty.
    tags: Vec<String>,
    emphasised: bool,
}

/// A point (bpp, value) and its tag.
type Tagged = (f64, f64, String);

/// Readable legend name of a codec id of the bench.
pub fn display_name(id: &str) -> String {
    legend_name(id, None)
}

/// Legend name of a codec id with its version (as the bench found it), when known:
/// "JPEG (cjpeg, libjpeg-turbo 2.1.5)".
pub fn legend_name(id: &str, version: Option<&str>) -> String {
    let (format, tool, lib) = match id {
        "jpeg" => ("JPEG", "cjpeg", "libjpeg-turbo"),
        "jpeg_image_rs" => ("JPEG", "image crate", ""),
        "webp" => ("WebP", "cwebp", ""),
        "jpeg2000" => ("JPEG 2000", "OpenJPEG", ""),
        "avif" => ("AVIF", "avifenc", "libaom"),
        "jxl" => ("JPEG XL", "cjxl", ""),
        "hevc444_heic" => ("HEIC 4:4:4", "heif-enc", "x265"),
        other => return version.map_or(other.into(), |v| format!("{other} ({v})")),
    };
    match (version, lib) {
        (Some(v), _) => format!("{format} ({tool}, {v})"),
        (None, "") => format!("{format} ({tool})"),
        (None, lib) => format!("{format} ({tool}, {lib})"),
    }
}

/// The plotted value: PSNR as is, MS-SSIM in dB (-10 log10(1 - MS-SSIM)), where values near 1
/// stay apart.
fn plotted(metric: Metric, v: f64) -> f64 {
    match metric {
        Metric::Psnr => v,
        // NaN (not measured) stays NaN: f64::max would turn it into the 1e-12 floor.
        Metric::MsSsim if v.is_nan() => f64::NAN,
        Metric::MsSsim => -10.0 * (1.0 - v).max(1e-12).log10(),
        Metric::Ssimulacra2 => v,
    }
}

/// The lines of one plot: every codec's envelope, and for the `progressive` codec one line per
/// preset joining its steps (settings `<preset>/<step>`).
fn series(
    curves: &BTreeMap<String, Vec<CurvePoint>>,
    metric: Metric,
    progressive: &str,
    versions: &BTreeMap<String, String>,
) -> Vec<Series> {
    let mut out = Vec::new();
    for (codec, curve) in curves {
        if codec == progressive {
            let mut presets: Vec<(String, Vec<Tagged>)> = Vec::new();
            for p in curve {
                let mut parts = p.setting.split('/');
                let preset = parts.next().unwrap_or("").to_string();
                // A step of a preset's file is the preset of that many steps.
                let tag = parts
                    .next()
                    .map_or(String::new(), |st| match st.parse::<u32>() {
                        Ok(n) => format!("q{n}"),
                        Err(_) => st.to_string(),
                    });
                let v = plotted(metric, p.value(metric));
                if !(v.is_finite() && p.bpp.is_finite()) {
                    continue;
                }
                match presets.iter_mut().find(|(n, _)| *n == preset) {
                    Some((_, pts)) => pts.push((p.bpp, v, tag)),
                    None => presets.push((preset, vec![(p.bpp, v, tag)])),
                }
            }
            // Presets of one file ladder overlap (a preset's file is a prefix of the next),
            // so they share a colour and one legend entry.
            let names: Vec<&str> = presets.iter().map(|(n, _)| n.as_str()).collect();
            let legend = match versions.get(codec) {
                Some(v) => format!("{v}, per step ({})", names.join(", ")),
                None => format!("{codec} per step ({})", names.join(", ")),
            };
            let longest = presets.iter().map(|(_, p)| p.len()).max().unwrap_or(0);
            let mut tagged = false;
            for (i, (_, mut pts)) in presets.into_iter().enumerate() {
                pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                // Tags on one preset only (the one with every step), so they do not pile up.
                let tags = if !tagged && pts.len() == longest {
                    tagged = true;
                    pts.iter().map(|p| p.2.clone()).collect()
                } else {
                    Vec::new()
                };
                out.push(Series {
                    label: if i == 0 {
                        legend.clone()
                    } else {
                        String::new()
                    },
                    points: pts.iter().map(|p| (p.0, p.1)).collect(),
                    tags,
                    emphasised: true,
                });
            }
        } else {
            out.push(Series {
                label: legend_name(codec, versions.get(codec).map(String::as_str)),
                points: rd::envelope(curve, metric)
                    .into_iter()
                    .map(|(b, v)| (b, plotted(metric, v)))
                    .collect(),
                tags: Vec::new(),
                emphasised: false,
            });
        }
    }
    out
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    series: &[Series],
    metric: Metric,
    title: &str,
) -> Result<()> {
    root.fill(&WHITE).map_err(err)?;
    // x range: up to the progressive codec's last point (at least 2.5 bpp, at most 8).
    let prog_max = series
        .iter()
        .filter(|s| s.emphasised)
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(0.0f64, f64::max);
    let x_max = (prog_max * 1.05).clamp(2.5, 10.0);
    let x_min = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .filter(|&b| b > 0.0)
        .fold(f64::INFINITY, f64::min);
    let x_min = if x_min.is_finite() {
        (x_min * 0.85).clamp(0.02, 1.0)
    } else {
        0.05
    };
    let inside: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .filter(|p| p.0 <= x_max && p.0 >= x_min)
        .collect();
    let (mut y_lo, mut y_hi) = inside
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.1), b.max(p.1))
        });
    let empty = inside.is_empty();
    if y_hi.partial_cmp(&y_lo) != Some(std::cmp::Ordering::Greater) {
        (y_lo, y_hi) = match metric {
            Metric::Psnr => (20.0, 45.0),
            Metric::MsSsim => (5.0, 25.0),
            Metric::Ssimulacra2 => (0.0, 100.0),
        };
    }
    let pad = 0.04 * (y_hi - y_lo);
    let (y_lo, y_hi) = (y_lo - pad, y_hi + pad);
    let y_label = match metric {
        Metric::Psnr => "PSNR (dB, RGB)",
        Metric::MsSsim => "MS-SSIM (dB: -10 log10(1 - MS-SSIM), RGB)",
        Metric::Ssimulacra2 => "SSIMULACRA2 (100 = identical)",
    };
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FAMILY, 22))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d((x_min..x_max).log_scale(), y_lo..y_hi)
        .map_err(err)?;
    chart
        .configure_mesh()
        .light_line_style(RGBColor(238, 238, 238))
        .x_desc("bits per pixel (log scale)")
        .x_labels(20)
        .x_label_formatter(&|v| {
            // Labels at 1-2-5 values only; the other ticks stay as grid lines.
            let nice = [0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0];
            match nice.iter().find(|&&n| (v / n - 1.0).abs() < 1e-6) {
                Some(n) if *n < 1.0 => format!("{n}"),
                Some(n) => format!("{n:.0}"),
                None => String::new(),
            }
        })
        .y_desc(y_label)
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 16))
        .draw()
        .map_err(err)?;
    let mut n_classic = 0;
    for s in series {
        let color = if s.emphasised {
            PROGRESSIVE_COLOR
        } else {
            n_classic += 1;
            COLORS[(n_classic - 1) % COLORS.len()]
        };
        let keep = |p: &(f64, f64)| p.0 <= x_max && p.0 >= x_min;
        let pts: Vec<(f64, f64)> = s.points.iter().copied().filter(keep).collect();
        let width = if s.emphasised { 3 } else { 2 };
        let line = chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(width)))
            .map_err(err)?;
        if !s.label.is_empty() {
            line.label(s.label.as_str()).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(width))
            });
        }
        let r = if s.emphasised { 4 } else { 3 };
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, r, color.filled())))
            .map_err(err)?;
        if !s.tags.is_empty() {
            let font = (FAMILY, 14).into_font().color(&color);
            chart
                .draw_series(s.points.iter().zip(&s.tags).filter(|(p, _)| keep(p)).map(
                    |(&p, t)| EmptyElement::at(p) + Text::new(t.clone(), (-22, -18), font.clone()),
                ))
                .map_err(err)?;
        }
    }
    if empty {
        // No codec has a value of this metric (MS-SSIM on images under 161 pixels a side).
        let note = format!(
            "n/a: {} was not measured on these images",
            match metric {
                Metric::Psnr => "PSNR",
                Metric::MsSsim => "MS-SSIM (it needs both sides >= 161 pixels)",
                Metric::Ssimulacra2 => "SSIMULACRA2",
            }
        );
        root.draw_text(
            &note,
            &TextStyle::from((FAMILY, 18).into_font()).color(&BLACK),
            (90, PLOT_SIZE.1 as i32 / 2),
        )
        .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font((FAMILY, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// Plot size in pixels.
pub const PLOT_SIZE: (u32, u32) = (960, 720);

/// Writes the rate-distortion plot of `metric` to `<stem>.svg` and `<stem>.png`: one line per
/// codec (its envelope), and for `progressive` (ddpmc) its per-step points joined per preset;
/// legend names carry the codecs' `versions` where known. A metric no codec has (`n/a`) gives
/// an empty plot that says so.
pub fn rd_plot(
    curves: &BTreeMap<String, Vec<CurvePoint>>,
    metric: Metric,
    progressive: &str,
    versions: &BTreeMap<String, String>,
    title: &str,
    stem: &Path,
) -> Result<()> {
    register_font();
    let s = series(curves, metric, progressive, versions);
    let svg = stem.with_extension("svg");
    draw(
        SVGBackend::new(&svg, PLOT_SIZE).into_drawing_area(),
        &s,
        metric,
        title,
    )?;
    let (w, h) = PLOT_SIZE;
    let mut buf = vec![0u8; (w * h * 3) as usize];
    draw(
        BitMapBackend::with_buffer(&mut buf, PLOT_SIZE).into_drawing_area(),
        &s,
        metric,
        title,
    )?;
    let img = RgbImage::from_raw(w, h, buf).ok_or_else(|| err("buffer size"))?;
    img.save(stem.with_extension("png"))?;
    Ok(())
}

/// One frame of the filmstrip.
pub struct Frame {
    /// The image (the original, or the image decoded after a step).
    pub image: RgbImage,
    /// Caption under the frame (e.g. "step 2: 0.412 bpp, 31.20 dB").
    pub caption: String,
}

/// Thumbnail width of a filmstrip frame.
pub const FRAME_WIDTH: u32 = 384;
/// Size of the 1:1 crop under each thumbnail (from the image centre), shown at 2x.
pub const CROP: (u32, u32) = (192, 96);
const CAPTION_H: u32 = 30;
const GAP: u32 = 6;
const PER_ROW: usize = 3;

/// Renders the filmstrip: frames left to right (at most three per row), each scaled to
/// [`FRAME_WIDTH`] pixels wide, with a crop of the centre at 1:1 (enlarged 2x, so that fine
/// steps differ visibly) and its caption underneath.
pub fn filmstrip(frames: &[Frame]) -> Result<RgbImage> {
    if frames.is_empty() {
        return Err(Error::param("filmstrip of no frames (expected >= 1)"));
    }
    register_font();
    let (w0, h0) = frames[0].image.dimensions();
    let fh = ((FRAME_WIDTH as u64 * h0 as u64) / w0.max(1) as u64).max(1) as u32;
    let (cw0, ch0) = (CROP.0.min(w0), CROP.1.min(h0));
    let crop_h = 2 * ch0;
    let cell_h = fh + GAP + crop_h + CAPTION_H;
    let cols = frames.len().min(PER_ROW) as u32;
    let rows = frames.len().div_ceil(PER_ROW) as u32;
    let cw = GAP + cols * (FRAME_WIDTH + GAP);
    let ch = GAP + rows * (cell_h + GAP);
    let mut canvas = RgbImage::from_pixel(cw, ch, image::Rgb([255, 255, 255]));
    let mut spots = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        let (c, r) = ((i % PER_ROW) as u32, (i / PER_ROW) as u32);
        let x = GAP + c * (FRAME_WIDTH + GAP);
        let y = GAP + r * (cell_h + GAP);
        let thumb = image::imageops::resize(
            &f.image,
            FRAME_WIDTH,
            fh,
            image::imageops::FilterType::Triangle,
        );
        image::imageops::replace(&mut canvas, &thumb, x as i64, y as i64);
        let (iw, ih) = f.image.dimensions();
        let (cx, cy) = ((iw.saturating_sub(cw0)) / 2, (ih.saturating_sub(ch0)) / 2);
        let crop = image::imageops::crop_imm(&f.image, cx, cy, cw0.min(iw), ch0.min(ih)).to_image();
        let big = image::imageops::resize(
            &crop,
            2 * crop.width(),
            2 * crop.height(),
            image::imageops::FilterType::Nearest,
        );
        image::imageops::replace(&mut canvas, &big, x as i64, (y + fh + GAP) as i64);
        spots.push((x, y + fh + GAP + crop_h));
    }
    {
        let root = BitMapBackend::with_buffer(canvas.as_mut(), (cw, ch)).into_drawing_area();
        let style = TextStyle::from((FAMILY, 16).into_font()).color(&BLACK);
        for (f, (x, y)) in frames.iter().zip(spots) {
            root.draw_text(&f.caption, &style, (x as i32 + 4, y as i32 + 7))
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(canvas)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curves() -> BTreeMap<String, Vec<CurvePoint>> {
        let mut m = BTreeMap::new();
        let pt = |s: &str, b: f64, p: f64| CurvePoint {
            setting: s.into(),
            bpp: b,
            psnr: p,
            ms_ssim: 0.9 + 0.02 * b,
            ssimulacra2: 40.0 + 20.0 * b,
            n: 1,
        };
        m.insert(
            "jpeg".to_string(),
            vec![
                pt("10", 0.3, 27.0),
                pt("50", 0.9, 32.0),
                pt("90", 2.3, 38.0),
            ],
        );
        m.insert(
            "ddpmc".to_string(),
            vec![
                pt("q2/1", 0.4, 22.0),
                pt("q2/2", 1.4, 30.0),
                pt("q1/1", 0.4, 22.1),
            ],
        );
        m
    }

    #[test]
    fn series_join_steps_per_preset() {
        let s = series(&curves(), Metric::Psnr, "ddpmc", &BTreeMap::new());
        let labels: Vec<&str> = s.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(
            labels,
            vec!["ddpmc per step (q2, q1)", "", "JPEG (cjpeg, libjpeg-turbo)"]
        );
        assert_eq!(s[0].points.len(), 2);
        // The preset with every step carries the preset names of its points.
        assert_eq!(s[0].tags, vec!["q1", "q2"]);
        assert!(s[1].tags.is_empty() && s[2].tags.is_empty());
        // MS-SSIM is plotted in dB.
        assert!((plotted(Metric::MsSsim, 0.99) - 20.0).abs() < 1e-9);
        assert!(plotted(Metric::MsSsim, f64::NAN).is_nan());
    }

    #[test]
    fn plots_and_filmstrip_render() {
        let dir = std::env::temp_dir().join(format!("ddpmc-plot-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let stem = dir.join("rd");
        let versions = BTreeMap::from([("jpeg".to_string(), "libjpeg-turbo 9.9".to_string())]);
        rd_plot(&curves(), Metric::Psnr, "ddpmc", &versions, "test", &stem).unwrap();
        let png = image::open(stem.with_extension("png")).unwrap();
        assert_eq!((png.width(), png.height()), PLOT_SIZE);
        let svg = std::fs::read_to_string(stem.with_extension("svg")).unwrap();
        assert!(svg.contains("<svg") && svg.contains("JPEG (cjpeg, libjpeg-turbo 9.9)"));
        // A metric without values: an empty plot with a note.
        let mut none = curves();
        none.values_mut()
            .flatten()
            .for_each(|p| p.ms_ssim = f64::NAN);
        rd_plot(&none, Metric::MsSsim, "ddpmc", &versions, "test", &stem).unwrap();
        let svg = std::fs::read_to_string(stem.with_extension("svg")).unwrap();
        assert!(svg.contains("n/a: MS-SSIM"), "{svg}");

        let frames: Vec<Frame> = (0..5)
            .map(|i| Frame {
                image: RgbImage::from_pixel(64, 48, image::Rgb([40 * i as u8, 80, 120])),
                caption: format!("step {i}: 0.1 bpp"),
            })
            .collect();
        let strip = filmstrip(&frames).unwrap();
        assert_eq!(strip.width(), GAP + 3 * (FRAME_WIDTH + GAP));
        // Under the thumbnail, the 1:1 crop (the whole 64x48 frame here) at 2x.
        let fh = FRAME_WIDTH * 48 / 64;
        let crop_y = GAP + fh + GAP;
        assert_eq!(strip.get_pixel(GAP + 10, crop_y + 10).0, [0, 80, 120]);
        assert_eq!(strip.get_pixel(GAP + 130, crop_y + 10).0, [255, 255, 255]);
        // Captions are drawn: some dark pixels below the crop.
        let cap_y = crop_y + 2 * 48;
        let dark = (0..FRAME_WIDTH)
            .flat_map(|x| (cap_y..cap_y + CAPTION_H).map(move |y| (x, y)))
            .filter(|&(x, y)| strip.get_pixel(x + GAP, y).0[0] < 100)
            .count();
        assert!(dark > 20, "{dark}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
