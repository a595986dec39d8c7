//! A safetensors checkpoint read one tensor at a time, for loading GPT-2 on the CPU.
//!
//! Mapping the files and copying every tensor out of the map (candle's `VarBuilder`) keeps the
//! whole file resident beside the model while it loads: 2.7x the checkpoint at peak for f32.
//! Here each tensor is read into a buffer, converted to the matrix format and dropped, so the
//! peak is the model plus its largest tensor.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use candle_core::{DType, Device, Tensor};

use super::weight::{cpu_format, Weight};
use super::TensorSource;
use crate::models::WeightFormat;

type Result<T> = candle_core::Result<T>;

struct Entry {
    file: usize,
    dtype: String,
    shape: Vec<usize>,
    /// Absolute byte range in the file.
    start: u64,
    end: u64,
}

pub struct StreamingSource {
    files: Vec<Mutex<File>>,
    paths: Vec<PathBuf>,
    /// By name without a `transformer.` prefix.
    entries: HashMap<String, Entry>,
    format: WeightFormat,
}

impl StreamingSource {
    /// Reads the headers of `files` (one checkpoint, possibly sharded). `format` must be one
    /// that quill's CPU kernels hold (f32, f16, bf16, q8_0, q4_k).
    pub fn open(files: &[PathBuf], format: WeightFormat) -> Result<Self> {
        if cpu_format(format).is_none() {
            candle_core::bail!("streaming loads serve the CPU formats only");
        }
        let mut source = Self {
            files: Vec::new(),
            paths: files.to_vec(),
            entries: HashMap::new(),
            format,
        };
        for (i, path) in files.iter().enumerate() {
            let mut file = File::open(path)?;
            let mut len = [0u8; 8];
            file.read_exact(&mut len)?;
            let header_len = u64::from_le_bytes(len);
            if header_len > 100_000_000 {
                candle_core::bail!(
                    "{}: a safetensors header of {header_len} bytes",
                    path.display()
                );
            }
            let mut header = vec![0u8; header_len as usize];
            file.read_exact(&mut header)?;
            let header: serde_json::Value = serde_json::from_slice(&header)
                .map_err(|e| candle_core::Error::Msg(format!("{}: {e}", path.display())))?;
            let Some(map) = header.as_object() else {
                candle_core::bail!("{}: the header is not an object", path.display());
            };
            for (name, info) in map {
                if name == "__metadata__" {
                    continue;
                }
                let offsets: Vec<u64> = info["data_offsets"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|v| v.as_u64()).collect())
                    .unwrap_or_default();
                let shape: Vec<usize> = info["shape"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_u64())
                            .map(|v| v as usize)
                            .collect()
                    })
                    .unwrap_or_default();
                if offsets.len() != 2 || offsets[0] > offsets[1] {
                    candle_core::bail!("{}: bad offsets for `{name}`", path.display());
                }
                let key = name
                    .strip_prefix("transformer.")
                    .unwrap_or(name)
                    .to_string();
                source.entries.insert(
                    key,
                    Entry {
                        file: i,
                        dtype: info["dtype"].as_str().unwrap_or("").to_string(),
                        shape,
                        start: 8 + header_len + offsets[0],
                        end: 8 + header_len + offsets[1],
                    },
                );
            }
            source.files.push(Mutex::new(file));
        }
        Ok(source)
    }

    /// The tensor `name` as f32 values, checked against `shape`.
    fn read_f32(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let Some(e) = self.entries.get(name) else {
            candle_core::bail!("cannot find tensor {name}");
        };
        if e.shape != shape {
            candle_core::bail!(
                "shape mismatch for {name}, expected {shape:?}, got {:?}",
                e.shape
            );
        }
        let count: usize = shape.iter().product();
        let width = match e.dtype.as_str() {
            "F32" => 4,
            "F16" | "BF16" => 2,
            other => candle_core::bail!("{name}: dtype {other} is not read (f32, f16, bf16 are)"),
        };
        if e.end - e.start != (count * width) as u64 {
            candle_core::bail!("{name}: {} bytes for {count} values", e.end - e.start);
        }
        let mut file = self.files[e.file].lock().unwrap_or_else(|p| p.into_inner());
        let failed = |err: std::io::Error| {
            candle_core::Error::Msg(format!("{}: {name}: {err}", self.paths[e.file].display()))
        };
        file.seek(SeekFrom::Start(e.start)).map_err(failed)?;
        if width == 4 {
            return super::read_le(&mut *file, count).map_err(failed);
        }
        let mut raw = vec![0u8; count * width];
        file.read_exact(&mut raw).map_err(failed)?;
        Ok(match e.dtype.as_str() {
            "F16" => raw
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            _ => raw
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
        })
    }
}

impl TensorSource for StreamingSource {
    fn tensor(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        Tensor::from_vec(self.read_f32(name, shape)?, shape, &Device::Cpu)
    }

    fn matrix(&self, name: &str, out: usize, inp: usize, conv1d: bool) -> Result<Weight> {
        Ok(if conv1d {
            let stored = self.read_f32(name, &[inp, out])?;
            Weight::cpu_columns(&stored, out, inp, self.format)
        } else {
            Weight::cpu(&self.read_f32(name, &[out, inp])?, out, inp, self.format)
        })
    }

    fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    fn dtype(&self) -> DType {
        DType::F32
    }

    fn device(&self) -> Device {
        Device::Cpu
    }
}

/// Whether `path` names safetensors files this source reads.
pub fn serves(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "safetensors")
}
