//! `ddpmc serve`: a local viewer that plays the progressive decode of .ddpmc files.
//!
//! One page (embedded: `serve.html`) and a small JSON/PNG API, on 127.0.0.1 only:
//! - `GET /`: the page;
//! - `GET /api/files`: the files: id, name, size, image size, entries (steps, plus one for a
//!   LOSS chunk), whether an original image was found next to the file;
//! - `GET /api/step?file=I&n=K`: decodes the file up to entry K (1-based) if not done yet and
//!   returns its bytes received, bpp, t, PSNR against the original (if any), decode time;
//! - `GET /api/image?file=I&n=K`: entry K as PNG; `GET /api/original?file=I`: the original.
//!
//! Requests are served one at a time; a file is decoded incrementally (each step once, as the
//! page asks for it), under the library's limits.

use std::path::{Path, PathBuf};
use std::time::Instant;

use ddpmc::codec::{chunk_ends, inspect, Decoder, Recon};
use ddpmc::model::Denoiser;

/// The page, with its script and style.
const INDEX_HTML: &str = include_str!("serve.html");

/// Play the progressive decode of .ddpmc files in a browser (local server on 127.0.0.1).
///
/// For each FILE.ddpmc, an image FILE.png (or another format the bench reads: .jpg, .bmp,
/// .tiff, .ppm, .webp ...) next to it is taken as the original: the page then shows PSNR per step and a side-by-side
/// view.
#[derive(clap::Args)]
pub struct Args {
    /// .ddpmc files, or folders holding them.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Port on 127.0.0.1 (0: any free port); the address is printed.
    #[arg(long, default_value_t = 8390)]
    port: u16,
    /// Model weights (safetensors) [default: the built-in model the file names; ddpmc builds in
    /// the default model and every default since b48].
    #[arg(long)]
    model: Option<PathBuf>,
    /// Stop after answering this many requests (for tests and scripts).
    #[arg(long, hide = true)]
    max_requests: Option<usize>,
}

/// One decoded entry of a file.
struct StepOut {
    png: Vec<u8>,
    json: String,
}

/// One file: its bytes, its incremental decoder and the entries decoded so far.
struct Entry<'m> {
    name: String,
    bytes: Vec<u8>,
    ends: Vec<usize>,
    next_chunk: usize,
    decoder: Decoder<'m>,
    entries: usize,
    original: Option<image::RgbImage>,
    out: Vec<StepOut>,
    width: u32,
    height: u32,
}

impl<'m> Entry<'m> {
    fn open(path: &Path, model: Option<&'m dyn Denoiser>) -> ddpmc::Result<Self> {
        let bytes = crate::read_ddpmc(path)?;
        let model = match model {
            Some(m) => m,
            None => crate::decoding_model(None, &bytes)?,
        };
        let info = inspect(&bytes)?;
        let h = &info.header;
        let entries = h.steps() + usize::from(info.loss.is_some());
        let original = ddpmc::bench::run::IMAGE_EXTENSIONS
            .iter()
            .map(|e| path.with_extension(e))
            .find(|p| p.is_file())
            .and_then(|p| image::open(p).ok())
            .map(|i| i.to_rgb8())
            .filter(|i| i.width() == h.width && i.height() == h.height);
        Ok(Entry {
            name: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            ends: chunk_ends(&bytes),
            bytes,
            next_chunk: 0,
            decoder: Decoder::new(model),
            entries,
            original,
            out: Vec::new(),
            width: h.width,
            height: h.height,
        })
    }

    /// Decode up to entry `k` (1-based).
    fn decode_to(&mut self, k: usize) -> ddpmc::Result<&StepOut> {
        if k == 0 || k > self.entries {
            return Err(ddpmc::Error::Parameter(format!(
                "entry {k} of {} (allowed 1..={})",
                self.name, self.entries
            )));
        }
        while self.out.len() < k {
            let t0 = Instant::now();
            let before = (self.decoder.steps_done(), self.decoder.is_lossless());
            // Push whole chunks until a step (or the LOSS chunk) completes.
            while (self.decoder.steps_done(), self.decoder.is_lossless()) == before {
                let Some(&end) = self.ends.get(self.next_chunk) else {
                    return Err(ddpmc::Error::Format(format!(
                        "{} ends before entry {k}",
                        self.name
                    )));
                };
                let start = if self.next_chunk == 0 {
                    0
                } else {
                    self.ends[self.next_chunk - 1]
                };
                self.decoder.push(&self.bytes[start..end])?;
                self.next_chunk += 1;
            }
            let img = self.decoder.image(Recon::Denoise)?;
            let rgb = img.to_rgb8();
            let psnr = self
                .original
                .as_ref()
                .map(|o| ddpmc::bench::metrics::psnr(o, &rgb))
                .transpose()?;
            let png = crate::image_bytes(&img, image::ImageFormat::Png, None)?;
            let n = self.out.len() + 1;
            let consumed = self.decoder.bytes_consumed();
            let h = self.decoder.header().cloned();
            let t = h
                .as_ref()
                .and_then(|h| h.schedule.get(self.decoder.steps_done()))
                .map(|p| p.t);
            let lossless = self.decoder.is_lossless();
            let px = f64::from(self.width) * f64::from(self.height);
            let json = serde_json::json!({
                "n": n,
                "bytes": consumed,
                "bpp": consumed as f64 * 8.0 / px,
                "t": if lossless { None } else { t },
                "lossless": lossless,
                "psnr": psnr.filter(|p| p.is_finite()),
                "decode_ms": t0.elapsed().as_secs_f64() * 1000.0,
            })
            .to_string();
            self.out.push(StepOut { png, json });
        }
        Ok(&self.out[k - 1])
    }
}

/// The .ddpmc files named or inside the folders named.
fn collect(inputs: &[PathBuf]) -> ddpmc::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in inputs {
        if p.is_dir() {
            let rd = std::fs::read_dir(p)
                .map_err(|e| ddpmc::Error::file(ddpmc::FileOp::ReadDir, p, e))?;
            let mut v: Vec<PathBuf> = rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|e| e == "ddpmc"))
                .collect();
            v.sort();
            out.extend(v);
        } else {
            out.push(p.clone());
        }
    }
    if out.is_empty() {
        return Err(ddpmc::Error::Parameter(
            "no .ddpmc files in the folders given".into(),
        ));
    }
    Ok(out)
}

fn query(url: &str, key: &str) -> Option<usize> {
    let q = url.split_once('?')?.1;
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.parse().ok())
}

type Reply = (u16, &'static str, Vec<u8>);

fn answer(files: &mut [Entry], url: &str) -> Reply {
    let path = url.split('?').next().unwrap_or("");
    let bad = |code: u16, msg: String| (code, "text/plain; charset=utf-8", msg.into_bytes());
    let file = query(url, "file");
    match path {
        "/" | "/index.html" => (
            200,
            "text/html; charset=utf-8",
            INDEX_HTML.as_bytes().to_vec(),
        ),
        "/api/files" => {
            let v: Vec<serde_json::Value> = files
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    serde_json::json!({
                        "id": i,
                        "name": f.name,
                        "bytes": f.bytes.len(),
                        "width": f.width,
                        "height": f.height,
                        "entries": f.entries,
                        "original": f.original.is_some(),
                    })
                })
                .collect();
            (
                200,
                "application/json",
                serde_json::Value::Array(v).to_string().into_bytes(),
            )
        }
        "/api/step" | "/api/image" | "/api/original" => {
            let Some(f) = file.and_then(|i| files.get_mut(i)) else {
                return bad(404, "no such file id".into());
            };
            if path == "/api/original" {
                return match &f.original {
                    Some(o) => match crate::image_bytes(
                        &image::DynamicImage::ImageRgb8(o.clone()),
                        image::ImageFormat::Png,
                        None,
                    ) {
                        Ok(b) => (200, "image/png", b),
                        Err(e) => bad(500, e.to_string()),
                    },
                    None => bad(404, "no original image next to this file".into()),
                };
            }
            let n = query(url, "n").unwrap_or(1);
            match f.decode_to(n) {
                Ok(s) if path == "/api/step" => {
                    (200, "application/json", s.json.clone().into_bytes())
                }
                Ok(s) => (200, "image/png", s.png.clone()),
                Err(e) => bad(422, e.to_string()),
            }
        }
        _ => bad(404, format!("not found: {path}")),
    }
}

/// Run the command.
pub fn run(a: Args) -> ddpmc::Result<()> {
    let paths = collect(&a.inputs)?;
    // One model for every file when given; else each file's own built-in model.
    let given = a.model.as_deref().map(crate::given_model).transpose()?;
    let mut files = paths
        .iter()
        .map(|p| Entry::open(p, given))
        .collect::<ddpmc::Result<Vec<_>>>()?;
    let server = tiny_http::Server::http(("127.0.0.1", a.port)).map_err(|e| {
        ddpmc::Error::Io(std::io::Error::other(format!(
            "cannot listen on 127.0.0.1:{}: {e}",
            a.port
        )))
    })?;
    let addr = server
        .server_addr()
        .to_ip()
        .map_or_else(|| format!("127.0.0.1:{}", a.port), |s| s.to_string());
    println!(
        "serving {} file(s) at http://{addr}/ (Ctrl-C stops)",
        files.len()
    );
    use std::io::Write;
    let _ = std::io::stdout().flush();
    for (served, req) in server.incoming_requests().enumerate() {
        let (code, ctype, body) = if *req.method() == tiny_http::Method::Get {
            answer(&mut files, req.url())
        } else {
            (405, "text/plain", b"GET only".to_vec())
        };
        let mut resp = tiny_http::Response::from_data(body).with_status_code(code);
        if let Ok(h) = tiny_http::Header::from_bytes(&b"Content-Type"[..], ctype.as_bytes()) {
            resp.add_header(h);
        }
        let _ = req.respond(resp);
        if a.max_requests.is_some_and(|m| served + 1 >= m) {
            break;
        }
    }
    Ok(())
}
