//! Weight matrices `[out, in]` in the formats GPT-2 runs on the CPU, and their products with
//! f32 activations: `x · wᵀ`.
//!
//! - `f32`, `f16`, `bf16`: the weights as stored; activations and sums stay in f32, as in
//!   llama.cpp's CPU backend (this CPU family has no fast half-precision arithmetic, only
//!   conversion), so a reduced precision only rounds the weights.
//! - `q8_0`: ggml's blocks of 32 weights, one scale each (`x ≈ d · q`, `q` in -127..=127). For
//!   products the activations are quantized to the same blocks and the sums are integer dot
//!   products (AVX2 `maddubs`), each block scaled once: the weights are read at a quarter of
//!   f32's bytes, which is what decoding is bound by.
//! - `q4_k`: ggml's 256-weight blocks of 4-bit quants with 6-bit sub-block scales and mins
//!   ([`super::q4k`]), multiplied by integer dot products with activations in `q8_K`, prompts
//!   included.
//!
//! Decoding multiplies one row per sequence ([`MAX_ROWS`] at most): every weight row is read
//! once for all input rows, on every core. Longer inputs (prompts, scoring) go to gemm, the
//! weights converted to f32 one tile of rows at a time so that no f32 copy is kept.

use std::sync::Arc;

use half::{bf16, f16};
use rayon::prelude::*;

use super::gemm::{self, Weights};
use super::isa::{isa, Isa};
use super::kernels;
#[cfg(target_arch = "aarch64")]
use super::neon;
use super::q4k;

/// Input rows up to which the few-row kernels run; more go to gemm.
pub const MAX_ROWS: usize = 8;

/// Weights per `q8_0` block.
pub const QK8_0: usize = 32;

/// Bytes of a `q8_0` block as ggml stores it: an f16 scale and 32 signed bytes.
pub const Q8_0_BLOCK_BYTES: usize = 2 + QK8_0;

/// Weight rows converted to f32 per gemm tile when the weights are not f32.
const TILE_ROWS: usize = 4096;

/// Weight rows per parallel task of the few-row kernels.
const ROWS_PER_TASK: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    F32,
    F16,
    Bf16,
    Q8_0,
    Q4K,
}

impl Format {
    pub const ALL: [Format; 5] = [
        Format::F32,
        Format::F16,
        Format::Bf16,
        Format::Q8_0,
        Format::Q4K,
    ];

    /// Whether a matrix with rows of `cols` weights can be held in this format.
    pub fn fits(self, cols: usize) -> bool {
        match self {
            Format::Q8_0 => cols.is_multiple_of(QK8_0),
            Format::Q4K => cols.is_multiple_of(q4k::QK_K),
            _ => true,
        }
    }

    /// Whether the weights are held in quantized blocks.
    pub fn is_quantized(self) -> bool {
        matches!(self, Format::Q8_0 | Format::Q4K)
    }
}

#[derive(Debug)]
enum Data {
    /// In the panels of [`super::gemm::pack`], which both the gemm and the few-row kernel
    /// stream.
    F32(Vec<f32>),
    /// Panels too: the kernels widen each weight as they load it.
    F16(Vec<f16>),
    Bf16(Vec<bf16>),
    /// `qs` row-major like the weights; `scales[row * cols / 32 + block]`.
    Q8 {
        qs: Vec<i8>,
        scales: Vec<f32>,
    },
    /// ggml's `q4_K` blocks, row after row.
    Q4K(Vec<u8>),
}

/// A `[rows, cols]` weight matrix (`rows` outputs of `cols` inputs), cheap to clone.
#[derive(Debug, Clone)]
pub struct Matrix {
    rows: usize,
    cols: usize,
    data: Arc<Data>,
    /// Prompt products keep f32 activations (see [`Matrix::with_f32_prompts`]).
    // Read where there are integer prompt products: x86-64 only so far.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    f32_prompts: bool,
}

impl Matrix {
    /// The same weights, whose prompt products (more than [`MAX_ROWS`] input rows) keep
    /// their activations in f32: quantized formats multiply dequantized tiles instead of
    /// quantizing the activations to 8 bits for integer products. For models whose
    /// activations have outliers that rounding amplifies: T5's q8_0 first-step logits on its
    /// test fixture moved by 44% of their scale with integer prompt products, 9% without.
    pub fn with_f32_prompts(mut self) -> Self {
        self.f32_prompts = true;
        self
    }

    /// Converts row-major f32 weights into `format`. Panics if the format does not fit the
    /// shape (see [`Format::fits`]) or `w` is not `rows * cols` long.
    pub fn from_f32(w: &[f32], rows: usize, cols: usize, format: Format) -> Self {
        assert_eq!(w.len(), rows * cols, "weights do not match their shape");
        assert!(
            format.fits(cols),
            "{cols} inputs are not whole {format:?} blocks"
        );
        let data = match format {
            Format::F32 => Data::F32(gemm::pack_rows(isa(), w, rows, cols)),
            Format::F16 => Data::F16(gemm::pack_rows(isa(), &kernels::to_halves(w), rows, cols)),
            Format::Bf16 => Data::Bf16(w.par_iter().map(|&v| bf16::from_f32(v)).collect()),
            Format::Q8_0 => {
                let (qs, scales) = quantize_q8_0(w, true);
                Data::Q8 { qs, scales }
            }
            Format::Q4K => Data::Q4K(q4k::quantize(w, cols)),
        };
        Self {
            rows,
            cols,
            data: Arc::new(data),
            f32_prompts: false,
        }
    }

    /// [`Matrix::from_f32`] from the transpose, `wt` being `cols` rows of `rows` (Conv1D's
    /// `(in, out)`): f32 and f16 panels straight from its runs (no transpose; converting
    /// GPT-2's safetensors did a scalar one, a quarter of an f32 load), the other formats
    /// from rows transposed in blocks.
    pub fn from_f32_columns(wt: &[f32], rows: usize, cols: usize, format: Format) -> Self {
        assert_eq!(wt.len(), rows * cols, "weights do not match their shape");
        let data = match format {
            Format::F32 => Data::F32(gemm::pack_columns(wt, rows, cols)),
            Format::F16 => Data::F16(gemm::pack_columns(&kernels::to_halves(wt), rows, cols)),
            _ => return Self::from_f32(&transpose(wt, cols, rows), rows, cols, format),
        };
        Self {
            rows,
            cols,
            data: Arc::new(data),
            f32_prompts: false,
        }
    }

    /// Half-precision weights as stored (a GGUF `F16` tensor).
    pub fn from_f16(w: &[f16], rows: usize, cols: usize) -> Self {
        assert_eq!(w.len(), rows * cols, "weights do not match their shape");
        Self {
            rows,
            cols,
            data: Arc::new(Data::F16(gemm::pack_rows(isa(), w, rows, cols))),
            f32_prompts: false,
        }
    }

    /// `q8_0` blocks in ggml's byte layout (an f16 scale, then 32 signed bytes, per block).
    pub fn from_q8_0_bytes(bytes: &[u8], rows: usize, cols: usize) -> Option<Self> {
        if !cols.is_multiple_of(QK8_0) || bytes.len() != rows * cols / QK8_0 * Q8_0_BLOCK_BYTES {
            return None;
        }
        let blocks = bytes.len() / Q8_0_BLOCK_BYTES;
        let mut qs = Vec::with_capacity(rows * cols);
        let mut scales = Vec::with_capacity(blocks);
        for block in bytes.chunks_exact(Q8_0_BLOCK_BYTES) {
            scales.push(f16::from_le_bytes([block[0], block[1]]).to_f32());
            qs.extend(block[2..].iter().map(|&b| b as i8));
        }
        Some(Self {
            rows,
            cols,
            data: Arc::new(Data::Q8 { qs, scales }),
            f32_prompts: false,
        })
    }

    /// `q4_K` blocks in ggml's byte layout.
    pub fn from_q4_k_bytes(bytes: Vec<u8>, rows: usize, cols: usize) -> Option<Self> {
        let fits =
            Format::Q4K.fits(cols) && bytes.len() == rows * cols / q4k::QK_K * q4k::BLOCK_BYTES;
        fits.then(|| Self {
            rows,
            cols,
            data: Arc::new(Data::Q4K(bytes)),
            f32_prompts: false,
        })
    }

    /// The `q4_K` blocks in ggml's byte layout, if the matrix is `q4_k`.
    pub fn q4_k_bytes(&self) -> Option<&[u8]> {
        match &*self.data {
            Data::Q4K(b) => Some(b),
            _ => None,
        }
    }

    /// The `q8_0` blocks in ggml's byte layout, if the matrix is `q8_0`.
    pub fn q8_0_bytes(&self) -> Option<Vec<u8>> {
        let Data::Q8 { qs, scales } = &*self.data else {
            return None;
        };
        let mut out = Vec::with_capacity(scales.len() * Q8_0_BLOCK_BYTES);
        for (q, &d) in qs.chunks_exact(QK8_0).zip(scales) {
            out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
            out.extend(q.iter().map(|&v| v as u8));
        }
        Some(out)
    }

    /// The weights row-major, if they are f16.
    pub fn f16_rows(&self) -> Option<Vec<f16>> {
        let Data::F16(w) = &*self.data else {
            return None;
        };
        let k = self.cols;
        Some(
            (0..self.rows * k)
                .map(|i| super::gemm::packed_at(w, k, i / k, i % k))
                .collect(),
        )
    }

    pub fn format(&self) -> Format {
        match &*self.data {
            Data::F32(_) => Format::F32,
            Data::F16(_) => Format::F16,
            Data::Bf16(_) => Format::Bf16,
            Data::Q8 { .. } => Format::Q8_0,
            Data::Q4K(_) => Format::Q4K,
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Bytes the weights occupy.
    pub fn bytes(&self) -> usize {
        match &*self.data {
            Data::F32(w) => w.len() * 4,
            Data::F16(w) => w.len() * 2,
            Data::Bf16(w) => w.len() * 2,
            Data::Q8 { qs, scales } => qs.len() + scales.len() * 4,
            Data::Q4K(b) => b.len(),
        }
    }

    /// Rows `first..first + out.len() / cols` converted to f32 into `out`.
    pub fn rows_f32(&self, first: usize, out: &mut [f32]) {
        self.rows_f32_on(isa(), first, out)
    }

    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
    fn rows_f32_on(&self, isa: Isa, first: usize, out: &mut [f32]) {
        let k = self.cols;
        let range = first * k..first * k + out.len();
        match &*self.data {
            Data::F32(w) => {
                for (i, o) in out.iter_mut().enumerate() {
                    *o = super::gemm::packed_at(w, k, first + i / k, i % k);
                }
            }
            Data::F16(w) => {
                for (i, o) in out.iter_mut().enumerate() {
                    *o = super::gemm::packed_at(w, k, first + i / k, i % k).to_f32();
                }
            }
            Data::Bf16(w) => {
                for (o, v) in out.iter_mut().zip(&w[range]) {
                    *o = v.to_f32();
                }
            }
            #[cfg(target_arch = "x86_64")]
            Data::Q8 { qs, scales } if matches!(isa, Isa::Avx2 { .. }) => {
                let blocks = first * k / QK8_0..;
                // SAFETY: Isa::Avx2 is chosen only where the CPU has AVX2 (cpu::isa); the
                // ranges are whole blocks of `out`.
                unsafe { avx::dequantize_q8(&qs[range], &scales[blocks], out) }
            }
            Data::Q8 { qs, scales } => {
                for (b, (o, q)) in out
                    .chunks_mut(QK8_0)
                    .zip(qs[range].chunks(QK8_0))
                    .enumerate()
                {
                    let d = scales[first * k / QK8_0 + b];
                    for (o, &q) in o.iter_mut().zip(q) {
                        *o = d * q as f32;
                    }
                }
            }
            Data::Q4K(b) => {
                let bytes = k / q4k::QK_K * q4k::BLOCK_BYTES;
                let blocks = &b[first * bytes..first * bytes + out.len() / k * bytes];
                q4k::dequantize(blocks, out)
            }
        }
    }

    /// The rows `ids` as f32, `(ids.len(), cols)` row-major: an embedding lookup.
    pub fn gather(&self, ids: &[u32]) -> Vec<f32> {
        let k = self.cols;
        let mut out = vec![0f32; ids.len() * k];
        for (o, &id) in out.chunks_mut(k).zip(ids) {
            self.rows_f32(id as usize, o);
        }
        out
    }

    /// `x · wᵀ + bias` for `x` `(m, cols)` row-major: `(m, rows)` row-major.
    pub fn matmul_t_bias(&self, x: &[f32], m: usize, bias: Option<&[f32]>) -> Vec<f32> {
        let mut out = self.matmul_t(x, m);
        if let Some(b) = bias {
            assert_eq!(b.len(), self.rows, "one bias per output");
            out.par_chunks_mut(self.rows.max(1)).for_each(|row| {
                for (o, b) in row.iter_mut().zip(b) {
                    *o += b;
                }
            });
        }
        out
    }

    /// `x · wᵀ` for `x` `(m, cols)` row-major: `(m, rows)` row-major.
    pub fn matmul_t(&self, x: &[f32], m: usize) -> Vec<f32> {
        self.matmul_t_on(isa(), x, m)
    }

    /// [`Matrix::matmul_t`] on the kernels of `isa` (which the CPU must run: tests compare
    /// the paths of [`super::isa::test_paths`]).
    pub(crate) fn matmul_t_on(&self, isa: Isa, x: &[f32], m: usize) -> Vec<f32> {
        assert_eq!(
            x.len(),
            m * self.cols,
            "input rows do not match the weights"
        );
        if m == 0 || self.rows == 0 || self.cols == 0 {
            // Empty sums (the kernels' tiles and chunks assume a non-empty matrix).
            return vec![0f32; m * self.rows];
        }
        if m <= MAX_ROWS {
            self.few_rows(isa, x, m)
        } else {
            self.many_rows(isa, x, m)
        }
    }

    fn few_rows(&self, isa: Isa, x: &[f32], m: usize) -> Vec<f32> {
        let (n, k) = (self.rows, self.cols);
        let quantized = match &*self.data {
            Data::Q8 { .. } => Some(quantize_q8_0(x, false)),
            _ => None,
        };
        let kernel = Kernel::pick(m, isa);
        if let Data::Q4K(b) = &*self.data {
            let xa = q4k::quantize_activations(x);
            let bytes = k / q4k::QK_K * q4k::BLOCK_BYTES;
            let at = q4k::Layout { row: 1, col: m };
            let mut out_t = vec![0f32; n * m];
            out_t
                .par_chunks_mut(ROWS_PER_TASK * m)
                .zip(b.par_chunks(ROWS_PER_TASK * bytes))
                .for_each(|(out, w)| (kernel.q4k)(&xa, 0, w, out, at, k));
            return transpose(&out_t, n, m);
        }
        // out_t is (n, m): each weight row gives m values, written together.
        let mut out_t = vec![0f32; n * m];
        if let Data::F32(_) | Data::F16(_) = &*self.data {
            let nr = gemm::NR;
            out_t
                .par_chunks_mut(ROWS_PER_TASK * m)
                .enumerate()
                .for_each(|(task, chunk)| {
                    let mut tile = [0f32; MAX_ROWS * 16];
                    for (i, out) in chunk.chunks_mut(nr * m).enumerate() {
                        let p = task * ROWS_PER_TASK / nr + i;
                        let span = p * nr * k..(p + 1) * nr * k;
                        match &*self.data {
                            Data::F32(w) => (kernel.panel)(x, &w[span], &mut tile),
                            Data::F16(w) => (kernel.panel_f16)(x, &w[span], &mut tile),
                            _ => unreachable!("panels are f32 or f16"),
                        }
                        for (j, o) in out.chunks_mut(m).enumerate() {
                            for (r, o) in o.iter_mut().enumerate() {
                                *o = tile[r * nr + j];
                            }
                        }
                    }
                });
            return transpose(&out_t, n, m);
        }
        out_t
            .par_chunks_mut(ROWS_PER_TASK * m)
            .enumerate()
            .for_each(|(task, chunk)| {
                for (i, out) in chunk.chunks_mut(m).enumerate() {
                    let row = task * ROWS_PER_TASK + i;
                    let span = row * k..(row + 1) * k;
                    match (&*self.data, &quantized) {
                        (Data::Bf16(w), _) => (kernel.bf16)(x, &w[span], out),
                        (Data::Q8 { qs, scales }, Some((xq, xd))) => {
                            let blocks = row * k / QK8_0..(row + 1) * k / QK8_0;
                            (kernel.q8)(xq, xd, &qs[span], &scales[blocks], out)
                        }
                        _ => unreachable!("panels and q4_k are handled above"),
                    }
                }
            });
        transpose(&out_t, n, m)
    }

    fn many_rows(&self, isa: Isa, x: &[f32], m: usize) -> Vec<f32> {
        let (n, k) = (self.rows, self.cols);
        // Integer products (they make their output): both quantized formats by VNNI with
        // AVX-512, q8_0 by AVX2's byte products without.
        #[cfg(target_arch = "x86_64")]
        if let (Isa::Avx2 { avx512 }, false) = (isa, self.f32_prompts) {
            match &*self.data {
                Data::Q4K(b) if avx512 => return super::vnni::q4k_product(isa, b, n, k, x, m),
                Data::Q8 { qs, scales } => {
                    return super::vnni::q8_0_product(isa, qs, scales, n, k, x, m)
                }
                _ => {}
            }
        }
        let mut out = vec![0f32; m * n];
        let done = match &*self.data {
            Data::F32(w) => gemm::product(isa, x, m, k, Weights::Panels(w), n, &mut out, n),
            Data::F16(w) => gemm::product(isa, x, m, k, Weights::PanelsF16(w), n, &mut out, n),
            #[cfg(target_arch = "x86_64")]
            Data::Q4K(b) if isa == (Isa::Avx2 { avx512: false }) && !self.f32_prompts => {
                self.many_rows_q4k(isa, x, m, b, &mut out);
                true
            }
            // aarch64: a NEON q4_k prompt kernel goes here (Isa::Neon).
            _ => false,
        };
        if done {
            return out;
        }
        let nr = gemm::NR;
        let mut tile = vec![0f32; TILE_ROWS.min(n).div_ceil(nr) * nr * k];
        for first in (0..n).step_by(TILE_ROWS) {
            let rows = TILE_ROWS.min(n - first);
            if !gemm::has_kernel(isa) {
                // Without a blocked kernel the gemm crate multiplies, and it reads rows.
                let rows_major = &mut tile[..rows * k];
                self.rows_f32_on(isa, first, rows_major);
                gemm::xwt_gemm_crate(x, m, k, rows_major, rows, &mut out[first..], n);
                continue;
            }
            // Converted straight into the gemm's panels; the kernel then reads them as is.
            let panels = &mut tile[..rows.div_ceil(nr) * nr * k];
            panels
                .par_chunks_mut(nr * k)
                .enumerate()
                .for_each(|(p, panel)| {
                    let live = nr.min(rows - p * nr);
                    let mut rows_major = vec![0f32; live * k];
                    self.rows_f32_on(isa, first + p * nr, &mut rows_major);
                    gemm::pack_panel(isa, &rows_major, live, k, panel);
                });
            let weights = Weights::Panels(panels);
            let packed = gemm::product(isa, x, m, k, weights, rows, &mut out[first..], n);
            assert!(packed, "has_kernel(isa) was checked for the packed gemm");
        }
        out
    }
}

impl Matrix {
    /// `q4_k` with many input rows. The mins term of every product is one small f32 product
    /// (`k / 32` wide) of the activations' scaled 32-value sums with the weights' `-dmin · m`;
    /// the scales term is added by the integer kernel, each task taking a few input rows
    /// (output rows) over all the weights, four input rows at a time over tiles of weight rows
    /// small enough to stay in cache.
    ///
    /// The caller checked that the path is [`Isa::Avx2`] (either kind).
    #[cfg(target_arch = "x86_64")]
    fn many_rows_q4k(&self, isa: Isa, x: &[f32], m: usize, blocks: &[u8], out: &mut [f32]) {
        const GROUP: usize = 4;
        let (n, k) = (self.rows, self.cols);
        let nb = k / q4k::QK_K;
        let bytes = nb * q4k::BLOCK_BYTES;
        let xa = q4k::quantize_activations(x);
        let unpacked = q4k::Unpacked::new(blocks);
        let (mins_x, mins_w) = (xa.min_terms(), &unpacked.neg_mins);
        let mins = Weights::Rows(mins_w);
        let done = gemm::product(isa, &mins_x, m, k / 32, mins, n, out, n);
        assert!(done, "many_rows checked Isa::Avx2, which has a gemm kernel");
        // ~64 KiB of weights a tile, a quarter of the smallest L2 of the CPUs this targets.
        let tile = (65536 / bytes).clamp(8, 256);
        // Enough tasks for every thread twice, at most 16 input rows each.
        let per_task = (m / (2 * rayon::current_num_threads())).clamp(GROUP, 16) / GROUP * GROUP;
        out.par_chunks_mut(per_task * n)
            .enumerate()
            .for_each(|(task, out)| {
                let rows = out.len() / n;
                for (t, w) in blocks.chunks(tile * bytes).enumerate() {
                    let span = t * tile * nb..;
                    let (d, sc) = (&unpacked.d[span.clone()], &unpacked.scales[span]);
                    for g in (0..rows).step_by(GROUP) {
                        let first = task * per_task + g;
                        let out = &mut out[g * n + t * tile..];
                        macro_rules! run {
                            ($($m:literal)+) => {
                                match GROUP.min(rows - g) {
                                    // SAFETY: many_rows checked Isa::Avx2, chosen only
                                    // where the CPU has AVX2, FMA and F16C; the kernel
                                    // asserts the shapes.
                                    $($m => unsafe {
                                        q4k::avx::scaled_sums::<$m>(&xa, first, w, d, sc, out, n, k)
                                    },)+
                                    _ => unreachable!(),
                                }
                            };
                        }
                        run!(1 2 3 4)
                    }
                }
            });
    }
}

/// The transpose of `t` (`n` rows of `m`) in bands of 32 output rows: a band reads a run of
/// 32 values from each input row (two cache lines) and writes its 32 rows. Bands go in
/// parallel (a Conv1D matrix at load); a single band, as the few-row products' outputs (`m`
/// at most 8), stays on the caller's thread.
fn transpose(t: &[f32], n: usize, m: usize) -> Vec<f32> {
    const B: usize = 32;
    let mut out = vec![0f32; m * n];
    if n == 0 {
        return out;
    }
    let band = |band: usize, rows: &mut [f32]| {
        let (r0, live) = (band * B, rows.len() / n);
        for o in 0..n {
            for r in 0..live {
                rows[r * n + o] = t[o * m + r0 + r];
            }
        }
    };
    if m <= B {
        band(0, &mut out);
    } else {
        out.par_chunks_mut(B * n)
            .enumerate()
            .for_each(|(b, rows)| band(b, rows));
    }
    out
}

/// Quantizes rows of 32-value blocks to `q8_0`: `d = max|x| / 127`, `q = round(x / d)`.
/// With `ggml_scales` the scales are rounded to f16 as ggml stores them, so that a matrix
/// written to GGUF and read back is the same matrix.
pub fn quantize_q8_0(x: &[f32], ggml_scales: bool) -> (Vec<i8>, Vec<f32>) {
    assert!(x.len().is_multiple_of(QK8_0));
    let mut qs = vec![0i8; x.len()];
    let mut scales = vec![0f32; x.len() / QK8_0];
    qs.par_chunks_mut(QK8_0 * 256)
        .zip(scales.par_chunks_mut(256))
        .zip(x.par_chunks(QK8_0 * 256))
        .for_each(|((qs, scales), x)| {
            for ((q, d), x) in qs
                .chunks_mut(QK8_0)
                .zip(scales.iter_mut())
                .zip(x.chunks(QK8_0))
            {
                let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
                let scale = amax / 127.0;
                let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
                for (q, &v) in q.iter_mut().zip(x) {
                    *q = (v * inv).round() as i8;
                }
                *d = if ggml_scales {
                    f16::from_f32(scale).to_f32()
                } else {
                    scale
                };
            }
        });
    (qs, scales)
}

type FloatDots<W> = fn(&[f32], &[W], &mut [f32]);
type Q8Dots = fn(&[i8], &[f32], &[i8], &[f32], &mut [f32]);
type PanelDots = fn(&[f32], &[f32], &mut [f32; MAX_ROWS * 16]);
type PanelDotsF16 = fn(&[f32], &[f16], &mut [f32; MAX_ROWS * 16]);
type Q4kDots = q4k::Dots;

/// The few-row kernels for one number of input rows, chosen once per product.
struct Kernel {
    /// `tile[r * 16 + j] = dot(x[r], row j)` over one 16-row panel of packed f32 weights.
    panel: PanelDots,
    panel_f16: PanelDotsF16,
    bf16: FloatDots<bf16>,
    q8: Q8Dots,
    /// One weight row's `q4_K` blocks against input rows `first..first + m`.
    q4k: Q4kDots,
}

macro_rules! kernel_for_rows {
    ($m:expr, $isa:expr, $($rows:literal)+) => {
        match $m {
            $($rows => match $isa {
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2 { .. } => Kernel {
                    // SAFETY (each): Isa::Avx2 is chosen only where the CPU has AVX2, FMA and
                    // F16C (cpu::isa); the kernels assert the shapes they read.
                    panel: |x, w, o| unsafe { avx::panel_f32::<$rows>(x, w, o) },
                    // SAFETY: as above.
                    panel_f16: |x, w, o| unsafe { avx::panel_f16::<$rows>(x, w, o) },
                    // SAFETY: as above.
                    bf16: |x, w, o| unsafe { avx::dots_bf16::<$rows>(x, w, o) },
                    q8: if matches!($isa, Isa::Avx2 { avx512: true }) {
                        // SAFETY: Isa::Avx2 { avx512: true } is chosen only where the CPU has
                        // AVX-512 F, BW, VL and VNNI too.
                        |xq, xd, wq, wd, o| unsafe {
                            avx512::dots_q8::<$rows>(xq, xd, wq, wd, o)
                        }
                    } else {
                        // SAFETY: as above.
                        |xq, xd, wq, wd, o| unsafe { avx::dots_q8::<$rows>(xq, xd, wq, wd, o) }
                    },
                    // SAFETY: as above.
                    q4k: |x, first, w, o, at, k| unsafe {
                        q4k::avx::dots::<$rows>(x, first, w, o, at, k)
                    },
                },
                #[cfg(target_arch = "aarch64")]
                Isa::Neon { dotprod: false } => Kernel {
                    // SAFETY (each): Isa::Neon is chosen only where the CPU has NEON
                    // (cpu::isa); the kernels assert the shapes they read.
                    panel: |x, w, o| unsafe { neon::panel_f32::<$rows>(x, w, o) },
                    // SAFETY: as above.
                    panel_f16: |x, w, o| unsafe { neon::panel_f16::<$rows>(x, w, o) },
                    // SAFETY: as above.
                    bf16: |x, w, o| unsafe { neon::dots_bf16::<$rows>(x, w, o) },
                    // SAFETY: as above.
                    q8: |xq, xd, wq, wd, o| unsafe { neon::dots_q8::<$rows>(xq, xd, wq, wd, o) },
                    // SAFETY: as above.
                    q4k: |x, first, w, o, at, k| unsafe {
                        neon::dots_q4k::<$rows>(x, first, w, o, at, k)
                    },
                },
                #[cfg(target_arch = "aarch64")]
                Isa::Neon { dotprod: true } => Kernel {
                    // SAFETY (each): Isa::Neon is chosen only where the CPU has NEON, and with
                    // `dotprod: true` only where it has the dot-product extension too
                    // (cpu::isa); the kernels assert the shapes they read.
                    panel: |x, w, o| unsafe { neon::panel_f32::<$rows>(x, w, o) },
                    // SAFETY: as above.
                    panel_f16: |x, w, o| unsafe { neon::panel_f16::<$rows>(x, w, o) },
                    // SAFETY: as above.
                    bf16: |x, w, o| unsafe { neon::dots_bf16::<$rows>(x, w, o) },
                    // SAFETY: as above.
                    q8: |xq, xd, wq, wd, o| unsafe {
                        neon::dots_q8_dotprod::<$rows>(xq, xd, wq, wd, o)
                    },
                    // SAFETY: as above.
                    q4k: |x, first, w, o, at, k| unsafe {
                        neon::dots_q4k_dotprod::<$rows>(x, first, w, o, at, k)
                    },
                },
                _ => Kernel {
                    panel: portable::panel::<$rows, f32>,
                    panel_f16: portable::panel::<$rows, f16>,
                    bf16: portable::dots_float::<$rows, bf16>,
                    q8: portable::dots_q8::<$rows>,
                    q4k: q4k::dots::<$rows>,
                },
            },)+
            _ => unreachable!("{} rows go to gemm", $m),
        }
    };
}

impl Kernel {
    #[cfg_attr(
        not(any(target_arch = "x86_64", target_arch = "aarch64")),
        allow(clippy::match_single_binding)
    )]
    fn pick(m: usize, isa: Isa) -> Self {
        kernel_for_rows!(m, isa, 1 2 3 4 5 6 7 8)
    }
}

/// Plain Rust kernels, for CPUs without AVX2 (and as the reference in tests).
mod portable {
    use super::QK8_0;

    pub trait ToF32: Copy {
        fn f32(self) -> f32;
    }
    impl ToF32 for f32 {
        fn f32(self) -> f32 {
            self
        }
    }
    impl ToF32 for half::f16 {
        fn f32(self) -> f32 {
            self.to_f32()
        }
    }
    impl ToF32 for half::bf16 {
        fn f32(self) -> f32 {
            self.to_f32()
        }
    }

    /// `out[r] = dot(x[r], w)` for the `M` rows of `x`.
    pub fn dots_float<const M: usize, W: ToF32>(x: &[f32], w: &[W], out: &mut [f32]) {
        const LANES: usize = 8;
        let k = w.len();
        let mut acc = [[0f32; LANES]; M];
        let full = k / LANES * LANES;
        for i in (0..full).step_by(LANES) {
            let wv: [f32; LANES] = std::array::from_fn(|l| w[i + l].f32());
            for (r, acc) in acc.iter_mut().enumerate() {
                for l in 0..LANES {
                    acc[l] += x[r * k + i + l] * wv[l];
                }
            }
        }
        for r in 0..M {
            let tail: f32 = (full..k).map(|i| x[r * k + i] * w[i].f32()).sum();
            out[r] = acc[r].iter().sum::<f32>() + tail;
        }
    }

    /// One packed panel of 16 weight rows (`[k][16]`) against the `M` rows of `x`.
    pub fn panel<const M: usize, W: ToF32>(x: &[f32], panel: &[W], tile: &mut [f32; 128]) {
        let k = panel.len() / 16;
        let mut acc = [[0f32; 16]; M];
        for l in 0..k {
            let w: [f32; 16] = std::array::from_fn(|j| panel[l * 16 + j].f32());
            for (r, acc) in acc.iter_mut().enumerate() {
                let xv = x[r * k + l];
                for j in 0..16 {
                    acc[j] += xv * w[j];
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            tile[r * 16..(r + 1) * 16].copy_from_slice(acc);
        }
    }

    /// `out[r] = Σ_blocks wd · xd[r] · dot(wq, xq[r])` for the `M` rows of `xq`.
    pub fn dots_q8<const M: usize>(xq: &[i8], xd: &[f32], wq: &[i8], wd: &[f32], out: &mut [f32]) {
        let k = wq.len();
        let nb = k / QK8_0;
        for r in 0..M {
            let mut s = 0f32;
            for b in 0..nb {
                let span = b * QK8_0..(b + 1) * QK8_0;
                let dot: i32 = wq[span.clone()]
                    .iter()
                    .zip(&xq[r * k..][span])
                    .map(|(&a, &b)| a as i32 * b as i32)
                    .sum();
                s += dot as f32 * wd[b] * xd[r * nb + b];
            }
            out[r] = s;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx {
    use super::super::x86::{hsum, PREFETCH_AHEAD};
    use super::QK8_0;
    use half::{bf16, f16};
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must have AVX and F16C; `p` valid for 8 values.
    #[inline]
    #[target_feature(enable = "avx,f16c")]
    unsafe fn load_f16(p: *const f16) -> __m256 {
        _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))
    }

    /// # Safety
    /// The CPU must have AVX2; `p` valid for 8 values.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn load_bf16(p: *const bf16) -> __m256 {
        let h = _mm256_cvtepu16_epi32(_mm_loadu_si128(p as *const __m128i));
        _mm256_castsi256_ps(_mm256_slli_epi32(h, 16))
    }

    macro_rules! float_dots {
        ($name:ident, $w:ty, $features:literal, $load:ident) => {
            /// `out[r] = dot(x[r], w)` for the `M` rows of `x`, each weight loaded once. One or
            /// two rows keep four or two sums each (eight weights each, in turns), so that a
            /// row's FMAs do not wait on one another's latency (one chain took 16 bytes of
            /// weights per FMA latency), and the weights 8 KB ahead are asked for.
            ///
            /// # Safety
            /// The CPU must have the features enabled here; `x` holds `M` rows of `w.len()`.
            #[target_feature(enable = $features)]
            pub unsafe fn $name<const M: usize>(x: &[f32], w: &[$w], out: &mut [f32]) {
                let k = w.len();
                assert!(x.len() >= M * k && out.len() >= M);
                let unroll: usize = match M {
                    1 => 4,
                    2 => 2,
                    _ => 1,
                };
                let (wp, xp) = (w.as_ptr(), x.as_ptr());
                let full = k / (8 * unroll) * (8 * unroll);
                let mut acc = [[_mm256_setzero_ps(); M]; 4];
                let mut i = 0;
                while i < full {
                    // A hint, never a fault.
                    _mm_prefetch::<_MM_HINT_T0>(
                        (wp as *const u8).wrapping_add(i * size_of::<$w>() + PREFETCH_AHEAD)
                            as *const i8,
                    );
                    for (u, acc) in acc.iter_mut().take(unroll).enumerate() {
                        let wv = $load(wp.add(i + 8 * u));
                        for (r, acc) in acc.iter_mut().enumerate() {
                            let xv = _mm256_loadu_ps(xp.add(r * k + i + 8 * u));
                            *acc = _mm256_fmadd_ps(xv, wv, *acc);
                        }
                    }
                    i += 8 * unroll;
                }
                while i + 8 <= k {
                    let wv = $load(wp.add(i));
                    for (r, acc) in acc[0].iter_mut().enumerate() {
                        let xv = _mm256_loadu_ps(xp.add(r * k + i));
                        *acc = _mm256_fmadd_ps(xv, wv, *acc);
                    }
                    i += 8;
                }
                for r in 0..M {
                    let mut sum = acc[0][r];
                    for set in &acc[1..unroll] {
                        sum = _mm256_add_ps(sum, set[r]);
                    }
                    let mut s = hsum(sum);
                    for j in i..k {
                        s += x[r * k + j] * f32::from(w[j]);
                    }
                    out[r] = s;
                }
            }
        };
    }

    macro_rules! panel_dots {
        ($name:ident, $w:ty, $features:literal, $load:ident, $unroll:expr, $ahead:expr) => {
            /// One packed panel of 16 weight rows (`[k][16]`) against the `M` rows of `x`: per
            /// input, two weight loads and a broadcast and two FMAs per row, no horizontal sums.
            /// Each row's sums are `2 * unroll` FMA chains (`$unroll(M)` inputs in flight), so
            /// that few rows do not wait on the FMAs' latency.
            ///
            /// # Safety
            /// The CPU must have the features enabled here; `x` holds `M` rows of
            /// `panel.len() / 16`.
            #[target_feature(enable = $features)]
            pub unsafe fn $name<const M: usize>(x: &[f32], panel: &[$w], tile: &mut [f32; 128]) {
                let k = panel.len() / 16;
                assert!(x.len() >= M * k && M <= 8);
                let unroll: usize = $unroll(M);
                let mut acc = [[[_mm256_setzero_ps(); 2]; M]; 4];
                let (xp, wp) = (x.as_ptr(), panel.as_ptr());
                let step = |acc: &mut [[__m256; 2]; M], l: usize| {
                    // Panels lie end to end: the line `$ahead` bytes ahead (a hint, never a
                    // fault).
                    _mm_prefetch::<_MM_HINT_T0>(
                        wp.wrapping_add(l * 16 + $ahead / size_of::<$w>()) as *const i8
                    );
                    let w0 = $load(wp.add(l * 16));
                    let w1 = $load(wp.add(l * 16 + 8));
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let xv = _mm256_broadcast_ss(&*xp.add(r * k + l));
                        acc[0] = _mm256_fmadd_ps(xv, w0, acc[0]);
                        acc[1] = _mm256_fmadd_ps(xv, w1, acc[1]);
                    }
                };
                let whole = k / unroll * unroll;
                let mut l = 0;
                while l < whole {
                    for (u, acc) in acc.iter_mut().take(unroll).enumerate() {
                        step(acc, l + u);
                    }
                    l += unroll;
                }
                for l in whole..k {
                    step(&mut acc[0], l);
                }
                for u in 1..unroll {
                    for r in 0..M {
                        for h in 0..2 {
                            acc[0][r][h] = _mm256_add_ps(acc[0][r][h], acc[u][r][h]);
                        }
                    }
                }
                for (r, acc) in acc[0].iter().enumerate() {
                    _mm256_storeu_ps(tile.as_mut_ptr().add(r * 16), acc[0]);
                    _mm256_storeu_ps(tile.as_mut_ptr().add(r * 16 + 8), acc[1]);
                }
            }
        };
    }

    /// # Safety
    /// The CPU must have AVX; `p` valid for 8 values.
    #[inline]
    #[target_feature(enable = "avx")]
    unsafe fn load_f32(p: *const f32) -> __m256 {
        _mm256_loadu_ps(p)
    }

    // f32 panels keep one input in flight: at 64 bytes an input, two FMA chains a row
    // outrun memory (and f32 products stay as they were, bit for bit).
    panel_dots!(panel_f32, f32, "avx,fma", load_f32, |_| 1, 1024);
    // f16 panels: 32 bytes an input, so one row's two chains (an input per FMA latency)
    // held two threads' decoding to ~8 bytes a cycle each; four inputs in flight at one row,
    // two at two.
    panel_dots!(
        panel_f16,
        f16,
        "avx,fma,f16c",
        load_f16,
        |m| match m {
            1 => 4,
            2 => 2,
            _ => 1,
        },
        PREFETCH_AHEAD
    );

    float_dots!(dots_bf16, bf16, "avx2,fma", load_bf16);

    /// `out = d · q` for whole `q8_0` blocks.
    ///
    /// # Safety
    /// The CPU must have AVX2; `out.len() == q.len()`, a multiple of 32, with a scale per block.
    #[target_feature(enable = "avx2")]
    pub unsafe fn dequantize_q8(q: &[i8], scales: &[f32], out: &mut [f32]) {
        assert!(q.len() == out.len() && q.len() <= scales.len() * QK8_0);
        for (b, (o, q)) in out
            .chunks_exact_mut(QK8_0)
            .zip(q.chunks_exact(QK8_0))
            .enumerate()
        {
            let d = _mm256_set1_ps(scales[b]);
            for i in 0..4 {
                let bytes = _mm_loadl_epi64(q.as_ptr().add(i * 8) as *const __m128i);
                let v = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(bytes));
                _mm256_storeu_ps(o.as_mut_ptr().add(i * 8), _mm256_mul_ps(v, d));
            }
        }
    }

    /// `q8_0` dot products: per block, `|w| · (x · sign w)` with `maddubs` (unsigned by
    /// signed bytes into pairs of i16, at most 2 · 128 · 127, no overflow), summed to i32,
    /// scaled by both blocks' scales into f32 lanes.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA; `xq` holds `M` rows of `wq.len()` (whole blocks), `xd`
    /// their scales, `wd` the weights'.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dots_q8<const M: usize>(
        xq: &[i8],
        xd: &[f32],
        wq: &[i8],
        wd: &[f32],
        out: &mut [f32],
    ) {
        let k = wq.len();
        let nb = k / QK8_0;
        assert!(xq.len() >= M * k && xd.len() >= M * nb && wd.len() >= nb && out.len() >= M);
        let ones = _mm256_set1_epi16(1);
        let mut acc = [_mm256_setzero_ps(); M];
        for b in 0..nb {
            // The rows of a task lie end to end: the line 8 KB ahead (a hint, never a fault).
            _mm_prefetch::<_MM_HINT_T0>(wq.as_ptr().wrapping_add(b * QK8_0 + PREFETCH_AHEAD));
            let w = _mm256_loadu_si256(wq.as_ptr().add(b * QK8_0) as *const __m256i);
            let aw = _mm256_sign_epi8(w, w);
            let d = wd[b];
            for (r, acc) in acc.iter_mut().enumerate() {
                let x = _mm256_loadu_si256(xq.as_ptr().add(r * k + b * QK8_0) as *const __m256i);
                let pairs = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(x, w));
                let sums = _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, ones));
                let scale = _mm256_set1_ps(d * xd[r * nb + b]);
                *acc = _mm256_fmadd_ps(sums, scale, *acc);
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            out[r] = hsum(*acc);
        }
    }
}

/// The AVX-512 kernels (`Isa::Avx2 { avx512: true }`): what gains from 512-bit registers and
/// VNNI's fused byte products.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::super::x86::PREFETCH_AHEAD;
    use super::QK8_0;
    use std::arch::x86_64::*;

    /// `q8_0` dot products two blocks (one 64-byte line) at a time: `|w| · (x · sign w)` by
    /// `vpdpbusd` (unsigned by signed bytes, four products summed into each i32 lane, no
    /// intermediate saturation), lanes 0-7 holding the first block's sums and 8-15 the
    /// second's, scaled by both blocks' scales spread over the same lanes. An odd last block
    /// takes the 256-bit form. Per pair of blocks and row: one load, a masked negation, one
    /// `vpdpbusd`, a conversion and two multiplies, against twice the AVX2 kernel's work.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F, BW, VL and VNNI, AVX2 and FMA; `xq` holds `M` rows of
    /// `wq.len()` (whole blocks), `xd` their scales, `wd` the weights'.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")]
    pub unsafe fn dots_q8<const M: usize>(
        xq: &[i8],
        xd: &[f32],
        wq: &[i8],
        wd: &[f32],
        out: &mut [f32],
    ) {
        let k = wq.len();
        let nb = k / QK8_0;
        assert!(xq.len() >= M * k && xd.len() >= M * nb && wd.len() >= nb && out.len() >= M);
        // Lane i takes scale i / 8 of a pair.
        let spread = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
        let pair_scales = |p: *const f32| {
            let two = _mm_castsi128_ps(_mm_loadl_epi64(p as *const __m128i));
            _mm512_permutexvar_ps(spread, _mm512_castps128_ps512(two))
        };
        let zero = _mm512_setzero_si512();
        let mut acc = [_mm512_setzero_ps(); M];
        for pair in 0..nb / 2 {
            let b = 2 * pair;
            // The rows of a task lie end to end: ask for the line 8 KB ahead (past this
            // row's end, the next row's), a hint that never faults.
            _mm_prefetch::<_MM_HINT_T0>(wq.as_ptr().wrapping_add(b * QK8_0 + PREFETCH_AHEAD));
            let w = _mm512_loadu_si512(wq.as_ptr().add(b * QK8_0) as *const __m512i);
            let aw = _mm512_abs_epi8(w);
            let negative = _mm512_movepi8_mask(w);
            let dw = pair_scales(wd.as_ptr().add(b));
            for (r, acc) in acc.iter_mut().enumerate() {
                let x = _mm512_loadu_si512(xq.as_ptr().add(r * k + b * QK8_0) as *const __m512i);
                let x = _mm512_mask_sub_epi8(x, negative, zero, x);
                let sums = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(zero, aw, x));
                let scale = _mm512_mul_ps(dw, pair_scales(xd.as_ptr().add(r * nb + b)));
                *acc = _mm512_fmadd_ps(sums, scale, *acc);
            }
        }
        let mut tail = [0f32; M];
        if nb % 2 == 1 {
            let b = nb - 1;
            let w = _mm256_loadu_si256(wq.as_ptr().add(b * QK8_0) as *const __m256i);
            let aw = _mm256_abs_epi8(w);
            for (r, tail) in tail.iter_mut().enumerate() {
                let x = _mm256_loadu_si256(xq.as_ptr().add(r * k + b * QK8_0) as *const __m256i);
                let x = _mm256_sign_epi8(x, w);
                let sums = _mm256_dpbusd_epi32(_mm256_setzero_si256(), aw, x);
                let sum = _mm512_reduce_add_epi32(_mm512_castsi256_si512(sums));
                *tail = sum as f32 * (wd[b] * xd[r * nb + b]);
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            out[r] = _mm512_reduce_add_ps(*acc) + tail[r];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::cpu::isa::test_paths;
    use crate::engine::cpu::testutil::{max_diff, random, reference_xwt as reference};

    #[test]
    fn from_the_transpose_is_the_same_matrix_in_every_format() {
        // 40 rows: two whole panels and a partial one; 33 rows: a partial transpose band.
        for (rows, cols) in [(40, 256), (33, 512)] {
            let w = random(rows * cols, 5);
            let wt: Vec<f32> = (0..cols * rows)
                .map(|i| w[(i % rows) * cols + i / rows])
                .collect();
            assert_eq!(transpose(&w, rows, cols), wt);
            let x = random(3 * cols, 6);
            for f in [
                Format::F32,
                Format::F16,
                Format::Bf16,
                Format::Q8_0,
                Format::Q4K,
            ] {
                let a = Matrix::from_f32_columns(&wt, rows, cols, f);
                let b = Matrix::from_f32(&w, rows, cols, f);
                assert_eq!((a.rows, a.cols), (rows, cols));
                for m in [1, 3] {
                    let (ya, yb) = (a.matmul_t(&x[..m * cols], m), b.matmul_t(&x[..m * cols], m));
                    assert_eq!(ya, yb, "{f:?} {rows}x{cols}, {m} rows");
                }
            }
        }
    }

    #[test]
    fn every_format_multiplies_like_its_rounded_weights() {
        // Shapes cover the tails (k not a multiple of 8 or 16), one row and many (gemm,
        // tiles), an odd number of blocks, outputs not a multiple of a panel.
        for isa in test_paths() {
            for (m, k, n) in [
                (1, 64, 70),
                (3, 96, 1030),
                (8, 32, 5),
                (9, 64, 33),
                (4, 45, 19),
                (9, 45, 17),
                (7, 288, 31),
                (12, 288, 15),
                (40, 128, 2100),
                // q4_k: few rows, and many (whole groups of four and a remainder).
                (1, 256, 70),
                (8, 512, 33),
                (11, 256, 300),
                (16, 512, 17),
                (13, 768, 9),
            ] {
                let x = random(m * k, 1);
                let w = random(n * k, 2);
                for format in Format::ALL.into_iter().filter(|f| f.fits(k)) {
                    let matrix = Matrix::from_f32(&w, n, k, format);
                    // The weights as the format holds them, in f32.
                    let mut rounded = vec![0f32; n * k];
                    matrix.rows_f32_on(Isa::Portable, 0, &mut rounded);
                    let mut on_path = vec![0f32; n * k];
                    matrix.rows_f32_on(isa, 0, &mut on_path);
                    assert_eq!(on_path, rounded, "{isa} {format:?}: the same weights");
                    let got = matrix.matmul_t_on(isa, &x, m);
                    let tol = match format {
                        // The activations are quantized too: ~1/254 of each block's largest.
                        Format::Q8_0 | Format::Q4K => 0.02 * (k as f32).sqrt(),
                        _ => 1e-4 * k as f32,
                    };
                    let d = max_diff(&got, &reference(&x, m, &rounded, n, k));
                    assert!(d <= tol, "{isa} {format:?} {m}x{k}x{n}: differs by {d}");
                }
            }
        }
    }

    #[test]
    fn every_path_multiplies_like_the_portable_one() {
        let (k, n) = (512, 40);
        let w = random(n * k, 13);
        for isa in test_paths() {
            for m in [1, 2, 5, 8, 9, 12] {
                let x = random(m * k, 14);
                for format in Format::ALL {
                    let matrix = Matrix::from_f32(&w, n, k, format);
                    let fast = matrix.matmul_t_on(isa, &x, m);
                    let plain = matrix.matmul_t_on(Isa::Portable, &x, m);
                    // Portable q4_k and q8_0 prompts multiply f32 activations by the widened
                    // weights, AVX2 and AVX-512 quantized ones (q8_K, q8_0) by the blocks:
                    // they differ by that rounding.
                    let quantized = matches!(format, Format::Q4K | Format::Q8_0);
                    let tol = if quantized && m > MAX_ROWS {
                        0.02 * (k as f32).sqrt()
                    } else {
                        1e-3
                    };
                    let d = max_diff(&fast, &plain);
                    assert!(d < tol, "{isa} {format:?}, {m} rows: differs by {d}");
                }
            }
        }
    }

    #[test]
    fn empty_matrices_give_empty_sums() {
        for isa in test_paths() {
            for format in Format::ALL {
                let no_inputs = Matrix::from_f32(&[], 3, 0, format);
                assert_eq!(
                    no_inputs.matmul_t_on(isa, &[], 12),
                    vec![0f32; 36],
                    "{isa} {format:?}"
                );
                let no_outputs = Matrix::from_f32(&[], 0, 256, format);
                assert!(no_outputs
                    .matmul_t_on(isa, &random(12 * 256, 1), 12)
                    .is_empty());
            }
        }
    }

    #[test]
    fn odd_widths_multiply_exactly_in_floats() {
        let (m, k, n) = (3, 13, 7);
        let x = random(m * k, 3);
        let w = random(n * k, 4);
        for isa in test_paths() {
            let got = Matrix::from_f32(&w, n, k, Format::F32).matmul_t_on(isa, &x, m);
            assert!(max_diff(&got, &reference(&x, m, &w, n, k)) < 1e-5, "{isa}");
        }
        assert!(!Format::Q8_0.fits(k));
    }

    #[test]
    fn every_paths_kernels_equal_the_portable_ones_at_every_row_count() {
        // k = 96: three q8_0 blocks; k = 100: a float tail past the last 8 lanes; k = 120:
        // eights past the last unrolled step of one or two rows.
        for isa in test_paths() {
            for m in 1..=MAX_ROWS {
                for k in [96, 100, 120] {
                    let w = random(k, 5);
                    let x = random(m * k, 6);
                    let (fast, plain) = (Kernel::pick(m, isa), Kernel::pick(m, Isa::Portable));
                    let run = |f: &dyn Fn(&mut [f32])| {
                        let mut o = [0f32; MAX_ROWS];
                        f(&mut o[..m]);
                        o
                    };
                    let wb: Vec<bf16> = w.iter().map(|&v| bf16::from_f32(v)).collect();
                    let panel = gemm::pack(&random(16 * k, 8), 16, k);
                    let (mut a, mut b) = ([0f32; 128], [0f32; 128]);
                    (fast.panel)(&x, &panel, &mut a);
                    (plain.panel)(&x, &panel, &mut b);
                    assert!(max_diff(&a, &b) < 1e-4, "{isa} f32 panels, {m} rows");
                    let halves: Vec<f16> = panel.iter().map(|&v| f16::from_f32(v)).collect();
                    (fast.panel_f16)(&x, &halves, &mut a);
                    (plain.panel_f16)(&x, &halves, &mut b);
                    assert!(max_diff(&a, &b) < 1e-4, "{isa} f16 panels, {m} rows");
                    let (a, b) = (
                        run(&|o| (fast.bf16)(&x, &wb, o)),
                        run(&|o| (plain.bf16)(&x, &wb, o)),
                    );
                    assert!(
                        max_diff(&a, &b) < 1e-4,
                        "{isa} bf16, {m} rows: {a:?} vs {b:?}"
                    );
                    if !k.is_multiple_of(QK8_0) {
                        continue;
                    }
                    let (wq, wd) = quantize_q8_0(&w, true);
                    let (xq, xd) = quantize_q8_0(&x, false);
                    let (a, b) = (
                        run(&|o| (fast.q8)(&xq, &xd, &wq, &wd, o)),
                        run(&|o| (plain.q8)(&xq, &xd, &wq, &wd, o)),
                    );
                    assert!(
                        max_diff(&a, &b) < 1e-4,
                        "{isa} q8_0, {m} rows: {a:?} vs {b:?}"
                    );
                    // Exact against the plain integer sum: the quantized values' products.
                    for r in 0..m {
                        let mut want = 0f32;
                        for blk in 0..k / QK8_0 {
                            let dot: i32 = (0..QK8_0)
                                .map(|i| {
                                    let j = blk * QK8_0 + i;
                                    xq[r * k + j] as i32 * wq[j] as i32
                                })
                                .sum();
                            want += dot as f32 * wd[blk] * xd[r * (k / QK8_0) + blk];
                        }
                        assert!((a[r] - want).abs() < 1e-4, "{isa} q8_0 row {r}");
                    }
                }
            }
        }
    }

    #[test]
    fn q4_k_products_agree_with_ggmls() {
        // candle's port of ggml's q4_K x q8_K dot product is the reference: the same
        // blocks, the activations quantized to q8_K as ggml does them (to within a rare
        // rounding of a value at the block's maximum), so the sums agree to f32 rounding.
        use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
        use candle_core::{Device, Module, Tensor};
        if cfg!(target_arch = "aarch64") && !super::super::isa::Features::detect().dotprod {
            // candle 0.11's aarch64 q4_K x q8_K kernel issues `sdot` without checking the CPU
            // (inline assembly in its quantized/neon.rs): the reference itself dies of SIGILL
            // on a CPU without dotprod (Cortex-A72, emulated in CI). quill's kernels are
            // checked there against the portable ones and the dequantized weights instead.
            eprintln!("q4_k against ggml's: skipped, candle's reference needs dotprod here");
            return;
        }
        let (k, n) = (512, 40);
        let w = random(n * k, 12);
        let wt = Tensor::from_vec(w.clone(), (n, k), &Device::Cpu).unwrap();
        let qt = QTensor::quantize(&wt, GgmlDType::Q4K).unwrap();
        let ours = Matrix::from_q4_k_bytes(qt.data().unwrap().into_owned(), n, k).unwrap();
        let quantized_here = Matrix::from_f32(&w, n, k, Format::Q4K);
        assert_eq!(ours.q4_k_bytes(), quantized_here.q4_k_bytes());
        let theirs = QMatMul::from_qtensor(qt).unwrap();
        for isa in test_paths() {
            for m in [1, 3, 21] {
                let x = random(m * k, 11);
                let xt = Tensor::from_vec(x.clone(), (m, k), &Device::Cpu).unwrap();
                let want: Vec<f32> = theirs
                    .forward(&xt)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap();
                let got = ours.matmul_t_on(isa, &x, m);
                // Only AVX2 without AVX-512 has a q4_k prompt kernel (q8_K activations, as
                // ggml's); prompts on the other paths (portable, AVX-512, NEON) multiply f32
                // activations by the widened weights, which differs from ggml's by the
                // activations' rounding.
                let tol = if isa != (Isa::Avx2 { avx512: false }) && m > MAX_ROWS {
                    0.02 * (k as f32).sqrt()
                } else {
                    1e-3
                };
                let d = max_diff(&got, &want);
                assert!(d < tol, "{isa} {m} rows: differs by {d}");
            }
        }
    }

    #[test]
    fn q8_0_bytes_round_trip_and_gather_dequantizes() {
        let (n, k) = (5, 64);
        let w = random(n * k, 7);
        let m = Matrix::from_f32(&w, n, k, Format::Q8_0);
        let bytes = m.q8_0_bytes().unwrap();
        assert_eq!(bytes.len(), n * k / 32 * 34);
        let back = Matrix::from_q8_0_bytes(&bytes, n, k).unwrap();
        assert_eq!(back.gather(&[4, 0]), m.gather(&[4, 0]));
        // Quantization error: half a step of each block's scale, plus the scale's rounding to
        // f16 (2^-11 relative) times up to 127 steps.
        let rows = m.gather(&[0, 1, 2, 3, 4]);
        for (b, (got, want)) in rows.chunks(32).zip(w.chunks(32)).enumerate() {
            let step = want.iter().fold(0f32, |a, v| a.max(v.abs())) / 127.0;
            assert!(
                max_diff(got, want) <= step * (0.5 + 127.0 / 2048.0),
                "block {b}"
            );
        }
        assert!(Matrix::from_q8_0_bytes(&bytes[1..], n, k).is_none());
    }
}
