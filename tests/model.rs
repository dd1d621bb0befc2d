//! The epsilon-model (SPEC §4.1, §6.4): candle against the PyTorch parity vector, the model id, strict
//! and panic-free loading of weights files, thread-count independence and tiled evaluation.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

use candle_core::{Device, Tensor};
use ddpmc::model::{
    default_model, id_hex, model_id, Denoiser, Tiling, UNet, UNetConfig, DEFAULT_WEIGHTS,
};

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn tiny_bytes() -> Vec<u8> {
    std::fs::read(repo("format-spec/vectors/tiny.safetensors")).unwrap()
}

/// The JSON header of a safetensors file.
fn header(bytes: &[u8]) -> serde_json::Value {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    serde_json::from_slice(&bytes[8..8 + n]).unwrap()
}

/// A deterministic noise-like latent: smooth ramps plus a hash-based wiggle.
fn latent(h: usize, w: usize, seed: u64) -> Vec<f32> {
    let mut out = Vec::with_capacity(3 * h * w);
    for c in 0..3 {
        for y in 0..h {
            for x in 0..w {
                let mut k = seed ^ ((c * 1_000_003 + y * 4099 + x) as u64);
                k = k.wrapping_mul(0x9E37_79B9_7F4A_7C15);
                k ^= k >> 29;
                k = k.wrapping_mul(0xBF58_476D_1CE4_E5B9);
                k ^= k >> 32;
                let u = (k >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
                let smooth = ((x as f32 * 0.05).sin() + (y as f32 * 0.031).cos()) * 0.4;
                out.push(smooth + u * 1.2 - 0.1 * c as f32);
            }
        }
    }
    out
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Every built-in model against PyTorch: the default's parity vector is
/// `models/parity.safetensors`, an earlier default's `models/parity-NAME.safetensors`.
#[test]
fn parity_with_pytorch() {
    for (i, m) in ddpmc::model::BUILTIN_MODELS.iter().enumerate() {
        let (name, weights) = (m.name, m.weights);
        let (file, model) = if i == 0 {
            (
                "models/parity.safetensors".to_owned(),
                "models/default.safetensors".to_owned(),
            )
        } else {
            (
                format!("models/parity-{name}.safetensors"),
                format!("models/{name}.safetensors"),
            )
        };
        assert!(
            std::fs::read(repo(&model)).unwrap() == weights,
            "built-in {name} differs from {model}"
        );
        let net = UNet::from_safetensors_bytes(weights).unwrap();
        println!("{name}:");
        check_parity(&net, &file, &model);
    }
}

fn check_parity(net: &UNet, parity: &str, model: &str) {
    let parity_bytes = std::fs::read(repo(parity)).unwrap();
    let meta = &header(&parity_bytes)["__metadata__"];
    assert_eq!(
        meta["model_id"].as_str().unwrap(),
        id_hex(&net.id()),
        "{parity} is for another model: regenerate it with \
         python train/export.py --weights {model} --parity {parity}"
    );
    let p = candle_core::safetensors::load_buffer(&parity_bytes, &Device::Cpu).unwrap();
    let vec64 = |t: &Tensor| -> Vec<f64> { t.flatten_all().unwrap().to_vec1::<f64>().unwrap() };
    let logsnr = vec64(&p["logsnr"]);
    let abar = vec64(&p["abar"]);
    assert_eq!(logsnr.len(), 3);
    for i in 0..logsnr.len() {
        let z = &p[&format!("z{i}")];
        let (_, h, w) = z.dims3().unwrap();
        let z = z.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let v_ref = vec64(&p[&format!("v{i}")]);
        let v = net.predict_v(&z, h, w, logsnr[i] as f32).unwrap();
        let err_v = v
            .iter()
            .zip(&v_ref)
            .map(|(&a, &b)| (a as f64 - b).abs())
            .fold(0.0, f64::max);
        let x0 = net.predict_x0(&z, h, w, abar[i], logsnr[i]).unwrap();
        let (sa, sb) = (abar[i].sqrt(), (1.0 - abar[i]).sqrt());
        let err_x0 = x0
            .iter()
            .zip(z.iter().zip(&v_ref))
            .map(|(&x, (&zi, &vi))| (x as f64 - (sa * zi as f64 - sb * vi)).abs())
            .fold(0.0, f64::max);
        println!(
            "case {i} ({w}x{h}, log-SNR {:.4}): max |dv| {err_v:.3e}, max |dx0| {err_x0:.3e}",
            logsnr[i]
        );
        assert!(err_v <= 1e-4, "case {i}: max |v - v_torch| = {err_v}");
        assert!(err_x0 <= 1e-4, "case {i}: max |x0 - x0_torch| = {err_x0}");
    }
}

#[test]
fn default_model_loads_with_its_id() {
    let file = std::fs::read(repo("models/default.safetensors")).unwrap();
    assert_eq!(
        file, DEFAULT_WEIGHTS,
        "embedded weights differ from the file"
    );
    let net = default_model().unwrap();
    assert_eq!(net.id(), model_id(&file));
    assert_eq!(id_hex(&net.id()).len(), 64);
    assert_eq!(net.multiple(), 16);
    let from_file = UNet::from_file(repo("models/default.safetensors")).unwrap();
    assert_eq!(from_file.id(), net.id());
    // A small image runs and gives finite values near the input scale.
    let z = latent(32, 48, 1);
    let x0 = net.predict_x0(&z, 32, 48, 0.5, 0.0).unwrap();
    assert!(x0.iter().all(|v| v.is_finite() && v.abs() < 10.0));
}

#[test]
fn flops_per_pixel_as_train_model_py() {
    // Values printed by train/export.py (flops_per_pixel in train/model.py).
    assert_eq!(UNetConfig::default().flops_per_pixel().round(), 110624.0);
    let w64 = UNetConfig::from_json(
        r#"{"blocks":1,"channels":[64,96,128,160],"emb_dim":128,"emb_freqs":16}"#,
    )
    .unwrap();
    assert_eq!(w64.flops_per_pixel().round(), 204872.0);
    let tiny = UNet::from_safetensors_bytes(&tiny_bytes()).unwrap();
    assert_eq!(tiny.config().flops_per_pixel(), 2954.5); // Python rounds half to even: 2954
}

#[test]
fn pixel_shuffle_order_as_torch() {
    use ddpmc::model::{pixel_shuffle2, pixel_unshuffle2};
    // torch.nn.functional.pixel_unshuffle(torch.arange(16.).reshape(1, 2, 2, 4), 2)
    let x = Tensor::arange(0f32, 16.0, &Device::Cpu)
        .unwrap()
        .reshape((1, 2, 2, 4))
        .unwrap();
    let u = pixel_unshuffle2(&x).unwrap();
    assert_eq!(u.dims(), &[1, 8, 1, 2]);
    let want = [
        0., 2., 1., 3., 4., 6., 5., 7., 8., 10., 9., 11., 12., 14., 13., 15.,
    ];
    assert_eq!(u.flatten_all().unwrap().to_vec1::<f32>().unwrap(), want);
    let back = pixel_shuffle2(&u).unwrap();
    assert_eq!(
        back.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        x.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    );
}

#[test]
fn model_id_hex() {
    let mut id = [0u8; 32];
    id[0] = 0xab;
    id[31] = 0x01;
    let s = id_hex(&id);
    assert!(s.starts_with("ab00") && s.ends_with("0001") && s.len() == 64);
}

/// A tensor to serialise: name, dtype, shape, raw little-endian bytes.
type RawTensor = (String, &'static str, Vec<usize>, Vec<u8>);

/// Build a safetensors file (f32 tensors, or any dtype given as raw bytes).
fn safetensors(tensors: &[RawTensor], meta: &[(&str, &str)]) -> Vec<u8> {
    let mut h = serde_json::Map::new();
    let m: serde_json::Map<_, _> = meta
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
        .collect();
    h.insert("__metadata__".into(), m.into());
    let mut data = Vec::new();
    for (name, dtype, shape, bytes) in tensors {
        h.insert(
            name.clone(),
            serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [data.len(), data.len() + bytes.len()]}),
        );
        data.extend_from_slice(bytes);
    }
    let mut hb = serde_json::to_vec(&serde_json::Value::Object(h)).unwrap();
    while !hb.len().is_multiple_of(8) {
        hb.push(b' ');
    }
    let mut out = (hb.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&hb);
    out.extend_from_slice(&data);
    out
}

fn tiny_tensors() -> (Vec<RawTensor>, String) {
    let bytes = tiny_bytes();
    let cfg = header(&bytes)["__metadata__"]["config"]
        .as_str()
        .unwrap()
        .to_owned();
    let map: HashMap<String, Tensor> =
        candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).unwrap();
    let mut v: Vec<_> = map
        .into_iter()
        .map(|(k, t)| {
            let shape = t.dims().to_vec();
            let data: Vec<u8> = t
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect();
            (k, "F32", shape, data)
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    (v, cfg)
}

#[test]
fn malformed_weights_are_errors() {
    let (ts, cfg) = tiny_tensors();
    // The hand-built copy loads, so each variant below fails for the reason it names.
    let ok = safetensors(&ts, &[("config", &cfg)]);
    UNet::from_safetensors_bytes(&ok).unwrap();

    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("short", vec![1, 2, 3]),
        ("huge header length", u64::MAX.to_le_bytes().to_vec()),
        ("no config", safetensors(&ts, &[])),
        (
            "config not JSON",
            safetensors(&ts, &[("config", "{channels")]),
        ),
        (
            "config unknown key",
            safetensors(&ts, &[("config", &cfg.replace("}", ",\"depth\":3}"))]),
        ),
        (
            "config missing key",
            safetensors(&ts, &[("config", &cfg.replace("\"blocks\":1,", ""))]),
        ),
        (
            "config one frequency",
            safetensors(
                &ts,
                &[("config", &cfg.replace("\"emb_freqs\":4", "\"emb_freqs\":1"))],
            ),
        ),
        (
            "config zero channels",
            safetensors(&ts, &[("config", &cfg.replace("[8,8,8,8]", "[8,0,8,8]"))]),
        ),
        (
            "config fewer levels",
            safetensors(&ts, &[("config", &cfg.replace("[8,8,8,8]", "[8,8,8]"))]),
        ),
        (
            "config wider",
            safetensors(&ts, &[("config", &cfg.replace("[8,8,8,8]", "[8,8,8,16]"))]),
        ),
        ("missing tensor", safetensors(&ts[1..], &[("config", &cfg)])),
    ];
    let mut extra = ts.clone();
    extra.push(("zzz.weight".into(), "F32", vec![1], vec![0; 4]));
    cases.push(("extra tensor", safetensors(&extra, &[("config", &cfg)])));
    let mut int = ts.clone();
    int[0].1 = "I32";
    cases.push(("integer tensor", safetensors(&int, &[("config", &cfg)])));
    let mut short = ts.clone();
    short[0].3.pop();
    cases.push((
        "tensor bytes short",
        safetensors(&short, &[("config", &cfg)]),
    ));
    for n in [8, 9, 100, ok.len() / 2, ok.len() - 1] {
        cases.push(("truncated", ok[..n].to_vec()));
    }
    for (what, bytes) in &cases {
        match UNet::from_safetensors_bytes(bytes) {
            Err(e) => println!("{what}: {e}"),
            Ok(_) => panic!("{what}: loaded"),
        }
    }
    // Byte flips anywhere in the header never panic (some flips stay valid, e.g. in padding).
    let hlen = 8 + u64::from_le_bytes(ok[..8].try_into().unwrap()) as usize;
    let mut k: u64 = 12345;
    for _ in 0..400 {
        k = k
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut b = ok.clone();
        let pos = (k >> 33) as usize % hlen;
        b[pos] ^= 1 << ((k >> 20) % 8);
        let _ = UNet::from_safetensors_bytes(&b);
    }
}

/// `model::load` dispatches on the config's `"arch"`: absent or `"unet-v1"` is the U-Net (the
/// same network and id either way as `UNet`), anything else is refused by name, never run as
/// a U-Net.
#[test]
fn models_load_by_architecture() {
    let (ts, cfg) = tiny_tensors();
    let plain = safetensors(&ts, &[("config", &cfg)]);
    let named = safetensors(
        &ts,
        &[("config", &cfg.replace("}", ",\"arch\":\"unet-v1\"}"))],
    );
    let other = safetensors(
        &ts,
        &[("config", &cfg.replace("}", ",\"arch\":\"dit-s\"}"))],
    );
    assert_eq!(ddpmc::model::architecture(&plain).unwrap(), "unet-v1");
    assert_eq!(ddpmc::model::architecture(&named).unwrap(), "unet-v1");
    assert_eq!(ddpmc::model::architecture(&other).unwrap(), "dit-s");
    let z = latent(16, 16, 3);
    for bytes in [&plain, &named] {
        let net = ddpmc::model::load(bytes).unwrap();
        let unet = UNet::from_safetensors_bytes(bytes).unwrap();
        assert_eq!(net.id(), unet.id());
        assert_eq!(
            net.predict_x0(&z, 16, 16, 0.3, (0.3f64 / 0.7).ln())
                .unwrap(),
            unet.predict_x0(&z, 16, 16, 0.3, (0.3f64 / 0.7).ln())
                .unwrap()
        );
    }
    let e = ddpmc::model::load(&other)
        .err()
        .expect("unknown architecture loaded");
    assert!(e.to_string().contains("dit-s"), "{e}");
    assert!(UNet::from_safetensors_bytes(&other).is_err());
    // From a file: errors name the path.
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("ddpmc-arch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("dit.safetensors");
    std::fs::write(&path, &other).unwrap();
    let e = ddpmc::model::load_file(&path).err().unwrap();
    assert!(e.to_string().contains(&path.display().to_string()), "{e}");
    let missing = dir.join("none.safetensors");
    assert_eq!(
        ddpmc::model::load_file(&missing).err().unwrap().path(),
        Some(missing.as_path())
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_inputs_are_errors() {
    let net = UNet::from_safetensors_bytes(&tiny_bytes()).unwrap();
    let z = latent(16, 16, 2);
    assert!(
        net.predict_x0(&z, 16, 8, 0.5, 0.0).is_err(),
        "width not a multiple"
    );
    assert!(net.predict_x0(&z[1..], 16, 16, 0.5, 0.0).is_err(), "length");
    assert!(net.predict_x0(&z, 16, 16, 1.5, 0.0).is_err(), "abar");
    assert!(
        net.predict_x0(&z, 16, 16, 0.5, f64::NAN).is_err(),
        "log-SNR"
    );
    assert!(net.predict_x0(&[], 0, 0, 0.5, 0.0).is_err(), "empty");
    assert!(net.predict_x0(&z, 16, 16, 0.5, 0.0).is_ok());
}

/// Digest of the default model's output on a 64x64 latent, printed by the child process.
#[test]
#[ignore = "child process of same_output_with_1_and_2_threads"]
fn thread_child() {
    let net = default_model().unwrap();
    let z = latent(64, 64, 3);
    let x0 = net.predict_x0(&z, 64, 64, 0.3, -0.847).unwrap();
    let bytes: Vec<u8> = x0.iter().flat_map(|v| v.to_le_bytes()).collect();
    println!(
        "THREADS {} {} DIGEST {}",
        candle_core::utils::get_num_threads(),
        rayon::current_num_threads(),
        id_hex(&model_id(&bytes))
    );
}

#[test]
fn same_output_with_1_and_2_threads() {
    let exe = std::env::current_exe().unwrap();
    let run = |n: &str| -> String {
        let out = Command::new(&exe)
            .args([
                "--exact",
                "thread_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("RAYON_NUM_THREADS", n)
            .env("CANDLE_NUM_THREADS", n)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "child failed: {text}");
        let line = text
            .lines()
            .find_map(|l| l.find("THREADS ").map(|i| l[i..].to_owned()))
            .unwrap_or_else(|| panic!("no digest in {text}"));
        assert!(line.starts_with(&format!("THREADS {n} {n} ")), "{line}");
        line.rsplit(' ').next().unwrap().to_owned()
    };
    assert_eq!(run("1"), run("2"));
}

#[test]
fn tiles_covering_the_image_equal_whole() {
    // With a halo as large as the image every tile sees the whole image: exact equality
    // checks the cutting and pasting.
    let net = UNet::from_safetensors_bytes(&tiny_bytes()).unwrap();
    let (h, w) = (96, 128);
    let z = latent(h, w, 4);
    let whole = net.predict_x0(&z, h, w, 0.7, 0.847).unwrap();
    let tiled = net
        .predict_x0_tiled(
            &z,
            h,
            w,
            0.7,
            0.847,
            Tiling {
                core: 32,
                halo: 128,
            },
        )
        .unwrap();
    assert_eq!(whole, tiled);
}

#[test]
fn tiled_matches_whole_on_a_large_image() {
    // Above Tiling::MAX_WHOLE pixels predict_x0 runs in Tiling::DEFAULT tiles (the tiny
    // model keeps this fast); it stays close to a whole-image evaluation (5e-4 here).
    let net = UNet::from_safetensors_bytes(&tiny_bytes()).unwrap();
    let (h, w) = (1024, 1040);
    assert!(h * w > Tiling::MAX_WHOLE);
    let z = latent(h, w, 5);
    let (abar, lam) = (0.2f64, (0.2f64 / 0.8).ln());
    let tiled = net.predict_x0(&z, h, w, abar, lam).unwrap();
    let v = net.predict_v(&z, h, w, lam as f32).unwrap();
    let whole: Vec<f32> = z
        .iter()
        .zip(&v)
        .map(|(&zi, &vi)| (abar.sqrt() * zi as f64 - (1.0 - abar).sqrt() * vi as f64) as f32)
        .collect();
    let d = max_abs_diff(&tiled, &whole);
    println!("tiny model, {w}x{h}, default tiling: max |tiled - whole| = {d:.3e}");
    assert!(d < 1e-2, "max |tiled - whole| = {d}");
}

#[test]
fn tiled_default_model_close_to_whole() {
    // The default model on 256x256 with small tiles (64-pixel cores). The network's reach
    // grows with training, so a short halo differs visibly from the whole-image result; a
    // longer one must bring the tiled result closer, and within about one 8-bit level at
    // 96 pixels (the codec uses 128; models/README.md has the table for a 768x512 image).
    let net = default_model().unwrap();
    let (h, w) = (256, 256);
    let z = latent(h, w, 6);
    for (abar, lam) in [(0.9f64, (9.0f64).ln()), (0.05, (0.05f64 / 0.95).ln())] {
        let whole = net.predict_x0(&z, h, w, abar, lam).unwrap();
        let diff = |halo| {
            let tiled = net
                .predict_x0_tiled(&z, h, w, abar, lam, Tiling { core: 64, halo })
                .unwrap();
            max_abs_diff(&tiled, &whole)
        };
        let (short, long) = (diff(32), diff(96));
        println!(
            "default model 256x256, cores 64, abar {abar}: max |tiled - whole| = {short:.3e} (halo 32), {long:.3e} (halo 96)"
        );
        assert!(
            long < short,
            "halo 96 ({long}) not closer than halo 32 ({short})"
        );
        assert!(
            long < 0.01,
            "max |tiled - whole| = {long} with a 96-pixel halo"
        );
    }
}
