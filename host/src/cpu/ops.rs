//! The model's operations on f32 slices. Each is the CPU twin of a kernel in `kernels-gpu`.

use rayon::prelude::*;

/// `Σ a[i]·b[i]`, with eight independent accumulators so the compiler vectorises it.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0f32; 8];
    let ((ca, ra), (cb, rb)) = (a.as_chunks::<8>(), b.as_chunks::<8>());
    for (x, y) in ca.iter().zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    let mut s = acc.iter().sum::<f32>();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// RMSNorm of each row of `x` (`rows × n`, n = `w.len()`): `y = x / sqrt(mean(x²) + eps) · w`.
/// Twin of `kernels-gpu/src/rmsnorm.rs`.
pub fn rmsnorm(y: &mut [f32], x: &[f32], w: &[f32], eps: f32) {
    let n = w.len();
    for (yr, xr) in y.chunks_exact_mut(n).zip(x.chunks_exact(n)) {
        let ms = xr.iter().map(|v| v * v).sum::<f32>() / n as f32;
        let scale = 1.0 / (ms + eps).sqrt();
        for ((y, x), w) in yr.iter_mut().zip(xr).zip(w) {
            *y = x * scale * w;
        }
    }
}

/// `out[t, r] = Σ_c x[t, c]·w[r, c] + bias[r]` for `t < tokens`: `x` is `[tokens, cols]`, `w` is
/// `[rows, cols]`, `out` is `[tokens, rows]`. Parallel over weight rows; each weight row is read
/// once and applied to every token.
pub fn matmul(out: &mut [f32], x: &[f32], tokens: usize, w: &[f32], rows: usize, bias: Option<&[f32]>) {
    let cols = w.len() / rows;
    debug_assert_eq!(x.len(), tokens * cols);
    debug_assert_eq!(out.len(), tokens * rows);
    let b = |r: usize| bias.map_or(0.0, |b| b[r]);
    if tokens == 1 {
        out.par_iter_mut().enumerate().with_min_len(64).for_each(|(r, o)| {
            *o = dot(&w[r * cols..(r + 1) * cols], x) + b(r);
        });
        return;
    }
    // Row-major `[rows, tokens]` first (so each task owns one weight row), then transpose.
    let mut tmp = vec![0f32; rows * tokens];
    tmp.par_chunks_mut(tokens).enumerate().with_min_len(16).for_each(|(r, o)| {
        let wr = &w[r * cols..(r + 1) * cols];
        for (t, o) in o.iter_mut().enumerate() {
            *o = dot(wr, &x[t * cols..(t + 1) * cols]) + b(r);
        }
    });
    for r in 0..rows {
        for t in 0..tokens {
            out[t * rows + r] = tmp[r * tokens + t];
        }
    }
}

/// `(cos θ_i, sin θ_i)` with `θ_i = pos · theta^(−2i/head_dim)`, in f32. The CUDA engine's
/// tables are filled with this same function, so both engines rotate by identical values.
#[inline]
pub fn rope_cos_sin(pos: usize, i: usize, head_dim: usize, theta: f32) -> (f32, f32) {
    let inv_freq = 1.0 / theta.powf((2 * i) as f32 / head_dim as f32);
    let (sin, cos) = (pos as f32 * inv_freq).sin_cos();
    (cos, sin)
}

/// The `[max_seq, head_dim/2]` cos and sin tables the RoPE kernel reads, from [`rope_cos_sin`].
pub fn rope_tables(max_seq: usize, head_dim: usize, theta: f32) -> (Vec<f32>, Vec<f32>) {
    let half = head_dim / 2;
    let (mut cos, mut sin) = (vec![0f32; max_seq * half], vec![0f32; max_seq * half]);
    for p in 0..max_seq {
        for i in 0..half {
            (cos[p * half + i], sin[p * half + i]) = rope_cos_sin(p, i, head_dim, theta);
        }
    }
    (cos, sin)
}

/// Rotary embedding, NeoX ("rotate half") form, in place on `heads` vectors of `head_dim` at
/// position `pos`: for `i < head_dim/2`, with `θ_i = pos · theta^(−2i/head_dim)`,
/// `(x_i, x_{i+d/2}) ← (x_i cos θ_i − x_{i+d/2} sin θ_i, x_{i+d/2} cos θ_i + x_i sin θ_i)`.
/// Twin of `kernels-gpu/src/rope.rs`.
pub fn rope(x: &mut [f32], head_dim: usize, pos: usize, theta: f32) {
    let half = head_dim / 2;
    for head in x.chunks_exact_mut(head_dim) {
        for i in 0..half {
            let (cos, sin) = rope_cos_sin(pos, i, head_dim, theta);
            let (a, b) = (head[i], head[i + half]);
            head[i] = a * cos - b * sin;
            head[i + half] = b * cos + a * sin;
        }
    }
}

/// In-place softmax.
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in x.iter_mut() {
        *v /= sum;
    }
}

/// `silu(gate) · up`, elementwise, into `gate`. `silu(x) = x / (1 + e^−x)`. Twin of the SwiGLU kernel.
pub fn swiglu(gate: &mut [f32], up: &[f32]) {
    for (g, u) in gate.iter_mut().zip(up) {
        *g = *g / (1.0 + (-*g).exp()) * u;
    }
}

/// Index of the largest value (the first, on ties). Twin of the argmax kernel.
pub fn argmax(x: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] {
            best = i;
        }
    }
    best
}

/// Grouped-query attention for one query row at position `len − 1` against cache positions
/// `0..len` of one layer: for query head `h` (KV head `g = h / (heads / kv_heads)`),
/// `out_h = Σ_p softmax_p(q_h·k_{g,p} / √head_dim) · v_{g,p}`. `q` and `out` are `[heads, head_dim]`.
/// Twin of the attention kernels.
pub fn attention(out: &mut [f32], q: &[f32], k: &[f32], v: &[f32], kv: &crate::kv::KvLayout, layer: usize, len: usize) {
    let hd = kv.head_dim;
    let heads = q.len() / hd;
    let group = heads / kv.kv_heads;
    let scale = 1.0 / (hd as f32).sqrt();
    let mut scores = vec![0f32; len];
    for h in 0..heads {
        let g = h / group;
        let qh = &q[h * hd..(h + 1) * hd];
        for (p, s) in scores.iter_mut().enumerate() {
            let o = kv.offset(layer, g, p);
            *s = dot(qh, &k[o..o + hd]) * scale;
        }
        softmax(&mut scores);
        let oh = &mut out[h * hd..(h + 1) * hd];
        oh.fill(0.0);
        for (p, &s) in scores.iter().enumerate() {
            let o = kv.offset(layer, g, p);
            for (a, b) in oh.iter_mut().zip(&v[o..o + hd]) {
                *a += s * b;
            }
        }
    }
}
