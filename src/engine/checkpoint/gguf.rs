//! GPT-2 in GGUF, in llama.cpp's layout (architecture `gpt2`): reading a `model.gguf` with its
//! matrices kept in their stored format (`q8_0`, `q4_K`, `f16`, `bf16`, `f32` go to quill's
//! kernels, other ggml types to candle's quantized matmul), and writing one from a loaded
//! model, with llama.cpp's tokenizer metadata, so that `quill quantize` makes files both can
//! run.
//!
//! Tensor names map one to one onto the hub checkpoint's (see [`gguf_name`]); GGUF stores the
//! linear layers `[out, in]`, which is how quill holds them.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::ggml_file::qtensor_from_ggml;
use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Tensor};
use half::f16;

use super::weight::Weight;
use crate::engine::cpu::matrix::{Format, Matrix};
use crate::engine::nets::gpt2::{Gpt2, Gpt2Config, Stored, TensorSource};
use crate::models::gguf_tensor_bytes;

type Result<T> = candle_core::Result<T>;

/// The GGUF name of a hub checkpoint's tensor (`h.3.mlp.c_fc.bias` -> `blk.3.ffn_up.bias`).
pub fn gguf_name(name: &str) -> Option<String> {
    let fixed = match name {
        "wte.weight" => Some("token_embd.weight"),
        "wpe.weight" => Some("position_embd.weight"),
        "ln_f.weight" => Some("output_norm.weight"),
        "ln_f.bias" => Some("output_norm.bias"),
        "lm_head.weight" => Some("output.weight"),
        _ => None,
    };
    if let Some(f) = fixed {
        return Some(f.to_string());
    }
    let rest = name.strip_prefix("h.")?;
    let (layer, rest) = rest.split_once('.')?;
    layer.parse::<usize>().ok()?;
    let (part, kind) = rest.rsplit_once('.')?;
    let part = match part {
        "ln_1" => "attn_norm",
        "attn.c_attn" => "attn_qkv",
        "attn.c_proj" => "attn_output",
        "ln_2" => "ffn_norm",
        "mlp.c_fc" => "ffn_up",
        "mlp.c_proj" => "ffn_down",
        _ => return None,
    };
    Some(format!("blk.{layer}.{part}.{kind}"))
}

/// A GGUF file opened for loading.
pub struct GgufSource {
    content: gguf_file::Content,
    file: RefCell<BufReader<File>>,
    device: Device,
}

impl GgufSource {
    /// Reads the header, checking that it is GPT-2's and that every tensor lies within the
    /// file (a truncated download is named here, before any tensor is read).
    pub fn open(path: &Path, device: &Device) -> Result<Self> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        let mut file = BufReader::new(file);
        let content = gguf_file::Content::read(&mut file)
            .map_err(|e| candle_core::Error::Msg(format!("not a GGUF file ({e})")))?;
        crate::models::gguf_tensors_fit(&content, len).map_err(candle_core::Error::Msg)?;
        let arch = content
            .metadata
            .get("general.architecture")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .unwrap_or_default();
        if arch != "gpt2" {
            candle_core::bail!("the GGUF file's architecture is `{arch}`, not gpt2");
        }
        Ok(Self {
            content,
            file: RefCell::new(file),
            device: device.clone(),
        })
    }

    fn info(&self, name: &str) -> Result<(&gguf_file::TensorInfo, String)> {
        let g = gguf_name(name)
            .ok_or_else(|| candle_core::Error::Msg(format!("no GGUF name for `{name}`")))?;
        match self.content.tensor_infos.get(&g) {
            Some(info) => Ok((info, g)),
            None => candle_core::bail!("the GGUF file has no tensor `{g}` ({name})"),
        }
    }

    fn raw(&self, info: &gguf_file::TensorInfo) -> Result<Vec<u8>> {
        let mut raw = vec![0u8; gguf_tensor_bytes(info)];
        let mut file = self.file.borrow_mut();
        file.seek(SeekFrom::Start(
            self.content.tensor_data_offset + info.offset,
        ))?;
        file.read_exact(&mut raw)?;
        Ok(raw)
    }

    fn qtensor(&self, name: &str) -> Result<QTensor> {
        let (info, _) = self.info(name)?;
        info.read(
            &mut *self.file.borrow_mut(),
            self.content.tensor_data_offset,
            &self.device,
        )
    }
}

impl TensorSource for GgufSource {
    fn tensor(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let t = self.qtensor(name)?.dequantize(&self.device)?;
        if t.dims() != shape {
            candle_core::bail!(
                "`{name}` is {:?} in the GGUF file, expected {shape:?}",
                t.dims()
            );
        }
        Ok(t)
    }

    fn matrix(&self, name: &str, out: usize, inp: usize, _conv1d: bool) -> Result<Weight> {
        let (info, g) = self.info(name)?;
        if info.shape.dims() != [out, inp] {
            candle_core::bail!(
                "`{g}` is {:?} in the GGUF file, expected [{out}, {inp}]",
                info.shape.dims()
            );
        }
        if self.device.is_cpu() {
            let matrix = match info.ggml_dtype {
                GgmlDType::Q8_0 => Matrix::from_q8_0_bytes(&self.raw(info)?, out, inp),
                GgmlDType::Q4K => Matrix::from_q4_k_bytes(self.raw(info)?, out, inp),
                GgmlDType::F16 => {
                    let w = self
                        .raw(info)?
                        .chunks_exact(2)
                        .map(|b| f16::from_le_bytes([b[0], b[1]]))
                        .collect();
                    Some(Matrix::from_f16(w, out, inp))
                }
                GgmlDType::F32 | GgmlDType::BF16 => {
                    let format = if info.ggml_dtype == GgmlDType::F32 {
                        Format::F32
                    } else {
                        Format::Bf16
                    };
                    let w = self.tensor(name, &[out, inp])?.flatten_all()?.to_vec1()?;
                    Some(Matrix::from_f32(&w, out, inp, format))
                }
                _ => None,
            };
            if let Some(m) = matrix {
                return Ok(Weight::Cpu(m));
            }
        }
        Ok(Weight::Quantized(QMatMul::from_qtensor(
            self.qtensor(name)?,
        )?))
    }

    fn contains(&self, name: &str) -> bool {
        gguf_name(name).is_some_and(|g| self.content.tensor_infos.contains_key(&g))
    }

    fn same(&self, a: &str, b: &str) -> bool {
        match (self.info(a), self.info(b)) {
            (Ok((x, _)), Ok((y, _))) => {
                x.ggml_dtype == y.ggml_dtype
                    && x.shape == y.shape
                    && matches!((self.raw(x), self.raw(y)), (Ok(p), Ok(q)) if p == q)
            }
            _ => false,
        }
    }

    fn dtype(&self) -> DType {
        DType::F32
    }

    fn device(&self) -> Device {
        self.device.clone()
    }
}

/// ggml's `general.file_type` for the format of the model's matrices.
fn file_type(model: &Gpt2) -> u32 {
    let head = model
        .tensors()
        .into_iter()
        .find_map(|(name, t)| match (name.as_str(), t) {
            ("h.0.mlp.c_fc.weight", Stored::Weight(w)) => Some(match w {
                Weight::Cpu(m) => match m.format() {
                    Format::F32 => 0,
                    Format::F16 => 1,
                    Format::Q8_0 => 7,
                    Format::Q4K => 15,
                    Format::Bf16 => 32,
                },
                Weight::Quantized(QMatMul::QTensor(q)) if q.dtype() == GgmlDType::Q4K => 15,
                _ => 0,
            }),
            _ => None,
        });
    head.unwrap_or(0)
}

/// The tensor as GGUF will hold it.
fn to_qtensor(t: &Stored<'_>) -> Result<Arc<QTensor>> {
    let f32_bytes = |t: &Tensor| -> Result<Vec<u8>> {
        let v = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        Ok(v.iter().flat_map(|x| x.to_le_bytes()).collect())
    };
    let from = |dtype, raw: &[u8], dims: &[usize]| -> Result<Arc<QTensor>> {
        Ok(Arc::new(qtensor_from_ggml(
            dtype,
            raw,
            dims.to_vec(),
            &Device::Cpu,
        )?))
    };
    match t {
        Stored::Tensor(t) => from(GgmlDType::F32, &f32_bytes(t)?, t.dims()),
        Stored::Weight(Weight::Float(t)) => from(GgmlDType::F32, &f32_bytes(t)?, t.dims()),
        Stored::Weight(Weight::Quantized(QMatMul::QTensor(q))) => Ok(q.clone()),
        Stored::Weight(Weight::Quantized(QMatMul::Tensor(t) | QMatMul::TensorF16(t))) => {
            from(GgmlDType::F32, &f32_bytes(t)?, t.dims())
        }
        Stored::Weight(Weight::Cpu(m)) | &Stored::Matrix(m) => {
            let dims = [m.rows(), m.cols()];
            if let Some(raw) = m.q8_0_bytes() {
                return from(GgmlDType::Q8_0, &raw, &dims);
            }
            if let Some(raw) = m.q4_k_bytes() {
                return from(GgmlDType::Q4K, raw, &dims);
            }
            if let Some(w) = m.f16_rows() {
                let raw: Vec<u8> = w.iter().flat_map(|x| x.to_le_bytes()).collect();
                return from(GgmlDType::F16, &raw, &dims);
            }
            let mut w = vec![0f32; m.rows() * m.cols()];
            m.rows_f32(0, &mut w);
            if m.format() == Format::Bf16 {
                let raw: Vec<u8> = w
                    .iter()
                    .flat_map(|&x| half::bf16::from_f32(x).to_le_bytes())
                    .collect();
                return from(GgmlDType::BF16, &raw, &dims);
            }
            let raw: Vec<u8> = w.iter().flat_map(|x| x.to_le_bytes()).collect();
            from(GgmlDType::F32, &raw, &dims)
        }
    }
}

/// llama.cpp's tokenizer metadata from a `tokenizer.json` (byte-level BPE): tokens by id,
/// padded to the model's vocabulary, their types, and the merges.
fn tokenizer_metadata(tokenizer_json: &Path, vocab_size: usize) -> Result<Vec<(String, Value)>> {
    let text = std::fs::read_to_string(tokenizer_json)?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
    let mut tokens: Vec<Option<String>> = vec![None; vocab_size];
    let mut types = vec![1i32; vocab_size];
    if let Some(vocab) = json["model"]["vocab"].as_object() {
        for (tok, id) in vocab {
            if let Some(slot) = id.as_u64().and_then(|i| tokens.get_mut(i as usize)) {
                *slot = Some(tok.clone());
            }
        }
    }
    for added in json["added_tokens"].as_array().into_iter().flatten() {
        let id = added["id"].as_u64().unwrap_or(u64::MAX) as usize;
        if let (Some(slot), Some(content)) = (tokens.get_mut(id), added["content"].as_str()) {
            *slot = Some(content.to_string());
            types[id] = if added["special"].as_bool() == Some(true) {
                3
            } else {
                4
            };
        }
    }
    let tokens: Vec<Value> = tokens
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            Value::String(t.unwrap_or_else(|| {
                types[i] = 5;
                format!("[PAD{i}]")
            }))
        })
        .collect();
    let merges: Vec<Value> = json["model"]["merges"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| match m {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Array(pair) => Some(
                pair.iter()
                    .filter_map(|p| p.as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            _ => None,
        })
        .map(Value::String)
        .collect();
    Ok(vec![
        ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
        ("tokenizer.ggml.pre".into(), Value::String("gpt-2".into())),
        ("tokenizer.ggml.tokens".into(), Value::Array(tokens)),
        (
            "tokenizer.ggml.token_type".into(),
            Value::Array(types.into_iter().map(Value::I32).collect()),
        ),
        ("tokenizer.ggml.merges".into(), Value::Array(merges)),
    ])
}

/// Writes `model` as a GGUF file in llama.cpp's GPT-2 layout, with the tokenizer's metadata.
pub fn write(
    model: &Gpt2,
    name: &str,
    tokenizer_json: &Path,
    bos: u32,
    eos: u32,
    out: &mut (impl Write + Seek),
) -> Result<()> {
    let c: &Gpt2Config = model.config();
    let u32v = |v: usize| Value::U32(v as u32);
    let mut meta: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String("gpt2".into())),
        ("general.name".into(), Value::String(name.into())),
        ("general.file_type".into(), Value::U32(file_type(model))),
        ("general.quantization_version".into(), Value::U32(2)),
        ("gpt2.context_length".into(), u32v(c.n_positions)),
        ("gpt2.embedding_length".into(), u32v(c.n_embd)),
        (
            "gpt2.feed_forward_length".into(),
            u32v(c.n_inner.unwrap_or(4 * c.n_embd)),
        ),
        ("gpt2.block_count".into(), u32v(c.n_layer)),
        ("gpt2.attention.head_count".into(), u32v(c.n_head)),
        (
            "gpt2.attention.layer_norm_epsilon".into(),
            Value::F32(c.layer_norm_epsilon as f32),
        ),
    ];
    meta.extend(tokenizer_metadata(tokenizer_json, c.vocab_size)?);
    meta.push(("tokenizer.ggml.bos_token_id".into(), Value::U32(bos)));
    meta.push(("tokenizer.ggml.eos_token_id".into(), Value::U32(eos)));
    let mut tensors: Vec<(String, Arc<QTensor>)> = Vec::new();
    let mut written: HashMap<String, Arc<QTensor>> = HashMap::new();
    for (hf, t) in model.tensors() {
        let g = gguf_name(&hf)
            .ok_or_else(|| candle_core::Error::Msg(format!("no GGUF name for `{hf}`")))?;
        let q = to_qtensor(&t)?;
        written.insert(g.clone(), q.clone());
        tensors.push((g, q));
    }
    // llama.cpp's GPT-2 reads `output.weight`; a tied model writes the embedding again
    // (quill sees the copy as tied when it reads the file back).
    if !written.contains_key("output.weight") {
        if let Some(e) = written.get("token_embd.weight") {
            tensors.push(("output.weight".into(), e.clone()));
        }
    }
    let meta_refs: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_ref()))
        .collect();
    gguf_file::write(out, &meta_refs, &tensor_refs)
}

#[cfg(test)]
mod tests {
    use super::gguf_name;

    #[test]
    fn names_map_onto_llama_cpps() {
        for (hf, g) in [
            ("wte.weight", "token_embd.weight"),
            ("h.11.attn.c_attn.weight", "blk.11.attn_qkv.weight"),
            ("h.0.attn.c_proj.bias", "blk.0.attn_output.bias"),
            ("h.2.ln_2.weight", "blk.2.ffn_norm.weight"),
            ("h.2.mlp.c_fc.weight", "blk.2.ffn_up.weight"),
            ("h.2.mlp.c_proj.weight", "blk.2.ffn_down.weight"),
            ("lm_head.weight", "output.weight"),
        ] {
            assert_eq!(gguf_name(hf).as_deref(), Some(g));
        }
        assert_eq!(gguf_name("h.x.ln_1.weight"), None);
        assert_eq!(gguf_name("transformer.wte.weight"), None);
    }
}
