//! Each GPU kernel against its CPU twin (`host/src/cpu/ops.rs`) on fresh random inputs at several
//! sizes, ragged ones included, with the output poisoned (NaN) before the launch so that an
//! unwritten element fails. Needs a CUDA GPU: run with `cargo test -- --include-ignored` there.

use half::bf16;
use qwen_rs::cpu::ops;
use qwen_rs::cuda::Gpu;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn rel_l2(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len());
    let (mut num, mut den) = (0f64, 0f64);
    for (g, w) in got.iter().zip(want) {
        assert!(g.is_finite(), "non-finite output {g} (unwritten or NaN)");
        num += ((g - w) as f64).powi(2);
        den += (*w as f64).powi(2);
    }
    (num / den.max(1e-30)).sqrt()
}

/// A generator seeded from the clock (printed, so a failure can be replayed).
fn fresh_rng() -> ChaCha8Rng {
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    eprintln!("seed {seed}");
    ChaCha8Rng::seed_from_u64(seed)
}

fn randn(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect()
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn rmsnorm_matches_cpu() {
    let gpu = Gpu::open().expect("a CUDA device");
    eprintln!("opened {} ({})", gpu.name, gpu.arch);
    let mut rng = fresh_rng();
    for &(rows, n) in &[(1, 896), (3, 1536), (7, 3584), (5, 1000), (2, 33)] {
        let x = randn(&mut rng, rows * n);
        let w_bf: Vec<bf16> = randn(&mut rng, n).iter().map(|v| bf16::from_f32(1.0 + v)).collect();
        let w_f32: Vec<f32> = w_bf.iter().map(|v| v.to_f32()).collect();
        let mut want = vec![0f32; rows * n];
        ops::rmsnorm(&mut want, &x, &w_f32, 1e-6);

        let dx = gpu.upload(&x).unwrap();
        let dw = gpu.upload(&w_bf.iter().map(|v| v.to_bits()).collect::<Vec<u16>>()).unwrap();
        let mut dy = gpu.upload(&vec![f32::NAN; rows * n]).unwrap();
        gpu.rmsnorm(&mut dy, &dx, &dw, rows, n, 1e-6).unwrap();
        gpu.synchronize().unwrap();
        let got = gpu.download(&dy).unwrap();
        let err = rel_l2(&got, &want);
        println!("rmsnorm rows={rows} n={n}: rel L2 {err:.2e}");
        assert!(err < 1e-5, "rmsnorm {rows}x{n}: rel L2 {err}");
    }
}
