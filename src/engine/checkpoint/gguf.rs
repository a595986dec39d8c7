//! GPT-2 in GGUF, in llama.cpp's layout (architecture `gpt2`): reading a `model.gguf` with its
//! matrices kept in their stored format (`q8_0`, `q4_K`, `f16`, `bf16`, `f32` go to quill's
//! kernels, other ggml types to candle's quantized matmul) or converted to another one (what
//! `quill quantize` writes), and writing one from a loaded model, with llama.cpp's tokenizer
//! metadata, so that `quill quantize` makes files both can run.
//!
//! Tensor names map one to one onto the hub checkpoint's (see [`gguf_name`]); GGUF stores the
//! linear layers `[out, in]`, which is how quill holds them.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Cursor, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::quantized::ggml_file::qtensor_from_ggml;
use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Tensor};

use super::weight::Weight;
use super::{Stored, TensorSource};
use crate::engine::cpu::matrix::{Format, Matrix};
use crate::models::{ModelError, WeightFormat};

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
    /// The whole file, mapped: matrices are packed straight from the page cache, where
    /// reading them into vectors first wrote (and had the kernel clear) a second copy of
    /// every weight.
    map: memmap2::Mmap,
    device: Device,
    /// The format the matrices are converted to; `None`: kept as stored.
    convert_to: Option<WeightFormat>,
}

impl GgufSource {
    /// Reads the header, checking that it is GPT-2's and that every tensor lies within the
    /// file (a truncated download is named here, before any tensor is read).
    pub fn open(path: &Path, device: &Device) -> Result<Self> {
        let file = File::open(path)?;
        // SAFETY: mapped read only for the loading's length; quill never writes a file it
        // loads, and the header and tensor bounds are checked against the map before any
        // tensor is read (a file shortened underneath a load is the one case left, as with
        // the safetensors files candle maps).
        let map = unsafe { memmap2::Mmap::map(&file)? };
        let content = gguf_file::Content::read(&mut Cursor::new(&map[..]))
            .map_err(|e| candle_core::Error::Msg(format!("not a GGUF file ({e})")))?;
        tensors_fit(&content, map.len() as u64).map_err(candle_core::Error::Msg)?;
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
            map,
            device: device.clone(),
            convert_to: None,
        })
    }

    /// Converts the matrices stored in another format to `format` as they are read: they are
    /// dequantized to f32 and then held as [`Weight::new`] holds `format` (quantized again
    /// where it is quantized). Matrices already in `format` are kept as stored, bit for bit.
    pub fn converting_to(mut self, format: WeightFormat) -> Self {
        self.convert_to = Some(format);
        self
    }

    fn info(&self, name: &str) -> Result<(&gguf_file::TensorInfo, String)> {
        let g = gguf_name(name)
            .ok_or_else(|| candle_core::Error::Msg(format!("no GGUF name for `{name}`")))?;
        match self.content.tensor_infos.get(&g) {
            Some(info) => Ok((info, g)),
            None => candle_core::bail!("the GGUF file has no tensor `{g}` ({name})"),
        }
    }

    /// A tensor's bytes in the map (every tensor lies within it: [`tensors_fit`]).
    fn raw(&self, info: &gguf_file::TensorInfo) -> &[u8] {
        let start = self.data_offset(info);
        &self.map[start..start + tensor_bytes(info)]
    }

    /// A float tensor's little-endian values: the map's bytes themselves where they are
    /// aligned for `T` on a little-endian machine (GGUF aligns tensors to 32 bytes), else
    /// copied into a vector.
    fn values<T: bytemuck::Pod>(&self, info: &gguf_file::TensorInfo) -> Result<Cow<'_, [T]>> {
        let bytes = self.raw(info);
        if cfg!(target_endian = "little") {
            if let Ok(values) = bytemuck::try_cast_slice(bytes) {
                return Ok(Cow::Borrowed(values));
            }
        }
        let count = bytes.len() / size_of::<T>();
        Ok(Cow::Owned(super::read_le(&mut &bytes[..], count)?))
    }

    /// Where a tensor's data starts in the file.
    fn data_offset(&self, info: &gguf_file::TensorInfo) -> usize {
        self.content.tensor_data_offset as usize + info.offset as usize
    }

    fn qtensor(&self, name: &str) -> Result<QTensor> {
        let (info, _) = self.info(name)?;
        let t = info.read(
            &mut Cursor::new(&self.map[..]),
            self.content.tensor_data_offset,
            &self.device,
        );
        self.release(info);
        t
    }

    /// Takes a tensor's pages out of this process's resident set once it is copied out (the
    /// map would otherwise hold the whole file beside the model at the load's end: peak
    /// resident memory 1.14 GB instead of 0.68 for the f32 124M file). They stay in the page
    /// cache, and a later read maps them again.
    fn release(&self, info: &gguf_file::TensorInfo) {
        #[cfg(unix)]
        // SAFETY: the map is a shared, read-only mapping of a file: a dropped page is read
        // again from the file, with the same bytes, if it is touched later.
        unsafe {
            let _ = self.map.unchecked_advise_range(
                memmap2::UncheckedAdvice::DontNeed,
                self.data_offset(info),
                tensor_bytes(info),
            );
        }
        #[cfg(not(unix))]
        let _ = info;
    }

    /// [`TensorSource::matrix`] before its pages are released: `name`'s tensor, `info`
    /// (GGUF name `g`).
    fn matrix_of(
        &self,
        name: &str,
        (info, g): (&gguf_file::TensorInfo, &str),
        out: usize,
        inp: usize,
    ) -> Result<Weight> {
        if info.shape.dims() != [out, inp] {
            candle_core::bail!(
                "`{g}` is {:?} in the GGUF file, expected [{out}, {inp}]",
                info.shape.dims()
            );
        }
        if let Some(format) = self.convert_to {
            if weight_format(info.ggml_dtype) != format {
                let w = self.qtensor(name)?.dequantize(&self.device)?;
                return Weight::new(w, format);
            }
        }
        if self.device.is_cpu() {
            let matrix = match info.ggml_dtype {
                GgmlDType::Q8_0 => Matrix::from_q8_0_bytes(self.raw(info), out, inp),
                GgmlDType::Q4K => Matrix::from_q4_k_bytes(self.raw(info).to_vec(), out, inp),
                GgmlDType::F16 => Some(Matrix::from_f16(&self.values(info)?, out, inp)),
                GgmlDType::F32 => {
                    Some(Matrix::from_f32(&self.values(info)?, out, inp, Format::F32))
                }
                GgmlDType::BF16 => {
                    let w = self.tensor(name, &[out, inp])?.flatten_all()?.to_vec1()?;
                    Some(Matrix::from_f32(&w, out, inp, Format::Bf16))
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
        let w = self.matrix_of(name, (info, &g), out, inp);
        self.release(info);
        w
    }

    fn contains(&self, name: &str) -> bool {
        gguf_name(name).is_some_and(|g| self.content.tensor_infos.contains_key(&g))
    }

    fn same(&self, a: &str, b: &str) -> bool {
        match (self.info(a), self.info(b)) {
            (Ok((x, _)), Ok((y, _))) => {
                let same = x.ggml_dtype == y.ggml_dtype
                    && x.shape == y.shape
                    && self.raw(x) == self.raw(y);
                self.release(x);
                self.release(y);
                same
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

/// The [`WeightFormat`] of a GGUF tensor type (`f32`, `f16` and `bf16` are floats).
pub fn weight_format(dtype: GgmlDType) -> WeightFormat {
    match dtype {
        GgmlDType::F32 => WeightFormat::Float(DType::F32),
        GgmlDType::F16 => WeightFormat::Float(DType::F16),
        GgmlDType::BF16 => WeightFormat::Float(DType::BF16),
        q => WeightFormat::Quantized(q),
    }
}

/// Whether a GGUF tensor is one of GPT-2's weight matrices, whose format `--dtype` sets: the
/// linear layers and the output projection.
pub fn is_matrix(gguf_name: &str) -> bool {
    gguf_name == "output.weight"
        || gguf_name.starts_with("blk.")
            && [
                ".attn_qkv.weight",
                ".attn_output.weight",
                ".ffn_up.weight",
                ".ffn_down.weight",
            ]
            .iter()
            .any(|s| gguf_name.ends_with(s))
}

/// How many of a GPT-2's weight matrices ([`is_matrix`]) are held in each GGUF tensor type,
/// the most common first: a model's format as a file holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatrixFormats(Vec<(GgmlDType, usize)>);

impl MatrixFormats {
    fn count(dtypes: impl IntoIterator<Item = GgmlDType>) -> Self {
        let mut counts: Vec<(GgmlDType, usize)> = Vec::new();
        for d in dtypes {
            match counts.iter_mut().find(|(t, _)| *t == d) {
                Some((_, n)) => *n += 1,
                None => counts.push((d, 1)),
            }
        }
        // Most first; of two as common, the smaller format.
        counts.sort_by(|(a, m), (b, n)| {
            let smaller = (a.type_size() * b.block_size()).cmp(&(b.type_size() * a.block_size()));
            n.cmp(m).then(smaller)
        });
        Self(counts)
    }

    /// The matrices of a GGUF file, read from its header.
    pub fn of_file(path: &Path) -> Result<Self> {
        let mut file = BufReader::new(File::open(path)?);
        let content = gguf_file::Content::read(&mut file)
            .map_err(|e| candle_core::Error::Msg(format!("not a GGUF file ({e})")))?;
        Ok(Self::count(
            content
                .tensor_infos
                .iter()
                .filter(|(name, _)| is_matrix(name))
                .map(|(_, info)| info.ggml_dtype),
        ))
    }

    /// The matrices of a loaded model (named as `Gpt2::tensors` lists them) as [`write`]
    /// would write them: a tied model's embedding counts once more, as `output.weight`.
    pub fn of_tensors(tensors: &[(String, Stored<'_>)]) -> Self {
        let head = tensors.iter().any(|(name, _)| name == "lm_head.weight");
        Self::count(tensors.iter().filter_map(|(name, t)| {
            let matrix = match gguf_name(name) {
                Some(g) => is_matrix(&g) || (!head && g == "token_embd.weight"),
                None => false,
            };
            matrix.then(|| written_dtype(t))
        }))
    }

    /// Every type with its count, the most common first.
    pub fn counts(&self) -> &[(GgmlDType, usize)] {
        &self.0
    }

    /// How many matrices are held as `dtype`.
    pub fn of(&self, dtype: GgmlDType) -> usize {
        self.0
            .iter()
            .find(|(t, _)| *t == dtype)
            .map_or(0, |(_, n)| *n)
    }

    /// The model's format: the quantized type that most matrices take if any is quantized
    /// (the rest are what did not fit its blocks), else the float type most take.
    pub fn main(&self) -> Option<GgmlDType> {
        let quantized = |d: &GgmlDType| weight_format(*d).quantized().is_some();
        self.0
            .iter()
            .map(|(d, _)| *d)
            .find(quantized)
            .or_else(|| self.0.first().map(|(d, _)| *d))
    }

    /// ggml's `general.file_type` (`llama_ftype`) for these matrices: "mostly" [`Self::main`].
    /// q4_K everywhere is what llama.cpp calls `Q4_K_S` (`Q4_K_M` mixes in q6_K).
    pub fn file_type(&self) -> u32 {
        match self.main() {
            None | Some(GgmlDType::F32) => 0,
            Some(GgmlDType::F16) => 1,
            Some(GgmlDType::Q4_0) => 2,
            Some(GgmlDType::Q4_1) => 3,
            Some(GgmlDType::Q8_0) => 7,
            Some(GgmlDType::Q5_0) => 8,
            Some(GgmlDType::Q5_1) => 9,
            Some(GgmlDType::Q2K) => 10,
            Some(GgmlDType::Q3K) => 12,
            Some(GgmlDType::Q4K) => 14,
            Some(GgmlDType::Q5K) => 16,
            Some(GgmlDType::Q6K) => 18,
            Some(GgmlDType::BF16) => 32,
            // ggml has no file type of q8_1 or q8_K matrices (they are activations' formats).
            Some(GgmlDType::Q8_1 | GgmlDType::Q8K) => 0,
        }
    }
}

/// `q8_0`, `q4_k`, `f32`: a GGUF tensor type as `--dtype` names it (ggml's name, lower case,
/// where `--dtype` has none).
pub fn dtype_name(dtype: GgmlDType) -> &'static str {
    match dtype {
        GgmlDType::F32 => "f32",
        GgmlDType::F16 => "f16",
        GgmlDType::BF16 => "bf16",
        GgmlDType::Q4_0 => "q4_0",
        GgmlDType::Q4_1 => "q4_1",
        GgmlDType::Q5_0 => "q5_0",
        GgmlDType::Q5_1 => "q5_1",
        GgmlDType::Q8_0 => "q8_0",
        GgmlDType::Q8_1 => "q8_1",
        GgmlDType::Q2K => "q2_k",
        GgmlDType::Q3K => "q3_k",
        GgmlDType::Q4K => "q4_k",
        GgmlDType::Q5K => "q5_k",
        GgmlDType::Q6K => "q6_k",
        GgmlDType::Q8K => "q8_k",
    }
}

/// `q8_0` when every matrix is q8_0, else [`MatrixFormats::main`] first:
/// `q4_k for 2 of 9 matrices, f32 for 7`.
impl std::fmt::Display for MatrixFormats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let total: usize = self.0.iter().map(|(_, n)| n).sum();
        let Some(main) = self.main() else {
            return write!(f, "no weight matrices");
        };
        if self.0.len() == 1 {
            return write!(f, "{}", dtype_name(main));
        }
        let n = self.of(main);
        write!(f, "{} for {n} of {total} matrices", dtype_name(main))?;
        for (d, n) in self.0.iter().filter(|(d, _)| *d != main) {
            write!(f, ", {} for {n}", dtype_name(*d))?;
        }
        Ok(())
    }
}

/// The GGUF tensor type [`to_qtensor`] writes `t` as.
fn written_dtype(t: &Stored<'_>) -> GgmlDType {
    match t {
        Stored::Tensor(_) | Stored::Weight(Weight::Float(_)) => GgmlDType::F32,
        Stored::Weight(Weight::Quantized(QMatMul::QTensor(q))) => q.dtype(),
        Stored::Weight(Weight::Quantized(QMatMul::Tensor(_) | QMatMul::TensorF16(_))) => {
            GgmlDType::F32
        }
        Stored::Weight(Weight::Cpu(m)) | &Stored::Matrix(m) => match m.format() {
            Format::F32 => GgmlDType::F32,
            Format::F16 => GgmlDType::F16,
            Format::Bf16 => GgmlDType::BF16,
            Format::Q8_0 => GgmlDType::Q8_0,
            Format::Q4K => GgmlDType::Q4K,
        },
    }
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

/// GPT-2's hyperparameters, as llama.cpp's `gpt2.*` metadata holds them.
#[derive(Debug, Clone, PartialEq)]
pub struct Gpt2Hyper {
    pub context_length: usize,
    pub embedding_length: usize,
    pub feed_forward_length: usize,
    pub block_count: usize,
    pub head_count: usize,
    pub layer_norm_epsilon: f64,
    pub vocab_size: usize,
}

/// Writes a GPT-2's `tensors` (named as in the hub's checkpoint, as `Gpt2::tensors` lists
/// them) as a GGUF file in llama.cpp's GPT-2 layout, with the tokenizer's metadata.
pub fn write(
    tensors: &[(String, Stored<'_>)],
    c: &Gpt2Hyper,
    name: &str,
    tokenizer_json: &Path,
    bos: u32,
    eos: u32,
    out: &mut (impl Write + Seek),
) -> Result<()> {
    let mut out_tensors: Vec<(String, Arc<QTensor>)> = Vec::new();
    let mut written: HashMap<String, Arc<QTensor>> = HashMap::new();
    for (hf, t) in tensors {
        let g = gguf_name(hf)
            .ok_or_else(|| candle_core::Error::Msg(format!("no GGUF name for `{hf}`")))?;
        let q = to_qtensor(t)?;
        debug_assert_eq!(q.dtype(), written_dtype(t), "{hf}");
        written.insert(g.clone(), q.clone());
        out_tensors.push((g, q));
    }
    // llama.cpp's GPT-2 reads `output.weight`; a tied model writes the embedding again
    // (quill sees the copy as tied when it reads the file back).
    if !written.contains_key("output.weight") {
        if let Some(e) = written.get("token_embd.weight") {
            out_tensors.push(("output.weight".into(), e.clone()));
        }
    }
    // The file type is read off the tensors as written.
    let formats = MatrixFormats::count(
        out_tensors
            .iter()
            .filter(|(g, _)| is_matrix(g))
            .map(|(_, q)| q.dtype()),
    );
    let u32v = |v: usize| Value::U32(v as u32);
    let mut meta: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String("gpt2".into())),
        ("general.name".into(), Value::String(name.into())),
        ("general.file_type".into(), Value::U32(formats.file_type())),
        ("general.quantization_version".into(), Value::U32(2)),
        ("gpt2.context_length".into(), u32v(c.context_length)),
        ("gpt2.embedding_length".into(), u32v(c.embedding_length)),
        (
            "gpt2.feed_forward_length".into(),
            u32v(c.feed_forward_length),
        ),
        ("gpt2.block_count".into(), u32v(c.block_count)),
        ("gpt2.attention.head_count".into(), u32v(c.head_count)),
        (
            "gpt2.attention.layer_norm_epsilon".into(),
            Value::F32(c.layer_norm_epsilon as f32),
        ),
    ];
    meta.extend(tokenizer_metadata(tokenizer_json, c.vocab_size)?);
    meta.push(("tokenizer.ggml.bos_token_id".into(), Value::U32(bos)));
    meta.push(("tokenizer.ggml.eos_token_id".into(), Value::U32(eos)));
    let meta_refs: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = out_tensors
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_ref()))
        .collect();
    gguf_file::write(out, &meta_refs, &tensor_refs)
}

/// A `config.json` and a `tokenizer.json` made from a GGUF file's metadata, for a model
/// directory that holds `model.gguf` alone (as llama.cpp's converter writes them): GPT-2's
/// hyperparameters from `gpt2.*`, its byte-level BPE from `tokenizer.ggml.*`. They are written
/// once into a directory named after the file's path, size and modification time under the
/// user's private cache directory (`models::private_cache_dir`), never the shared temporary
/// directory where another local user could place files first, and read from there as any
/// model's files.
pub(crate) fn companions(gguf: &Path) -> std::result::Result<(PathBuf, PathBuf), ModelError> {
    use candle_core::quantized::gguf_file::{Content, Value};
    use std::hash::{Hash, Hasher};
    let bad = |reason: String| ModelError::BadWeights {
        path: gguf.to_path_buf(),
        reason,
    };
    let lacks = |reason: String| ModelError::BadConfig {
        path: gguf.to_path_buf(),
        reason: format!(
            "{reason}; without config.json and tokenizer.json beside it, a GGUF file must \
             carry GPT-2's hyperparameters and tokenizer in its metadata"
        ),
    };
    let mut file = std::fs::File::open(gguf).map_err(|e| bad(e.to_string()))?;
    let meta = file.metadata().map_err(|e| bad(e.to_string()))?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (
        gguf.canonicalize().unwrap_or_else(|_| gguf.to_path_buf()),
        meta.len(),
        meta.modified().ok(),
    )
        .hash(&mut hasher);
    let dir = crate::models::private_cache_dir()
        .map_err(|e| bad(format!("cannot make quill's private cache directory: {e}")))?
        .join(format!("gguf-{:016x}", hasher.finish()));
    let (config_path, tokenizer_path) = (dir.join("config.json"), dir.join("tokenizer.json"));
    let regular = |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_file());
    if regular(&config_path) && regular(&tokenizer_path) {
        return Ok((config_path, tokenizer_path));
    }
    let content = Content::read(&mut file).map_err(|e| bad(format!("not a GGUF file ({e})")))?;
    let get = |key: &str| content.metadata.get(key);
    let number = |key: &str| -> std::result::Result<u64, ModelError> {
        match get(key) {
            Some(Value::U32(v)) => Ok(*v as u64),
            Some(Value::U64(v)) => Ok(*v),
            Some(Value::I32(v)) if *v >= 0 => Ok(*v as u64),
            Some(Value::I64(v)) if *v >= 0 => Ok(*v as u64),
            _ => Err(lacks(format!("it has no number `{key}`"))),
        }
    };
    let arch = match get("general.architecture") {
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    };
    if arch != "gpt2" {
        return Err(lacks(format!("its architecture is `{arch}`, not gpt2")));
    }
    let strings = |key: &str| -> std::result::Result<Vec<String>, ModelError> {
        match get(key) {
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    _ => Err(lacks(format!("`{key}` holds something other than strings"))),
                })
                .collect(),
            _ => Err(lacks(format!("it has no list `{key}`"))),
        }
    };
    match get("tokenizer.ggml.model") {
        Some(Value::String(m)) if m == "gpt2" => {}
        Some(other) => {
            return Err(lacks(format!(
                "its `tokenizer.ggml.model` is {other:?}, not GPT-2's byte-level BPE (`gpt2`)"
            )))
        }
        None => return Err(lacks("it has no `tokenizer.ggml.model`".into())),
    }
    let tokens = strings("tokenizer.ggml.tokens")?;
    let merges = strings("tokenizer.ggml.merges")?;
    let types: Vec<i64> = match get("tokenizer.ggml.token_type") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::I32(t) => *t as i64,
                Value::U32(t) => *t as i64,
                _ => 1,
            })
            .collect(),
        _ => vec![1; tokens.len()],
    };
    let vocab_size = content
        .tensor_infos
        .get("token_embd.weight")
        .and_then(|t| t.shape.dims().first().copied())
        .unwrap_or(tokens.len());
    let eos = number("tokenizer.ggml.eos_token_id").ok();
    let bos = number("tokenizer.ggml.bos_token_id").ok().or(eos);
    let eps = match get("gpt2.attention.layer_norm_epsilon") {
        Some(Value::F32(e)) => *e as f64,
        Some(Value::F64(e)) => *e,
        _ => 1e-5,
    };
    let config = serde_json::json!({
        "model_type": "gpt2",
        "architectures": ["GPT2LMHeadModel"],
        "vocab_size": vocab_size,
        "n_positions": number("gpt2.context_length")?,
        "n_embd": number("gpt2.embedding_length")?,
        "n_layer": number("gpt2.block_count")?,
        "n_head": number("gpt2.attention.head_count")?,
        "n_inner": number("gpt2.feed_forward_length").ok(),
        "layer_norm_epsilon": eps,
        "activation_function": "gelu_new",
        "bos_token_id": bos,
        "eos_token_id": eos,
    });
    // ggml's token types: 1 normal, 3 control (special), 4 user-defined, 5 unused (the
    // padding `[PAD<id>]` that converters write up to the embedding's rows: left out, so that
    // such ids decode to nothing, as with the original tokenizer.json).
    let mut vocab = serde_json::Map::new();
    let mut added = Vec::new();
    for (id, token) in tokens.iter().enumerate() {
        let kind = types.get(id).copied().unwrap_or(1);
        if kind == 5 {
            continue;
        }
        vocab.insert(token.clone(), id.into());
        if kind == 3 || kind == 4 {
            added.push(serde_json::json!({
                "id": id, "content": token, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": kind == 4, "special": kind == 3,
            }));
        }
    }
    // As in the hub's GPT-2 tokenizer.json.
    let byte_level = |prefix: bool, trim: bool| {
        serde_json::json!({
            "type": "ByteLevel", "add_prefix_space": prefix, "trim_offsets": trim,
            "use_regex": true,
        })
    };
    let tokenizer = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": byte_level(false, true),
        "post_processor": byte_level(true, false),
        "decoder": byte_level(true, true),
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null,
            "continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": false,
            "byte_fallback": false, "vocab": vocab, "merges": merges,
        },
    });
    // Written aside and renamed, so that another process never reads half a file.
    let write = |path: &Path, json: &serde_json::Value| {
        let part = path.with_extension(format!("part{}", std::process::id()));
        std::fs::write(
            &part,
            serde_json::to_vec(json).expect("JSON values serialize"),
        )
        .and_then(|()| std::fs::rename(&part, path))
        .map_err(|e| bad(format!("cannot write {}: {e}", path.display())))
    };
    crate::models::make_private_dir(&dir)
        .map_err(|e| bad(format!("cannot use {}: {e}", dir.display())))?;
    write(&config_path, &config)?;
    write(&tokenizer_path, &tokenizer)?;
    Ok((config_path, tokenizer_path))
}

/// Checks a GGUF file's header and that every tensor it lists lies within the file.
pub(crate) fn check(path: &Path) -> std::result::Result<(), String> {
    use candle_core::quantized::gguf_file::Content;
    let mut file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    let content = Content::read(&mut file).map_err(|e| format!("not a GGUF file ({e})"))?;
    tensors_fit(&content, len)
}

/// The bytes a GGUF tensor's data takes.
pub fn tensor_bytes(info: &candle_core::quantized::gguf_file::TensorInfo) -> usize {
    info.shape.elem_count() / info.ggml_dtype.block_size() * info.ggml_dtype.type_size()
}

/// Checks that every tensor a GGUF header lists lies within the file's `len` bytes, naming
/// the first that does not.
pub fn tensors_fit(
    content: &candle_core::quantized::gguf_file::Content,
    len: u64,
) -> std::result::Result<(), String> {
    for (name, info) in &content.tensor_infos {
        let end = content.tensor_data_offset + info.offset + tensor_bytes(info) as u64;
        if end > len {
            return Err(format!(
                "tensor `{name}` ends at byte {end}, past the end of the file ({len} bytes): \
                 the file is truncated"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{gguf_name, is_matrix, MatrixFormats};
    use candle_core::quantized::GgmlDType;

    #[test]
    fn matrix_formats_name_what_most_matrices_take() {
        let f = |ds: &[(GgmlDType, usize)]| {
            MatrixFormats::count(ds.iter().flat_map(|&(d, n)| std::iter::repeat_n(d, n)))
        };
        let q8 = f(&[(GgmlDType::Q8_0, 9)]);
        assert_eq!((q8.to_string(), q8.file_type()), ("q8_0".into(), 7));
        // The quantized format names the file even where fewer matrices fit its blocks.
        let q4 = f(&[(GgmlDType::F32, 7), (GgmlDType::Q4K, 2)]);
        assert_eq!(q4.main(), Some(GgmlDType::Q4K));
        assert_eq!(q4.file_type(), 14);
        assert_eq!(q4.to_string(), "q4_k for 2 of 9 matrices, f32 for 7");
        let three = f(&[
            (GgmlDType::F32, 2),
            (GgmlDType::Q8_0, 1),
            (GgmlDType::F16, 3),
        ]);
        assert_eq!(
            three.to_string(),
            "q8_0 for 1 of 6 matrices, f16 for 3, f32 for 2"
        );
        let floats = f(&[(GgmlDType::F16, 3), (GgmlDType::F32, 1)]);
        assert_eq!(
            (floats.main(), floats.file_type()),
            (Some(GgmlDType::F16), 1)
        );
        assert_eq!(f(&[]).file_type(), 0);
        assert_eq!(f(&[(GgmlDType::BF16, 1)]).file_type(), 32);
    }

    #[test]
    fn matrices_are_the_linear_layers_and_the_output_projection() {
        for name in [
            "blk.0.attn_qkv.weight",
            "blk.11.attn_output.weight",
            "blk.3.ffn_up.weight",
            "blk.3.ffn_down.weight",
            "output.weight",
        ] {
            assert!(is_matrix(name), "{name}");
        }
        for name in [
            "token_embd.weight",
            "position_embd.weight",
            "blk.0.attn_qkv.bias",
            "blk.0.attn_norm.weight",
            "output_norm.weight",
        ] {
            assert!(!is_matrix(name), "{name}");
        }
    }

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
