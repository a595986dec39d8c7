//! `x · wᵀ` in f32 for many rows (prompts, scoring): the products that dominate a forward pass
//! over a prompt, written for the shapes of GPT-2's layers (`w` `[out, in]` row-major).
//!
//! The classic blocked layout (Goto & van de Geijn, "Anatomy of high-performance matrix
//! multiplication", 2008): `x` is packed once into panels of [`MR`] rows, `w` block by block
//! into panels of [`NR`] outputs, and an AVX2 kernel keeps a 6×16 tile of the result in 12
//! registers while it streams both panels: per input position, two weight loads, six
//! broadcasts and twelve FMAs. Threads take disjoint column blocks, each packing its own
//! weights, so no two write the same output. CPUs without AVX2 and FMA get gemm's.

use half::f16;
use rayon::prelude::*;

use super::isa::{isa, Isa};

/// Rows of `x` per kernel tile.
pub const MR: usize = 6;
/// Columns (weight rows) per kernel tile.
pub const NR: usize = 16;
/// Inputs per block: an `x` panel (6 KB) stays in L1, a packed weight block in L2.
const KC: usize = 256;
/// Columns per parallel task (a packed weight block of `KC x NC` is 128 KB); a multiple of
/// [`NR`], so that tasks start at panel boundaries.
const NC: usize = 128;

/// `out = x · wᵀ` for `x` `(m, k)` and `w` `(n, k)` row-major, into `out` `(m, n)` whose rows
/// are `ldc` apart. Returns false (leaving `out` alone) where [`isa`] has no kernel here.
pub fn xwt(
    x: &[f32],
    m: usize,
    k: usize,
    w: &[f32],
    n: usize,
    out: &mut [f32],
    ldc: usize,
) -> bool {
    assert!(w.len() >= n * k);
    product(isa(), x, m, k, Weights::Rows(w), n, out, ldc)
}

/// `out = x · wᵀ` as [`xwt`] does, for weights already in panels (see [`pack`]).
pub fn xwt_packed(
    x: &[f32],
    m: usize,
    k: usize,
    panels: &[f32],
    n: usize,
    out: &mut [f32],
    ldc: usize,
) -> bool {
    assert!(panels.len() >= n.div_ceil(NR) * NR * k);
    product(isa(), x, m, k, Weights::Panels(panels), n, out, ldc)
}

/// `out = x · wᵀ` as [`xwt_packed`] does, for f16 panels: the kernel widens each weight as it
/// loads it (F16C), so f16 prompts need no f32 copy of the weights.
pub fn xwt_packed_f16(
    x: &[f32],
    m: usize,
    k: usize,
    panels: &[f16],
    n: usize,
    out: &mut [f32],
    ldc: usize,
) -> bool {
    assert!(panels.len() >= n.div_ceil(NR) * NR * k);
    product(isa(), x, m, k, Weights::PanelsF16(panels), n, out, ldc)
}

/// `out = x · wᵀ` as [`xwt`] does, by the gemm crate (what candle's matmul calls): for CPUs
/// without AVX2 and FMA, and for comparison in `cargo bench --bench engine -- --gemm`.
pub fn xwt_gemm_crate(
    x: &[f32],
    m: usize,
    k: usize,
    w: &[f32],
    n: usize,
    out: &mut [f32],
    ldc: usize,
) {
    assert!(x.len() >= m * k && w.len() >= n * k && ldc >= n);
    assert!(m == 0 || out.len() >= (m - 1) * ldc + n);
    // SAFETY: the asserts keep every index the strides reach inside the slices: dst (i, j) at
    // i * ldc + j, lhs (i, l) at i * k + l, rhs (l, j) at j * k + l.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            ldc as isize,
            false,
            x.as_ptr(),
            1,
            k as isize,
            w.as_ptr(),
            k as isize,
            1,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(rayon::current_num_threads()),
        );
    }
}

/// Weights `[n, k]` in panels of [`NR`] rows, each panel `[k][NR]` (rows past `n` zero): the
/// layout the kernel streams, made once when a model loads.
pub fn pack<T: Copy + Default + Send + Sync>(w: &[T], n: usize, k: usize) -> Vec<T> {
    assert!(w.len() >= n * k);
    panels(n, k, |p, panel| {
        plain_rows(&w[p * NR * k..], 0, NR.min(n - p * NR), k, panel)
    })
}

/// The panels of `n` rows of `k` inputs, zeroed, panel `p` filled by `fill(p, panel)` over
/// rayon's threads: what every packing here shares. Each task zeroes its own panel just before
/// filling it, so the block is first written there, in parallel and while the panel is in
/// cache: a zeroed allocation is cleared up front, on one thread, in a pass of its own (the
/// allocator's, with quill's glibc settings: 0.18 s against 0.11 s for an f32 GGUF's load).
fn panels<T: Copy + Default + Send + Sync>(
    n: usize,
    k: usize,
    fill: impl Fn(usize, &mut [T]) + Sync,
) -> Vec<T> {
    let len = n.div_ceil(NR) * NR * k;
    let mut panels: Vec<T> = Vec::with_capacity(len);
    if k > 0 {
        panels.spare_capacity_mut()[..len]
            .par_chunks_mut(NR * k)
            .enumerate()
            .for_each(|(p, panel)| {
                panel.fill(std::mem::MaybeUninit::new(T::default()));
                // SAFETY: every element of `panel` was just written; `MaybeUninit<T>` has
                // `T`'s layout.
                let panel = unsafe { &mut *(panel as *mut [_] as *mut [T]) };
                fill(p, panel)
            });
    }
    // SAFETY: with k > 0 the tasks above wrote all `len` elements; with k = 0, `len` is 0.
    unsafe { panels.set_len(len) };
    panels
}

/// Rows `from..rows` of `w` (row-major, `k` inputs) into `panel`, a value at a time: what the
/// SIMD transposes leave over, or all of it without them.
fn plain_rows<T: Copy>(w: &[T], from: usize, rows: usize, k: usize, panel: &mut [T]) {
    for j in from..rows {
        for (l, &v) in w[j * k..(j + 1) * k].iter().enumerate() {
            panel[l * NR + j] = v;
        }
    }
}

/// [`pack`]'s panels from the weights' transpose `wt` (`k` rows of `n`: Conv1D's `(in, out)`
/// layout, GPT-2's in safetensors): input `l` of panel `p` is the run `wt[l][16p..16p + 16]`,
/// so each is a copy, no transpose (zeros past `n`).
pub fn pack_columns<T: Copy + Default + Send + Sync>(wt: &[T], n: usize, k: usize) -> Vec<T> {
    assert!(wt.len() >= n * k);
    panels(n, k, |p, panel| column_panel(wt, n, p, panel))
}

/// Panel `p` of [`pack_columns`], on the caller's thread (prompt attention's values, already
/// inside a task of their own): a copy of the run of up to [`NR`] columns of each row of
/// `wt` (rows of `n`), as many rows as `panel` has inputs.
pub(crate) fn column_panel<T: Copy>(wt: &[T], n: usize, p: usize, panel: &mut [T]) {
    let (c0, live) = (p * NR, NR.min(n - p * NR));
    for (l, run) in panel.chunks_exact_mut(NR).enumerate() {
        run[..live].copy_from_slice(&wt[l * n + c0..l * n + c0 + live]);
    }
}

/// [`pack`] for f32 and f16 weights, each panel by [`pack_panel`] (8x8 transposes with AVX2,
/// where [`pack`]'s loop stores every value to its own cache line; perf put that loop at 9% of
/// loading an f32 GPT-2, most of the rest being page faults and the file's copies, and at an
/// eighth of loading an f16 GGUF).
pub fn pack_rows<T: Packed>(isa: Isa, w: &[T], n: usize, k: usize) -> Vec<T> {
    assert!(w.len() >= n * k);
    panels(n, k, |p, panel| {
        let rows = NR.min(n - p * NR);
        pack_panel(isa, &w[p * NR * k..(p * NR + rows) * k], rows, k, panel);
    })
}

/// Weight values the SIMD transposes pack: f32 and f16.
pub trait Packed: Copy + Default + Send + Sync {
    /// Eight rows of `k` into columns `j0..j0 + 8` of a panel (`avx::transpose_rows`).
    ///
    /// # Safety
    /// As `avx::transpose_rows`: the CPU must have AVX2; `w` holds 8 rows of `k`, `k` is a
    /// multiple of 8, `j0 + 8 <= NR` and `panel` holds `NR · k` values.
    #[cfg(target_arch = "x86_64")]
    unsafe fn transpose_rows(w: &[Self], k: usize, j0: usize, panel: &mut [Self]);
}

impl Packed for f32 {
    #[cfg(target_arch = "x86_64")]
    unsafe fn transpose_rows(w: &[f32], k: usize, j0: usize, panel: &mut [f32]) {
        // SAFETY: the caller's.
        unsafe { avx::transpose_rows(w, k, j0, panel) }
    }
}

impl Packed for f16 {
    #[cfg(target_arch = "x86_64")]
    unsafe fn transpose_rows(w: &[f16], k: usize, j0: usize, panel: &mut [f16]) {
        // SAFETY: the caller's.
        unsafe { avx::transpose_rows_f16(w, k, j0, panel) }
    }
}

/// One panel of [`pack`]'s layout from `rows` (at most [`NR`]) row-major rows of `k`:
/// `panel[l · NR + j] = w[j · k + l]`; the entries of rows past `rows` are left as they are.
/// With AVX2, eight rows at a time by 8x8 transposes in registers (a plain loop scatters
/// every value to its own cache line: a tenth of a `q8_0` prompt's time, converted tiles).
pub(crate) fn pack_panel<T: Packed>(isa: Isa, w: &[T], rows: usize, k: usize, panel: &mut [T]) {
    assert!(rows <= NR && w.len() >= rows * k && panel.len() >= NR * k);
    // Rows packed by the SIMD transposes (whole groups of eight).
    #[cfg(target_arch = "x86_64")]
    let done = if matches!(isa, Isa::Avx2 { .. }) && k.is_multiple_of(8) {
        for j0 in (0..rows / 8 * 8).step_by(8) {
            // SAFETY: Isa::Avx2 is chosen only where the CPU has AVX2 (cpu::isa); rows
            // j0..j0 + 8 are in `w` and `k` is a multiple of 8 (both checked above).
            unsafe { T::transpose_rows(&w[j0 * k..(j0 + 8) * k], k, j0, panel) };
        }
        rows / 8 * 8
    } else {
        0
    };
    #[cfg(not(target_arch = "x86_64"))]
    let done = {
        let _ = isa;
        0
    };
    plain_rows(w, done, rows, k, panel);
}

/// Weight `(row, col)` of packed panels with `k` inputs.
pub fn packed_at<T: Copy>(panels: &[T], k: usize, row: usize, col: usize) -> T {
    panels[(row / NR) * NR * k + col * NR + row % NR]
}

#[derive(Clone, Copy)]
pub(crate) enum Weights<'a> {
    Rows(&'a [f32]),
    Panels(&'a [f32]),
    PanelsF16(&'a [f16]),
}

/// One block of one panel, as the kernel reads it.
// Only the x86-64 kernels read the slices so far; aarch64 packs panels but has no kernel yet.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
#[derive(Clone, Copy)]
enum Panel<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
}

/// Whether there is a blocked kernel for `isa` (AVX2's; elsewhere callers use the gemm
/// crate). aarch64: a NEON kernel hooks in here and in [`tile`].
pub(crate) fn has_kernel(isa: Isa) -> bool {
    cfg!(target_arch = "x86_64") && matches!(isa, Isa::Avx2 { .. })
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn product(
    isa: Isa,
    x: &[f32],
    m: usize,
    k: usize,
    w: Weights<'_>,
    n: usize,
    out: &mut [f32],
    ldc: usize,
) -> bool {
    assert!(x.len() >= m * k && ldc >= n);
    assert!(m == 0 || out.len() >= (m - 1) * ldc + n);
    if !has_kernel(isa) {
        return false;
    }
    if m == 0 || n == 0 {
        return true;
    }
    let wide = isa == Isa::Avx2 { avx512: true };
    let a = pack_x(isa, x, m, k);
    let m_pad = m.div_ceil(MR) * MR;
    let out = SharedOut(out.as_mut_ptr());
    (0..n.div_ceil(NC)).into_par_iter().for_each(|task| {
        let j0 = task * NC;
        let cols = NC.min(n - j0);
        let panels = cols.div_ceil(NR);
        let mut b = match w {
            Weights::Rows(_) => vec![0f32; KC * panels * NR],
            Weights::Panels(_) | Weights::PanelsF16(_) => Vec::new(),
        };
        let mut p0 = 0;
        while p0 < k {
            let kc = KC.min(k - p0);
            if let Weights::Rows(w) = w {
                pack_w(w, k, j0, cols, p0, kc, &mut b);
            }
            let a_block = &a[p0 * m_pad..(p0 + kc) * m_pad];
            // The weight panel `jr` of this block, as the kernel reads it.
            let panel = |jr: usize| {
                let start = (j0 / NR + jr) * NR * k + p0 * NR;
                match w {
                    Weights::Rows(_) => Panel::F32(&b[jr * kc * NR..(jr + 1) * kc * NR]),
                    Weights::Panels(all) => Panel::F32(&all[start..start + kc * NR]),
                    Weights::PanelsF16(all) => Panel::F16(&all[start..start + kc * NR]),
                }
            };
            // AVX-512 takes two x panels and two weight panels a tile (12 x 32); the last
            // odd panel of either goes alone.
            let (row_step, col_step) = if wide { (2, 2) } else { (1, 1) };
            for ir in (0..m_pad / MR).step_by(row_step) {
                let row_panels = row_step.min(m_pad / MR - ir);
                let ap = &a_block[ir * MR * kc..(ir + row_panels) * MR * kc];
                let rows = (row_panels * MR).min(m - ir * MR);
                for jr in (0..panels).step_by(col_step) {
                    let col_panels = col_step.min(panels - jr);
                    let c0 = j0 + jr * NR;
                    let width = (col_panels * NR).min(n - c0);
                    let bp = [panel(jr), panel(jr + col_panels - 1)];
                    // SAFETY: has_kernel(isa) above: Isa::Avx2, chosen only where the CPU has
                    // AVX2, FMA and F16C, and with `avx512` (`wide`) only where it has
                    // AVX-512 F, BW, VL and VNNI too; the tile (rows x width at row ir * MR,
                    // column c0) lies inside `out` (m x n) and in this task's columns only.
                    unsafe {
                        tile(
                            wide,
                            kc,
                            ap,
                            &bp[..col_panels],
                            out.at(ir * MR * ldc + c0),
                            ldc,
                            rows,
                            width,
                            p0 > 0,
                        )
                    };
                }
            }
            p0 += kc;
        }
    });
    true
}

/// The output, written by tasks at disjoint columns (here and in `vnni`).
#[derive(Clone, Copy)]
pub(super) struct SharedOut(pub(super) *mut f32);
// SAFETY: each task writes only its own column block (see `xwt`, and `vnni`'s products: the
// 32 columns of a task's own weight rows).
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// # Safety
    /// `offset` must lie inside the output.
    pub(super) unsafe fn at(self, offset: usize) -> *mut f32 {
        self.0.add(offset)
    }
}

/// `x` in panels of `MR` rows for each block of `KC` inputs: block `p0` starts at
/// `p0 * m_pad`; in it panel `ir` holds `(l, i)` at `ir * MR * kc + l * MR + i`. Rows past
/// `m` are zero.
fn pack_x(isa: Isa, x: &[f32], m: usize, k: usize) -> Vec<f32> {
    #[cfg(not(target_arch = "x86_64"))]
    let _ = isa;
    let m_pad = m.div_ceil(MR) * MR;
    let mut a = vec![0f32; k * m_pad];
    let blocks: Vec<(usize, &mut [f32])> = {
        let mut rest = a.as_mut_slice();
        let mut out = Vec::new();
        let mut p0 = 0;
        while p0 < k {
            let kc = KC.min(k - p0);
            let (block, tail) = rest.split_at_mut(kc * m_pad);
            out.push((p0, block));
            rest = tail;
            p0 += kc;
        }
        out
    };
    blocks.into_par_iter().for_each(|(p0, block)| {
        let kc = block.len() / m_pad;
        for (ir, panel) in block.chunks_mut(MR * kc).enumerate() {
            #[cfg(target_arch = "x86_64")]
            if matches!(isa, Isa::Avx2 { .. }) && (ir + 1) * MR <= m {
                // SAFETY: Isa::Avx2 is chosen only where the CPU has AVX2 (cpu::isa); the
                // kernel checks the rows it reads.
                unsafe { avx::pack_x_panel(&x[ir * MR * k..], k, p0, kc, panel) };
                continue;
            }
            for i in 0..MR.min(m - ir * MR) {
                let row = &x[(ir * MR + i) * k + p0..(ir * MR + i) * k + p0 + kc];
                for (l, &v) in row.iter().enumerate() {
                    panel[l * MR + i] = v;
                }
            }
        }
    });
    a
}

/// Weight rows `j0..j0 + cols`, inputs `p0..p0 + kc`, in panels of `NR` rows: panel `jr`
/// holds `(l, j)` at `jr * kc * NR + l * NR + j`; rows past `cols` are zero.
fn pack_w(w: &[f32], k: usize, j0: usize, cols: usize, p0: usize, kc: usize, b: &mut [f32]) {
    for (jr, panel) in b[..cols.div_ceil(NR) * kc * NR]
        .chunks_mut(kc * NR)
        .enumerate()
    {
        let live = NR.min(cols - jr * NR);
        for j in 0..NR {
            if j >= live {
                for l in 0..kc {
                    panel[l * NR + j] = 0.0;
                }
                continue;
            }
            let row = &w[(j0 + jr * NR + j) * k + p0..(j0 + jr * NR + j) * k + p0 + kc];
            for (l, &v) in row.iter().enumerate() {
                panel[l * NR + j] = v;
            }
        }
    }
}

/// The widest tile a kernel computes: two x panels by two weight panels (AVX-512).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
const TILE_ROWS: usize = 2 * MR;
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
const TILE_COLS: usize = 2 * NR;
/// A tile's outputs, row-major with rows of [`TILE_COLS`].
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
const TILE: usize = TILE_ROWS * TILE_COLS;

/// One `rows x width` tile of the output at `c` (rows `ldc` apart): `c (+)= a · b` over `kc`
/// inputs, `a` one or (`wide` only) two x panels, `b` one or (`wide` only) two weight panels.
///
/// # Safety
/// The CPU must have what [`has_kernel`] asks (AVX2, FMA, F16C), and AVX-512 F, BW, VL and
/// VNNI where `wide`; `c` must be valid for the tile.
#[allow(clippy::too_many_arguments)]
unsafe fn tile(
    wide: bool,
    kc: usize,
    a: &[f32],
    b: &[Panel<'_>],
    c: *mut f32,
    ldc: usize,
    rows: usize,
    width: usize,
    accumulate: bool,
) {
    #[cfg(target_arch = "x86_64")]
    {
        let mut acc = [0f32; TILE_ROWS * TILE_COLS];
        let x_panels = a.len() / (MR * kc);
        match (wide, x_panels, b) {
            (false, _, [Panel::F32(b)]) => avx::kernel(kc, a, b, &mut acc),
            (false, _, [Panel::F16(b)]) => avx::kernel_f16(kc, a, b, &mut acc),
            (true, 2, &[Panel::F32(b0), Panel::F32(b1)]) => {
                avx512::f32::<2, 2>(kc, a, [b0, b1], &mut acc)
            }
            (true, 1, &[Panel::F32(b0), Panel::F32(b1)]) => {
                avx512::f32::<1, 2>(kc, a, [b0, b1], &mut acc)
            }
            (true, 2, &[Panel::F32(b0)]) => avx512::f32::<2, 1>(kc, a, [b0, b0], &mut acc),
            (true, 1, &[Panel::F32(b0)]) => avx512::f32::<1, 1>(kc, a, [b0, b0], &mut acc),
            (true, 2, &[Panel::F16(b0), Panel::F16(b1)]) => {
                avx512::f16::<2, 2>(kc, a, [b0, b1], &mut acc)
            }
            (true, 1, &[Panel::F16(b0), Panel::F16(b1)]) => {
                avx512::f16::<1, 2>(kc, a, [b0, b1], &mut acc)
            }
            (true, 2, &[Panel::F16(b0)]) => avx512::f16::<2, 1>(kc, a, [b0, b0], &mut acc),
            (true, 1, &[Panel::F16(b0)]) => avx512::f16::<1, 1>(kc, a, [b0, b0], &mut acc),
            _ => unreachable!("product hands the kernels matching panels"),
        }
        for i in 0..rows {
            let dst = std::slice::from_raw_parts_mut(c.add(i * ldc), width);
            let src = &acc[i * TILE_COLS..i * TILE_COLS + width];
            if accumulate {
                for (d, s) in dst.iter_mut().zip(src) {
                    *d += s;
                }
            } else {
                dst.copy_from_slice(src);
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (wide, kc, a, b, c, ldc, rows, width, accumulate);
        unreachable!("product checks has_kernel first");
    }
}

#[cfg(target_arch = "x86_64")]
mod avx {
    use super::{MR, NR, TILE, TILE_COLS};
    use half::f16;
    use std::arch::x86_64::*;

    /// The 8x8 transpose: lane `i` of `out[c]` is lane `c` of `r[i]`.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn transpose8(r: [__m256; 8]) -> [__m256; 8] {
        let t0 = _mm256_unpacklo_ps(r[0], r[1]);
        let t1 = _mm256_unpackhi_ps(r[0], r[1]);
        let t2 = _mm256_unpacklo_ps(r[2], r[3]);
        let t3 = _mm256_unpackhi_ps(r[2], r[3]);
        let t4 = _mm256_unpacklo_ps(r[4], r[5]);
        let t5 = _mm256_unpackhi_ps(r[4], r[5]);
        let t6 = _mm256_unpacklo_ps(r[6], r[7]);
        let t7 = _mm256_unpackhi_ps(r[6], r[7]);
        // s_c: column c of rows 0-3 in the low half, column c + 4 in the high half; the
        // same for rows 4-7 in s_{c+4}.
        let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
        let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
        let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
        let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
        [
            _mm256_permute2f128_ps::<0x20>(s0, s4),
            _mm256_permute2f128_ps::<0x20>(s1, s5),
            _mm256_permute2f128_ps::<0x20>(s2, s6),
            _mm256_permute2f128_ps::<0x20>(s3, s7),
            _mm256_permute2f128_ps::<0x31>(s0, s4),
            _mm256_permute2f128_ps::<0x31>(s1, s5),
            _mm256_permute2f128_ps::<0x31>(s2, s6),
            _mm256_permute2f128_ps::<0x31>(s3, s7),
        ]
    }

    /// [`transpose_rows`] for f16 weights: eight rows of `k` into columns `j0..j0 + 8` of a
    /// panel, an 8x8 block of 16-bit lanes at a time.
    ///
    /// # Safety
    /// The CPU must have AVX2; `w` holds 8 rows of `k`, `k` is a multiple of 8, `j0 + 8 <= NR`
    /// and `panel` holds `NR · k` values.
    #[target_feature(enable = "avx2")]
    pub unsafe fn transpose_rows_f16(w: &[f16], k: usize, j0: usize, panel: &mut [f16]) {
        assert!(w.len() >= 8 * k && k.is_multiple_of(8) && j0 + 8 <= NR && panel.len() >= NR * k);
        let (src, dst) = (w.as_ptr(), panel.as_mut_ptr());
        for l0 in (0..k).step_by(8) {
            let a: [__m128i; 8] =
                std::array::from_fn(|i| _mm_loadu_si128(src.add(i * k + l0) as *const __m128i));
            // Pairs of rows interleaved, then pairs of pairs, then halves: column c of the
            // eight rows ends in one register.
            let t0 = _mm_unpacklo_epi16(a[0], a[1]);
            let t1 = _mm_unpackhi_epi16(a[0], a[1]);
            let t2 = _mm_unpacklo_epi16(a[2], a[3]);
            let t3 = _mm_unpackhi_epi16(a[2], a[3]);
            let t4 = _mm_unpacklo_epi16(a[4], a[5]);
            let t5 = _mm_unpackhi_epi16(a[4], a[5]);
            let t6 = _mm_unpacklo_epi16(a[6], a[7]);
            let t7 = _mm_unpackhi_epi16(a[6], a[7]);
            let u0 = _mm_unpacklo_epi32(t0, t2);
            let u1 = _mm_unpackhi_epi32(t0, t2);
            let u2 = _mm_unpacklo_epi32(t1, t3);
            let u3 = _mm_unpackhi_epi32(t1, t3);
            let u4 = _mm_unpacklo_epi32(t4, t6);
            let u5 = _mm_unpackhi_epi32(t4, t6);
            let u6 = _mm_unpacklo_epi32(t5, t7);
            let u7 = _mm_unpackhi_epi32(t5, t7);
            let columns = [
                _mm_unpacklo_epi64(u0, u4),
                _mm_unpackhi_epi64(u0, u4),
                _mm_unpacklo_epi64(u1, u5),
                _mm_unpackhi_epi64(u1, u5),
                _mm_unpacklo_epi64(u2, u6),
                _mm_unpackhi_epi64(u2, u6),
                _mm_unpacklo_epi64(u3, u7),
                _mm_unpackhi_epi64(u3, u7),
            ];
            for (c, v) in columns.into_iter().enumerate() {
                _mm_storeu_si128(dst.add((l0 + c) * NR + j0) as *mut __m128i, v);
            }
        }
    }

    /// Six x rows (`k` apart in `x`, from input `p0`) into one x panel of `kc` inputs:
    /// `panel[l · MR + i] = x[i · k + p0 + l]`, eight inputs a transpose (whose rows 6 and 7
    /// repeat row 5 and are not stored), the last `kc % 8` one by one.
    ///
    /// # Safety
    /// The CPU must have AVX2.
    #[target_feature(enable = "avx2")]
    pub unsafe fn pack_x_panel(x: &[f32], k: usize, p0: usize, kc: usize, panel: &mut [f32]) {
        assert!(x.len() >= 5 * k + p0 + kc && p0 + kc <= k && panel.len() >= MR * kc);
        const { assert!(MR == 6) };
        let (src, dst) = (x.as_ptr().add(p0), panel.as_mut_ptr());
        let full = kc / 8 * 8;
        for l0 in (0..full).step_by(8) {
            let r = std::array::from_fn(|i| _mm256_loadu_ps(src.add(i.min(MR - 1) * k + l0)));
            for (c, v) in transpose8(r).into_iter().enumerate() {
                let at = dst.add((l0 + c) * MR);
                _mm_storeu_ps(at, _mm256_castps256_ps128(v));
                let high = _mm_castps_si128(_mm256_extractf128_ps::<1>(v));
                _mm_storel_epi64(at.add(4) as *mut __m128i, high);
            }
        }
        for l in full..kc {
            for i in 0..MR {
                panel[l * MR + i] = x[i * k + p0 + l];
            }
        }
    }

    /// Eight rows of `k` (row-major in `w`) into columns `j0..j0 + 8` of a panel:
    /// `panel[l · NR + j0 + i] = w[i · k + l]`, an 8x8 block at a time.
    ///
    /// # Safety
    /// The CPU must have AVX2; `w` holds 8 rows of `k`, `k` is a multiple of 8, `j0 + 8 <= NR`
    /// and `panel` holds `NR · k` values.
    #[target_feature(enable = "avx2")]
    pub unsafe fn transpose_rows(w: &[f32], k: usize, j0: usize, panel: &mut [f32]) {
        assert!(w.len() >= 8 * k && k.is_multiple_of(8) && j0 + 8 <= NR && panel.len() >= NR * k);
        let (src, dst) = (w.as_ptr(), panel.as_mut_ptr());
        for l0 in (0..k).step_by(8) {
            let r: [__m256; 8] = std::array::from_fn(|i| _mm256_loadu_ps(src.add(i * k + l0)));
            let columns = transpose8(r);
            for (c, v) in columns.into_iter().enumerate() {
                _mm256_storeu_ps(dst.add((l0 + c) * NR + j0), v);
            }
        }
    }

    macro_rules! kernel {
        ($name:ident, $w:ty, $features:literal, $load:expr) => {
            /// `acc (MR x NR at the top left of a tile's rows of TILE_COLS) = a · b` over
            /// `kc` inputs of packed panels.
            ///
            /// # Safety
            /// The CPU must have the features enabled here.
            #[target_feature(enable = $features)]
            pub unsafe fn $name(kc: usize, a: &[f32], b: &[$w], acc: &mut [f32; TILE]) {
                assert!(a.len() >= kc * MR && b.len() >= kc * NR);
                let (mut a_ptr, mut b_ptr) = (a.as_ptr(), b.as_ptr());
                let mut c = [[_mm256_setzero_ps(); 2]; MR];
                for _ in 0..kc {
                    let b0 = $load(b_ptr);
                    let b1 = $load(b_ptr.add(8));
                    for (i, c) in c.iter_mut().enumerate() {
                        let ai = _mm256_broadcast_ss(&*a_ptr.add(i));
                        c[0] = _mm256_fmadd_ps(ai, b0, c[0]);
                        c[1] = _mm256_fmadd_ps(ai, b1, c[1]);
                    }
                    a_ptr = a_ptr.add(MR);
                    b_ptr = b_ptr.add(NR);
                }
                for (i, c) in c.iter().enumerate() {
                    _mm256_storeu_ps(acc.as_mut_ptr().add(i * TILE_COLS), c[0]);
                    _mm256_storeu_ps(acc.as_mut_ptr().add(i * TILE_COLS + 8), c[1]);
                }
            }
        };
    }

    kernel!(kernel, f32, "avx,fma", |p: *const f32| _mm256_loadu_ps(p));
    kernel!(kernel_f16, f16, "avx,fma,f16c", |p: *const f16| {
        _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))
    });
}

/// The AVX-512 kernels: `P` x panels (6 rows each) by `Q` weight panels (16 columns each, one
/// 512-bit register a row), up to 12 x 32 outputs in 24 registers. Per input position: `Q`
/// weight loads, `6 P` broadcasts and `6 P Q` FMAs (24 of them on two ports: 12 cycles, against
/// 14 loads on two ports).
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{MR, NR, TILE, TILE_COLS, TILE_ROWS};
    use half::f16;
    use std::arch::x86_64::*;

    macro_rules! kernel {
        ($name:ident, $w:ty, $load:expr) => {
            /// `acc (6 P x 16 Q at the top left of rows of TILE_COLS) = a · b` over `kc`
            /// inputs: `a` holds `P` consecutive x panels, `b` the weight panels (only the
            /// first `Q` are read).
            ///
            /// # Safety
            /// The CPU must have AVX-512 F.
            #[target_feature(enable = "avx512f")]
            pub unsafe fn $name<const P: usize, const Q: usize>(
                kc: usize,
                a: &[f32],
                b: [&[$w]; 2],
                acc: &mut [f32; TILE],
            ) {
                assert!((1..=2).contains(&P) && (1..=2).contains(&Q));
                assert!(a.len() >= P * MR * kc);
                assert!(b.iter().all(|b| b.len() >= kc * NR));
                let mut c = [[_mm512_setzero_ps(); 2]; TILE_ROWS];
                let a_ptr = a.as_ptr();
                let b_ptr = [b[0].as_ptr(), b[1].as_ptr()];
                for l in 0..kc {
                    let mut w = [_mm512_setzero_ps(); 2];
                    for (q, w) in w.iter_mut().enumerate().take(Q) {
                        *w = $load(b_ptr[q].add(l * NR));
                    }
                    for p in 0..P {
                        let ap = a_ptr.add(p * MR * kc + l * MR);
                        for i in 0..MR {
                            let ai = _mm512_set1_ps(*ap.add(i));
                            for q in 0..Q {
                                let c = &mut c[p * MR + i][q];
                                *c = _mm512_fmadd_ps(ai, w[q], *c);
                            }
                        }
                    }
                }
                for (i, c) in c.iter().enumerate().take(P * MR) {
                    for (q, c) in c.iter().enumerate().take(Q) {
                        _mm512_storeu_ps(acc.as_mut_ptr().add(i * TILE_COLS + q * NR), *c);
                    }
                }
            }
        };
    }

    kernel!(f32, f32, |p: *const f32| _mm512_loadu_ps(p));
    kernel!(f16, f16, |p: *const f16| {
        _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i))
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::cpu::isa::test_paths;

    #[test]
    fn one_panel_is_packs_layout() {
        for isa in test_paths() {
            // Whole and partial groups of eight rows; k a multiple of 8 (the transposes) or not.
            for (rows, k) in [(16, 64), (11, 40), (8, 8), (3, 24), (13, 37)] {
                let w: Vec<f32> = (0..rows * k).map(|i| i as f32 * 0.5 - 7.0).collect();
                let want = pack(&w, rows, k);
                let mut got = vec![0f32; NR * k];
                pack_panel(isa, &w, rows, k, &mut got);
                assert_eq!(got, want, "{isa:?} {rows}x{k}");
            }
        }
    }

    #[test]
    fn pack_x_is_the_plain_layout_on_every_path() {
        // Whole and partial x panels; blocks of KC inputs and a last one of another length,
        // a multiple of 8 or not.
        for (m, k) in [(6, 8), (12, 300), (13, 513), (5, 40), (19, 7)] {
            let x: Vec<f32> = (0..m * k).map(|i| i as f32 * 0.5 - 7.0).collect();
            let plain = pack_x(Isa::Portable, &x, m, k);
            let m_pad = m.div_ceil(MR) * MR;
            // The layout pack_x documents, read back for every (row, input).
            for row in 0..m_pad {
                for l in 0..k {
                    let (p0, kc) = (l / KC * KC, KC.min(k - l / KC * KC));
                    let at = p0 * m_pad + (row / MR) * MR * kc + (l - p0) * MR + row % MR;
                    let want = if row < m { x[row * k + l] } else { 0.0 };
                    assert_eq!(plain[at], want, "{m}x{k} ({row}, {l})");
                }
            }
            for isa in test_paths() {
                assert_eq!(pack_x(isa, &x, m, k), plain, "{isa:?} {m}x{k}");
            }
        }
    }

    #[test]
    fn pack_rows_of_f16_is_packs_layout() {
        for isa in test_paths() {
            // Whole and partial panels and groups of eight rows; k a multiple of 8 or not.
            for (n, k) in [(32, 64), (45, 40), (7, 16), (20, 37), (1, 8)] {
                let w: Vec<f16> = (0..n * k).map(|i| f16::from_f32(i as f32 * 0.25)).collect();
                assert_eq!(pack_rows(isa, &w, n, k), pack(&w, n, k), "{isa:?} {n}x{k}");
            }
        }
    }

    #[test]
    fn pack_columns_is_packs_layout_of_the_transpose() {
        for (n, k) in [(32, 64), (45, 40), (7, 16), (1, 3)] {
            let w: Vec<f32> = (0..n * k).map(|i| i as f32 * 0.25 - 9.0).collect();
            let wt: Vec<f32> = (0..k * n).map(|i| w[(i % n) * k + i / n]).collect();
            assert_eq!(pack_columns(&wt, n, k), pack(&w, n, k), "{n}x{k}");
        }
    }

    #[test]
    fn pack_rows_of_f32_is_packs_layout() {
        for isa in test_paths() {
            // Whole and partial panels; k a multiple of 8 (the transposes) or not.
            for (n, k) in [(32, 64), (45, 40), (7, 16), (20, 37), (1, 8)] {
                let w: Vec<f32> = (0..n * k).map(|i| i as f32 * 0.25 - 9.0).collect();
                assert_eq!(pack_rows(isa, &w, n, k), pack(&w, n, k), "{isa:?} {n}x{k}");
            }
        }
    }

    #[test]
    fn equals_the_naive_product_at_every_edge() {
        // Shapes cross every block edge: rows not a multiple of 6, columns not of 16 or of
        // the task width, inputs not of the block depth.
        for isa in test_paths() {
            for (m, k, n) in [
                (1, 1, 1),
                (7, 300, 17),
                (13, 513, 130),
                (6, 256, 16),
                (5, 257, 15),
                (20, 64, 300),
            ] {
                let x: Vec<f32> = (0..m * k)
                    .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
                    .collect();
                let w: Vec<f32> = (0..n * k)
                    .map(|i| ((i * 53 % 97) as f32 - 48.0) / 48.0)
                    .collect();
                let want = crate::engine::cpu::testutil::reference_xwt(&x, m, &w, n, k);
                let close = |got: &[f32], what: &str| {
                    for (at, (got, want)) in got.iter().zip(&want).enumerate() {
                        assert!(
                            (got - want).abs() < 1e-4 * k as f32,
                            "{isa} {what} {m}x{k}x{n} at ({},{})",
                            at / n,
                            at % n
                        );
                    }
                };
                // The fallback every path without a blocked kernel takes.
                let mut out = vec![f32::NAN; m * n];
                xwt_gemm_crate(&x, m, k, &w, n, &mut out, n);
                close(&out, "gemm crate");
                let mut out = vec![f32::NAN; m * n];
                let done = product(isa, &x, m, k, Weights::Rows(&w), n, &mut out, n);
                assert_eq!(
                    done,
                    has_kernel(isa),
                    "{isa}: a kernel runs where there is one"
                );
                if !done {
                    assert!(out.iter().all(|v| v.is_nan()), "{isa}: out left alone");
                    continue;
                }
                close(&out, "rows");
                let panels = pack(&w, n, k);
                let mut again = vec![f32::NAN; m * n];
                assert!(product(
                    isa,
                    &x,
                    m,
                    k,
                    Weights::Panels(&panels),
                    n,
                    &mut again,
                    n
                ));
                assert_eq!(out, again, "packed at load or per call: the same sums");
                let halves: Vec<f16> = w.iter().map(|&v| f16::from_f32(v)).collect();
                let widened: Vec<f32> = halves.iter().map(|v| v.to_f32()).collect();
                let mut want16 = vec![f32::NAN; m * n];
                assert!(product(
                    isa,
                    &x,
                    m,
                    k,
                    Weights::Rows(&widened),
                    n,
                    &mut want16,
                    n
                ));
                let mut got = vec![f32::NAN; m * n];
                let packed16 = pack(&halves, n, k);
                let f16_weights = Weights::PanelsF16(&packed16);
                assert!(product(isa, &x, m, k, f16_weights, n, &mut got, n));
                assert_eq!(got, want16, "f16 panels: the widened weights' sums");
                assert_eq!(packed_at(&panels, k, n - 1, k - 1), w[n * k - 1]);
            }
        }
    }
}
