//! Each GPU kernel against its CPU twin (`host/src/cpu/ops.rs`) on fresh random inputs at several
//! sizes, ragged ones included, with the output poisoned (NaN) before the launch so that an
//! unwritten element fails. Needs a CUDA GPU: run with `cargo test -- --include-ignored` there.

use half::bf16;
use qwen_rs::cpu::ops;
use qwen_rs::cuda::{Gpu, MatmulScratch, attention_parts};
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
        let dy = gpu.upload(&vec![f32::NAN; rows * n]).unwrap();
        gpu.rmsnorm(dy.as_device_ptr(), dx.as_device_ptr(), dw.as_device_ptr(), rows, n, 1e-6).unwrap();
        let got = gpu.download(&dy).unwrap();
        let err = rel_l2(&got, &want);
        println!("rmsnorm rows={rows} n={n}: rel L2 {err:.2e}");
        assert!(err < 1e-5, "rmsnorm {rows}x{n}: rel L2 {err}");
    }
}

fn to_bf16(x: &[f32]) -> (Vec<u16>, Vec<f32>) {
    let b: Vec<bf16> = x.iter().map(|&v| bf16::from_f32(v)).collect();
    (b.iter().map(|v| v.to_bits()).collect(), b.iter().map(|v| v.to_f32()).collect())
}

fn poisoned(gpu: &Gpu, n: usize) -> cust::memory::DeviceBuffer<f32> {
    gpu.upload(&vec![f32::NAN; n]).unwrap()
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn embedding_matches_cpu() {
    let gpu = Gpu::open().expect("a CUDA device");
    let mut rng = fresh_rng();
    for &(vocab, hidden, tokens) in &[(1000, 896, 1), (517, 130, 7), (151936, 64, 33)] {
        let table = randn(&mut rng, vocab * hidden);
        let (bits, rounded) = to_bf16(&table);
        let ids: Vec<u32> = (0..tokens).map(|_| rng.random_range(0..vocab as u32)).collect();
        let want: Vec<f32> =
            ids.iter().flat_map(|&i| rounded[i as usize * hidden..(i as usize + 1) * hidden].to_vec()).collect();
        let (dt, di) = (gpu.upload(&bits).unwrap(), gpu.upload(&ids).unwrap());
        let out = poisoned(&gpu, tokens * hidden);
        gpu.embedding(out.as_device_ptr(), dt.as_device_ptr(), di.as_device_ptr(), tokens, hidden, vocab).unwrap();
        let got = gpu.download(&out).unwrap();
        assert_eq!(rel_l2(&got, &want), 0.0, "embedding {vocab}x{hidden}, {tokens} tokens");
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn matmul_matches_cpu() {
    let mut gpu = Gpu::open().expect("a CUDA device");
    // Every prompt-product kernel the device has (`matmul_wgmma` and `matmul_wgmma_64` need the
    // sm_90a PTX, which an H100 loads: they must not be skipped there): `matmul_tc` alone, the
    // engine's choice by size, then each `wgmma` tiling on every case with `cols % 8 == 0`.
    let choices: &[(bool, Option<usize>)] =
        if gpu.wgmma { &[(false, None), (true, None), (true, Some(128)), (true, Some(64))] } else { &[(false, None)] };
    assert!(
        gpu.wgmma || gpu.arch != "sm_90a" || std::env::var_os("QWEN_RS_NO_WGMMA").is_some(),
        "sm_90a PTX loaded without matmul_wgmma"
    );
    for &(wgmma, force) in choices {
        gpu.wgmma = wgmma;
        gpu.force_wgmma_tokens = force;
        matmul_cases(&gpu);
    }
}

fn matmul_cases(gpu: &Gpu) {
    let kernel = match (gpu.wgmma, gpu.force_wgmma_tokens) {
        (false, _) => "matmul_tc".to_string(),
        (true, None) => "by size".to_string(),
        (true, Some(t)) => format!("matmul_wgmma, {t}-token tiles (matmul_tc where cols % 8 != 0)"),
    };
    let mut rng = fresh_rng();
    // (rows, cols, tokens, bias, epilogue): 0.5B prompt shapes, vectorised (cols % 8 == 0) and
    // scalar staging, tiles ragged in every dimension (rows, tokens not multiples of 64, cols of
    // 32), each epilogue (SwiGLU on the gate/up product's shape, and ragged).
    use qwen_rs::cuda::Epilogue::{Accumulate, Store, SwiGlu};
    let cases = [
        (896, 896, 256, true, Store),
        (4864, 896, 100, false, Accumulate),
        (896, 4864, 256, false, Accumulate),
        (131, 200, 5, true, Accumulate),
        (77, 33, 3, false, Store),
        (1000, 4864, 17, true, Store),
        (128, 896, 1, true, Store),
        (3584, 3584, 70, true, Store),
        (2 * 4864, 896, 300, false, SwiGlu),
        (2 * 77, 200, 5, true, SwiGlu),
        (2 * 13, 33, 70, false, SwiGlu),
    ];
    let scratch = MatmulScratch::new(gpu).unwrap();
    // Every other case launched with programmatic dependent launch (as the engine launches a
    // product after an RMSNorm), the rest plainly.
    for (i, &(rows, cols, tokens, bias, epilogue)) in cases.iter().enumerate() {
        let (wb, w) = to_bf16(&randn(&mut rng, rows * cols));
        let x = randn(&mut rng, tokens * cols);
        let b = randn(&mut rng, rows);
        let init = randn(&mut rng, tokens * rows);
        let mut want = vec![0f32; tokens * rows];
        ops::matmul(&mut want, &x, tokens, &w, rows, if bias { Some(&b) } else { None });
        match epilogue {
            Accumulate => want.iter_mut().zip(&init).for_each(|(a, i)| *a += i),
            SwiGlu => want = swiglu_pairs(&want, rows),
            Store => {}
        }
        let (dw, dx, db) = (gpu.upload(&wb).unwrap(), gpu.upload(&x).unwrap(), gpu.upload(&b).unwrap());
        let out = if epilogue == Accumulate { gpu.upload(&init).unwrap() } else { poisoned(gpu, want.len()) };
        let bias_ptr = if bias { db.as_device_ptr() } else { cust::memory::DevicePointer::null() };
        gpu.matmul(
            &scratch,
            out.as_device_ptr(),
            dx.as_device_ptr(),
            dw.as_device_ptr(),
            bias_ptr,
            rows,
            cols,
            tokens,
            epilogue,
            i % 2 == 1,
        )
        .unwrap();
        let err = rel_l2(&gpu.download(&out).unwrap(), &want);
        println!("{kernel} {rows}x{cols}, {tokens} tokens, bias {bias}, {epilogue:?}: rel L2 {err:.2e}");
        // Split bf16 keeps 16 bits of each activation and the tensor cores accumulate in f32 (not
        // quite IEEE): 3e-6 at 896 columns and 1e-5 at 4864 were measured on an H100, where bf16
        // activations alone give ~2e-3.
        assert!(err < 1e-4, "{kernel} {rows}x{cols}x{tokens}: {err}");
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn rope_kv_write_matches_cpu() {
    use qwen_rs::kv::KvLayout;
    let gpu = Gpu::open().expect("a CUDA device");
    let mut rng = fresh_rng();
    for &(heads, kv_heads, hd, tokens, pos0, layer) in
        &[(14, 2, 64, 1, 31, 3), (12, 2, 128, 9, 0, 0), (4, 4, 96, 5, 70, 1)]
    {
        let kv = KvLayout { layers: 4, kv_heads, max_seq: 128, head_dim: hd };
        let theta = 1e6f32;
        let (q, k, v) = (
            randn(&mut rng, tokens * heads * hd),
            randn(&mut rng, tokens * kv_heads * hd),
            randn(&mut rng, tokens * kv_heads * hd),
        );
        let (mut want_q, mut want_k) = (q.clone(), k.clone());
        let (mut want_kc, mut want_vc) = (vec![f32::NAN; kv.len()], vec![f32::NAN; kv.len()]);
        for t in 0..tokens {
            ops::rope(&mut want_q[t * heads * hd..(t + 1) * heads * hd], hd, pos0 + t, theta);
            ops::rope(&mut want_k[t * kv_heads * hd..(t + 1) * kv_heads * hd], hd, pos0 + t, theta);
            for g in 0..kv_heads {
                let o = kv.offset(layer, g, pos0 + t);
                let src = (t * kv_heads + g) * hd;
                want_kc[o..o + hd].copy_from_slice(&want_k[src..src + hd]);
                want_vc[o..o + hd].copy_from_slice(&v[src..src + hd]);
            }
        }
        let (cos, sin) = ops::rope_tables(kv.max_seq, hd, theta);
        // Each token's row of the fused product: its queries, keys and values side by side.
        let (qd, kvd) = (heads * hd, kv_heads * hd);
        let qkv: Vec<f32> = (0..tokens)
            .flat_map(|t| {
                q[t * qd..(t + 1) * qd].iter().chain(&k[t * kvd..(t + 1) * kvd]).chain(&v[t * kvd..(t + 1) * kvd])
            })
            .copied()
            .collect();
        let (dq, dqkv) = (poisoned(&gpu, tokens * qd), gpu.upload(&qkv).unwrap());
        let (kc, vc) = (poisoned(&gpu, kv.len()), poisoned(&gpu, kv.len()));
        let (dcos, dsin) = (gpu.upload(&cos).unwrap(), gpu.upload(&sin).unwrap());
        let dpos = gpu.upload(&[pos0 as u32]).unwrap();
        gpu.rope_kv_write(
            dq.as_device_ptr(),
            dqkv.as_device_ptr(),
            kc.as_device_ptr(),
            vc.as_device_ptr(),
            dcos.as_device_ptr(),
            dsin.as_device_ptr(),
            &kv,
            heads,
            layer,
            dpos.as_device_ptr(),
            tokens,
        )
        .unwrap();
        assert_eq!(gpu.download(&dq).unwrap(), want_q, "rotated q");
        assert_eq!(gpu.download(&dqkv).unwrap(), qkv, "the product's rows are only read");
        // Cache slots not written stay NaN on both sides; compare bit patterns.
        let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<_>>();
        assert_eq!(bits(gpu.download(&kc).unwrap()), bits(want_kc), "K cache (heads {heads}, hd {hd})");
        assert_eq!(bits(gpu.download(&vc).unwrap()), bits(want_vc), "V cache");
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn attention_matches_cpu() {
    use qwen_rs::kv::KvLayout;
    let gpu = Gpu::open().expect("a CUDA device");
    let scratch = MatmulScratch::new(&gpu).unwrap();
    let mut rng = fresh_rng();
    // (heads, kv_heads, head_dim, tokens, pos0): decode rows and causal prefill rows, ragged lengths;
    // head_dim 64 and 128 run the tensor-core kernel (several 64-row query tiles, chunks that start
    // past position 0), 32 the CUDA-core one.
    for &(heads, kv_heads, hd, tokens, pos0, layer) in &[
        (14, 2, 64, 1, 0, 0),
        (14, 2, 64, 1, 37, 1),
        (28, 4, 128, 13, 50, 2),
        (12, 2, 128, 1, 1000, 0),
        (8, 8, 32, 70, 0, 1),
        (14, 2, 64, 70, 40, 2),
        (12, 2, 128, 70, 40, 1),
        (14, 2, 64, 200, 0, 2),
        (14, 2, 64, 300, 700, 1),
        (12, 2, 128, 130, 5, 0),
    ] {
        // Under compute-sanitizer (scripts/gpu-check.sh sets QWEN_RS_TEST_SMALL) the cases past
        // 70 rows over 110 positions are left out: racecheck takes minutes on them.
        if std::env::var_os("QWEN_RS_TEST_SMALL").is_some() && tokens * (pos0 + tokens) > 70 * 110 {
            println!(
                "attention heads {heads}/{kv_heads} hd {hd}, {tokens} rows at {pos0}: skipped (QWEN_RS_TEST_SMALL)"
            );
            continue;
        }
        let kv = KvLayout { layers: 3, kv_heads, max_seq: 1100, head_dim: hd };
        let kc = randn(&mut rng, kv.len());
        let vc = randn(&mut rng, kv.len());
        let q: Vec<f32> = randn(&mut rng, tokens * heads * hd).iter().map(|v| v * 3.0).collect();
        let mut want = vec![0f32; tokens * heads * hd];
        for t in 0..tokens {
            let r = t * heads * hd..(t + 1) * heads * hd;
            ops::attention(&mut want[r.clone()], &q[r], &kc, &vc, &kv, layer, pos0 + t + 1);
        }
        let (dq, dk, dv) = (gpu.upload(&q).unwrap(), gpu.upload(&kc).unwrap(), gpu.upload(&vc).unwrap());
        let dpos = gpu.upload(&[pos0 as u32]).unwrap();
        // The tensor-core kernel with the keys in 1 to 4 parts (merged through the scratch; more
        // parts than a query tile has key tiles leave some parts empty), and the part count the
        // engine chooses (`None`).
        let tensor_cores = hd == 64 || hd == 128;
        let counts = if tensor_cores { vec![Some(1), Some(2), Some(3), Some(4), None] } else { vec![Some(1)] };
        for parts in counts {
            let out = poisoned(&gpu, tokens * heads * hd);
            gpu.attention(
                &scratch,
                out.as_device_ptr(),
                dq.as_device_ptr(),
                dk.as_device_ptr(),
                dv.as_device_ptr(),
                &kv,
                heads,
                layer,
                dpos.as_device_ptr(),
                tokens,
                parts,
            )
            .unwrap();
            let err = rel_l2(&gpu.download(&out).unwrap(), &want);
            let parts = parts.unwrap_or_else(|| attention_parts(tokens, heads, hd));
            println!(
                "attention heads {heads}/{kv_heads} hd {hd}, {tokens} rows at {pos0}, {parts} parts: rel L2 {err:.2e}"
            );
            // The tensor-core kernel keeps 16 bits of each operand (split bf16), the CUDA-core one 24.
            let tol = if tensor_cores { 1e-4 } else { 1e-5 };
            assert!(err < tol, "attention hd {hd}, {tokens} rows at {pos0}, {parts} parts: {err}");
        }
    }
}

/// `silu(gate) ⊙ up` (`ops::swiglu`) of products whose gate and up rows are interleaved: for each
/// row of `y` (`width` wide), element `i` from elements `2i` (gate) and `2i + 1` (up).
fn swiglu_pairs(y: &[f32], width: usize) -> Vec<f32> {
    y.chunks(width)
        .flat_map(|row| {
            let mut gate: Vec<f32> = row.iter().step_by(2).copied().collect();
            let up: Vec<f32> = row.iter().skip(1).step_by(2).copied().collect();
            ops::swiglu(&mut gate, &up);
            gate
        })
        .collect()
}

/// The CPU twin of the fused decode products: `W · rmsnorm(x) + b` through `ops::rmsnorm` and
/// `ops::matmul`.
fn normed_product(x: &[f32], norm: &[f32], w: &[f32], rows: usize, bias: Option<&[f32]>) -> Vec<f32> {
    let mut xb = vec![0f32; x.len()];
    ops::rmsnorm(&mut xb, x, norm, 1e-6);
    let mut y = vec![0f32; rows];
    ops::matmul(&mut y, &xb, 1, w, rows, bias);
    y
}

/// An RMSNorm weight near 1, as bf16 bits and as the f32 values they hold.
fn norm_weight(rng: &mut ChaCha8Rng, n: usize) -> (Vec<u16>, Vec<f32>) {
    to_bf16(&randn(rng, n).iter().map(|v| 1.0 + 0.5 * v).collect::<Vec<_>>())
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn qkv_rope_decode_matches_cpu() {
    use qwen_rs::kv::KvLayout;
    let gpu = Gpu::open().expect("a CUDA device");
    let mut rng = fresh_rng();
    // (heads, kv_heads, head_dim, cols, pos, layer): Qwen2.5 0.5B/1.5B/7B-like, a tiny ragged one.
    for &(heads, kv_heads, hd, cols, pos, layer) in
        &[(14, 2, 64, 896, 31, 1), (12, 2, 128, 1536, 0, 0), (28, 4, 128, 3584, 99, 2), (4, 4, 32, 40, 7, 1)]
    {
        let kv = KvLayout { layers: 3, kv_heads, max_seq: 100, head_dim: hd };
        let rows = (heads + 2 * kv_heads) * hd;
        let x: Vec<f32> = randn(&mut rng, cols).iter().map(|v| v * 4.0).collect();
        let (norm_bits, norm) = norm_weight(&mut rng, cols);
        let (w_bits, w) = to_bf16(&randn(&mut rng, rows * cols));
        let bias = randn(&mut rng, rows);
        let y = normed_product(&x, &norm, &w, rows, Some(&bias));
        let (qd, kvd) = (heads * hd, kv_heads * hd);
        let mut want_q = y[..qd].to_vec();
        let mut k = y[qd..qd + kvd].to_vec();
        ops::rope(&mut want_q, hd, pos, 1e6);
        ops::rope(&mut k, hd, pos, 1e6);
        let (mut want_kc, mut want_vc) = (vec![f32::NAN; kv.len()], vec![f32::NAN; kv.len()]);
        for g in 0..kv_heads {
            let o = kv.offset(layer, g, pos);
            want_kc[o..o + hd].copy_from_slice(&k[g * hd..(g + 1) * hd]);
            want_vc[o..o + hd].copy_from_slice(&y[qd + kvd + g * hd..qd + kvd + (g + 1) * hd]);
        }

        let (cos, sin) = ops::rope_tables(kv.max_seq, hd, 1e6);
        let (dx, dn, dw, db) = (
            gpu.upload(&x).unwrap(),
            gpu.upload(&norm_bits).unwrap(),
            gpu.upload(&w_bits).unwrap(),
            gpu.upload(&bias).unwrap(),
        );
        let (dcos, dsin, dpos) =
            (gpu.upload(&cos).unwrap(), gpu.upload(&sin).unwrap(), gpu.upload(&[pos as u32]).unwrap());
        let (dq, kc, vc) = (poisoned(&gpu, qd), poisoned(&gpu, kv.len()), poisoned(&gpu, kv.len()));
        gpu.qkv_rope_decode(
            dq.as_device_ptr(),
            kc.as_device_ptr(),
            vc.as_device_ptr(),
            dx.as_device_ptr(),
            dn.as_device_ptr(),
            1e-6,
            dw.as_device_ptr(),
            db.as_device_ptr(),
            dcos.as_device_ptr(),
            dsin.as_device_ptr(),
            cols,
            &kv,
            heads,
            layer,
            dpos.as_device_ptr(),
        )
        .unwrap();
        let eq = rel_l2(&gpu.download(&dq).unwrap(), &want_q);
        // Only the slots at `pos` of `layer` may change: compare those, and the rest bit for bit (NaN).
        let (got_kc, got_vc) = (gpu.download(&kc).unwrap(), gpu.download(&vc).unwrap());
        let mut written = vec![false; kv.len()];
        for g in 0..kv_heads {
            let o = kv.offset(layer, g, pos);
            written[o..o + hd].iter_mut().for_each(|w| *w = true);
        }
        let pick = |v: &[f32], on: bool| {
            v.iter().zip(&written).filter(|(_, w)| **w == on).map(|(x, _)| *x).collect::<Vec<_>>()
        };
        let (ek, ev) =
            (rel_l2(&pick(&got_kc, true), &pick(&want_kc, true)), rel_l2(&pick(&got_vc, true), &pick(&want_vc, true)));
        assert!(
            pick(&got_kc, false).iter().chain(&pick(&got_vc, false)).all(|v| v.is_nan()),
            "a cache slot outside `pos` was written"
        );
        println!(
            "qkv_rope_decode heads {heads}/{kv_heads} hd {hd} cols {cols} pos {pos}: q {eq:.2e}, K {ek:.2e}, V {ev:.2e}"
        );
        assert!(eq < 1e-5 && ek < 1e-5 && ev < 1e-5, "qkv_rope_decode: q {eq}, K {ek}, V {ev}");
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn gate_up_silu_decode_matches_cpu() {
    let gpu = Gpu::open().expect("a CUDA device");
    let mut rng = fresh_rng();
    // 0.5B, 1.5B and 7B shapes (4, 8 and 16 chunks a lane), a row wider than 4,096 columns (the
    // batched kernel), ragged small ones.
    for &(inter, cols) in &[(4864, 896), (8960, 1536), (18944, 3584), (50, 5120), (100, 64), (13, 264), (7, 1032)] {
        let x: Vec<f32> = randn(&mut rng, cols).iter().map(|v| v * 4.0).collect();
        let (norm_bits, norm) = norm_weight(&mut rng, cols);
        let (w_bits, w) = to_bf16(&randn(&mut rng, 2 * inter * cols));
        // Rows interleaved: gate row r at 2r, up row r at 2r + 1.
        let want = swiglu_pairs(&normed_product(&x, &norm, &w, 2 * inter, None), 2 * inter);

        let (dx, dn, dw) = (gpu.upload(&x).unwrap(), gpu.upload(&norm_bits).unwrap(), gpu.upload(&w_bits).unwrap());
        let out = poisoned(&gpu, inter);
        gpu.gate_up_silu_decode(
            out.as_device_ptr(),
            dx.as_device_ptr(),
            dn.as_device_ptr(),
            1e-6,
            dw.as_device_ptr(),
            inter,
            cols,
        )
        .unwrap();
        let err = rel_l2(&gpu.download(&out).unwrap(), &want);
        println!("gate_up_silu_decode {inter}x{cols}: rel L2 {err:.2e}");
        assert!(err < 1e-5, "gate_up_silu_decode {inter}x{cols}: {err}");
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn lm_head_argmax_matches_cpu() {
    use qwen_rs::cuda::decode_best;
    let gpu = Gpu::open().expect("a CUDA device");
    let mut rng = fresh_rng();
    for &(vocab, cols) in &[(151936, 896), (1000, 64), (33, 128), (152064, 3584)] {
        let x: Vec<f32> = randn(&mut rng, cols).iter().map(|v| v * 4.0).collect();
        let (norm_bits, norm) = norm_weight(&mut rng, cols);
        let mut w = randn(&mut rng, vocab * cols);
        // A tie: the best row copied to another index; the smaller index must win, as on the CPU.
        let top = ops::argmax(&normed_product(&x, &norm, &to_bf16(&w).1, vocab, None));
        let twin = rng.random_range(0..vocab);
        let row = w[top * cols..(top + 1) * cols].to_vec();
        w[twin * cols..(twin + 1) * cols].copy_from_slice(&row);
        let (w_bits, w) = to_bf16(&w);
        let want = normed_product(&x, &norm, &w, vocab, None);
        let want_id = ops::argmax(&want) as u32;
        assert_eq!(want_id as usize, top.min(twin), "the CPU twin breaks ties by the smaller index");

        let (dn, dw) = (gpu.upload(&norm_bits).unwrap(), gpu.upload(&w_bits).unwrap());
        // Returns the logits and the chosen index for input `x`.
        let run = |x: &[f32]| {
            let (dx, logits, best) = (gpu.upload(x).unwrap(), poisoned(&gpu, vocab), gpu.upload(&[0u64]).unwrap());
            gpu.lm_head_argmax(
                logits.as_device_ptr(),
                best.as_device_ptr(),
                dx.as_device_ptr(),
                dn.as_device_ptr(),
                1e-6,
                dw.as_device_ptr(),
                vocab,
                cols,
            )
            .unwrap();
            (gpu.download(&logits).unwrap(), decode_best(gpu.download(&best).unwrap()[0]))
        };
        let (got, got_id) = run(&x);
        let err = rel_l2(&got, &want);
        println!("lm_head_argmax {vocab}x{cols}: logits rel L2 {err:.2e}, argmax {got_id:?} (tie {top}/{twin})");
        assert!(err < 1e-5, "lm_head_argmax logits {vocab}x{cols}: {err}");
        assert_eq!(got_id, Some(want_id), "argmax over {vocab}");
        // A NaN input makes every logit NaN: no index is chosen.
        let (got, got_id) = run(&vec![f32::NAN; cols]);
        assert!(got.iter().all(|v| v.is_nan()) && got_id.is_none(), "NaN logits chose {got_id:?}");
    }
}

/// `greedy_advance` against its CPU twin (`decode_best`, then the position step): the chosen id
/// lands at `chosen[p]` and nowhere else, and `io` becomes `[p + 1, id]`; an all-NaN step (`best`
/// 0) passes `u32::MAX` on; a position past the context writes nothing into `chosen`.
#[test]
#[ignore = "needs a CUDA GPU"]
fn greedy_advance_matches_cpu() {
    use qwen_rs::cuda::decode_best;
    let gpu = Gpu::open().expect("a CUDA device");
    let mut rng = fresh_rng();
    const POISON: u32 = 0xdead_beef;
    for &max_seq in &[1usize, 7, 256, 32768] {
        for case in 0..4 {
            let p = match case {
                0 => 0,
                1 => rng.random_range(0..max_seq),
                2 => max_seq - 1,
                _ => max_seq + 3, // past the context
            } as u32;
            let id = rng.random_range(0..152064u32);
            // a logit key in the upper half, as lm_head_argmax packs it; 0 when case 1 and max_seq 7
            let best =
                if case == 1 && max_seq == 7 { 0 } else { (rng.random::<u32>() as u64) << 32 | (u32::MAX - id) as u64 };
            let want_id = decode_best(best).unwrap_or(u32::MAX);
            let io = gpu.upload(&[p, POISON]).unwrap();
            let chosen = gpu.upload(&vec![POISON; max_seq]).unwrap();
            let dbest = gpu.upload(&[best]).unwrap();
            gpu.greedy_advance(io.as_device_ptr(), chosen.as_device_ptr(), dbest.as_device_ptr(), max_seq).unwrap();
            assert_eq!(gpu.download(&io).unwrap(), [p + 1, want_id], "io, max_seq {max_seq}, p {p}");
            let got = gpu.download(&chosen).unwrap();
            for (q, &c) in got.iter().enumerate() {
                let want = if q == p as usize { want_id } else { POISON };
                assert_eq!(c, want, "chosen[{q}], max_seq {max_seq}, p {p}");
            }
        }
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn attention_decode_matches_cpu() {
    use qwen_rs::kv::KvLayout;
    let gpu = Gpu::open().expect("a CUDA device");
    let mut rng = fresh_rng();
    // (heads, kv_heads, head_dim, splits, positions): one block, a few, all 64 splits busy; each
    // case runs its positions back to back on the same scratch, so the arrival counters must
    // have been reset by the previous launch. Head sizes 64 and 128 run their own kernels, whose
    // blocks take 256 and 128 positions before a second block joins: both sides of that too.
    for &(heads, kv_heads, hd, splits, positions) in &[
        (14, 2, 64, 64, &[0usize, 15, 16, 37, 2047][..]),
        (14, 2, 64, 18, &[254, 255, 256, 287, 4095][..]),
        (28, 4, 128, 64, &[1000, 3, 4095][..]),
        (12, 2, 128, 18, &[126, 127, 128, 300][..]),
        (12, 2, 128, 3, &[100, 47][..]),
        (8, 8, 32, 64, &[1023, 16][..]),
        (16, 2, 256, 8, &[300][..]),
    ] {
        let layer = 1;
        let kv = KvLayout { layers: 2, kv_heads, max_seq: 4096, head_dim: hd };
        let kc = randn(&mut rng, kv.len());
        let vc = randn(&mut rng, kv.len());
        let (dk, dv) = (gpu.upload(&kc).unwrap(), gpu.upload(&vc).unwrap());
        let partial = poisoned(&gpu, heads * splits * (hd + 2));
        let counters = gpu.upload(&vec![0u32; heads]).unwrap();
        for &pos in positions {
            let q: Vec<f32> = randn(&mut rng, heads * hd).iter().map(|v| v * 3.0).collect();
            let mut want = vec![0f32; heads * hd];
            ops::attention(&mut want, &q, &kc, &vc, &kv, layer, pos + 1);
            let (dq, dpos, out) =
                (gpu.upload(&q).unwrap(), gpu.upload(&[pos as u32]).unwrap(), poisoned(&gpu, heads * hd));
            gpu.attention_decode(
                out.as_device_ptr(),
                partial.as_device_ptr(),
                counters.as_device_ptr(),
                dq.as_device_ptr(),
                dk.as_device_ptr(),
                dv.as_device_ptr(),
                &kv,
                heads,
                layer,
                dpos.as_device_ptr(),
                splits,
            )
            .unwrap();
            let err = rel_l2(&gpu.download(&out).unwrap(), &want);
            println!("attention_decode heads {heads}/{kv_heads} hd {hd} splits {splits} at {pos}: rel L2 {err:.2e}");
            assert!(err < 1e-5, "attention_decode at {pos}: {err}");
            assert!(gpu.download(&counters).unwrap().iter().all(|&c| c == 0), "arrival counters not reset");
        }
    }
}

/// q/k/v and attention of one decode token in one cluster kernel against its CPU twin, the CPU
/// engine's steps: `attention(rope(W_qkv · rmsnorm(x) + b))` with k and v written at `pos`. The
/// output is poisoned before each launch; the caches' slots at `pos` are compared against the
/// twin's k and v and every other slot bit for bit. A case's positions run back to back on the
/// same caches (each step reads the k and v the one before wrote).
#[test]
#[ignore = "needs a CUDA GPU"]
fn qkv_attention_decode_matches_cpu() {
    use qwen_rs::kv::KvLayout;
    let gpu = Gpu::open().expect("a CUDA device");
    assert!(gpu.qkv_attention, "qkv_attention_decode needs a Hopper GPU with cuLaunchKernelEx ({})", gpu.name);
    let mut rng = fresh_rng();
    // (heads, kv_heads, head_dim, hidden, positions): the 0.5B and 1.5B shapes, the tiny test
    // models', a ragged one; positions below the cluster's 8 blocks (some blocks get none), at and
    // across a block's first step, and far past it.
    for &(heads, kv_heads, hd, hidden, positions) in &[
        (14, 2, 64, 896, &[0usize, 1, 7, 8, 31, 300, 767, 768, 2047][..]),
        (12, 2, 128, 1536, &[0, 5, 127, 1000, 2047][..]),
        (2, 2, 64, 128, &[3, 40][..]),
        (2, 1, 128, 128, &[9][..]),
        (6, 3, 64, 200, &[63, 64, 65][..]),
    ] {
        let (layer, theta) = (1, 1e6);
        let kv = KvLayout { layers: 2, kv_heads, max_seq: 2048, head_dim: hd };
        let (qd, kvd) = (heads * hd, kv_heads * hd);
        let rows = qd + 2 * kvd;
        let (norm_bits, norm) = norm_weight(&mut rng, hidden);
        // Weights of 0.1 (as a trained model's): q·k/√d of a few units. With weights of 1 the
        // scores run to hundreds and the softmax turns the products' last-bit differences into
        // output differences of 1e-5.
        let (w_bits, w) = to_bf16(&randn(&mut rng, rows * hidden).iter().map(|v| 0.1 * v).collect::<Vec<_>>());
        let bias: Vec<f32> = randn(&mut rng, rows).iter().map(|v| 0.1 * v).collect();
        let (cos, sin) = ops::rope_tables(kv.max_seq, hd, theta);
        let mut kc = randn(&mut rng, kv.len());
        let mut vc = randn(&mut rng, kv.len());
        let up = |v: &[f32]| gpu.upload(v).unwrap();
        let (dk, dv, dcos, dsin, db) = (up(&kc), up(&vc), up(&cos), up(&sin), up(&bias));
        let (dn, dw) = (gpu.upload(&norm_bits).unwrap(), gpu.upload(&w_bits).unwrap());
        for &pos in positions {
            // The CPU engine's steps, on a copy of the caches.
            let x: Vec<f32> = randn(&mut rng, hidden).iter().map(|v| v * 4.0).collect();
            let y = normed_product(&x, &norm, &w, rows, Some(&bias));
            let (mut q, mut k) = (y[..qd].to_vec(), y[qd..qd + kvd].to_vec());
            ops::rope(&mut q, hd, pos, theta);
            ops::rope(&mut k, hd, pos, theta);
            for g in 0..kv_heads {
                let o = kv.offset(layer, g, pos);
                kc[o..o + hd].copy_from_slice(&k[g * hd..(g + 1) * hd]);
                vc[o..o + hd].copy_from_slice(&y[qd + kvd + g * hd..qd + kvd + (g + 1) * hd]);
            }
            let mut want = vec![0f32; qd];
            ops::attention(&mut want, &q, &kc, &vc, &kv, layer, pos + 1);

            let (dx, dpos, out) = (up(&x), gpu.upload(&[pos as u32]).unwrap(), poisoned(&gpu, qd));
            gpu.qkv_attention_decode(
                out.as_device_ptr(),
                dk.as_device_ptr(),
                dv.as_device_ptr(),
                dx.as_device_ptr(),
                dn.as_device_ptr(),
                1e-6,
                dw.as_device_ptr(),
                db.as_device_ptr(),
                (dcos.as_device_ptr(), dsin.as_device_ptr()),
                hidden,
                &kv,
                heads,
                layer,
                dpos.as_device_ptr(),
            )
            .unwrap();
            let err = rel_l2(&gpu.download(&out).unwrap(), &want);
            let (got_k, got_v) = (gpu.download(&dk).unwrap(), gpu.download(&dv).unwrap());
            let mut at_pos = vec![false; kv.len()];
            for g in 0..kv_heads {
                let o = kv.offset(layer, g, pos);
                at_pos[o..o + hd].iter_mut().for_each(|w| *w = true);
            }
            let pick = |v: &[f32], on: bool| {
                v.iter().zip(&at_pos).filter(|(_, w)| **w == on).map(|(x, _)| *x).collect::<Vec<_>>()
            };
            let (ek, ev) =
                (rel_l2(&pick(&got_k, true), &pick(&kc, true)), rel_l2(&pick(&got_v, true), &pick(&vc, true)));
            let same = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(
                same(&pick(&got_k, false), &pick(&kc, false)) && same(&pick(&got_v, false), &pick(&vc, false)),
                "a cache slot outside `pos` changed"
            );
            println!(
                "qkv_attention_decode heads {heads}/{kv_heads} hd {hd} hidden {hidden} at {pos}: \
                 rel L2 {err:.2e}, K {ek:.2e}, V {ev:.2e}"
            );
            assert!(err < 1e-5 && ek < 1e-5 && ev < 1e-5, "qkv_attention_decode at {pos}: {err}, K {ek}, V {ev}");
            // The next position reads this one's k and v from the caches: keep the GPU's.
            kc = got_k;
            vc = got_v;
        }
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn residual_matvec_decode_matches_cpu() {
    let gpu = Gpu::open().expect("a CUDA device");
    let mut rng = fresh_rng();
    // (rows, cols): 0.5B o/down, 1.5B down, 7B down, ragged ones, on whichever kernel the
    // launcher picks (on an H100: batched for 896 and 18,944 columns, whole rows in flight with 3
    // chunks a thread for 4,864, 2,056 and 1,104, with 10 for 8,960 and 12,000). An element left unwritten
    // keeps its starting value and misses the product, far outside the tolerance.
    for &(rows, cols) in
        &[(896, 896), (896, 4864), (1536, 8960), (3584, 18944), (13, 40), (5, 2056), (700, 1104), (300, 12000)]
    {
        let x = randn(&mut rng, cols);
        let (w_bits, w) = to_bf16(&randn(&mut rng, rows * cols));
        let start = randn(&mut rng, rows);
        let mut want = vec![0f32; rows];
        ops::matmul(&mut want, &x, 1, &w, rows, None);
        want.iter_mut().zip(&start).for_each(|(y, s)| *y += s);

        let (dx, dw, out) = (gpu.upload(&x).unwrap(), gpu.upload(&w_bits).unwrap(), gpu.upload(&start).unwrap());
        gpu.residual_matvec_decode(out.as_device_ptr(), dx.as_device_ptr(), dw.as_device_ptr(), rows, cols).unwrap();
        let err = rel_l2(&gpu.download(&out).unwrap(), &want);
        println!("residual_matvec_decode {rows}x{cols}: rel L2 {err:.2e}");
        assert!(err < 1e-5, "residual_matvec_decode {rows}x{cols}: {err}");
    }
}
