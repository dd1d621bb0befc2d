//! `ddpmc bench`: rate-distortion table, CSV and plots against classic codecs.

use std::path::PathBuf;

use ddpmc::bench::classic;
use ddpmc::bench::ddpmc::{DdpmcCodec, Setting};
use ddpmc::bench::report;
use ddpmc::bench::run::{run_bench, write_reports, BenchConfig, BenchOutcome};
use ddpmc::bench::RdCodec;
use ddpmc::codec::Recon;

/// Measure ddpmc and the classic codecs on a folder of images.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Folder of images: PNG, JPEG, BMP, TIFF, PNM, WebP, GIF, TGA (all of them, sorted by
    /// name; other files are named and skipped).
    #[arg(long, default_value = "../shared/data/kodak")]
    pub dataset: PathBuf,
    /// Output folder: results.csv, summary.{md,csv}, bd.{md,csv}, rd_*.{svg,png}, filmstrip.png.
    #[arg(long, default_value = "bench-out")]
    pub out: PathBuf,
    /// Use only the first N images.
    #[arg(long)]
    pub limit: Option<usize>,
    /// ddpmc settings, comma separated: quality presets q1..q7, q1L..q7L (with the lossless
    /// stage) or bpp<X> (rate control); every decoded step of each file becomes a point, so
    /// q7 alone measures every preset.
    #[arg(long, value_delimiter = ',', default_value = "q7")]
    pub settings: Vec<String>,
    /// Step coder kinds the ddpmc encoder may choose from (comma separated) [default: the
    /// encoder's default].
    #[arg(long, value_delimiter = ',')]
    pub coders: Vec<u8>,
    /// Reuse classic-codec rows from this results CSV instead of running the tools.
    #[arg(long)]
    pub classic_results: Option<PathBuf>,
    /// Skip the classic codecs.
    #[arg(long)]
    pub no_classic: bool,
    /// Skip ddpmc (classic codecs only).
    #[arg(long)]
    pub no_ddpmc: bool,
    /// Classic codecs to run, comma separated (jpeg, webp, jpeg2000, avif, jxl,
    /// hevc444_heic, jpeg_image_rs); default: every one whose tools are on PATH.
    #[arg(long, value_delimiter = ',')]
    pub codecs: Option<Vec<String>>,
    /// Model weights (safetensors) for ddpmc; default: the built-in default model.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Reference table (codec,target_bpp,psnr,ms_ssim) to compare the classic rows with
    /// (written to reference.md) [default: ../shared/reference/kodak_classic_rd_interp.csv
    /// when the dataset folder is named kodak]. Skipped when the file does not exist, with
    /// --limit, and with --from-results when the CSV covers fewer than 24 images.
    #[arg(long)]
    pub reference: Option<PathBuf>,
    /// Run nothing: redo the tables and plots (no filmstrip) of a stored results CSV (codec
    /// versions from the <codec>.json files next to it, where present).
    #[arg(long, value_name = "CSV")]
    pub from_results: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// The image of filmstrip.png (its file name in the dataset) [default: the first].
    #[arg(long, value_name = "NAME")]
    pub filmstrip: Option<String>,
    /// Lossless instead of rate-distortion: per image the size of `ddpmc encode --lossless`
    /// next to PNG, WebP lossless and JPEG XL (where cwebp/dwebp and cjxl/djxl are on PATH),
    /// every file decoded back and compared; writes lossless.{csv,md}.
    #[arg(long)]
    pub lossless: bool,
    /// With --lossless: also measure these fixed progressive prefixes (comma-separated step
    /// counts 0..=7, as `encode --lossless --quality N`).
    #[arg(long, value_delimiter = ',', requires = "lossless", value_parser = clap::value_parser!(u8).range(0..=ddpmc::diffusion::PRESETS as i64))]
    pub prefixes: Vec<u8>,
}

/// `ddpmc bench --lossless`.
fn run_lossless(args: &Args) -> ddpmc::Result<()> {
    use ddpmc::bench::lossless;
    let images = ddpmc::bench::run::list_images(&args.dataset, args.limit)?;
    let model = crate::load_model(args.model.as_deref())?;
    let quiet = args.quiet;
    let mut progress = |i: usize, n: usize, name: &str| {
        if !quiet && i < n {
            eprintln!("lossless bench: image {}/{n} {name}", i + 1);
        }
    };
    let rows = lossless::run_lossless(model.as_ref(), &images, &args.prefixes, &mut progress)?;
    std::fs::create_dir_all(&args.out)
        .map_err(|e| ddpmc::Error::file(ddpmc::FileOp::CreateDir, &args.out, e))?;
    let md = lossless::to_markdown(&rows, &args.dataset.display().to_string());
    crate::write_output(
        &args.out.join("lossless.csv"),
        lossless::to_csv(&rows).as_bytes(),
        true,
    )?;
    crate::write_output(&args.out.join("lossless.md"), md.as_bytes(), true)?;
    println!("{md}");
    println!(
        "{} rows written to {}",
        rows.len(),
        args.out.join("lossless.csv").display()
    );
    Ok(())
}

/// The reference table: the one given, else Kodak's for a dataset folder named kodak (the
/// table holds Kodak means; on another dataset a comparison would mean nothing).
fn reference_table(args: &Args) -> Option<PathBuf> {
    if let Some(r) = &args.reference {
        return Some(r.clone());
    }
    let kodak = args
        .dataset
        .file_name()
        .is_some_and(|n| n.to_string_lossy().eq_ignore_ascii_case("kodak"));
    kodak.then(|| PathBuf::from("../shared/reference/kodak_classic_rd_interp.csv"))
}

/// The ddpmc codec for the bench: the model and the parsed settings.
fn ddpmc_codec(args: &Args) -> ddpmc::Result<Box<dyn RdCodec>> {
    let settings = args
        .settings
        .iter()
        .map(|s| Setting::parse(s))
        .collect::<ddpmc::Result<Vec<_>>>()?;
    let model = crate::load_model(args.model.as_deref())?;
    Ok(Box::new(
        DdpmcCodec::new(model, settings, Recon::Denoise).with_coders(args.coders.clone()),
    ))
}

/// Runs `ddpmc bench`.
pub fn run(args: Args) -> ddpmc::Result<()> {
    if args.lossless {
        return run_lossless(&args);
    }
    if let Some(p) = &args.from_results {
        let rows = report::read_results_csv(p)?;
        let mut images: Vec<&str> = rows.iter().map(|r| r.image.as_str()).collect();
        images.sort_unstable();
        images.dedup();
        let n = images.len();
        let r = reference_table(&args);
        let reference = r.as_deref().filter(|_| n >= 24);
        let name = ddpmc::bench::run::dataset_name(&args.dataset);
        // Versions: those recorded in the <codec>.json files next to the CSV (written by the
        // run that measured the rows), else the classic tools on PATH now (write_reports).
        let dir = p.parent().unwrap_or(std::path::Path::new("."));
        let versions = report::versions_from_json(dir, &rows);
        let o = write_reports(
            rows,
            n,
            &[],
            &args.out,
            "ddpmc",
            reference,
            Some(&name),
            versions,
        )?;
        return print_outcome(&args, &o);
    }
    let classic_rows = match (&args.classic_results, args.no_classic) {
        (Some(p), false) => Some(report::read_results_csv(p)?),
        _ => None,
    };
    let classic = if args.no_classic || classic_rows.is_some() {
        Vec::new()
    } else {
        let (codecs, missing) = classic::available_codecs(args.codecs.as_deref());
        for m in missing {
            eprintln!("note: {m} skipped (its command-line tools are not on PATH)");
        }
        codecs
    };
    let progressive = if args.no_ddpmc {
        None
    } else {
        Some(ddpmc_codec(&args)?)
    };
    let cfg = BenchConfig {
        dataset: args.dataset.clone(),
        out: args.out.clone(),
        limit: args.limit,
        classic,
        classic_rows,
        progressive,
        progressive_name: "ddpmc".into(),
        // The reference is a mean over its whole dataset: compare only without --limit.
        reference: reference_table(&args).filter(|_| args.limit.is_none()),
        progress: !args.quiet,
        filmstrip: args.filmstrip.clone(),
    };
    let o = run_bench(cfg)?;
    print_outcome(&args, &o)
}

fn print_outcome(args: &Args, o: &BenchOutcome) -> ddpmc::Result<()> {
    println!("{}", o.summary_md);
    if !args.no_ddpmc {
        println!("{}", o.bd_md);
    }
    if let (Some(d), Some(r)) = (o.reference_max_dpsnr, reference_table(args)) {
        println!(
            "classic codecs vs {}: largest |dPSNR| {d:.3} dB (details in reference.md)",
            r.display()
        );
    }
    println!(
        "{} rows written to {}",
        o.rows.len(),
        args.out.join("results.csv").display()
    );
    Ok(())
}
