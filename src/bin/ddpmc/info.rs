//! `ddpmc info`.

use std::path::PathBuf;

use ddpmc::codec::inspect;
use ddpmc::model::{builtin_name, id_hex as hex};

/// Show what a .ddpmc file holds.
#[derive(clap::Args)]
pub struct Args {
    /// Input .ddpmc file.
    input: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Run the command.
pub fn run(a: Args) -> ddpmc::Result<()> {
    let bytes = crate::read_ddpmc(&a.input)?;
    let info = inspect(&bytes)?;
    let h = &info.header;
    let px = f64::from(h.width) * f64::from(h.height);
    let colour = match h.colour {
        ddpmc::format::Colour::Gray => "gray",
        ddpmc::format::Colour::Rgb => "rgb",
    };
    let steps: Vec<serde_json::Value> = info
        .chunks
        .iter()
        .filter(|c| c.kind == "STEP")
        .enumerate()
        .map(|(i, c)| {
            let (coder, block, k) = c.step.unwrap_or((0, 0, 0));
            serde_json::json!({
                "step": i + 1,
                "t_from": h.schedule[i].t,
                "t_to": h.schedule[i + 1].t,
                "abar_to": h.schedule[i + 1].abar,
                "logsnr_to": h.schedule[i + 1].logsnr,
                "bytes": c.len,
                "coder": coder,
                "block": block,
                "k": k,
                "cumulative_bytes": c.offset + c.len,
                "cumulative_bpp": (c.offset + c.len) as f64 * 8.0 / px,
            })
        })
        .collect();
    let loss = info.chunks.iter().find(|c| c.kind == "LOSS");
    if a.json {
        let v = serde_json::json!({
            "width": h.width,
            "height": h.height,
            "colour": colour,
            "source_bit_depth": h.source_depth,
            "padding_multiple": h.multiple,
            "model_id": hex(&h.model_id),
            "model_builtin": builtin_name(&h.model_id).filter(|_| h.steps() > 0),
            "seed": h.seed,
            "steps_in_header": h.steps(),
            "steps": steps,
            "lossless_bytes": loss.map(|c| c.len),
            "lossless_kind": info.loss.map(|l| l.0),
            "icc_profile_bytes": info.icc_bytes,
            "lossless_colour_transform": info.loss.filter(|l| l.0 == 2).map(|l| l.1),
            "total_bytes": info.total_bytes,
            "bpp": info.total_bytes as f64 * 8.0 / px,
            "complete": info.complete,
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(());
    }
    println!("{}", a.input.display());
    println!(
        "  image      {}x{} {colour}, source {} bit, padded to a multiple of {}",
        h.width, h.height, h.source_depth, h.multiple
    );
    if let Some(n) = info.icc_bytes {
        println!("  colour     ICC profile of {n} bytes (written into decoded PNG and TIFF)");
    }
    if h.steps() == 0 {
        println!("  model      none: no coding steps, the image is in the LOSS chunk alone");
    } else {
        let known = builtin_name(&h.model_id).map_or_else(
            || " (not built in: decode with --model)".to_owned(),
            |n| format!(" (built in: {n})"),
        );
        println!("  model      {}{known}", hex(&h.model_id));
        println!("  seed       {}", h.seed);
    }
    println!(
        "  total      {} bytes, {:.4} bpp{}",
        info.total_bytes,
        info.total_bytes as f64 * 8.0 / px,
        if info.complete {
            ""
        } else {
            " (truncated: no END chunk)"
        }
    );
    if h.steps() > 0 {
        println!("  step  t from -> to     log-SNR   coder  block     K     bytes   cum. bpp");
    }
    for s in &steps {
        println!(
            "  {:>4}  {:>6.1} -> {:<6.1}  {:>7.3}  {:>5}  {:>5}  {:>4}  {:>8}  {:>8.4}",
            s["step"].as_u64().unwrap_or(0),
            s["t_from"].as_f64().unwrap_or(0.0),
            s["t_to"].as_f64().unwrap_or(0.0),
            s["logsnr_to"].as_f64().unwrap_or(0.0),
            s["coder"].as_u64().unwrap_or(0),
            s["block"].as_u64().unwrap_or(0),
            s["k"].as_u64().unwrap_or(0),
            s["bytes"].as_u64().unwrap_or(0),
            s["cumulative_bpp"].as_f64().unwrap_or(0.0)
        );
    }
    if let Some(c) = loss {
        let how = match info.loss {
            Some((2, t)) => format!(
                "kind 2, colour transform {}",
                ["RGB", "G, R-G, B-G", "YCoCg-R"]
                    .get(usize::from(t))
                    .unwrap_or(&"?")
            ),
            Some((k, _)) => format!("kind {k}"),
            None => String::new(),
        };
        println!(
            "  lossless  {:>8} bytes, {:.4} bpp total ({how}{})",
            c.len,
            (c.offset + c.len) as f64 * 8.0 / px,
            if h.steps() == 0 {
                "; decoded without a network"
            } else {
                "; predicted with the last step's reconstruction"
            }
        );
    }
    if info.header.steps() > steps.len() {
        println!(
            "  ({} of {} steps present)",
            steps.len(),
            info.header.steps()
        );
    }
    Ok(())
}
