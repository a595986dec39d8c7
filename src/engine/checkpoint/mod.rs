//! Checkpoint formats: where a network's tensors come from (safetensors, streamed or mapped;
//! GGUF, read and written) and the [`weight::Weight`] each matrix becomes in the format the
//! user chose. Knows nothing of what a network computes with them.

pub mod gguf;
pub mod stream;
pub mod weight;

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;

use crate::engine::cpu::matrix::Matrix;
use crate::models::WeightFormat;
use weight::Weight;

/// Where a model's tensors come from, named as in the hub's `gpt2` checkpoint (`wte.weight`,
/// `h.0.attn.c_attn.weight`, `lm_head.weight`, ...): a safetensors checkpoint, or a GGUF file
/// whose matrices are already in their format.
pub trait TensorSource {
    /// A float tensor (norms, biases, embeddings) of `shape`, in the activations' dtype.
    fn tensor(&self, name: &str, shape: &[usize]) -> Result<Tensor>;
    /// A weight matrix as `[out, inp]`; `conv1d`: checkpoints store it `[inp, out]`.
    fn matrix(&self, name: &str, out: usize, inp: usize, conv1d: bool) -> Result<Weight>;
    fn contains(&self, name: &str) -> bool;
    /// Whether the tensors `a` and `b` hold the same values (a tied output projection).
    fn same(&self, _a: &str, _b: &str) -> bool {
        false
    }
    fn dtype(&self) -> DType;
    fn device(&self) -> Device;
}

/// A safetensors checkpoint read through a [`VarBuilder`], its matrices converted to `format`.
/// Keys come with or without a `transformer.` prefix.
pub struct SafetensorsSource<'a> {
    root: VarBuilder<'a>,
    body: VarBuilder<'a>,
    format: WeightFormat,
}

impl<'a> SafetensorsSource<'a> {
    pub fn new(vb: VarBuilder<'a>, format: WeightFormat) -> Self {
        let body = if vb.contains_tensor("transformer.wte.weight") {
            vb.pp("transformer")
        } else {
            vb.clone()
        };
        Self {
            root: vb,
            body,
            format,
        }
    }

    fn vb(&self, name: &str) -> &VarBuilder<'a> {
        if name.starts_with("lm_head.") {
            &self.root
        } else {
            &self.body
        }
    }
}

impl TensorSource for SafetensorsSource<'_> {
    fn tensor(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        self.vb(name).get(shape, name)
    }

    fn matrix(&self, name: &str, out: usize, inp: usize, conv1d: bool) -> Result<Weight> {
        let w = if conv1d {
            self.vb(name).get((inp, out), name)?.t()?.contiguous()?
        } else {
            self.vb(name).get((out, inp), name)?
        };
        Weight::new(w, self.format)
    }

    fn contains(&self, name: &str) -> bool {
        self.vb(name).contains_tensor(name)
    }

    fn dtype(&self) -> DType {
        self.root.dtype()
    }

    fn device(&self) -> Device {
        self.root.device().clone()
    }
}

/// A tensor of a loaded model, as `Gpt2::tensors` lists them: a float tensor, or a weight
/// matrix `[out, in]` in its format.
pub enum Stored<'a> {
    Tensor(&'a Tensor),
    Weight(&'a Weight),
    Matrix(&'a Matrix),
}

/// `count` little-endian values (f32, f16) read from where `file` stands, straight into the
/// vector that holds them (no buffer of bytes beside it; loading weights copies them enough).
pub(crate) fn read_le<T: bytemuck::Pod>(
    file: &mut impl std::io::Read,
    count: usize,
) -> std::io::Result<Vec<T>> {
    let mut values = vec![T::zeroed(); count];
    let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut values);
    file.read_exact(bytes)?;
    if cfg!(target_endian = "big") {
        for value in bytes.chunks_exact_mut(size_of::<T>()) {
            value.reverse();
        }
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::read_le;
    use std::io::{Cursor, Seek, SeekFrom};

    #[test]
    fn values_are_read_little_endian_from_where_the_file_stands() {
        let values = [1.5f32, -0.0, f32::MAX, 3e-40];
        let mut bytes = vec![0xAB; 3];
        bytes.extend(values.iter().flat_map(|v| v.to_le_bytes()));
        let mut file = Cursor::new(bytes);
        file.seek(SeekFrom::Start(3)).unwrap();
        let got: Vec<f32> = read_le(&mut file, 4).unwrap();
        assert_eq!(
            got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            values.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        // One value too many is an error, not a short read.
        file.seek(SeekFrom::Start(3)).unwrap();
        assert!(read_le::<f32>(&mut file, 5).is_err());
        // Halves too.
        let mut file = Cursor::new([0x00, 0x3C, 0x00, 0xC0]);
        let halves: Vec<half::f16> = read_le(&mut file, 2).unwrap();
        assert_eq!(halves, [half::f16::ONE, half::f16::from_f32(-2.0)]);
    }
}
