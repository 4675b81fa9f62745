//! Bad input through the real command line: each case must exit non-zero with one clear error
//! that names the file or flag at fault, and must never panic.

mod common;

use std::path::Path;
use std::process::Command;

use common::GgufBuilder;

/// Runs `qwen-rs args…` and returns its stderr after checking the failure is clean.
fn fails(args: &[&str], stdin: Option<&str>, must_mention: &str) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_qwen-rs"));
    cmd.args(args).env("QWEN_RS_CACHE_DIR", std::env::temp_dir().join("qwen-rs-no-cache"));
    cmd.stdin(if stdin.is_some() { std::process::Stdio::piped() } else { std::process::Stdio::null() });
    cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("run qwen-rs");
    if let Some(s) = stdin {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    println!("qwen-rs {args:?}\n{stderr}");
    assert!(!out.status.success(), "expected failure for {args:?}");
    assert_eq!(out.status.code(), Some(1), "{args:?}: exit {:?} (a panic exits 101)", out.status.code());
    assert!(!stderr.contains("panicked"), "{args:?} panicked:\n{stderr}");
    assert!(stderr.contains("error:"), "{args:?}: no error line:\n{stderr}");
    assert!(stderr.contains(must_mention), "{args:?}: error does not mention {must_mention:?}:\n{stderr}");
    stderr
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn nonexistent_model_path() {
    let e = fails(&["--model", "/no/such/model.gguf", "hi"], None, "/no/such/model.gguf");
    assert!(e.contains("No such file"));
}

#[test]
fn directory_without_weights() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("README.md"), "nothing here").unwrap();
    let e = fails(&["--model", p(dir.path()), "hi"], None, p(dir.path()));
    assert!(e.contains("no model here"));
    // A directory with config.json but no weights.
    std::fs::copy(common::fixture("tiny-hd64/config.json"), dir.path().join("config.json")).unwrap();
    fails(&["--model", p(dir.path()), "hi"], None, "no model.safetensors");
}

#[test]
fn truncated_gguf() {
    let full = std::fs::read(common::fixture("tiny-hd64.gguf")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Inside the magic, the header counts, the metadata, the tensor infos and the tensor data.
    for cut in [2, 20, 100, 700, full.len() / 2, full.len() - 1] {
        let path = dir.path().join(format!("cut{cut}.gguf"));
        std::fs::write(&path, &full[..cut]).unwrap();
        let e = fails(&["--model", p(&path), "hi"], None, p(&path));
        assert!(e.contains("truncated") || e.contains("not a GGUF"), "cut at {cut}: {e}");
    }
}

#[test]
fn gguf_with_unknown_quant_type() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("unknown.gguf");
    let bytes = GgufBuilder::new()
        .kv_str("general.architecture", "qwen2")
        .tensor("token_embd.weight", &[32, 4], 99, &[0u8; 256])
        .build();
    std::fs::write(&path, bytes).unwrap();
    let e = fails(&["--model", p(&path), "hi"], None, p(&path));
    assert!(e.contains("unknown quant type id 99"), "{e}");
    // A real but unsupported one is named.
    let path = dir.path().join("q4_1.gguf");
    let bytes = GgufBuilder::new()
        .kv_str("general.architecture", "qwen2")
        .tensor("token_embd.weight", &[32, 4], 3, &[0u8; 80])
        .build();
    std::fs::write(&path, bytes).unwrap();
    let e = fails(&["--model", p(&path), "hi"], None, p(&path));
    assert!(e.contains("Q4_1 is not supported"), "{e}");
}

#[test]
fn safetensors_header_overrunning_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(common::fixture("tiny-hd64/config.json"), dir.path().join("config.json")).unwrap();
    let mut bytes = 1_000_000u64.to_le_bytes().to_vec();
    bytes.extend(br#"{"model.norm.weight":{"dtype":"F32","shape":[128],"data_offsets":[0,512]}}"#);
    let st = dir.path().join("model.safetensors");
    std::fs::write(&st, bytes).unwrap();
    let e = fails(&["--model", p(dir.path()), "hi"], None, p(&st));
    assert!(e.contains("not a valid safetensors file"), "{e}");
}

#[test]
fn prompt_longer_than_the_context() {
    let model = common::real_model();
    let e = fails(
        &["--model", p(&model), "--ctx-size", "16", "Write a haiku about GPU computing, please."],
        None,
        "--ctx-size",
    );
    assert!(e.contains("context of 16 tokens"), "{e}");
    let long = "word ".repeat(5000);
    fails(&["--model", p(&model), "--raw", &long], None, "context of 4096 tokens");
}

#[test]
fn top_p_out_of_range() {
    fails(&["--top-p", "1.5", "hi"], None, "--top-p 1.5");
    fails(&["--temperature=-1", "hi"], None, "--temperature");
}

#[test]
fn empty_prompt() {
    fails(&["--model", "/unused", ""], None, "prompt is empty");
    fails(&["--model", "/unused"], Some("  \n"), "prompt is empty");
}

#[test]
fn non_utf8_prompt_on_stdin() {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_qwen-rs"));
    cmd.args(["--model", "/unused"]).stdin(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&[0x66, 0xff, 0xfe]).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("not valid UTF-8"), "{stderr}");
}

/// No cached default model and no way to download it: one error that says how to get it, and no
/// partial file left behind.
#[test]
fn offline_without_a_cached_model() {
    let cache = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_qwen-rs"))
        .arg("hi")
        .env("QWEN_RS_CACHE_DIR", cache.path())
        .env("QWEN_RS_PYTHON", "/nonexistent/python3")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stderr}");
    assert_eq!(out.status.code(), Some(1));
    assert!(!stderr.contains("panicked"));
    assert!(stderr.contains("qwen-rs fetch") && stderr.contains("--model"), "{stderr}");
    let leftovers: Vec<_> =
        std::fs::read_dir(cache.path()).unwrap().filter_map(|e| e.ok()).filter(|e| e.path().is_file()).collect();
    assert!(leftovers.is_empty(), "files left in the cache: {leftovers:?}");
}

/// Ctrl-C during generation stops after the current token, still prints the stats line, and
/// exits 130 (the shell's code for SIGINT).
#[test]
fn ctrl_c_stops_generation_cleanly() {
    let model = common::real_model();
    let mut child = Command::new(env!("CARGO_BIN_EXE_qwen-rs"))
        .args([
            "--model",
            p(&model),
            "--device",
            "cpu",
            "--temperature",
            "0",
            "--ignore-eos",
            "-n",
            "400",
            "Count to one thousand",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the first streamed text (the handler is installed before generation starts).
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 1];
    std::io::Read::read_exact(&mut stdout, &mut first).expect("some generated text");
    let killed = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stderr}");
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted") && stderr.contains("generated"), "{stderr}");
    assert!(!stderr.contains("generated 400 tokens"), "it did not stop early:\n{stderr}");
    assert!(!stderr.contains("panicked"));
}

/// `--max-tokens` past the context: a one-line note up front, then generation stops cleanly at
/// the context's end.
#[test]
fn max_tokens_beyond_the_context() {
    let base = common::fixture("../malformed/valid.gguf");
    let out = Command::new(env!("CARGO_BIN_EXE_qwen-rs"))
        .args(["--model", p(&base), "--raw", "--device", "cpu", "--ignore-eos", "--ctx-size", "12", "-n", "100", "abc"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("--max-tokens 100 is more than the 9 tokens left in the context of 12"), "{stderr}");
    assert!(stderr.contains("generated 9 tokens"), "{stderr}");
}
