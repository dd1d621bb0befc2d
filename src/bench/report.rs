//! Bench stage: the written results — `results.csv`, summary and BD tables, reference check.
//!
//! CSV files are plain RFC 4180: comma separated, a field quoted only when it holds a comma,
//! a quote or a line break. Non-finite numbers are written `inf` / `nan`; a metric that could
//! not be measured (MS-SSIM on an image under 161 pixels, SSIMULACRA2 under 8) is written
//! `n/a`; empty cells mean "not reached" (a target outside a codec's range, no overlap for a
//! BD value).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use super::rd::{self, CurvePoint, Metric};
use super::{Row, CSV_HEADER, CSV_HEADER_V1, TARGET_BPP};
use crate::{Error, Result};

/// Quotes a CSV field when needed.
fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn num(v: f64, decimals: usize) -> String {
    if v.is_nan() {
        "nan".into()
    } else if v.is_infinite() {
        if v > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        format!("{v:.decimals$}")
    }
}

/// A metric cell: `n/a` when it was not measured (NaN).
fn metric(v: f64, decimals: usize) -> String {
    if v.is_nan() {
        "n/a".into()
    } else {
        num(v, decimals)
    }
}

fn opt(v: Option<f64>, decimals: usize) -> String {
    v.map_or(String::new(), |v| num(v, decimals))
}

/// `results.csv` text for `rows`, header first.
pub fn results_csv(rows: &[Row]) -> String {
    let mut s = String::from(CSV_HEADER);
    s.push('\n');
    for r in rows {
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{},{},{}",
            field(&r.codec),
            field(&r.setting),
            field(&r.image),
            num(r.bpp, 6),
            num(r.psnr, 4),
            metric(r.ms_ssim, 6),
            metric(r.ssimulacra2, 4),
            num(r.enc_s, 4),
            num(r.dec_s, 4)
        );
    }
    s
}

/// Splits one CSV record into fields (handles quoted fields; no line breaks inside).
fn split_record(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    out.push(cur);
    out
}

fn parse_num(s: &str, what: &str, line: usize) -> Result<f64> {
    match s.trim() {
        "inf" => Ok(f64::INFINITY),
        "-inf" => Ok(f64::NEG_INFINITY),
        "nan" | "n/a" | "" => Ok(f64::NAN),
        t => t.parse().map_err(|_| {
            Error::param(format!(
                "results CSV line {line}: {what} {t:?} is not a number"
            ))
        }),
    }
}

/// Parses `results.csv` text: the header must be [`CSV_HEADER`], or [`CSV_HEADER_V1`] (files
/// written before the SSIMULACRA2 column; their rows get it NaN).
pub fn parse_results_csv(text: &str) -> Result<Vec<Row>> {
    let mut lines = text.lines().enumerate();
    let with_s2 = match lines.next() {
        Some((_, h)) if h.trim() == CSV_HEADER => true,
        Some((_, h)) if h.trim() == CSV_HEADER_V1 => false,
        Some((_, h)) => {
            return Err(Error::param(format!(
                "results CSV header {h:?} (expected {CSV_HEADER:?} or {CSV_HEADER_V1:?})"
            )))
        }
        None => return Err(Error::param("results CSV is empty (expected a header)")),
    };
    let width = if with_s2 { 9 } else { 8 };
    let mut rows = Vec::new();
    for (i, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let f = split_record(line);
        let n = i + 1;
        if f.len() != width {
            return Err(Error::param(format!(
                "results CSV line {n}: {} fields (expected {width})",
                f.len()
            )));
        }
        // Timing columns follow the metrics.
        let t = width - 2;
        rows.push(Row {
            codec: f[0].clone(),
            setting: f[1].clone(),
            image: f[2].clone(),
            bpp: parse_num(&f[3], "bpp", n)?,
            psnr: parse_num(&f[4], "psnr", n)?,
            ms_ssim: parse_num(&f[5], "ms_ssim", n)?,
            ssimulacra2: if with_s2 {
                parse_num(&f[6], "ssimulacra2", n)?
            } else {
                f64::NAN
            },
            enc_s: parse_num(&f[t], "enc_s", n)?,
            dec_s: parse_num(&f[t + 1], "dec_s", n)?,
        });
    }
    Ok(rows)
}

/// Reads a `results.csv` file.
pub fn read_results_csv(path: &Path) -> Result<Vec<Row>> {
    let text =
        std::fs::read_to_string(path).map_err(|e| Error::file(crate::FileOp::Read, path, e))?;
    parse_results_csv(&text)
}

/// The metrics of the tables, in column order, with their names and decimals.
pub const METRICS: [(Metric, &str, usize); 3] = [
    (Metric::Psnr, "PSNR (dB, RGB)", 2),
    (Metric::MsSsim, "MS-SSIM (RGB)", 4),
    (Metric::Ssimulacra2, "SSIMULACRA2", 2),
];

/// One codec's values at the [`TARGET_BPP`] targets.
#[derive(Clone, Debug, PartialEq)]
pub struct CodecSummary {
    /// Per target: PSNR, MS-SSIM, SSIMULACRA2 (in [`METRICS`] order); `None` outside the
    /// codec's measured range or when the metric was not measured.
    pub values: Vec<[Option<f64>; 3]>,
    /// Per metric: whether the codec's curve has any value of it at all (else it is `n/a`:
    /// MS-SSIM on images under 161 pixels, SSIMULACRA2 on rows stored before that column).
    pub measured: [bool; 3],
}

/// Values of every codec at the [`TARGET_BPP`] targets.
pub type Summary = BTreeMap<String, CodecSummary>;

/// Interpolates every codec's mean curve at the [`TARGET_BPP`] targets.
pub fn summary(curves: &BTreeMap<String, Vec<CurvePoint>>) -> Summary {
    curves
        .iter()
        .map(|(codec, curve)| {
            let env = METRICS.map(|(m, _, _)| rd::envelope(curve, m));
            let values = TARGET_BPP
                .iter()
                .map(|&t| [0, 1, 2].map(|k| rd::interp_log_bpp(&env[k], t)))
                .collect();
            let measured = [0, 1, 2].map(|k| !env[k].is_empty());
            (codec.clone(), CodecSummary { values, measured })
        })
        .collect()
}

/// `summary.csv`: `codec,target_bpp,psnr,ms_ssim,ssimulacra2`, the layout of the reference's
/// kodak_classic_rd_interp.csv and one more column; a metric not measured is `n/a`.
pub fn summary_csv(s: &Summary) -> String {
    let mut out = String::from("codec,target_bpp,psnr,ms_ssim,ssimulacra2\n");
    for (codec, cs) in s {
        for (t, v) in TARGET_BPP.iter().zip(&cs.values) {
            let cell = |k: usize, dec: usize| {
                if cs.measured[k] {
                    opt(v[k], dec)
                } else {
                    "n/a".into()
                }
            };
            let _ = writeln!(
                out,
                "{},{t:?},{},{},{}",
                field(codec),
                cell(0, 3),
                cell(1, 5),
                cell(2, 3)
            );
        }
    }
    out
}

/// `summary.md`: PSNR, MS-SSIM and SSIMULACRA2 of every codec at the targets, `n images` in
/// the title, then the codecs' versions (`versions`: codec -> version text, where known).
pub fn summary_md(s: &Summary, images: usize, versions: &BTreeMap<String, String>) -> String {
    let mut out = format!(
        "# Rate-distortion summary ({images} images)\n\nMean over images of each setting, \
         interpolated linearly in log(bpp) on each codec's mean curve; `-` = outside the \
         codec's measured range; `n/a` = not measured (MS-SSIM needs images of at least {} \
         pixels a side; SSIMULACRA2 is missing from rows stored before it was measured).\n\n",
        super::metrics::MS_SSIM_MIN_SIDE
    );
    let head: Vec<String> = TARGET_BPP.iter().map(|t| format!("{t} bpp")).collect();
    for (k, (_, title, dec)) in METRICS.iter().enumerate() {
        let _ = writeln!(out, "## {title}\n\n| codec | {} |", head.join(" | "));
        let _ = writeln!(out, "|---|{}", "---:|".repeat(TARGET_BPP.len()));
        for (codec, cs) in s {
            let cells: Vec<String> = cs
                .values
                .iter()
                .map(|v| match (cs.measured[k], v[k]) {
                    (false, _) => "n/a".into(),
                    (true, None) => "-".into(),
                    (true, Some(x)) => format!("{x:.dec$}"),
                })
                .collect();
            let _ = writeln!(out, "| {codec} | {} |", cells.join(" | "));
        }
        out.push('\n');
    }
    out.push_str(&versions_md(s.keys(), versions));
    out
}

/// The `## Versions` section: one line per codec, its version as the bench found it.
pub fn versions_md<'a>(
    codecs: impl Iterator<Item = &'a String>,
    versions: &BTreeMap<String, String>,
) -> String {
    let mut out = String::from(
        "## Versions\n\nAs reported by each tool on PATH when the tables were written (for rows \
         read from a stored CSV: the tools here now), and ddpmc's version and model id.\n\n\
         | codec | version |\n|---|---|\n",
    );
    for c in codecs {
        let v = versions.get(c).map_or("unknown", String::as_str);
        let _ = writeln!(out, "| {c} | {v} |");
    }
    out
}

/// A file name stem for a codec name: letters, digits, `-` and `_` kept, anything else `_`.
pub fn file_stem(codec: &str) -> String {
    let s: String = codec
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        "codec".into()
    } else {
        s
    }
}

/// The metric arrays of `rows` (in their order) as a JSON object: `setting`, `bpp`,
/// `psnr-rgb`, `ms-ssim`, `ssimulacra2`; a non-finite or unmeasured value is `null`.
fn json_arrays<'a>(
    points: impl Iterator<Item = (&'a str, f64, f64, f64, f64)>,
) -> serde_json::Value {
    let num = |v: f64| {
        serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, serde_json::Value::Number)
    };
    let (mut setting, mut bpp, mut psnr, mut ms, mut s2) = (vec![], vec![], vec![], vec![], vec![]);
    for (s, b, p, m, x) in points {
        setting.push(serde_json::Value::String(s.to_string()));
        bpp.push(num(b));
        psnr.push(num(p));
        ms.push(num(m));
        s2.push(num(x));
    }
    serde_json::json!({
        "setting": setting,
        "bpp": bpp,
        "psnr-rgb": psnr,
        "ms-ssim": ms,
        "ssimulacra2": s2,
    })
}

/// `<codec>.json`: the results of `codec` in `rows` in CompressAI's layout — `name`,
/// `description`, `results` (per setting, the means over images of bpp, PSNR over RGB in dB,
/// MS-SSIM over RGB and SSIMULACRA2) — and `per_image`: image name -> the same arrays for that
/// image alone. `on` names the dataset in the description.
pub fn codec_json(codec: &str, version: Option<&str>, on: &str, rows: &[Row]) -> String {
    let mine: Vec<&Row> = rows.iter().filter(|r| r.codec == codec).collect();
    let curves = rd::mean_curves(&mine.iter().map(|r| (*r).clone()).collect::<Vec<_>>());
    let curve = curves.get(codec).map_or(&[][..], Vec::as_slice);
    let results = json_arrays(
        curve
            .iter()
            .map(|p| (p.setting.as_str(), p.bpp, p.psnr, p.ms_ssim, p.ssimulacra2)),
    );
    let mut per_image = serde_json::Map::new();
    let mut images: Vec<&str> = mine.iter().map(|r| r.image.as_str()).collect();
    images.sort_unstable();
    images.dedup();
    for img in images {
        let pts = mine
            .iter()
            .filter(|r| r.image == img)
            .map(|r| (r.setting.as_str(), r.bpp, r.psnr, r.ms_ssim, r.ssimulacra2));
        per_image.insert(img.to_string(), json_arrays(pts));
    }
    let name = super::plot::legend_name(codec, version);
    let description = format!(
        "{name} on {on}: per setting, the mean over images of bits per pixel, PSNR over RGB \
         (dB), MS-SSIM over RGB and SSIMULACRA2; per_image: the same for each image; null = \
         not measured (MS-SSIM under 161 pixels a side) or not finite (PSNR of an exact image)"
    );
    let v = serde_json::json!({
        "name": codec,
        "description": description,
        "version": version,
        "results": results,
        "per_image": per_image,
    });
    let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
    s.push('\n');
    s
}

/// The `version` recorded in the `<codec>.json` files in `dir` for the codecs of `rows`
/// (files missing, unreadable or without a version are skipped).
pub fn versions_from_json(dir: &Path, rows: &[Row]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for r in rows {
        if out.contains_key(&r.codec) {
            continue;
        }
        let path = dir.join(format!("{}.json", file_stem(&r.codec)));
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        if let Some(s) = v["version"].as_str() {
            out.insert(r.codec.clone(), s.to_string());
        }
    }
    out
}

/// One line of the BD table: `test` against `anchor`.
#[derive(Clone, Debug, PartialEq)]
pub struct BdLine {
    /// The anchor codec.
    pub anchor: String,
    /// BD-rate on PSNR, percent (negative: the tested codec saves bits).
    pub bd_rate_psnr: Option<f64>,
    /// BD-PSNR, dB.
    pub bd_psnr: Option<f64>,
    /// BD-rate on MS-SSIM, percent.
    pub bd_rate_msssim: Option<f64>,
    /// BD-rate on SSIMULACRA2, percent.
    pub bd_rate_ssimulacra2: Option<f64>,
    /// Overlapping bpp range of the PSNR curves (where BD-PSNR integrates).
    pub overlap: Option<(f64, f64)>,
    /// Overlapping PSNR range of the curves (where BD-rate on PSNR integrates), dB.
    pub psnr_overlap: Option<(f64, f64)>,
}

/// BD deltas of codec `test` against every other codec in `curves`.
pub fn bd_table(curves: &BTreeMap<String, Vec<CurvePoint>>, test: &str) -> Vec<BdLine> {
    let Some(tc) = curves.get(test) else {
        return Vec::new();
    };
    let tp = rd::envelope(tc, Metric::Psnr);
    let tm = rd::envelope(tc, Metric::MsSsim);
    let ts = rd::envelope(tc, Metric::Ssimulacra2);
    curves
        .iter()
        .filter(|(c, _)| c.as_str() != test)
        .map(|(c, curve)| {
            let ap = rd::envelope(curve, Metric::Psnr);
            let am = rd::envelope(curve, Metric::MsSsim);
            let as2 = rd::envelope(curve, Metric::Ssimulacra2);
            BdLine {
                anchor: c.clone(),
                bd_rate_psnr: rd::bd_rate(&ap, &tp),
                bd_psnr: rd::bd_quality(&ap, &tp),
                bd_rate_msssim: rd::bd_rate(&am, &tm),
                bd_rate_ssimulacra2: rd::bd_rate(&as2, &ts),
                overlap: rd::overlap(&ap, &tp),
                psnr_overlap: rd::quality_overlap(&ap, &tp),
            }
        })
        .collect()
}

/// `bd.csv`.
pub fn bd_csv(test: &str, lines: &[BdLine]) -> String {
    let mut out = String::from(
        "codec,anchor,bd_rate_psnr_pct,bd_psnr_db,bd_rate_msssim_pct,overlap_lo_bpp,overlap_hi_bpp,overlap_lo_psnr_db,overlap_hi_psnr_db,bd_rate_ssimulacra2_pct\n",
    );
    for l in lines {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{}",
            field(test),
            field(&l.anchor),
            opt(l.bd_rate_psnr, 2),
            opt(l.bd_psnr, 3),
            opt(l.bd_rate_msssim, 2),
            opt(l.overlap.map(|o| o.0), 4),
            opt(l.overlap.map(|o| o.1), 4),
            opt(l.psnr_overlap.map(|o| o.0), 3),
            opt(l.psnr_overlap.map(|o| o.1), 3),
            opt(l.bd_rate_ssimulacra2, 2)
        );
    }
    out
}

/// `bd.md`.
pub fn bd_md(test: &str, lines: &[BdLine]) -> String {
    let mut out = format!(
        "# Bjontegaard deltas of {test}\n\nCubic fit in log-rate over the overlapping range \
         (VCEG-M33). BD-rate < 0: {test} needs fewer bits for the same quality; BD-PSNR > 0: \
         {test} is better at the same rate. `-` = curves do not overlap. BD-rate integrates over \
         the PSNR range both curves reach, BD-PSNR over the bpp range both reach.\n\n\
         | anchor | BD-rate (PSNR) | over (dB) | BD-PSNR | over (bpp) | BD-rate (MS-SSIM) | BD-rate (SSIMULACRA2) |\n\
         |---|---:|---|---:|---|---:|---:|\n"
    );
    for l in lines {
        let pct = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:+.1} %"));
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            l.anchor,
            pct(l.bd_rate_psnr),
            l.psnr_overlap
                .map_or("-".into(), |(a, b)| format!("{a:.2} - {b:.2}")),
            l.bd_psnr.map_or("-".into(), |v| format!("{v:+.2} dB")),
            l.overlap
                .map_or("-".into(), |(a, b)| format!("{a:.3} - {b:.3}")),
            pct(l.bd_rate_msssim),
            pct(l.bd_rate_ssimulacra2)
        );
    }
    if lines.is_empty() {
        out.push_str("| (no codec to compare with) | - | - | - | - | - | - |\n");
    }
    out
}

/// Reference rows of a `codec,target_bpp,psnr,ms_ssim` table.
pub fn parse_interp_csv(text: &str) -> Result<Vec<(String, f64, f64, f64)>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let f = split_record(line);
        if f.len() != 4 {
            return Err(Error::param(format!(
                "interp CSV line {}: {} fields (expected 4)",
                i + 1,
                f.len()
            )));
        }
        out.push((
            f[0].clone(),
            parse_num(&f[1], "target_bpp", i + 1)?,
            parse_num(&f[2], "psnr", i + 1)?,
            parse_num(&f[3], "ms_ssim", i + 1)?,
        ));
    }
    Ok(out)
}

/// Compares `s` with a reference interp table: markdown with dPSNR and dMS-SSIM per codec
/// and target, and the largest |dPSNR| over all cells present in both.
pub fn compare_with_reference(s: &Summary, reference: &[(String, f64, f64, f64)]) -> (String, f64) {
    let mut out = String::from(
        "| codec | target bpp | PSNR here | PSNR reference | dPSNR | MS-SSIM here | MS-SSIM reference |\n\
         |---|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut worst: f64 = 0.0;
    for (codec, t, rp, rm) in reference {
        let Some(cs) = s.get(codec) else { continue };
        let Some(k) = TARGET_BPP.iter().position(|x| x == t) else {
            continue;
        };
        let [p, m, _] = cs.values[k];
        let d = p.map(|p| p - rp);
        if let Some(d) = d {
            worst = worst.max(d.abs());
        }
        let _ = writeln!(
            out,
            "| {codec} | {t} | {} | {rp:.3} | {} | {} | {rm:.5} |",
            p.map_or("-".into(), |p| format!("{p:.3}")),
            d.map_or("-".into(), |d| format!("{d:+.3}")),
            m.map_or("-".into(), |m| format!("{m:.5}")),
        );
    }
    (out, worst)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Vec<Row> {
        let mut v = Vec::new();
        for (img, off) in [("a.png", 0.0), ("b, with comma.png", 1.0)] {
            for (q, b) in [("10", 0.2), ("50", 0.6), ("90", 1.5), ("99", 2.5)] {
                v.push(Row {
                    codec: "jpeg".into(),
                    setting: q.into(),
                    image: img.into(),
                    bpp: b,
                    psnr: 30.0 + 6.0 * f64::log2(b) + off,
                    ms_ssim: 0.9 + 0.01 * b,
                    ssimulacra2: 50.0 + 10.0 * b,
                    enc_s: 0.01,
                    dec_s: 0.002,
                });
            }
        }
        v[0].psnr = f64::INFINITY;
        v[1].ms_ssim = f64::NAN;
        v
    }

    #[test]
    fn results_csv_round_trips() {
        let r = rows();
        let text = results_csv(&r);
        assert!(text.starts_with("codec,setting,image,bpp,psnr,ms_ssim,ssimulacra2,enc_s,dec_s\n"));
        assert!(text.contains("\"b, with comma.png\""));
        assert!(text.contains(",inf,"));
        let back = parse_results_csv(&text).unwrap();
        assert_eq!(back.len(), r.len());
        assert_eq!(back[4].image, "b, with comma.png");
        assert_eq!(back[0].psnr, f64::INFINITY);
        assert!(back[1].ms_ssim.is_nan());
        assert!((back[5].bpp - 0.6).abs() < 1e-9);
        assert!((back[5].ssimulacra2 - 56.0).abs() < 1e-9);
        // An unmeasured metric is written n/a (not nan) and read back as NaN.
        assert!(text.lines().nth(2).unwrap().contains(",n/a,"));
        // A CSV from before the SSIMULACRA2 column loads, the column n/a.
        let old = format!("{CSV_HEADER_V1}\njpeg,10,a.png,0.2,30.1,0.91,0.01,0.002\n");
        let back = parse_results_csv(&old).unwrap();
        assert_eq!(back.len(), 1);
        assert!((back[0].ms_ssim - 0.91).abs() < 1e-12 && back[0].ssimulacra2.is_nan());
        assert!((back[0].enc_s - 0.01).abs() < 1e-12 && (back[0].dec_s - 0.002).abs() < 1e-12);
        assert!(results_csv(&back).contains(",0.910000,n/a,"));
        assert!(parse_results_csv(&format!("{CSV_HEADER_V1}\njpeg,1,x,1,1,1,1,1,1\n")).is_err());
        assert!(parse_results_csv("a,b\n").is_err());
        assert!(parse_results_csv(&format!("{CSV_HEADER}\njpeg,1,x,0.1\n")).is_err());
        assert!(parse_results_csv(&format!("{CSV_HEADER}\njpeg,1,x,abc,1,1,1,1\n")).is_err());
    }

    #[test]
    fn summary_tables() {
        let curves = rd::mean_curves(&rows());
        let s = summary(&curves);
        let j: Vec<(Option<f64>, Option<f64>)> =
            s["jpeg"].values.iter().map(|v| (v[0], v[1])).collect();
        // Mean curve at setting 50: bpp 0.6, psnr 30 + 6 log2 0.6 + 0.5; at 1 bpp the line
        // between 0.6 and 1.5 (both linear in log2 bpp) gives 30.5 exactly.
        assert!((j[2].0.unwrap() - 30.5).abs() < 1e-9);
        assert!((j[3].0.unwrap() - 36.5).abs() < 1e-9);
        // Setting 10 has an infinite PSNR (lossless image), so the curve starts at 0.6 bpp.
        assert_eq!(j[0].0, None);
        assert!(j[0].1.is_some());
        let csv = summary_csv(&s);
        assert!(csv.starts_with("codec,target_bpp,psnr,ms_ssim,ssimulacra2\njpeg,0.25,"));
        let versions = BTreeMap::from([("jpeg".to_string(), "libjpeg-turbo 9.9".to_string())]);
        let md = summary_md(&s, 2, &versions);
        assert!(
            md.contains("| jpeg |") && md.contains("## MS-SSIM") && md.contains("## SSIMULACRA2")
        );
        assert!(md.contains("| jpeg | libjpeg-turbo 9.9 |"));
        // A metric no row has is n/a, not "outside the range".
        let mut r = rows();
        r.iter_mut().for_each(|x| x.ms_ssim = f64::NAN);
        let s = summary(&rd::mean_curves(&r));
        assert_eq!(s["jpeg"].measured, [true, false, true]);
        assert!(summary_md(&s, 2, &BTreeMap::new()).contains("| jpeg | n/a | n/a | n/a | n/a |"));
        assert!(summary_csv(&s).contains(",n/a,"));
        // The JSON written for a codec gives its version back.
        let dir = std::env::temp_dir().join(format!("ddpmc-json-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let json = codec_json("jpeg", Some("libjpeg-turbo 9.9"), "test", &r);
        std::fs::write(dir.join("jpeg.json"), json).unwrap();
        let v = versions_from_json(&dir, &r);
        assert_eq!(v["jpeg"], "libjpeg-turbo 9.9");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bd_tables_and_reference() {
        let mut r = rows();
        for x in rows() {
            r.push(Row {
                codec: "ddpmc".into(),
                bpp: x.bpp * 0.8,
                ..x
            });
        }
        let curves = rd::mean_curves(&r);
        let lines = bd_table(&curves, "ddpmc");
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].anchor, "jpeg");
        assert!(lines[0].bd_rate_psnr.unwrap() < 0.0);
        // Same SSIMULACRA2 at 80 % of the rate: BD-rate -20 %.
        assert!((lines[0].bd_rate_ssimulacra2.unwrap() + 20.0).abs() < 1e-6);
        assert!(bd_csv("ddpmc", &lines).contains("ddpmc,jpeg,"));
        assert!(bd_md("ddpmc", &lines).contains("| jpeg |"));
        assert!(bd_table(&curves, "nothing").is_empty());

        let s = summary(&curves);
        let refr = parse_interp_csv("codec,target_bpp,psnr,ms_ssim\njpeg,1.0,30.4,0.91\n").unwrap();
        let (md, worst) = compare_with_reference(&s, &refr);
        assert!((worst - 0.1).abs() < 1e-6, "{worst}");
        assert!(md.contains("+0.100"));
    }
}
