//! Command-line tests: encode / decode / info as a user runs them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const TINY: &str = "format-spec/vectors/tiny.safetensors";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn ddpmc(args: &[&str], threads: Option<&str>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ddpmc"));
    c.args(args).current_dir(root());
    if let Some(t) = threads {
        c.env("RAYON_NUM_THREADS", t);
    }
    c.output().expect("run ddpmc")
}

fn ok(args: &[&str]) -> Output {
    let o = ddpmc(args, None);
    assert!(
        o.status.success(),
        "ddpmc {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// `ddpmc encode SRC -o OUT --model TINY --force EXTRA...`, which must succeed.
fn encode_tiny(src: &str, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["encode", src, "-o", s(out), "--model", TINY, "--force"];
    args.extend_from_slice(extra);
    ok(&args)
}

/// A path in this process's scratch folder, under Cargo's folder for integration-test data
/// (`target/tmp`, removed by `cargo clean`), so that runs of the tests leave nothing in the
/// system's temporary folder.
fn tmp(name: &str) -> PathBuf {
    let d =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("ddpmc-cli-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn default_model_round_trip_with_no_options() {
    let src = tmp("odd.png");
    std::fs::copy(root().join("samples/kodim19_odd.png"), &src).unwrap();
    ok(&["encode", s(&src)]);
    let coded = src.with_extension("ddpmc");
    assert!(coded.exists());
    // Never overwrite without --force.
    let again = ddpmc(&["encode", s(&src)], None);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    // The default output name does not collide with the source image.
    ok(&["decode", s(&coded)]);
    let out = src.with_extension("decoded.png");
    let img = image::open(&out).unwrap();
    assert_eq!((img.width(), img.height()), (53, 41));
}

/// A file coded with an earlier default model (built in, `models/b48.safetensors`) decodes with
/// no model given: the decoder takes the built-in model the file names. `info` names it.
#[test]
fn files_of_earlier_default_models_decode_without_options() {
    let src = root().join("samples/kodim19_odd.png");
    let old = tmp("old-default.ddpmc");
    let old_png = tmp("old-default.png");
    ok(&[
        "encode",
        s(&src),
        "-o",
        s(&old),
        "-q",
        "1",
        "--model",
        "models/b48.safetensors",
        "--force",
        "--quiet",
    ]);
    let with_file = tmp("old-default-given.png");
    ok(&["decode", s(&old), "-o", s(&old_png), "--force", "--quiet"]);
    ok(&[
        "decode",
        s(&old),
        "-o",
        s(&with_file),
        "--model",
        "models/b48.safetensors",
        "--force",
        "--quiet",
    ]);
    assert_eq!(
        image::open(&old_png).unwrap().to_rgb8(),
        image::open(&with_file).unwrap().to_rgb8(),
        "the built-in b48 is the model of models/b48.safetensors"
    );
    let info = String::from_utf8_lossy(&ok(&["info", s(&old)]).stdout).into_owned();
    assert!(info.contains("(built in: b48)"), "{info}");
    let json = String::from_utf8_lossy(&ok(&["info", "--json", s(&old)]).stdout).into_owned();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["model_builtin"], "b48", "{json}");
    // A file of the current default names it; one of another model says how to decode it.
    let new = tmp("new-default.ddpmc");
    ok(&[
        "encode",
        s(&src),
        "-o",
        s(&new),
        "-q",
        "1",
        "--force",
        "--quiet",
    ]);
    let info = String::from_utf8_lossy(&ok(&["info", s(&new)]).stdout).into_owned();
    assert!(info.contains("(built in: w64n3)"), "{info}");
    // ... the first built-in model, which `--version` names (`version_names_the_default_model`).
    let json = String::from_utf8_lossy(&ok(&["info", "--json", s(&new)]).stdout).into_owned();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let first = &ddpmc::model::BUILTIN_MODELS[0];
    assert_eq!(v["model_builtin"], first.name, "{json}");
    assert_eq!(v["model_id"], first.id, "{json}");
    let tiny = tmp("tiny-model.ddpmc");
    encode_tiny(s(&src), &tiny, &["-q", "1", "--quiet"]);
    let info = String::from_utf8_lossy(&ok(&["info", s(&tiny)]).stdout).into_owned();
    assert!(info.contains("not built in: decode with --model"), "{info}");
    let json = String::from_utf8_lossy(&ok(&["info", "--json", s(&tiny)]).stdout).into_owned();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(v["model_builtin"].is_null(), "{json}");
    let o = ddpmc(
        &["decode", s(&tiny), "-o", s(&tmp("tiny.png")), "--force"],
        None,
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("model mismatch"));
}

/// `--version` names the default model: the first built-in model, the one a file encoded with
/// no `--model` names (`files_of_earlier_default_models_decode_without_options`).
#[test]
fn version_names_the_default_model() {
    let v = String::from_utf8_lossy(&ok(&["--version"]).stdout).into_owned();
    let m = &ddpmc::model::BUILTIN_MODELS[0];
    assert!(
        v.starts_with(&format!("ddpmc {}", env!("CARGO_PKG_VERSION"))),
        "{v}"
    );
    assert!(
        v.contains(&format!("default model {}, id {}", m.name, m.id)),
        "{v}"
    );
}

/// A reader that closes the pipe early ends `ddpmc info` quietly: no panic message.
#[cfg(unix)]
#[test]
fn closed_output_pipe_is_not_a_panic() {
    let f = tmp("pipe.ddpmc");
    encode_tiny("samples/kodim19_odd.png", &f, &["-q", "1", "--quiet"]);
    for _ in 0..5 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ddpmc"))
            .args(["info", s(&f)])
            .current_dir(root())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let o = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn decode_options_frames_steps_info() {
    let coded = tmp("k04.ddpmc");
    ok(&[
        "encode",
        "samples/kodim08_gray.png",
        "-o",
        s(&coded),
        "--model",
        TINY,
        "-q",
        "4",
        "--force",
    ]);
    let frames = tmp("frames");
    let out = tmp("k04_2.png");
    ok(&[
        "decode",
        s(&coded),
        "-o",
        s(&out),
        "--model",
        TINY,
        "--steps",
        "2",
        "--frames",
        s(&frames),
        "--recon",
        "flow",
        "--force",
    ]);
    assert!(frames.join("step_01.png").exists() && frames.join("step_02.png").exists());
    assert!(!frames.join("step_03.png").exists());
    assert!(!image::open(&out).unwrap().color().has_color());
    // The frames of that decode are not overwritten without --force.
    let again = ddpmc(
        &[
            "decode",
            s(&coded),
            "-o",
            s(&tmp("k04_again.png")),
            "--model",
            TINY,
            "--frames",
            s(&frames),
        ],
        None,
    );
    assert!(!again.status.success());
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(
        err.contains("step_01.png") && err.contains("--force"),
        "{err}"
    );
    assert!(!tmp("k04_again.png").exists());
    let info = ok(&["info", s(&coded), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(v["width"], 64);
    assert_eq!(v["colour"], "gray");
    assert_eq!(v["steps"].as_array().unwrap().len(), 4);
    assert_eq!(v["total_bytes"], std::fs::metadata(&coded).unwrap().len());
    let text = ok(&["info", s(&coded)]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("cum. bpp"));
}

#[test]
fn one_step_files_are_reported_in_the_singular_and_extra_steps_get_a_notice() {
    let coded = tmp("one_step.ddpmc");
    let enc = encode_tiny("samples/kodim08_gray.png", &coded, &["-q", "1"]);
    let err = String::from_utf8_lossy(&enc.stderr);
    assert!(err.contains(" 1 step") && !err.contains("1 steps"), "{err}");
    let dec = ok(&[
        "decode",
        s(&coded),
        "-o",
        s(&tmp("one_step.png")),
        "--model",
        TINY,
        "--steps",
        "5",
        "--force",
    ]);
    let err = String::from_utf8_lossy(&dec.stderr);
    assert!(err.contains("--steps 5, but the file has 1 step"), "{err}");
    assert!(!err.contains("1 steps"), "{err}");
}

#[test]
fn every_file_error_names_its_path() {
    let missing = tmp("no-such-folder");
    let coded = tmp("named.ddpmc");
    encode_tiny("samples/kodim08_gray.png", &coded, &["-q", "2"]);
    let a_file = tmp("a-file");
    std::fs::write(&a_file, b"x").unwrap();
    let input = missing.join("in.png");
    let model = missing.join("m.safetensors");
    let out_dir = missing.join("x.ddpmc");
    let frames = a_file.join("frames");
    let png = tmp("named.png");
    let cases: [(Vec<&str>, String); 4] = [
        (
            vec!["encode", s(&input), "-o", s(&coded), "--force"],
            format!("cannot read {}", input.display()),
        ),
        (
            vec![
                "encode",
                "samples/kodim08_gray.png",
                "-o",
                s(&coded),
                "--model",
                s(&model),
                "--force",
            ],
            format!("cannot read {}", model.display()),
        ),
        (
            vec![
                "encode",
                "samples/kodim08_gray.png",
                "-o",
                s(&out_dir),
                "--model",
                TINY,
            ],
            format!("cannot write into {}", missing.display()),
        ),
        (
            vec![
                "decode",
                s(&coded),
                "-o",
                s(&png),
                "--model",
                TINY,
                "--frames",
                s(&frames),
                "--force",
            ],
            format!("cannot create folder {}", frames.display()),
        ),
    ];
    for (args, want) in cases {
        let o = ddpmc(&args, None);
        assert!(!o.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(&want), "{args:?}: {err}");
    }
    assert!(!png.exists());
}

#[test]
fn errors_leave_no_output() {
    let coded = tmp("err.ddpmc");
    ok(&[
        "encode",
        "samples/kodim15_rgba.png",
        "-o",
        s(&coded),
        "--model",
        TINY,
        "--force",
    ]);
    let bytes = std::fs::read(&coded).unwrap();
    // Flipped byte inside the last STEP chunk: CRC error, non-zero exit, no file.
    let mut bad = bytes.clone();
    let n = bad.len();
    bad[n - 40] ^= 0x10;
    let badf = tmp("bad.ddpmc");
    std::fs::write(&badf, &bad).unwrap();
    let out = tmp("bad.png");
    let _ = std::fs::remove_file(&out);
    let o = ddpmc(&["decode", s(&badf), "-o", s(&out), "--model", TINY], None);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("CRC"));
    assert!(!out.exists());
    // --partial writes the last good step, with exit status 3 (an incomplete file).
    let o = ddpmc(
        &[
            "decode",
            s(&badf),
            "-o",
            s(&out),
            "--model",
            TINY,
            "--partial",
        ],
        None,
    );
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.exists());
    // Model mismatch: the default model cannot decode a file made with the tiny one.
    let out2 = tmp("mismatch.png");
    let o = ddpmc(&["decode", s(&coded), "-o", s(&out2)], None);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("model mismatch"));
    assert!(!out2.exists());
    // Truncated: decodes whole chunks, says so and exits with status 3.
    let cut = tmp("cut.ddpmc");
    std::fs::write(&cut, &bytes[..bytes.len() - 30]).unwrap();
    let out3 = tmp("cut.png");
    let o = ddpmc(
        &[
            "decode",
            s(&cut),
            "-o",
            s(&out3),
            "--model",
            TINY,
            "--force",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&o.stderr).contains("truncated"));
    assert!(out3.exists());
}

#[test]
fn thread_count_does_not_change_files() {
    let mut outs = Vec::new();
    for t in ["1", "2"] {
        let coded = tmp(&format!("t{t}.ddpmc"));
        let png = tmp(&format!("t{t}.png"));
        for args in [
            vec![
                "encode",
                "samples/kodim04_crop.png",
                "-o",
                s(&coded),
                "--model",
                TINY,
                "--lossless",
                "--force",
            ],
            vec![
                "decode",
                s(&coded),
                "-o",
                s(&png),
                "--model",
                TINY,
                "--steps",
                "2",
                "--force",
            ],
        ] {
            // RAYON_NUM_THREADS and --threads both set the pool; the files must not change.
            let mut args = args.clone();
            args.extend(["--threads", t]);
            let o = ddpmc(&args, Some(t));
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        }
        outs.push((std::fs::read(&coded).unwrap(), std::fs::read(&png).unwrap()));
    }
    assert!(outs[0] == outs[1]);
}

/// Run `ddpmc args` with a 4 KiB tmpfs mounted at `mnt` (a private mount namespace of an
/// unprivileged user namespace); `setup` runs first inside it. None where the system does not
/// allow such namespaces.
fn on_full_disk(mnt: &Path, setup: &str, args: &[&str]) -> Option<(Output, String)> {
    let probe = Command::new("unshare")
        .args(["-rm", "sh", "-c"])
        .arg(format!("mount -t tmpfs -o size=4k tmpfs {}", s(mnt)))
        .output();
    if !probe.map(|o| o.status.success()).unwrap_or(false) {
        eprintln!("skipped: unshare -rm with a tmpfs mount is not allowed here");
        return None;
    }
    let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
    let script = format!(
        "mount -t tmpfs -o size=4k tmpfs {m} && {setup} && {bin} {cmd}; rc=$?; ls -a {m}; cat {m}/out.png 2>/dev/null; exit $rc",
        m = s(mnt),
        bin = env!("CARGO_BIN_EXE_ddpmc"),
        cmd = quoted.join(" ")
    );
    let o = Command::new("unshare")
        .args(["-rm", "sh", "-c", &script])
        .current_dir(root())
        .output()
        .expect("run unshare");
    let listing = String::from_utf8_lossy(&o.stdout).into_owned();
    Some((o, listing))
}

#[test]
fn full_disk_fails_and_keeps_the_old_output() {
    let coded = tmp("full.ddpmc");
    ok(&[
        "encode",
        "samples/kodim23_crop.png",
        "-o",
        s(&coded),
        "--model",
        TINY,
        "--force",
        "--quiet",
    ]);
    let mnt = tmp("fullmnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let out = format!("{}/out.png", s(&mnt));
    // A fresh output on a full disk: an error, and no file at all.
    let Some((o, ls)) = on_full_disk(
        &mnt,
        "true",
        &["decode", s(&coded), "-o", &out, "--model", TINY],
    ) else {
        return;
    };
    assert!(!o.status.success(), "decode onto a full disk succeeded");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("No space left") && err.contains("out.png"),
        "{err}"
    );
    assert!(!ls.contains("out.png") && !ls.contains(".tmp"), "{ls}");
    // --force over a good file: an error, and the old file unchanged.
    let (o, ls) = on_full_disk(
        &mnt,
        &format!("printf old > {out}"),
        &["decode", s(&coded), "-o", &out, "--model", TINY, "--force"],
    )
    .unwrap();
    assert!(!o.status.success());
    assert!(ls.contains("out.png") && !ls.contains(".tmp"), "{ls}");
    assert!(ls.ends_with("old"), "the old output was replaced: {ls}");
    // Frames onto a full disk fail too.
    let (o, _) = on_full_disk(
        &mnt,
        "true",
        &[
            "decode",
            s(&coded),
            "-o",
            "/dev/null/never.png",
            "--frames",
            s(&mnt),
            "--model",
            TINY,
        ],
    )
    .unwrap();
    assert!(!o.status.success());
}

#[test]
fn hostile_inputs_fail_at_once() {
    // An endless non-ddpmc input is refused on its first bytes (no unbounded read).
    if Path::new("/dev/zero").exists() {
        for cmd in ["info", "decode"] {
            let o = ddpmc(
                &[cmd, "/dev/zero", "--model", TINY][..if cmd == "info" { 2 } else { 4 }],
                None,
            );
            assert!(!o.status.success());
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(
                err.contains("not a ddpmc file") && err.contains("/dev/zero"),
                "{err}"
            );
        }
    }
    // An empty file or an empty standard input (closed at once by `output()`) is named as
    // such.
    let empty = tmp("empty.ddpmc");
    std::fs::write(&empty, b"").unwrap();
    let png = tmp("empty-out.png");
    for (input, name) in [(s(&empty), s(&empty)), ("-", "standard input")] {
        let o = ddpmc(&["decode", input, "-o", s(&png), "--model", TINY], None);
        assert_eq!(o.status.code(), Some(1));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(&format!("{name} is empty")), "{err}");
    }
    // --steps 0 is a usage error, not a file error.
    let o = ddpmc(&["decode", "x.ddpmc", "--steps", "0"], None);
    assert_eq!(o.status.code(), Some(2));
    // The source image is never the output, even with --force.
    let src = tmp("self.png");
    std::fs::copy(root().join("samples/kodim19_odd.png"), &src).unwrap();
    let before = std::fs::read(&src).unwrap();
    let o = ddpmc(
        &["encode", s(&src), "-o", s(&src), "--force", "--model", TINY],
        None,
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("is the input image"));
    assert_eq!(std::fs::read(&src).unwrap(), before);
}

#[test]
fn input_images_are_sniffed_and_bounded_before_decoding() {
    // Content, not extension: a PNG named .dat encodes.
    let dat = tmp("odd.dat");
    std::fs::copy(root().join("samples/kodim19_odd.png"), &dat).unwrap();
    let out = tmp("odd-dat.ddpmc");
    ok(&[
        "encode",
        s(&dat),
        "-o",
        s(&out),
        "--model",
        TINY,
        "--force",
        "--quiet",
    ]);
    // A tiny file that claims more than 16384 pixels per side is refused before decoding.
    let wide = tmp("wide.png");
    image::RgbImage::new(20000, 1).save(&wide).unwrap();
    let o = ddpmc(
        &[
            "encode",
            s(&wide),
            "-o",
            s(&tmp("wide.ddpmc")),
            "--model",
            TINY,
        ],
        None,
    );
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("wide.png") && err.contains("limit"), "{err}");
}

#[test]
fn steps_stop_reading_before_a_corrupt_later_chunk() {
    let coded = tmp("c3.ddpmc");
    encode_tiny("samples/kodim23_crop.png", &coded, &["-q", "3", "--quiet"]);
    let mut bytes = std::fs::read(&coded).unwrap();
    // chunk_ends: after the preamble, HEAD, STEP 1, STEP 2, STEP 3, ...; flip a byte inside
    // STEP 3's payload.
    let ends = ddpmc::codec::chunk_ends(&bytes);
    let at = ends[3] + 20;
    assert!(at < ends[4]);
    bytes[at] ^= 0x40;
    let bad = tmp("c3-bad.ddpmc");
    std::fs::write(&bad, &bytes).unwrap();
    let out = tmp("c3.png");
    let all = ddpmc(
        &["decode", s(&bad), "-o", s(&out), "--model", TINY, "--force"],
        None,
    );
    assert!(!all.status.success(), "the corrupt chunk went unnoticed");
    let two = ddpmc(
        &[
            "decode",
            s(&bad),
            "-o",
            s(&out),
            "--model",
            TINY,
            "--force",
            "--steps",
            "2",
        ],
        None,
    );
    assert!(
        two.status.success(),
        "{}",
        String::from_utf8_lossy(&two.stderr)
    );
    assert!(!String::from_utf8_lossy(&two.stderr).contains("truncated"));
    // More steps than the file has: decoded, with a notice.
    let many = ddpmc(
        &[
            "decode",
            s(&coded),
            "-o",
            s(&out),
            "--model",
            TINY,
            "--force",
            "--steps",
            "9",
        ],
        None,
    );
    assert!(many.status.success());
    assert!(String::from_utf8_lossy(&many.stderr)
        .contains("--steps 9, but the file has 3 steps: decoded them all"));
}

/// Run ddpmc with `input` on standard input; returns its output.
fn piped(args: &[&str], input: &[u8]) -> Output {
    use std::io::Write;
    let mut c = Command::new(env!("CARGO_BIN_EXE_ddpmc"))
        .args(args)
        .current_dir(root())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run ddpmc");
    // A child that fails early closes its input: a broken pipe here is not an error.
    let _ = c.stdin.take().unwrap().write_all(input);
    c.wait_with_output().unwrap()
}

#[test]
fn standard_input_and_output() {
    let png = std::fs::read(root().join("samples/kodim19_odd.png")).unwrap();
    let enc = piped(
        &["encode", "-", "-o", "-", "--quiet", "--model", TINY],
        &png,
    );
    assert!(
        enc.status.success(),
        "{}",
        String::from_utf8_lossy(&enc.stderr)
    );
    // The same bytes as a file encode.
    let file = tmp("stdio.ddpmc");
    ok(&[
        "encode",
        "samples/kodim19_odd.png",
        "-o",
        s(&file),
        "--quiet",
        "--force",
        "--model",
        TINY,
    ]);
    assert_eq!(enc.stdout, std::fs::read(&file).unwrap());
    let dec = piped(
        &["decode", "-", "-o", "-", "--quiet", "--model", TINY],
        &enc.stdout,
    );
    assert!(
        dec.status.success(),
        "{}",
        String::from_utf8_lossy(&dec.stderr)
    );
    let img = image::load_from_memory(&dec.stdout).unwrap();
    assert_eq!((img.width(), img.height()), (53, 41));
    // Standard input needs an explicit output.
    let o = piped(&["encode", "-", "--model", TINY], &png);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("-o"));
}

/// `--lossless` alone keeps the smallest prefix; `-q 0` has no steps and `info` says what the
/// file holds; `-q 0` without `--lossless` is a usage error.
#[test]
fn lossless_prefixes_and_info() {
    let src = "samples/kodim23_crop.png";
    let want = image::open(root().join(src)).unwrap().to_rgb8();
    let mut sizes = Vec::new();
    for (name, extra) in [
        ("auto", vec![]),
        ("q0", vec!["-q", "0"]),
        ("q2", vec!["-q", "2"]),
    ] {
        let coded = tmp(&format!("ll_{name}.ddpmc"));
        let png = tmp(&format!("ll_{name}.png"));
        let mut args = vec!["encode", src, "-o", s(&coded), "--lossless", "--force"];
        args.extend(extra);
        ok(&args);
        let o = ok(&["decode", s(&coded), "-o", s(&png), "--force"]);
        assert!(String::from_utf8_lossy(&o.stderr).contains("lossless (verified)"));
        assert_eq!(image::open(&png).unwrap().to_rgb8(), want, "{name}");
        let info = ok(&["info", s(&coded)]);
        let text = String::from_utf8_lossy(&info.stdout).into_owned();
        assert!(text.contains("kind 2"), "{text}");
        if name == "q0" {
            assert!(text.contains("no coding steps"), "{text}");
        }
        sizes.push(std::fs::metadata(&coded).unwrap().len());
    }
    assert!(sizes[0] <= sizes[1] && sizes[0] <= sizes[2], "{sizes:?}");
    let o = ddpmc(&["encode", src, "-o", s(&tmp("x.ddpmc")), "-q", "0"], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--lossless"));
}

/// The ICC profile of the input survives encode and decode (PNG and TIFF outputs), an EXIF
/// orientation is applied with a notice, and an unwritable output fails before any work.
#[test]
fn colour_profile_orientation_and_unwritable_output() {
    use image::ImageDecoder;
    let want = image::codecs::png::PngDecoder::new(std::io::BufReader::new(
        std::fs::File::open(root().join("samples/kodim19_icc.png")).unwrap(),
    ))
    .unwrap()
    .icc_profile()
    .unwrap()
    .unwrap();
    let coded = tmp("icc.ddpmc");
    ok(&[
        "encode",
        "samples/kodim19_icc.png",
        "-o",
        s(&coded),
        "--model",
        TINY,
        "--force",
    ]);
    let info = ok(&["info", s(&coded)]);
    assert!(String::from_utf8_lossy(&info.stdout)
        .contains(&format!("ICC profile of {} bytes", want.len())));
    for ext in ["png", "tiff"] {
        let out = tmp(&format!("icc.{ext}"));
        ok(&[
            "decode",
            s(&coded),
            "-o",
            s(&out),
            "--model",
            TINY,
            "--force",
        ]);
        let file = || std::io::BufReader::new(std::fs::File::open(&out).unwrap());
        let got = if ext == "png" {
            image::codecs::png::PngDecoder::new(file())
                .unwrap()
                .icc_profile()
        } else {
            image::codecs::tiff::TiffDecoder::new(file())
                .unwrap()
                .icc_profile()
        }
        .unwrap();
        assert_eq!(got.as_deref(), Some(want.as_slice()), "{ext}");
    }

    // EXIF orientation 6 (rotate 90 degrees clockwise): the file is coded upright.
    let coded = tmp("exif.ddpmc");
    let o = ok(&[
        "encode",
        "samples/kodim19_exif6.jpg",
        "-o",
        s(&coded),
        "--model",
        TINY,
        "--force",
    ]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("EXIF orientation"));
    let png = tmp("exif.png");
    ok(&[
        "decode",
        s(&coded),
        "-o",
        s(&png),
        "--model",
        TINY,
        "--force",
    ]);
    let img = image::open(&png).unwrap();
    assert_eq!((img.width(), img.height()), (41, 53));

    // An output folder that cannot be written: refused at once, naming the folder.
    let o = ddpmc(
        &[
            "encode",
            "samples/kodim19_odd.png",
            "-o",
            "/proc/no-such-dir/x.ddpmc",
            "--model",
            TINY,
        ],
        None,
    );
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("/proc/no-such-dir"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// An output that is a symbolic link is written through (the link stays), and of two runs
/// writing one output without --force exactly one succeeds.
#[test]
fn symlinked_output_and_concurrent_writers() {
    let target = tmp("sym_target.ddpmc");
    let link = tmp("sym_link.ddpmc");
    std::fs::write(&target, b"old").unwrap();
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&target, &link).unwrap();
    ok(&[
        "encode",
        "samples/kodim19_odd.png",
        "-o",
        s(&link),
        "--model",
        TINY,
        "--force",
    ]);
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(std::fs::read(&target).unwrap().starts_with(b"\x8bDDPMC"));

    let out = tmp("race.ddpmc");
    let _ = std::fs::remove_file(&out);
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_ddpmc"))
            .args([
                "encode",
                "samples/kodim23_crop.png",
                "-o",
                s(&out),
                "--model",
                TINY,
                "--quiet",
            ])
            .current_dir(root())
            .spawn()
            .unwrap()
    };
    let (mut a, mut b) = (spawn(), spawn());
    let wins = [a.wait().unwrap(), b.wait().unwrap()]
        .iter()
        .filter(|st| st.success())
        .count();
    assert_eq!(wins, 1);
    assert!(std::fs::read(&out).unwrap().starts_with(b"\x8bDDPMC"));
}

/// A minimal HTTP GET to 127.0.0.1: status code and body.
fn http_get(addr: &str, path: &str) -> (u16, Vec<u8>) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, buf[split + 4..].to_vec())
}

/// Start `ddpmc serve` on a free port; returns the child and its address.
fn serve(args: &[&str]) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_ddpmc"))
        .arg("serve")
        .args(args)
        .args(["--port", "0", "--model", TINY])
        .current_dir(root())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    (child, addr)
}

/// `ddpmc serve`: the page, the file list, every step's metadata and image (the same image as
/// `decode --steps N`), the original, and errors for bad requests.
#[test]
fn serve_plays_every_step() {
    let dir = tmp("serve");
    std::fs::create_dir_all(&dir).unwrap();
    let coded = dir.join("k23.ddpmc");
    std::fs::copy(root().join("samples/kodim23_crop.png"), dir.join("k23.png")).unwrap();
    encode_tiny("samples/kodim23_crop.png", &coded, &["-q", "3"]);
    let (mut child, addr) = serve(&[s(&dir)]);
    let (code, page) = http_get(&addr, "/");
    assert_eq!(code, 200);
    assert!(String::from_utf8_lossy(&page).contains("ddpmc viewer"));
    let (_, list) = http_get(&addr, "/api/files");
    let v: serde_json::Value = serde_json::from_slice(&list).unwrap();
    assert_eq!(v[0]["entries"], 3);
    assert_eq!(v[0]["original"], true);
    let mut last_psnr = 0.0;
    for n in 1..=3 {
        let (code, m) = http_get(&addr, &format!("/api/step?file=0&n={n}"));
        assert_eq!(code, 200);
        let m: serde_json::Value = serde_json::from_slice(&m).unwrap();
        let p = m["psnr"].as_f64().unwrap();
        assert!(p > last_psnr, "step {n}: {p}");
        last_psnr = p;
        let (code, png) = http_get(&addr, &format!("/api/image?file=0&n={n}"));
        assert_eq!(code, 200);
        let want = tmp(&format!("serve_{n}.png"));
        ok(&[
            "decode",
            s(&coded),
            "-o",
            s(&want),
            "--steps",
            &n.to_string(),
            "--model",
            TINY,
            "--force",
        ]);
        assert_eq!(
            image::load_from_memory(&png).unwrap().to_rgb8(),
            image::open(&want).unwrap().to_rgb8()
        );
    }
    assert_eq!(http_get(&addr, "/api/original?file=0").0, 200);
    assert_eq!(http_get(&addr, "/api/step?file=0&n=4").0, 422);
    assert_eq!(http_get(&addr, "/api/step?file=7&n=1").0, 404);
    assert_eq!(http_get(&addr, "/nothing").0, 404);

    // In headless Chromium (where installed): the page plays to the last step by itself.
    let chromium = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| {
            Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        });
    match chromium {
        None => eprintln!("skipped the browser check: no Chromium on PATH"),
        Some(c) => {
            let shot = tmp("serve.png");
            let o = Command::new(c)
                .args([
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--window-size=1100,900",
                ])
                .args(["--virtual-time-budget=20000", "--dump-dom"])
                .arg(format!("--screenshot={}", s(&shot)))
                .arg(format!("http://{addr}/"))
                .output()
                .unwrap();
            let dom = String::from_utf8_lossy(&o.stdout);
            assert!(dom.contains("ddpmc viewer: done"), "{dom}");
            let _ = shot;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// `ddpmc decode` exit status (README, `--help`): 0 whole, 1 error and no image, 2 usage,
/// 3 the image of the last complete step of a truncated file (or of a corrupt one with
/// `--partial`).
#[test]
fn truncated_and_corrupt_files_have_their_own_exit_status() {
    let coded = tmp("x3.ddpmc");
    encode_tiny("samples/kodim23_crop.png", &coded, &["-q", "3", "--quiet"]);
    let bytes = std::fs::read(&coded).unwrap();
    let ends = ddpmc::codec::chunk_ends(&bytes);
    let dec = |input: &Path, out: &Path, extra: &[&str]| {
        let _ = std::fs::remove_file(out);
        let mut args = vec!["decode", s(input), "-o", s(out), "--model", TINY, "--quiet"];
        args.extend_from_slice(extra);
        ddpmc(&args, None)
    };
    // Intact: 0.
    let whole = tmp("x3-whole.png");
    assert_eq!(dec(&coded, &whole, &[]).status.code(), Some(0));
    // Truncated in the middle of step 3: 3, and the image of the two whole steps is written,
    // the same as `--steps 2` of the intact file (which exits 0).
    let cut = tmp("x3-cut.ddpmc");
    std::fs::write(&cut, &bytes[..ends[3] + 10]).unwrap();
    let cut_png = tmp("x3-cut.png");
    let o = dec(&cut, &cut_png, &[]);
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let two = tmp("x3-two.png");
    assert_eq!(dec(&coded, &two, &["--steps", "2"]).status.code(), Some(0));
    assert_eq!(
        std::fs::read(&cut_png).unwrap(),
        std::fs::read(&two).unwrap()
    );
    // Cut just before END: every step is there, but the file is still incomplete.
    let noend = tmp("x3-noend.ddpmc");
    std::fs::write(&noend, &bytes[..ends[ends.len() - 2]]).unwrap();
    assert_eq!(
        dec(&noend, &tmp("x3-noend.png"), &[]).status.code(),
        Some(3)
    );
    // Corrupt (a flipped byte in step 3): 1 and no image; with --partial: 3 and the image.
    let mut bad = bytes.clone();
    bad[ends[3] + 20] ^= 0x08;
    let badf = tmp("x3-bad.ddpmc");
    std::fs::write(&badf, &bad).unwrap();
    let bad_png = tmp("x3-bad.png");
    assert_eq!(dec(&badf, &bad_png, &[]).status.code(), Some(1));
    assert!(!bad_png.exists());
    assert_eq!(dec(&badf, &bad_png, &["--partial"]).status.code(), Some(3));
    assert_eq!(
        std::fs::read(&bad_png).unwrap(),
        std::fs::read(&two).unwrap()
    );
    // The statuses are documented in --help.
    let help = ok(&["decode", "--help"]);
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("Exit status") && help.contains("3 the image"),
        "{help}"
    );
}

/// `decode --max-pixels / --max-steps / --max-passes` (SPEC §9.3): a small file whose header
/// claims a huge image is refused as soon as the header is read, with status 1 and no output.
#[test]
fn decode_limits_refuse_a_small_file_claiming_a_huge_image() {
    let coded = tmp("l3.ddpmc");
    encode_tiny("samples/kodim23_crop.png", &coded, &["-q", "3", "--quiet"]);
    let bytes = std::fs::read(&coded).unwrap();
    let ends = ddpmc::codec::chunk_ends(&bytes);
    // HEAD rewritten to claim 4096x4096 (valid CRC), followed by the first step only.
    let mut head = bytes[ends[0] + 8..ends[1] - 4].to_vec();
    head[0..4].copy_from_slice(&4096u32.to_le_bytes());
    head[4..8].copy_from_slice(&4096u32.to_le_bytes());
    let mut huge = bytes[..ends[0]].to_vec();
    ddpmc::format::write_chunk(&mut huge, ddpmc::format::kind::HEAD, &head);
    huge.extend_from_slice(&bytes[ends[1]..ends[2]]);
    assert!(huge.len() < 4096, "{} bytes", huge.len());
    let hugef = tmp("huge.ddpmc");
    std::fs::write(&hugef, &huge).unwrap();
    let out = tmp("huge.png");
    let _ = std::fs::remove_file(&out);
    let run = |input: &Path, extra: &[&str]| {
        let mut args = vec![
            "decode",
            s(input),
            "-o",
            s(&out),
            "--model",
            TINY,
            "--force",
        ];
        args.extend_from_slice(extra);
        ddpmc(&args, None)
    };
    let t0 = std::time::Instant::now();
    let o = run(&hugef, &["--max-pixels", "1000000"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("limit exceeded") && err.contains("4096x4096") && err.contains("1000000"),
        "{err}"
    );
    assert!(!out.exists());
    // It stopped at the header: far less time than one network pass over 4096x4096 plus the
    // 0.2 GB latent would take.
    eprintln!("refused in {:.2} s", t0.elapsed().as_secs_f64());
    // Steps: 3 steps to decode against --max-steps 2 is refused, --steps 2 fits.
    let o = run(&coded, &["--max-steps", "2"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("limit is 2 steps"));
    assert!(!out.exists());
    let o = run(&coded, &["--max-steps", "2", "--steps", "2"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::remove_file(&out).unwrap();
    // Passes: three steps need three.
    let o = run(&coded, &["--max-passes", "2"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("passes"));
    assert!(!out.exists());
    assert_eq!(run(&coded, &["--max-passes", "3"]).status.code(), Some(0));
    // A flow image needs more passes than the steps: refused, no output.
    std::fs::remove_file(&out).unwrap();
    let o = run(&coded, &["--max-passes", "3", "--recon", "flow"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(!out.exists());
    // Within every limit (the image's own size): decodes.
    assert_eq!(
        run(&coded, &["--max-pixels", "1000000", "--max-steps", "3"])
            .status
            .code(),
        Some(0)
    );
    // Zero pixels or passes is a usage error.
    assert_eq!(run(&coded, &["--max-pixels", "0"]).status.code(), Some(2));
    assert_eq!(run(&coded, &["--max-passes", "0"]).status.code(), Some(2));
}

/// `ddpmc bench` on a folder of PNG and JPEG files (and a file that is not an image): every
/// image is measured by every codec, MS-SSIM is `n/a` on these small images (not `nan`), and
/// the per-codec JSON files are written and parse.
#[test]
fn bench_measures_every_file_of_a_mixed_folder() {
    let data = tmp("bench-mixed");
    let out = tmp("bench-mixed-out");
    std::fs::create_dir_all(&data).unwrap();
    let images = ["kodim04_crop.png", "kodim19_exif6.jpg", "kodim23_crop.png"];
    for f in images {
        std::fs::copy(root().join("samples").join(f), data.join(f)).unwrap();
    }
    std::fs::write(data.join("notes.txt"), "not an image").unwrap();
    let o = ok(&[
        "bench",
        "--dataset",
        s(&data),
        "--out",
        s(&out),
        "--model",
        TINY,
        "--settings",
        "q2",
        "--codecs",
        "jpeg_image_rs",
        "--quiet",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("notes.txt"), "{err}");
    assert!(
        err.contains("MS-SSIM") && err.contains("n/a on 3 image(s)"),
        "{err}"
    );

    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("codec,setting,image,bpp,psnr,ms_ssim,ssimulacra2,enc_s,dec_s")
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    for codec in ["ddpmc", "jpeg_image_rs"] {
        for img in images {
            let n = rows.iter().filter(|r| r[0] == codec && r[2] == img).count();
            let want = if codec == "ddpmc" { 2 } else { 16 };
            assert_eq!(n, want, "{codec} {img}");
        }
    }
    for r in &rows {
        assert_eq!(r.len(), 9, "{r:?}");
        assert_eq!(r[5], "n/a", "{r:?}");
        let s2: f64 = r[6].parse().unwrap_or_else(|_| panic!("{r:?}"));
        assert!(s2.is_finite() && s2 <= 100.0, "{r:?}");
    }
    let summary = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(summary.contains("## SSIMULACRA2"), "{summary}");
    assert!(
        summary.contains("| ddpmc | n/a | n/a | n/a | n/a |"),
        "{summary}"
    );
    assert!(
        summary.contains("| ddpmc | ddpmc 0.1.0, model "),
        "{summary}"
    );
    let bd = std::fs::read_to_string(out.join("bd.md")).unwrap();
    assert!(bd.contains("BD-rate (SSIMULACRA2)"), "{bd}");
    for f in [
        "rd_psnr.png",
        "rd_msssim.png",
        "rd_ssimulacra2.png",
        "rd_ssimulacra2.svg",
    ] {
        assert!(out.join(f).is_file(), "{f}");
    }
    for (codec, points) in [("ddpmc", 2), ("jpeg_image_rs", 16)] {
        let text = std::fs::read_to_string(out.join(format!("{codec}.json"))).unwrap();
        let j: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(j["name"], codec);
        assert!(j["description"].is_string());
        for k in ["bpp", "psnr-rgb", "ms-ssim", "ssimulacra2"] {
            let a = j["results"][k].as_array().unwrap();
            assert_eq!(a.len(), points, "{codec} {k}");
            for img in images {
                let per = j["per_image"][img][k].as_array().unwrap();
                assert_eq!(per.len(), points, "{codec} {img} {k}");
            }
        }
        assert!(j["results"]["ms-ssim"].as_array().unwrap()[0].is_null());
        assert!(j["results"]["bpp"].as_array().unwrap()[0].as_f64().unwrap() > 0.0);
        assert_eq!(j["per_image"].as_object().unwrap().len(), images.len());
    }
    std::fs::remove_dir_all(&data).unwrap();
    std::fs::remove_dir_all(&out).unwrap();
}

/// An animated GIF codes its first frame with a notice; a still GIF gets none.
#[test]
fn animated_gif_codes_its_first_frame_with_a_notice() {
    use image::codecs::gif::GifEncoder;
    use image::{Delay, Frame, Rgba, RgbaImage};
    let write = |path: &Path, frames: usize| {
        let f = std::fs::File::create(path).unwrap();
        let mut enc = GifEncoder::new(f);
        for k in 0..frames {
            let img = RgbaImage::from_fn(24, 20, |x, y| {
                Rgba([(x * 10) as u8, (y * 12) as u8, (k * 120) as u8, 255])
            });
            enc.encode_frame(Frame::from_parts(
                img,
                0,
                0,
                Delay::from_numer_denom_ms(100, 1),
            ))
            .unwrap();
        }
    };
    for (frames, notice) in [(3, true), (1, false)] {
        let src = tmp(&format!("anim{frames}.gif"));
        write(&src, frames);
        let out = tmp(&format!("anim{frames}.ddpmc"));
        let o = encode_tiny(s(&src), &out, &["-q", "1"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(
            err.contains("only its first frame"),
            notice,
            "{frames} frames: {err}"
        );
        assert!(out.exists());
    }
}
