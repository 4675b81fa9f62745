//! Plays Rust-CUDA's `cuda_builder` role: compiles `kernels-gpu/` to PTX with rustc's own
//! `nvptx64-nvidia-cuda` target, once per requested architecture, and generates
//! `$OUT_DIR/kernels.rs`, which `host/src/cuda/ptx.rs` includes so the PTX is embedded in the binary.
//!
//! Architectures come from `QWEN_RS_CUDA_ARCHS` (comma-separated, default `sm_80,sm_90,sm_90a`); at
//! run time the engine loads the newest one the device supports (an H100 takes `sm_90a`, whose
//! PTX has Hopper's `wgmma` product and runs on compute capability 9.0 only).

use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, exit};

const TARGET: &str = "nvptx64-nvidia-cuda";

fn fail(msg: &str) -> ! {
    eprintln!("\nerror: building the GPU kernels (kernels-gpu) failed\n{msg}\n");
    exit(1);
}

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let kernels = manifest.join("kernels-gpu");
    println!("cargo::rerun-if-changed=kernels-gpu/src");
    println!("cargo::rerun-if-changed=kernels-gpu/Cargo.toml");
    println!("cargo::rerun-if-changed=rust-toolchain.toml");
    println!("cargo::rerun-if-env-changed=QWEN_RS_CUDA_ARCHS");

    let archs = env::var("QWEN_RS_CUDA_ARCHS").unwrap_or_else(|_| "sm_80,sm_90,sm_90a".to_string());
    // (name, compute capability × 10, architecture-specific): `sm_90a` PTX (Hopper's `wgmma`)
    // runs on compute capability 9.0 only; the host never loads it on another device.
    let mut archs: Vec<(String, u32, bool)> = archs
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(|a| {
            let n = a.strip_prefix("sm_").unwrap_or("");
            let (n, specific) = match n.strip_suffix('a') {
                Some(n) => (n, true),
                None => (n, false),
            };
            match n.parse::<u32>() {
                Ok(cc) => (a.to_string(), cc, specific),
                Err(_) => fail(&format!(
                    "QWEN_RS_CUDA_ARCHS entry `{a}` is not of the form sm_NN or sm_NNa (e.g. QWEN_RS_CUDA_ARCHS=sm_80,sm_90)"
                )),
            }
        })
        .collect();
    if archs.is_empty() {
        fail("QWEN_RS_CUDA_ARCHS names no architecture (e.g. QWEN_RS_CUDA_ARCHS=sm_90)");
    }
    archs.sort_by_key(|a| (a.1, a.2));
    check_toolchain();

    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut generated = String::from(
        "/// PTX of `kernels-gpu`, one entry per architecture, oldest first: (name, compute capability × 10,\n\
         /// whether it runs on that compute capability only, text).\n\
         pub const KERNELS_PTX: &[(&str, u32, bool, &str)] = &[\n",
    );
    for (arch, cc, specific) in &archs {
        let target_dir = out_dir.join("kernels-target").join(arch);
        let mut cmd = Command::new(&cargo);
        cmd.current_dir(&kernels)
            .args(["build", "--release", "--locked", "-Zbuild-std=core", "--target", TARGET])
            .arg("--target-dir")
            .arg(&target_dir)
            // The decode kernels keep small per-lane arrays (a batch of weight chunks) in registers
            // only when their constant-count loops are unrolled; at LLVM's default threshold some
            // stay rolled and the arrays go to local memory (scripts/check-ptx.sh rejects that).
            // 4000, not 1000: the head_dim-128 flash attention's output tile (16 × 8 columns)
            // needs its 32-step P·V loop unrolled.
            .env("CARGO_ENCODED_RUSTFLAGS", format!("-Ctarget-cpu={arch}\x1f-Cllvm-args=-unroll-threshold=4000"));
        // The outer build's settings are for the host target; none of them may leak in.
        for var in [
            "RUSTFLAGS",
            "CARGO_BUILD_RUSTFLAGS",
            "CARGO_TARGET_DIR",
            "CARGO_BUILD_TARGET",
            "RUSTC_WRAPPER",
            "RUSTC_WORKSPACE_WRAPPER",
            "CARGO_PROFILE_RELEASE_DEBUG",
        ] {
            cmd.env_remove(var);
        }
        let output = cmd.output().unwrap_or_else(|e| fail(&format!("could not run `{cargo}`: {e}")));
        if !output.status.success() {
            fail(&format!(
                "`cargo build --target {TARGET}` in kernels-gpu/ for {arch} failed:\n{}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        // The kernel crate's own warnings would vanish with its captured output: pass them on
        // (each `warning:` line and the `-->` line that places it).
        let stderr = String::from_utf8_lossy(&output.stderr);
        for line in stderr.lines().filter(|l| l.starts_with("warning") || l.trim_start().starts_with("-->")) {
            println!("cargo:warning=kernels-gpu ({arch}): {}", line.trim());
        }
        let built = target_dir.join(TARGET).join("release").join("kernels_gpu.ptx");
        let dest = out_dir.join(format!("kernels_{arch}.ptx"));
        if let Err(e) = std::fs::copy(&built, &dest) {
            fail(&format!("the kernel build succeeded but {} is missing: {e}", built.display()));
        }
        writeln!(generated, "    (\"{arch}\", {cc}, {specific}, include_str!({:?})),", dest.display().to_string())
            .unwrap();
    }
    generated.push_str("];\n");
    std::fs::write(out_dir.join("kernels.rs"), generated)
        .unwrap_or_else(|e| fail(&format!("cannot write {}: {e}", out_dir.display())));
}

/// The nvptx target needs `rust-src` (for `-Zbuild-std=core`) and `llvm-bitcode-linker` (which
/// links the crate into one PTX module). Fail with the install command instead of rustc's own error.
fn check_toolchain() {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .unwrap_or_else(|| fail(&format!("could not run `{rustc} --print sysroot`")));
    let host = env::var("HOST").unwrap_or_default();
    let need = |path: &Path, component: &str| {
        if !path.exists() {
            fail(&format!(
                "the Rust component `{component}` is missing from {}.\n\
                 Install the pinned toolchain with its components:\n  \
                 rustup toolchain install nightly-2026-10-01 -c rust-src -c llvm-tools -c llvm-bitcode-linker\n\
                 (or run scripts/setup.sh)",
                sysroot.display()
            ))
        }
    };
    need(&sysroot.join("lib/rustlib/src/rust/library/core"), "rust-src");
    need(
        &sysroot.join("lib/rustlib").join(&host).join("bin/self-contained/llvm-bitcode-linker"),
        "llvm-bitcode-linker",
    );
}
