//! Fuzz regressions: every file under `tests/fuzz-regressions/TARGET/` is fed to the entry
//! point of fuzz target TARGET (`fuzz/harness.rs`, the same functions the fuzzers run), which
//! must return (an error is fine, a panic fails the test). The folders hold the crashes the
//! fuzzers found, named after what they exercise, and small inputs of the fuzzers' corpora
//! that reach deep paths (README.md, "Fuzzing").

#[path = "../fuzz/harness.rs"]
mod harness;

use std::path::PathBuf;

/// The inputs kept for `target`, sorted by name; at least one must be there.
fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-regressions")
        .join(target);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no inputs in {}", dir.display());
    out
}

/// Feed every input of `target` to `f`, naming the input that panics.
fn run(target: &str, f: fn(&[u8])) {
    for (name, data) in inputs(target) {
        if std::panic::catch_unwind(|| f(&data)).is_err() {
            panic!("fuzz regression {target}/{name} panicked");
        }
    }
}

#[test]
fn fuzz_regressions_parse() {
    run("parse", harness::parse);
}

#[test]
fn fuzz_regressions_inspect() {
    run("inspect", harness::inspect);
    // The inputs reach past the parsers' first checks: one is a whole file.
    assert!(inputs("inspect")
        .iter()
        .any(|(_, d)| ddpmc::codec::inspect(d).is_ok_and(|i| i.complete)));
}

#[test]
fn fuzz_regressions_decode() {
    run("decode", harness::decode_records);
}

#[test]
fn fuzz_regressions_weights() {
    run("weights", harness::weights);
}

#[test]
fn fuzz_regressions_encode() {
    run("encode", harness::encode_image);
    // Most inputs are images the image crate reads, so the encoder runs on them.
    let images = inputs("encode")
        .iter()
        .filter(|(_, d)| d.len() > 1 && image::load_from_memory(&d[1..]).is_ok())
        .count();
    assert!(images >= 5, "{images} inputs decode as images");
}
