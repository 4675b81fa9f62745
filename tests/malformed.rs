//! The malformed-file corpus (tests/malformed/, made by scripts/fixtures/make_malformed.py): for
//! each file, qwen-rs exits 1 with one error line that names the file, never panics, and stays
//! within 1 GiB of address space (a header that made it allocate what the file declares, rather
//! than what it holds, would abort instead).

use std::path::PathBuf;
use std::process::Command;

fn corpus(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/malformed").join(name)
}

/// Runs `qwen-rs --model <file> --raw -n 2 abc` under `ulimit -v 1 GiB`; returns (exit code, stderr).
fn run(name: &str) -> (Option<i32>, String) {
    let out = Command::new("sh")
        .args(["-c", "ulimit -v 1048576; exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_qwen-rs"))
        .arg("--model")
        .arg(corpus(name))
        .args(["--raw", "-n", "2", "--device", "cpu", "abc"])
        .output()
        .expect("run qwen-rs");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn the_valid_base_file_runs() {
    let (code, stderr) = run("valid.gguf");
    assert_eq!(code, Some(0), "{stderr}");
}

macro_rules! malformed {
    ($($test:ident: $file:literal => $says:literal;)*) => {$(
        #[test]
        fn $test() {
            let (code, stderr) = run($file);
            println!("{stderr}");
            assert_eq!(code, Some(1), "{}: exit {code:?} (101 is a panic, 134 an abort)\n{stderr}", $file);
            assert!(!stderr.contains("panicked"), "{}: panicked\n{stderr}", $file);
            let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error:")).collect();
            assert_eq!(errors.len(), 1, "{}: want one error line\n{stderr}", $file);
            assert!(errors[0].contains($file), "{}: the error does not name the file\n{stderr}", $file);
            assert!(errors[0].contains($says), "{}: the error does not say {:?}\n{stderr}", $file, $says);
        }
    )*};
}

malformed! {
    truncated_header: "truncated-header.gguf" => "truncated";
    truncated_metadata: "truncated-metadata.gguf" => "truncated";
    truncated_tensor_infos: "truncated-tensor-infos.gguf" => "truncated";
    truncated_data: "truncated-data.gguf" => "truncated";
    bad_magic: "bad-magic.gguf" => "not a GGUF file";
    bad_version: "bad-version.gguf" => "version 99";
    huge_metadata_count: "huge-metadata-count.gguf" => "metadata entries";
    huge_tensor_count: "huge-tensor-count.gguf" => "tensors, more than";
    huge_string_length: "huge-string-length.gguf" => "inside a string";
    huge_array_count: "huge-array-count.gguf" => "array items";
    unknown_value_type: "unknown-value-type.gguf" => "unknown metadata value type 77";
    invalid_utf8: "invalid-utf8-key.gguf" => "not valid UTF-8";
    duplicate_key: "duplicate-key.gguf" => "appears twice";
    duplicate_tensor: "duplicate-tensor.gguf" => "appears twice";
    offset_out_of_range: "tensor-offset-out-of-range.gguf" => "runs past the end";
    overlapping_tensors: "overlapping-tensors.gguf" => "overlap";
    misaligned_offset: "misaligned-offset.gguf" => "aligned";
    shape_mismatch: "shape-mismatch.gguf" => "the config implies";
    wrong_dtype: "wrong-dtype.gguf" => "I32 is not supported";
    missing_tensor: "missing-tensor.gguf" => "is missing";
    zero_dimension: "zero-dimension.gguf" => "dimensions [0]";
    zero_heads: "zero-heads.gguf" => "0 attention heads";
    heads_not_dividing_hidden: "heads-not-dividing-hidden.gguf" => "not a multiple of the 3 attention heads";
    absurd_layer_count: "absurd-layer-count.gguf" => "num_hidden_layers";
    tokenizer_larger_than_vocab: "tokenizer-larger-than-vocab.gguf" => "the tokenizer has 20 tokens but the model only 16";
    st_header_overruns_file: "st-header-overruns-file" => "invalid header length";
    st_header_not_json: "st-header-not-json" => "invalid JSON";
    st_data_out_of_range: "st-data-out-of-range" => "offset";
    st_wrong_dtype: "st-wrong-dtype" => "dtype I64";
    st_missing_tensors: "st-missing-tensors" => "is missing";
    config_not_json: "config-not-json" => "not a valid Qwen2 config.json";
    config_zero_heads: "config-zero-heads" => "0 attention heads";
}

/// Every corpus entry has its own test above (a new file without one fails here).
#[test]
fn every_corpus_entry_is_tested() {
    let listed = include_str!("malformed.rs");
    for e in std::fs::read_dir(corpus("")).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        assert!(listed.contains(&format!("\"{name}\"")), "tests/malformed/{name} has no test");
    }
}
