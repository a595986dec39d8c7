//! GPT-2 (Radford et al. 2019, "Language Models are Unsupervised Multitask Learners") on candle.
//!
//! The weights are immutable; the attention keys and values of a sequence live in a [`KvCache`]
//! that the caller owns, so that every document keeps its own state and a cache can be cut back
//! to any prefix and extended again. Usage:
//!
//! ```ignore
//! let model = Gpt2::load(vb, &config)?;
//! let mut cache = model.new_cache();
//! let hidden = model.forward(&ids, &mut cache)?;      // (T, n_embd), after ln_f
//! let logits = model.logits(&hidden.narrow(0, t - 1, 1)?)?; // (1, vocab)
//! ```
//!
//! Several candidates that continue one prompt are decoded as a batch by
//! [`Gpt2::forward_shared`]: every candidate attends to the prompt's keys and values, read once
//! and shared, plus its own generated positions in a [`BatchCache`].
//!
//! Checkpoint conventions: Hugging Face's `Conv1D` stores weights `[in, out]`; keys come with or
//! without a `transformer.` prefix; `lm_head` is tied to `wte` when absent.

use candle_core::{DType, Device, Module, Tensor, D};

type Result<T> = candle_core::Result<T>;
use candle_nn::{Embedding, LayerNorm, VarBuilder};

use crate::engine::checkpoint::weight::Weight;
use crate::engine::checkpoint::{SafetensorsSource, Stored, TensorSource};
use crate::engine::cpu::kernels;
use crate::engine::cpu::matrix::{Format, Matrix};
use crate::models::WeightFormat;
use serde::Deserialize;

/// A mirror of a GPT-2 `config.json`, with `transformers`' defaults for missing fields.
#[derive(Debug, Clone, Deserialize)]
pub struct Gpt2Config {
    #[serde(default)]
    pub model_type: Option<String>,
    #[serde(default)]
    pub architectures: Option<Vec<String>>,
    pub vocab_size: usize,
    #[serde(default = "default_n_positions")]
    pub n_positions: usize,
    #[serde(default = "default_n_embd")]
    pub n_embd: usize,
    #[serde(default = "default_n_layer")]
    pub n_layer: usize,
    #[serde(default = "default_n_head")]
    pub n_head: usize,
    #[serde(default)]
    pub n_inner: Option<usize>,
    #[serde(default = "default_activation")]
    pub activation_function: String,
    #[serde(default = "default_eps")]
    pub layer_norm_epsilon: f64,
    #[serde(default = "default_true")]
    pub scale_attn_weights: bool,
    #[serde(default)]
    pub scale_attn_by_inverse_layer_idx: bool,
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    #[serde(default)]
    pub eos_token_id: Option<u32>,
}

fn default_n_positions() -> usize {
    1024
}
fn default_n_embd() -> usize {
    768
}
fn default_n_layer() -> usize {
    12
}
fn default_n_head() -> usize {
    12
}
fn default_activation() -> String {
    "gelu_new".to_string()
}
fn default_eps() -> f64 {
    1e-5
}
fn default_true() -> bool {
    true
}

impl Gpt2Config {
    /// Checks that the config describes a GPT-2 model quill can run.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let is_gpt2 = self.model_type.as_deref() == Some("gpt2")
            || self
                .architectures
                .as_ref()
                .is_some_and(|a| a.iter().any(|a| a.starts_with("GPT2")));
        if !is_gpt2 {
            let kind = self
                .model_type
                .clone()
                .or_else(|| self.architectures.as_ref().and_then(|a| a.first().cloned()))
                .unwrap_or_else(|| "unknown".to_string());
            return Err(format!(
                "the model is of type `{kind}`, not GPT-2 (config.json needs \"model_type\": \"gpt2\")"
            ));
        }
        if self.n_head == 0 || !self.n_embd.is_multiple_of(self.n_head) {
            return Err(format!(
                "n_embd ({}) is not a multiple of n_head ({})",
                self.n_embd, self.n_head
            ));
        }
        Activation::parse(&self.activation_function)?;
        Ok(())
    }

    pub fn head_dim(&self) -> usize {
        self.n_embd / self.n_head
    }
}

#[derive(Debug, Clone, Copy)]
enum Activation {
    /// GPT-2's GELU: the tanh approximation (`gelu_new` in transformers).
    GeluTanh,
    GeluErf,
    Relu,
    Silu,
}

impl Activation {
    fn parse(name: &str) -> std::result::Result<Self, String> {
        match name {
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Ok(Self::GeluTanh),
            "gelu" => Ok(Self::GeluErf),
            "relu" => Ok(Self::Relu),
            "silu" | "swish" => Ok(Self::Silu),
            other => Err(format!("unsupported activation_function `{other}`")),
        }
    }

    fn apply(self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::GeluTanh => match kernels::gelu_tanh(x)? {
                Some(y) => Ok(y),
                None => x.gelu(),
            },
            Self::GeluErf => x.gelu_erf(),
            Self::Relu => x.relu(),
            Self::Silu => x.silu(),
        }
    }
}

/// Hugging Face's `Conv1D`: `y = x W + b` with `W` stored `[in, out]`.
///
/// The weight is kept transposed, `[out, in]` and contiguous, which is the layout candle's gemm
/// handles best for the few-row products of decoding (`x` has one row per sequence).
#[derive(Debug, Clone)]
struct Conv1D {
    weight_t: Weight,
    bias: Tensor,
}

/// The token embedding: a table, or on the CPU rows of a [`Matrix`]; `true` when that is the
/// output projection's (tied: one copy of the vocabulary, in the chosen format).
#[derive(Debug, Clone)]
enum Embed {
    Table(Embedding),
    Rows(Matrix, bool),
}

impl Embed {
    fn forward(&self, ids: &[u32], device: &Device) -> candle_core::Result<Tensor> {
        match self {
            Embed::Table(e) => e.forward(&Tensor::new(ids, device)?),
            Embed::Rows(m, _) => Tensor::from_vec(m.gather(ids), (ids.len(), m.cols()), device),
        }
    }

    fn bytes(&self) -> usize {
        match self {
            Embed::Table(e) => e.embeddings().elem_count() * e.embeddings().dtype().size_in_bytes(),
            Embed::Rows(_, true) => 0,
            Embed::Rows(m, false) => m.bytes(),
        }
    }
}

impl Conv1D {
    fn load(src: &dyn TensorSource, name: &str, n_in: usize, n_out: usize) -> Result<Self> {
        Ok(Self {
            weight_t: src.matrix(&format!("{name}.weight"), n_out, n_in, true)?,
            bias: src.tensor(&format!("{name}.bias"), &[n_out])?,
        })
    }

    /// x: (rows, in) -> (rows, out)
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.weight_t.matmul_t_bias(x, Some(&self.bias))
    }
}

#[derive(Debug, Clone)]
struct Attention {
    c_attn: Conv1D,
    c_proj: Conv1D,
    n_head: usize,
    head_dim: usize,
    scale: f64,
}

#[derive(Debug, Clone)]
struct Mlp {
    c_fc: Conv1D,
    c_proj: Conv1D,
    act: Activation,
}

#[derive(Debug, Clone)]
struct Block {
    ln_1: LayerNorm,
    attn: Attention,
    ln_2: LayerNorm,
    mlp: Mlp,
}

fn layer_norm(src: &dyn TensorSource, name: &str, size: usize, eps: f64) -> Result<LayerNorm> {
    let weight = src.tensor(&format!("{name}.weight"), &[size])?;
    let bias = src.tensor(&format!("{name}.bias"), &[size])?;
    Ok(LayerNorm::new(weight, bias, eps))
}

/// Keys and values of one sequence, per layer `(n_head, capacity, head_dim)`, preallocated and
/// written in place. Positions `0..len` are valid; truncation only moves `len`. Not `Clone`:
/// a copy would share the tensors it writes in place.
#[derive(Debug)]
pub struct KvCache {
    keys: Vec<Tensor>,
    values: Vec<Tensor>,
    len: usize,
    capacity: usize,
    max_len: usize,
}

/// Allocation granularity of the caches, in positions.
const CACHE_CHUNK: usize = 128;

impl KvCache {
    /// The number of valid positions.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets every position from `len` on.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Makes room for `needed` positions, growing by whole chunks up to the model's maximum.
    fn reserve(&mut self, needed: usize) -> candle_core::Result<()> {
        if needed <= self.capacity {
            return Ok(());
        }
        let capacity = needed.div_ceil(CACHE_CHUNK) * CACHE_CHUNK;
        let capacity = capacity
            .max(self.capacity * 2)
            .min(self.max_len)
            .max(needed);
        for t in self.keys.iter_mut().chain(self.values.iter_mut()) {
            let (h, _, d) = t.dims3()?;
            let grown = Tensor::zeros((h, capacity, d), t.dtype(), t.device())?;
            if self.len > 0 {
                grown.slice_set(&t.narrow(1, 0, self.len)?.contiguous()?, 1, 0)?;
            }
            *t = grown;
        }
        self.capacity = capacity;
        Ok(())
    }
}

/// The generated positions of `n` candidates that share a prompt's [`KvCache`]:
/// per layer `(n_head, n, capacity, head_dim)`. Not `Clone`, as [`KvCache`].
#[derive(Debug)]
pub struct BatchCache {
    keys: Vec<Tensor>,
    values: Vec<Tensor>,
    len: usize,
}

impl BatchCache {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[derive(Debug, Clone)]
pub struct Gpt2 {
    wte: Embed,
    wpe: Embedding,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
    /// `[vocab, n_embd]`: the tied `wte` or a separate `lm_head` (quantized in quantized modes).
    lm_head: Weight,
    config: Gpt2Config,
    dtype: DType,
    /// What [`KvCache`]s hold (f16 on the CPU for weights that are not f32:
    /// [`kernels::cache_dtype`]); a [`BatchCache`] holds `dtype`.
    cache_dtype: DType,
    device: Device,
}

impl Gpt2 {
    /// Loads the weights; `vb` is the root of the checkpoint. Both key spellings are accepted:
    /// `transformer.h.0...` (what `save_pretrained` writes) and `h.0...` (the hub's `gpt2`).
    pub fn load(vb: VarBuilder, config: &Gpt2Config) -> Result<Self> {
        let format = WeightFormat::Float(vb.dtype());
        Self::load_format(vb, config, format)
    }

    /// Loads the weights, converting the linear layers and the output projection to `format`
    /// (norms and position embeddings stay in `vb`'s dtype; on the CPU that is f32, and the
    /// token embedding is read from the output projection when the two are tied).
    pub fn load_format(vb: VarBuilder, config: &Gpt2Config, format: WeightFormat) -> Result<Self> {
        Self::from_source(&SafetensorsSource::new(vb, format), config)
    }

    /// Builds the model from any [`TensorSource`].
    pub fn from_source(src: &dyn TensorSource, config: &Gpt2Config) -> Result<Self> {
        let act =
            Activation::parse(&config.activation_function).map_err(candle_core::Error::msg)?;
        let n = config.n_embd;
        let inner = config.n_inner.unwrap_or(4 * n);
        let eps = config.layer_norm_epsilon;
        let vocab = config.vocab_size;
        let wpe = Embedding::new(src.tensor("wpe.weight", &[config.n_positions, n])?, n);
        let mut blocks = Vec::with_capacity(config.n_layer);
        for i in 0..config.n_layer {
            let b = |k: &str| format!("h.{i}.{k}");
            let mut scale = 1.0;
            if config.scale_attn_weights {
                scale /= (config.head_dim() as f64).sqrt();
            }
            if config.scale_attn_by_inverse_layer_idx {
                scale /= (i + 1) as f64;
            }
            blocks.push(Block {
                ln_1: layer_norm(src, &b("ln_1"), n, eps)?,
                attn: Attention {
                    c_attn: Conv1D::load(src, &b("attn.c_attn"), n, 3 * n)?,
                    c_proj: Conv1D::load(src, &b("attn.c_proj"), n, n)?,
                    n_head: config.n_head,
                    head_dim: config.head_dim(),
                    scale,
                },
                ln_2: layer_norm(src, &b("ln_2"), n, eps)?,
                mlp: Mlp {
                    c_fc: Conv1D::load(src, &b("mlp.c_fc"), n, inner)?,
                    c_proj: Conv1D::load(src, &b("mlp.c_proj"), inner, n)?,
                    act,
                },
            });
        }
        let ln_f = layer_norm(src, "ln_f", n, eps)?;
        let tied = !src.contains("lm_head.weight") || src.same("lm_head.weight", "wte.weight");
        let (lm_head, wte) = if tied {
            match src.matrix("wte.weight", vocab, n, false)? {
                Weight::Cpu(m) => (Weight::Cpu(m.clone()), Embed::Rows(m, true)),
                head => (head, embed_table(src.tensor("wte.weight", &[vocab, n])?)?),
            }
        } else {
            let head = src.matrix("lm_head.weight", vocab, n, false)?;
            let wte = match src.matrix("wte.weight", vocab, n, false)? {
                Weight::Cpu(m) => Embed::Rows(m, false),
                _ => embed_table(src.tensor("wte.weight", &[vocab, n])?)?,
            };
            (head, wte)
        };
        let weights_f32 = match blocks.first().map(|b| &b.attn.c_attn.weight_t) {
            Some(Weight::Cpu(m)) => m.format() == Format::F32,
            Some(Weight::Quantized(_)) => false,
            Some(Weight::Float(_)) | None => true,
        };
        let cache_dtype = if src.device().is_cpu() && src.dtype() == DType::F32 {
            kernels::cache_dtype(crate::engine::cpu::isa::isa(), weights_f32)
        } else {
            src.dtype()
        };
        Ok(Self {
            wte,
            wpe,
            blocks,
            ln_f,
            lm_head,
            config: config.clone(),
            dtype: src.dtype(),
            cache_dtype,
            device: src.device(),
        })
    }

    /// Every tensor of the model under its checkpoint name, for writing it out (GGUF).
    pub fn tensors(&self) -> Vec<(String, Stored<'_>)> {
        let mut out = vec![(
            "wpe.weight".to_string(),
            Stored::Tensor(self.wpe.embeddings()),
        )];
        let shared = matches!(self.wte, Embed::Rows(_, true));
        out.push((
            "wte.weight".into(),
            match &self.wte {
                Embed::Table(e) => Stored::Tensor(e.embeddings()),
                Embed::Rows(_, true) => Stored::Weight(&self.lm_head),
                Embed::Rows(m, false) => Stored::Matrix(m),
            },
        ));
        for (i, b) in self.blocks.iter().enumerate() {
            push_norm(format!("h.{i}.ln_1"), &b.ln_1, &mut out);
            push_norm(format!("h.{i}.ln_2"), &b.ln_2, &mut out);
            for (name, c) in [
                ("attn.c_attn", &b.attn.c_attn),
                ("attn.c_proj", &b.attn.c_proj),
                ("mlp.c_fc", &b.mlp.c_fc),
                ("mlp.c_proj", &b.mlp.c_proj),
            ] {
                out.push((format!("h.{i}.{name}.weight"), Stored::Weight(&c.weight_t)));
                out.push((format!("h.{i}.{name}.bias"), Stored::Tensor(&c.bias)));
            }
        }
        push_norm("ln_f".into(), &self.ln_f, &mut out);
        if !shared {
            out.push(("lm_head.weight".into(), Stored::Weight(&self.lm_head)));
        }
        out
    }

    pub fn config(&self) -> &Gpt2Config {
        &self.config
    }

    /// Bytes held by the weights (parameters only, not caches).
    pub fn weight_bytes(&self) -> usize {
        let table = |t: &Tensor| t.elem_count() * t.dtype().size_in_bytes();
        let norm = |l: &LayerNorm| table(l.weight()) + l.bias().map_or(0, table);
        let mut total = self.lm_head.bytes() + self.wte.bytes();
        total += table(self.wpe.embeddings()) + norm(&self.ln_f);
        for b in &self.blocks {
            total += norm(&b.ln_1) + norm(&b.ln_2);
            for w in [&b.attn.c_attn, &b.attn.c_proj, &b.mlp.c_fc, &b.mlp.c_proj] {
                total += w.weight_t.bytes() + table(&w.bias);
            }
        }
        total
    }

    /// How many of the matrices (linear layers and output projection) are quantized.
    pub fn quantized_matrices(&self) -> (usize, usize) {
        let mut all = vec![self.lm_head.is_quantized()];
        for b in &self.blocks {
            for w in [&b.attn.c_attn, &b.attn.c_proj, &b.mlp.c_fc, &b.mlp.c_proj] {
                all.push(w.weight_t.is_quantized());
            }
        }
        (all.iter().filter(|q| **q).count(), all.len())
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// An empty cache for one sequence.
    pub fn new_cache(&self) -> candle_core::Result<KvCache> {
        let (h, d) = (self.config.n_head, self.config.head_dim());
        let zeros = || Tensor::zeros((h, 0, d), self.cache_dtype, &self.device);
        Ok(KvCache {
            keys: (0..self.config.n_layer)
                .map(|_| zeros())
                .collect::<Result<_>>()?,
            values: (0..self.config.n_layer)
                .map(|_| zeros())
                .collect::<Result<_>>()?,
            len: 0,
            capacity: 0,
            max_len: self.config.n_positions,
        })
    }

    /// Feeds `ids` after the cache's valid positions and appends their keys and values.
    /// Returns the final hidden states (after `ln_f`), `(ids.len(), n_embd)`.
    pub fn forward(&self, ids: &[u32], cache: &mut KvCache) -> candle_core::Result<Tensor> {
        Ok(self
            .forward_or_stop(ids, cache, &|| false)?
            .expect("a pass that is never stopped ends"))
    }

    /// [`Gpt2::forward`] that gives up between two layers once `stop()` says so (background
    /// work giving way to a keystroke: a 128-token pass is 300 ms at f32 on 2 cores, a layer a
    /// twelfth of it). Then it returns `None` and the cache holds what it held before: its
    /// length is only moved at the end, and the positions written are written again by the
    /// next pass.
    pub fn forward_or_stop(
        &self,
        ids: &[u32],
        cache: &mut KvCache,
        stop: &dyn Fn() -> bool,
    ) -> candle_core::Result<Option<Tensor>> {
        let t = ids.len();
        let past = cache.len;
        if t == 0 {
            candle_core::bail!("forward needs at least one token");
        }
        if past + t > self.config.n_positions {
            candle_core::bail!(
                "{} positions exceed the model's context of {} (n_positions)",
                past + t,
                self.config.n_positions
            );
        }
        cache.reserve(past + t)?;
        let pos: Vec<u32> = (past as u32..(past + t) as u32).collect();
        let pos_t = Tensor::new(pos.as_slice(), &self.device)?;
        let mut x = kernels::add(
            &self.wte.forward(ids, &self.device)?,
            &self.wpe.forward(&pos_t)?,
        )?;
        // The CPU f32 path masks inside its softmax kernel.
        let fused = self.dtype == DType::F32 && self.device.is_cpu();
        let mask = if t > 1 && !fused {
            Some(causal_mask(t, past, self.dtype, &self.device)?)
        } else {
            None
        };
        for (layer, block) in self.blocks.iter().enumerate() {
            if stop() {
                return Ok(None);
            }
            let h = block.ln_1.forward(&x)?;
            let a = block.attn.forward_single(&h, cache, layer, mask.as_ref())?;
            x = kernels::add(&x, &a)?;
            let h = block.ln_2.forward(&x)?;
            x = kernels::add(&x, &block.mlp.forward(&h)?)?;
        }
        cache.len = past + t;
        self.ln_f.forward(&x).map(Some)
    }

    /// An empty cache for `n` candidates continuing a prompt, with room for `max_new` steps.
    pub fn new_batch_cache(&self, n: usize, max_new: usize) -> candle_core::Result<BatchCache> {
        let (h, d) = (self.config.n_head, self.config.head_dim());
        let zeros = || Tensor::zeros((h, n, max_new.max(1), d), self.dtype, &self.device);
        Ok(BatchCache {
            keys: (0..self.config.n_layer)
                .map(|_| zeros())
                .collect::<Result<_>>()?,
            values: (0..self.config.n_layer)
                .map(|_| zeros())
                .collect::<Result<_>>()?,
            len: 0,
        })
    }

    /// One decoding step for `n` candidates: `ids[i]` is the next token of candidate `i`. Each
    /// candidate attends to the shared `prompt` cache (read only) and to its own positions in
    /// `batch`. Returns hidden states `(n, n_embd)`.
    pub fn forward_shared(
        &self,
        ids: &[u32],
        prompt: &KvCache,
        batch: &mut BatchCache,
    ) -> candle_core::Result<Tensor> {
        let n = ids.len();
        let pos = prompt.len + batch.len;
        if pos >= self.config.n_positions {
            candle_core::bail!(
                "position {pos} exceeds the model's context of {} (n_positions)",
                self.config.n_positions
            );
        }
        let (_, bn, cap, _) = batch.keys[0].dims4()?;
        if bn != n || batch.len >= cap {
            candle_core::bail!(
                "batch cache holds {bn} candidates and {cap} steps; got {n} ids at step {}",
                batch.len
            );
        }
        let pos_t = Tensor::new(&[pos as u32], &self.device)?;
        let mut x = self
            .wte
            .forward(ids, &self.device)?
            .broadcast_add(&self.wpe.forward(&pos_t)?)?;
        for (layer, block) in self.blocks.iter().enumerate() {
            let h = block.ln_1.forward(&x)?;
            let a = block.attn.forward_shared(&h, prompt, batch, layer)?;
            x = kernels::add(&x, &a)?;
            let h = block.ln_2.forward(&x)?;
            x = kernels::add(&x, &block.mlp.forward(&h)?)?;
        }
        batch.len += 1;
        self.ln_f.forward(&x)
    }

    /// Output logits, `(rows, vocab)` in f32, for hidden states `(rows, n_embd)`.
    pub fn logits(&self, hidden: &Tensor) -> candle_core::Result<Tensor> {
        self.lm_head.matmul_t(hidden)?.to_dtype(DType::F32)
    }
}

/// A token embedding kept apart from the output projection (which candle's quantized
/// blocks hold, as for a GGUF file's `q6_K`): on the CPU in `q8_0` rows, a quarter of f32's
/// memory, elsewhere a table.
fn embed_table(wte: Tensor) -> Result<Embed> {
    let (vocab, n) = wte.dims2()?;
    if wte.device().is_cpu() && Format::Q8_0.fits(n) {
        let w = wte.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        return Ok(Embed::Rows(
            Matrix::from_f32(&w, vocab, n, Format::Q8_0),
            false,
        ));
    }
    Ok(Embed::Table(Embedding::new(wte, n)))
}

fn push_norm<'a>(name: String, l: &'a LayerNorm, out: &mut Vec<(String, Stored<'a>)>) {
    out.push((format!("{name}.weight"), Stored::Tensor(l.weight())));
    if let Some(b) = l.bias() {
        out.push((format!("{name}.bias"), Stored::Tensor(b)));
    }
}

/// `(t, past + t)` additive mask: query `i` (absolute position `past + i`) sees keys `0..=past+i`.
fn causal_mask(
    t: usize,
    past: usize,
    dtype: DType,
    device: &Device,
) -> candle_core::Result<Tensor> {
    let total = past + t;
    let mask: Vec<f32> = (0..t)
        .flat_map(|i| (0..total).map(move |j| if j > past + i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Tensor::from_vec(mask, (t, total), device)?.to_dtype(dtype)
}

impl Mlp {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let h = self.act.apply(&self.c_fc.forward(x)?)?;
        self.c_proj.forward(&h)
    }
}

impl Attention {
    /// Splits `(rows, 3 n_embd)` into q, k, v, each `(n_head, rows, head_dim)` contiguous.
    fn qkv(&self, x: &Tensor) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
        let rows = x.dim(0)?;
        let qkv = self.c_attn.forward(x)?;
        let qkv = qkv.reshape((rows, 3, self.n_head, self.head_dim))?;
        let part = |i: usize| {
            qkv.narrow(1, i, 1)?
                .squeeze(1)?
                .transpose(0, 1)?
                .contiguous()
        };
        Ok((part(0)?, part(1)?, part(2)?))
    }

    /// Joins heads `(n_head, rows, head_dim)` back into `(rows, n_embd)` and projects.
    fn merge(&self, y: &Tensor) -> candle_core::Result<Tensor> {
        let rows = y.dim(1)?;
        let y = y
            .transpose(0, 1)?
            .reshape((rows, self.n_head * self.head_dim))?;
        self.c_proj.forward(&y)
    }

    fn forward_single(
        &self,
        x: &Tensor,
        cache: &mut KvCache,
        layer: usize,
        mask: Option<&Tensor>,
    ) -> candle_core::Result<Tensor> {
        let t = x.dim(0)?;
        let past = cache.len;
        let (q, k, v) = self.qkv(x)?;
        let stored = cache.keys[layer].dtype();
        cache.keys[layer].slice_set(&kernels::to_dtype(&k, stored)?, 1, past)?;
        cache.values[layer].slice_set(&kernels::to_dtype(&v, stored)?, 1, past)?;
        if let Some(y) = kernels::attention(
            &q,
            &cache.keys[layer],
            &cache.values[layer],
            past,
            self.scale as f32,
        )? {
            return self.merge(&y);
        }
        let keys = cache.keys[layer]
            .narrow(1, 0, past + t)?
            .to_dtype(q.dtype())?;
        let values = cache.values[layer]
            .narrow(1, 0, past + t)?
            .to_dtype(q.dtype())?;
        // (H, T, D) x (H, D, P+T) -> (H, T, P+T)
        let scores = q.matmul(&keys.t()?)?;
        let probs = match kernels::causal_softmax(&scores, past, self.scale as f32)? {
            Some(p) => p,
            None => {
                let mut scores = (scores * self.scale)?;
                if let Some(mask) = mask {
                    scores = scores.broadcast_add(mask)?;
                }
                candle_nn::ops::softmax_last_dim(&scores)?
            }
        };
        // (H, T, P+T) x (H, P+T, D) -> (H, T, D)
        let y = probs.matmul(&values)?;
        self.merge(&y)
    }

    fn forward_shared(
        &self,
        x: &Tensor,
        prompt: &KvCache,
        batch: &mut BatchCache,
        layer: usize,
    ) -> candle_core::Result<Tensor> {
        let step = batch.len;
        let p = prompt.len;
        // q, k, v: (H, n, D)
        let (q, k, v) = self.qkv(x)?;
        batch.keys[layer].slice_set(&k.unsqueeze(2)?, 2, step)?;
        batch.values[layer].slice_set(&v.unsqueeze(2)?, 2, step)?;
        if let Some(y) = kernels::attention_shared(
            &q,
            &prompt.keys[layer],
            &prompt.values[layer],
            p,
            &batch.keys[layer],
            &batch.values[layer],
            step + 1,
            self.scale as f32,
        )? {
            return self.merge(&y);
        }
        // Prompt part, shared by every candidate: (H, n, D) x (H, D, P) -> (H, n, P).
        let mut parts = Vec::with_capacity(2);
        if p > 0 {
            let pk = prompt.keys[layer].narrow(1, 0, p)?.to_dtype(q.dtype())?;
            parts.push(q.matmul(&pk.t()?)?);
        }
        // Own part: (H, n, 1, D) x (H, n, D, S) -> (H, n, 1, S).
        let own_k = batch.keys[layer].narrow(2, 0, step + 1)?;
        let q4 = q.unsqueeze(2)?;
        parts.push(q4.matmul(&own_k.t()?)?.squeeze(2)?);
        let scores = (Tensor::cat(&parts, D::Minus1)? * self.scale)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let own_v = batch.values[layer].narrow(2, 0, step + 1)?;
        let own_p = probs.narrow(D::Minus1, p, step + 1)?.unsqueeze(2)?;
        let mut y = own_p.contiguous()?.matmul(&own_v)?.squeeze(2)?;
        if p > 0 {
            let pv = prompt.values[layer].narrow(1, 0, p)?.to_dtype(q.dtype())?;
            let prompt_p = probs.narrow(D::Minus1, 0, p)?.contiguous()?;
            y = (y + prompt_p.matmul(&pv)?)?;
        }
        self.merge(&y)
    }
}
