//! A weight matrix `[out, in]` as the models hold it, in the format the user chose, and its
//! product with activations. On the CPU quill's own [`Matrix`] kernels serve f32, f16, bf16,
//! q8_0 and q4_k; elsewhere (and for GGUF blocks without a quill kernel, such as q6_K)
//! candle's tensors and quantized matmul do.

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Module, Tensor};

use crate::engine::cpu::kernels;
use crate::engine::cpu::matrix::{Format, Matrix};
use crate::models::WeightFormat;

/// A `[out, in]` weight. On the CPU, quill's own [`Matrix`] (f32, f16, bf16, q8_0 or q4_k
/// weights with f32 activations); elsewhere candle's tensors or quantized blocks.
#[derive(Debug, Clone)]
pub enum Weight {
    Float(Tensor),
    Cpu(Matrix),
    Quantized(QMatMul),
}

impl Weight {
    /// Converts `w` `[out, in]` to `format`. A matrix whose `in` is not a whole number of
    /// blocks stays in floats.
    pub fn new(w: Tensor, format: WeightFormat) -> candle_core::Result<Self> {
        let (rows, cols) = w.dims2()?;
        // ggml blocks without a quill kernel, or any on a GPU, go to candle.
        if let WeightFormat::Quantized(q) = format {
            let on_candle = cpu_format(format).is_none() || !w.device().is_cpu();
            if on_candle && cols.is_multiple_of(q.block_size()) {
                let qt = QTensor::quantize(&w.to_dtype(DType::F32)?, q)?;
                return Ok(Weight::Quantized(QMatMul::from_qtensor(qt)?));
            }
        }
        if w.device().is_cpu() {
            let data = w.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
            return Ok(Self::cpu(&data, rows, cols, format));
        }
        Ok(Weight::Float(w))
    }

    /// Row-major f32 weights `[rows, cols]` held by quill's CPU kernels in `format`, or in f32
    /// where the format has no CPU kernel or its blocks do not fit the rows.
    pub fn cpu(data: &[f32], rows: usize, cols: usize, format: WeightFormat) -> Self {
        Weight::Cpu(Matrix::from_f32(
            data,
            rows,
            cols,
            Self::cpu_format_of(format, cols),
        ))
    }

    /// [`Weight::cpu`] from the transpose: `data` is `cols` rows of `rows` (Conv1D's layout).
    pub fn cpu_columns(data: &[f32], rows: usize, cols: usize, format: WeightFormat) -> Self {
        let f = Self::cpu_format_of(format, cols);
        Weight::Cpu(Matrix::from_f32_columns(data, rows, cols, f))
    }

    /// The CPU format for `format` where rows of `cols` fit its blocks, else f32.
    fn cpu_format_of(format: WeightFormat, cols: usize) -> Format {
        cpu_format(format)
            .filter(|f| f.fits(cols))
            .unwrap_or(Format::F32)
    }

    /// `x · wᵀ`: `(rows, in)` -> `(rows, out)`.
    pub fn matmul_t(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.matmul_t_bias(x, None)
    }

    /// `x · wᵀ + bias`; on the CPU the bias is added in the same pass over the output.
    pub fn matmul_t_bias(&self, x: &Tensor, bias: Option<&Tensor>) -> candle_core::Result<Tensor> {
        match self {
            Weight::Cpu(w) => {
                let m = x.dim(0)?;
                let x = x.to_dtype(DType::F32)?.contiguous()?;
                let bias = match bias {
                    Some(b) => Some(b.to_dtype(DType::F32)?.contiguous()?),
                    None => None,
                };
                let y = kernels::with_f32(&x, |xs| match &bias {
                    Some(b) => kernels::with_f32(b, |bs| w.matmul_t_bias(xs, m, Some(bs))),
                    None => Some(w.matmul_t(xs, m)),
                })
                .flatten()
                .ok_or_else(|| candle_core::Error::Msg("activations not on the CPU".into()))?;
                Tensor::from_vec(y, (m, w.rows()), x.device())
            }
            _ => {
                let y = match self {
                    Weight::Float(w) => x.matmul(&w.t()?)?,
                    Weight::Quantized(q) => q.forward(x)?,
                    Weight::Cpu(_) => unreachable!(),
                };
                match bias {
                    Some(b) => y.broadcast_add(b),
                    None => Ok(y),
                }
            }
        }
    }

    pub fn is_quantized(&self) -> bool {
        match self {
            Weight::Cpu(m) => m.format().is_quantized(),
            Weight::Quantized(_) => true,
            Weight::Float(_) => false,
        }
    }

    /// Bytes the weight occupies.
    pub fn bytes(&self) -> usize {
        match self {
            Weight::Float(w) => w.elem_count() * w.dtype().size_in_bytes(),
            Weight::Cpu(m) => m.bytes(),
            Weight::Quantized(q) => match q {
                QMatMul::QTensor(t) => t.storage_size_in_bytes(),
                QMatMul::Tensor(t) | QMatMul::TensorF16(t) => {
                    t.elem_count() * t.dtype().size_in_bytes()
                }
            },
        }
    }
}

/// The CPU kernels' format for a weight format, when quill's own kernels serve it.
pub fn cpu_format(format: WeightFormat) -> Option<Format> {
    match format {
        WeightFormat::Float(DType::F32) => Some(Format::F32),
        WeightFormat::Float(DType::F16) => Some(Format::F16),
        WeightFormat::Float(DType::BF16) => Some(Format::Bf16),
        WeightFormat::Quantized(GgmlDType::Q8_0) => Some(Format::Q8_0),
        WeightFormat::Quantized(GgmlDType::Q4K) => Some(Format::Q4K),
        _ => None,
    }
}
