//! The T5 encoder-decoder on candle, for one sequence at a time.
//!
//! Shapes are `(tokens, d_model)`; attention heads are `(n_heads, tokens, d_kv)`. T5 has no
//! absolute positions: each stack's first block owns a relative position bias, bucketed
//! bidirectionally in the encoder and over the past only in the decoder, shared by every layer
//! of the stack. Scores are not scaled by `1/sqrt(d_kv)` (T5 folds that into its weights).
//! Layer norms are RMS norms without bias. With tied embeddings the decoder output is scaled by
//! `1/sqrt(d_model)` before the shared embedding projects it on the vocabulary.
//!
//! Decoding keeps a [`DecodeState`]: the decoder's self-attention keys and values so far, and
//! the cross-attention keys and values of the encoder output, computed once.

use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{Embedding, VarBuilder};
use serde::Deserialize;

use crate::engine::checkpoint::weight::Weight;
use crate::engine::cpu::matrix::Matrix;
use crate::engine::cpu::{kernels, t5kernels};
use crate::models::WeightFormat;

/// A mirror of a T5 `config.json`, with transformers' defaults for missing fields.
#[derive(Debug, Clone, Deserialize)]
pub struct T5Config {
    pub vocab_size: usize,
    pub d_model: usize,
    pub d_kv: usize,
    pub d_ff: usize,
    pub num_layers: usize,
    #[serde(default)]
    pub num_decoder_layers: Option<usize>,
    pub num_heads: usize,
    #[serde(default = "default_buckets")]
    pub relative_attention_num_buckets: usize,
    #[serde(default = "default_max_distance")]
    pub relative_attention_max_distance: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_epsilon: f64,
    #[serde(default = "default_ff")]
    pub feed_forward_proj: String,
    #[serde(default = "default_true")]
    pub tie_word_embeddings: bool,
    #[serde(default)]
    pub pad_token_id: u32,
    #[serde(default = "default_eos")]
    pub eos_token_id: u32,
    #[serde(default)]
    pub decoder_start_token_id: Option<u32>,
}

fn default_buckets() -> usize {
    32
}
fn default_max_distance() -> usize {
    128
}
fn default_eps() -> f64 {
    1e-6
}
fn default_ff() -> String {
    "relu".into()
}
fn default_true() -> bool {
    true
}
fn default_eos() -> u32 {
    1
}

impl T5Config {
    pub fn validate(&self) -> Result<(), String> {
        FeedForwardKind::parse(&self.feed_forward_proj)?;
        if self.num_heads == 0 || self.d_kv == 0 {
            return Err("num_heads and d_kv must be positive".into());
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy)]
enum FeedForwardKind {
    Relu,
    Gelu,
    GatedGelu,
    GatedSilu,
}

impl FeedForwardKind {
    fn parse(name: &str) -> Result<Self, String> {
        match name {
            "relu" => Ok(Self::Relu),
            "gelu" | "gelu_new" => Ok(Self::Gelu),
            "gated-gelu" => Ok(Self::GatedGelu),
            "gated-silu" => Ok(Self::GatedSilu),
            other => Err(format!("unsupported feed_forward_proj `{other}`")),
        }
    }

    fn gated(self) -> bool {
        matches!(self, Self::GatedGelu | Self::GatedSilu)
    }

    fn apply(self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::Relu => x.relu(),
            // transformers' "gated-gelu" is gelu_new, the tanh approximation.
            Self::Gelu | Self::GatedGelu => match kernels::gelu_tanh(x)? {
                Some(y) => Ok(y),
                None => x.gelu(),
            },
            Self::GatedSilu => x.silu(),
        }
    }
}

/// A bias-free linear layer, weight `[out, in]`.
#[derive(Debug, Clone)]
struct Linear(Weight);

impl Linear {
    fn load(
        vb: VarBuilder,
        n_in: usize,
        n_out: usize,
        format: WeightFormat,
    ) -> candle_core::Result<Self> {
        // Prompts (the encoder) in f32 activations: T5's outliers make 8-bit ones drift.
        Ok(Self(
            match Weight::new(vb.get((n_out, n_in), "weight")?, format)? {
                Weight::Cpu(m) => Weight::Cpu(m.with_f32_prompts()),
                w => w,
            },
        ))
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.0.matmul_t(x)
    }

    /// The CPU matrix, where the weight is one (the slice kernels' path).
    fn matrix(&self) -> Option<&Matrix> {
        match &self.0 {
            Weight::Cpu(m) => Some(m),
            _ => None,
        }
    }

    /// `x · wᵀ` for `m` rows of f32, on the CPU matrix.
    fn rows(&self, x: &[f32], m: usize) -> candle_core::Result<Vec<f32>> {
        match self.matrix() {
            Some(w) => Ok(w.matmul_t(x, m)),
            None => candle_core::bail!("the slice kernels need the weights on the CPU"),
        }
    }
}

/// T5's layer norm: scale only, no mean removal, computed in f32.
#[derive(Debug, Clone)]
struct RmsNorm {
    weight: Tensor,
    /// The weight in f32, for the slice kernels.
    weight_f32: Vec<f32>,
    eps: f64,
}

impl RmsNorm {
    fn load(vb: VarBuilder, size: usize, eps: f64) -> candle_core::Result<Self> {
        let weight = vb.get(size, "weight")?;
        Ok(Self {
            weight_f32: weight.to_dtype(DType::F32)?.to_vec1()?,
            weight,
            eps,
        })
    }

    fn rows(&self, x: &[f32]) -> Vec<f32> {
        t5kernels::rms_norm(x, &self.weight_f32, self.eps as f32)
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let dtype = x.dtype();
        let xf = x.to_dtype(DType::F32)?;
        let var = xf.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = xf.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        normed.to_dtype(dtype)?.broadcast_mul(&self.weight)
    }
}

#[derive(Debug, Clone)]
struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    n_heads: usize,
    d_kv: usize,
}

impl Attention {
    fn load(vb: VarBuilder, cfg: &T5Config, format: WeightFormat) -> candle_core::Result<Self> {
        let inner = cfg.num_heads * cfg.d_kv;
        Ok(Self {
            q: Linear::load(vb.pp("q"), cfg.d_model, inner, format)?,
            k: Linear::load(vb.pp("k"), cfg.d_model, inner, format)?,
            v: Linear::load(vb.pp("v"), cfg.d_model, inner, format)?,
            o: Linear::load(vb.pp("o"), inner, cfg.d_model, format)?,
            n_heads: cfg.num_heads,
            d_kv: cfg.d_kv,
        })
    }

    /// `(tokens, inner)` to heads `(n_heads, tokens, d_kv)`.
    fn heads(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let t = x.dim(0)?;
        x.reshape((t, self.n_heads, self.d_kv))?
            .transpose(0, 1)?
            .contiguous()
    }

    /// Attention of queries `x` over keys and values `(n_heads, kv, d_kv)`, plus `bias`
    /// `(n_heads, q, kv)`.
    fn attend(
        &self,
        x: &Tensor,
        keys: &Tensor,
        values: &Tensor,
        bias: Option<&Tensor>,
    ) -> candle_core::Result<Tensor> {
        let t = x.dim(0)?;
        let q = self.heads(&self.q.forward(x)?)?;
        let mut scores = q.matmul(&keys.t()?)?;
        if let Some(b) = bias {
            scores = scores.broadcast_add(b)?;
        }
        let probs =
            candle_nn::ops::softmax_last_dim(&scores.to_dtype(DType::F32)?)?.to_dtype(x.dtype())?;
        let y = probs.matmul(values)?;
        let y = y.transpose(0, 1)?.reshape((t, self.n_heads * self.d_kv))?;
        self.o.forward(&y)
    }
}

#[derive(Debug, Clone)]
struct FeedForward {
    wi: Linear,
    wi_1: Option<Linear>,
    wo: Linear,
    kind: FeedForwardKind,
}

impl FeedForward {
    fn load(vb: VarBuilder, cfg: &T5Config, format: WeightFormat) -> candle_core::Result<Self> {
        let kind =
            FeedForwardKind::parse(&cfg.feed_forward_proj).map_err(candle_core::Error::msg)?;
        let vb = vb.pp("DenseReluDense");
        let (wi, wi_1) = if kind.gated() {
            (
                Linear::load(vb.pp("wi_0"), cfg.d_model, cfg.d_ff, format)?,
                Some(Linear::load(vb.pp("wi_1"), cfg.d_model, cfg.d_ff, format)?),
            )
        } else {
            (
                Linear::load(vb.pp("wi"), cfg.d_model, cfg.d_ff, format)?,
                None,
            )
        };
        Ok(Self {
            wi,
            wi_1,
            wo: Linear::load(vb.pp("wo"), cfg.d_ff, cfg.d_model, format)?,
            kind,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut h = self.kind.apply(&self.wi.forward(x)?)?;
        if let Some(wi_1) = &self.wi_1 {
            h = (h * wi_1.forward(x)?)?;
        }
        self.wo.forward(&h)
    }

    /// [`FeedForward::forward`] on `m` rows of f32, by the slice kernels.
    fn rows(&self, x: &[f32], m: usize) -> candle_core::Result<Vec<f32>> {
        let mut h = self.wi.rows(x, m)?;
        match self.kind {
            FeedForwardKind::Relu => t5kernels::relu_in_place(&mut h),
            FeedForwardKind::Gelu | FeedForwardKind::GatedGelu => {
                t5kernels::gelu_tanh_in_place(&mut h)
            }
            FeedForwardKind::GatedSilu => t5kernels::silu_in_place(&mut h),
        }
        if let Some(wi_1) = &self.wi_1 {
            t5kernels::mul_in_place(&mut h, &wi_1.rows(x, m)?);
        }
        self.wo.rows(&h, m)
    }

    fn linears(&self) -> impl Iterator<Item = &Linear> {
        [&self.wi, &self.wo].into_iter().chain(&self.wi_1)
    }
}

#[derive(Debug, Clone)]
struct EncoderBlock {
    attn_norm: RmsNorm,
    attn: Attention,
    ff_norm: RmsNorm,
    ff: FeedForward,
}

#[derive(Debug, Clone)]
struct DecoderBlock {
    self_norm: RmsNorm,
    self_attn: Attention,
    cross_norm: RmsNorm,
    cross_attn: Attention,
    ff_norm: RmsNorm,
    ff: FeedForward,
}

/// The relative position bias of a stack: `(num_buckets, n_heads)` embeddings.
#[derive(Debug, Clone)]
struct PositionBias {
    embedding: Embedding,
    /// The embeddings `(num_buckets, n_heads)` in f32, for the slice kernels.
    embedding_f32: Vec<f32>,
    n_heads: usize,
    bidirectional: bool,
    num_buckets: usize,
    max_distance: usize,
}

impl PositionBias {
    /// transformers' `_relative_position_bucket`, in f32 as torch computes it.
    fn bucket(&self, relative: i64) -> u32 {
        let mut num_buckets = self.num_buckets as i64;
        let mut bucket = 0i64;
        let n = if self.bidirectional {
            num_buckets /= 2;
            if relative > 0 {
                bucket += num_buckets;
            }
            relative.abs()
        } else {
            (-relative).max(0)
        };
        let max_exact = num_buckets / 2;
        if n < max_exact {
            bucket += n;
        } else {
            let log_ratio = ((n as f32) / (max_exact as f32)).ln();
            let log_max = ((self.max_distance as f64) / (max_exact as f64)).ln() as f32;
            let large = max_exact + (log_ratio / log_max * (num_buckets - max_exact) as f32) as i64;
            bucket += large.min(num_buckets - 1);
        }
        bucket as u32
    }

    /// Bias `(n_heads, queries, keys)` for query positions `q0..q0+nq` over keys `0..nk`.
    fn bias(
        &self,
        q0: usize,
        nq: usize,
        nk: usize,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let buckets: Vec<u32> = (q0..q0 + nq)
            .flat_map(|i| (0..nk).map(move |j| self.bucket(j as i64 - i as i64)))
            .collect();
        let ids = Tensor::from_vec(buckets, nq * nk, device)?;
        let b = self.embedding.forward(&ids)?; // (nq*nk, heads)
        let heads = b.dim(1)?;
        b.reshape((nq, nk, heads))?.permute((2, 0, 1))?.contiguous()
    }

    /// The bias for [`t5kernels::attention_biased`], queries `q0..q0+nq` over keys `0..nk`.
    fn table(&self, q0: usize, nq: usize, nk: usize) -> Vec<f32> {
        t5kernels::relative_bias_table(&self.embedding_f32, self.n_heads, q0, nq, nk, |rel| {
            self.bucket(rel) as usize
        })
    }
}

/// The decoder's state during generation.
pub struct DecodeState {
    layers: DecodeLayers,
    steps: usize,
}

enum DecodeLayers {
    /// candle's tensors.
    Tensors {
        /// Self-attention keys and values so far, per layer `(n_heads, steps, d_kv)`.
        self_kv: Vec<Option<(Tensor, Tensor)>>,
        /// Cross-attention keys and values of the encoder output, per layer.
        cross_kv: Vec<(Tensor, Tensor)>,
    },
    /// f32 rows for the slice kernels, per layer.
    Slices {
        layers: Vec<SliceLayer>,
        /// Rows of the encoder output.
        encoded: usize,
    },
}

/// One decoder layer's keys and values as rows `(positions, n_heads · d_kv)`, the way
/// [`t5kernels::attention_biased`] reads them: the self-attention's grow by one row a step.
struct SliceLayer {
    keys: Vec<f32>,
    values: Vec<f32>,
    cross_keys: Vec<f32>,
    cross_values: Vec<f32>,
}

#[derive(Debug, Clone)]
pub struct T5Net {
    shared: Embedding,
    encoder: Vec<EncoderBlock>,
    encoder_bias: PositionBias,
    encoder_norm: RmsNorm,
    decoder: Vec<DecoderBlock>,
    decoder_bias: PositionBias,
    decoder_norm: RmsNorm,
    /// `[vocab, d_model]`.
    lm_head: Weight,
    /// Applied to the decoder output before `lm_head` (1/sqrt(d_model) when tied).
    head_scale: f64,
    /// Whether the encoder runs on quill's slice kernels: f32 activations, every linear
    /// layer a CPU matrix.
    slice_encoder: bool,
    /// Whether the decoder does, the output projection included.
    slice_decoder: bool,
    device: Device,
}

impl T5Net {
    /// Loads the weights, converting the linear layers and the output projection to `format`.
    pub fn load(vb: VarBuilder, cfg: &T5Config, format: WeightFormat) -> candle_core::Result<Self> {
        let shared_name = if vb.contains_tensor("shared.weight") {
            "shared"
        } else {
            "encoder.embed_tokens"
        };
        let shared = Embedding::new(
            vb.pp(shared_name)
                .get((cfg.vocab_size, cfg.d_model), "weight")?,
            cfg.d_model,
        );
        let eps = cfg.layer_norm_epsilon;
        let bias = |vb: VarBuilder, bidirectional| -> candle_core::Result<PositionBias> {
            let w = vb.get(
                (cfg.relative_attention_num_buckets, cfg.num_heads),
                "relative_attention_bias.weight",
            )?;
            Ok(PositionBias {
                embedding_f32: w.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?,
                n_heads: cfg.num_heads,
                embedding: Embedding::new(w, cfg.num_heads),
                bidirectional,
                num_buckets: cfg.relative_attention_num_buckets,
                max_distance: cfg.relative_attention_max_distance,
            })
        };
        let enc = vb.pp("encoder");
        let mut encoder = Vec::with_capacity(cfg.num_layers);
        for i in 0..cfg.num_layers {
            let b = enc.pp(format!("block.{i}"));
            encoder.push(EncoderBlock {
                attn_norm: RmsNorm::load(b.pp("layer.0.layer_norm"), cfg.d_model, eps)?,
                attn: Attention::load(b.pp("layer.0.SelfAttention"), cfg, format)?,
                ff_norm: RmsNorm::load(b.pp("layer.1.layer_norm"), cfg.d_model, eps)?,
                ff: FeedForward::load(b.pp("layer.1"), cfg, format)?,
            });
        }
        let encoder_bias = bias(enc.pp("block.0.layer.0.SelfAttention"), true)?;
        let encoder_norm = RmsNorm::load(enc.pp("final_layer_norm"), cfg.d_model, eps)?;
        let dec = vb.pp("decoder");
        let n_dec = cfg.num_decoder_layers.unwrap_or(cfg.num_layers);
        let mut decoder = Vec::with_capacity(n_dec);
        for i in 0..n_dec {
            let b = dec.pp(format!("block.{i}"));
            decoder.push(DecoderBlock {
                self_norm: RmsNorm::load(b.pp("layer.0.layer_norm"), cfg.d_model, eps)?,
                self_attn: Attention::load(b.pp("layer.0.SelfAttention"), cfg, format)?,
                cross_norm: RmsNorm::load(b.pp("layer.1.layer_norm"), cfg.d_model, eps)?,
                cross_attn: Attention::load(b.pp("layer.1.EncDecAttention"), cfg, format)?,
                ff_norm: RmsNorm::load(b.pp("layer.2.layer_norm"), cfg.d_model, eps)?,
                ff: FeedForward::load(b.pp("layer.2"), cfg, format)?,
            });
        }
        let decoder_bias = bias(dec.pp("block.0.layer.0.SelfAttention"), false)?;
        let decoder_norm = RmsNorm::load(dec.pp("final_layer_norm"), cfg.d_model, eps)?;
        let (lm_head, head_scale) =
            if cfg.tie_word_embeddings || !vb.contains_tensor("lm_head.weight") {
                (
                    shared.embeddings().clone(),
                    1.0 / (cfg.d_model as f64).sqrt(),
                )
            } else {
                (
                    vb.get((cfg.vocab_size, cfg.d_model), "lm_head.weight")?,
                    1.0,
                )
            };
        let lm_head = Weight::new(lm_head, format)?;
        let slice_encoder = shared.embeddings().dtype() == DType::F32
            && encoder.iter().all(|b| {
                [&b.attn.q, &b.attn.k, &b.attn.v, &b.attn.o]
                    .into_iter()
                    .chain(b.ff.linears())
                    .all(|l| l.matrix().is_some())
            });
        let slice_decoder = shared.embeddings().dtype() == DType::F32
            && matches!(lm_head, Weight::Cpu(_))
            && decoder.iter().all(|b| {
                [&b.self_attn, &b.cross_attn]
                    .into_iter()
                    .flat_map(|a| [&a.q, &a.k, &a.v, &a.o])
                    .chain(b.ff.linears())
                    .all(|l| l.matrix().is_some())
            });
        Ok(Self {
            shared,
            encoder,
            encoder_bias,
            encoder_norm,
            decoder,
            decoder_bias,
            decoder_norm,
            lm_head,
            head_scale,
            slice_encoder,
            slice_decoder,
            device: vb.device().clone(),
        })
    }

    /// The encoder's output `(tokens, d_model)` for `ids` `(tokens,)`.
    pub fn encode(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        if self.slice_encoder {
            self.encode_slices(ids)
        } else {
            self.encode_tensors(ids)
        }
    }

    /// [`T5Net::encode`] on quill's slice kernels: the activations stay one `(tokens,
    /// d_model)` f32 buffer, the position bias is one table per head over relative positions
    /// (not a `(heads, tokens, tokens)` tensor), and attention reads the heads where the
    /// linear layers wrote them.
    fn encode_slices(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        let t = ids.dim(0)?;
        let embedded = self.shared.forward(ids)?;
        let d_model = embedded.dim(1)?;
        let mut x: Vec<f32> = embedded.flatten_all()?.to_vec1()?;
        let bias = self.encoder_bias.table(0, t, t);
        for block in &self.encoder {
            let a = &block.attn;
            let h = block.attn_norm.rows(&x);
            let (q, k, v) = (a.q.rows(&h, t)?, a.k.rows(&h, t)?, a.v.rows(&h, t)?);
            let y = t5kernels::attention_biased(&q, &k, &v, t, t, a.n_heads, a.d_kv, Some(&bias));
            t5kernels::add_in_place(&mut x, &a.o.rows(&y, t)?);
            let h = block.ff_norm.rows(&x);
            t5kernels::add_in_place(&mut x, &block.ff.rows(&h, t)?);
        }
        Tensor::from_vec(self.encoder_norm.rows(&x), (t, d_model), &self.device)
    }

    /// [`T5Net::encode`] on candle's ops (other devices and dtypes).
    fn encode_tensors(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        let t = ids.dim(0)?;
        let mut x = self.shared.forward(ids)?;
        let bias = self
            .encoder_bias
            .bias(0, t, t, &self.device)?
            .to_dtype(x.dtype())?;
        for block in &self.encoder {
            let h = block.attn_norm.forward(&x)?;
            let k = block.attn.heads(&block.attn.k.forward(&h)?)?;
            let v = block.attn.heads(&block.attn.v.forward(&h)?)?;
            x = (&x + block.attn.attend(&h, &k, &v, Some(&bias))?)?;
            let h = block.ff_norm.forward(&x)?;
            x = (&x + block.ff.forward(&h)?)?;
        }
        self.encoder_norm.forward(&x)
    }

    /// A fresh decoding state over an encoder output.
    pub fn start_decoding(&self, encoded: &Tensor) -> candle_core::Result<DecodeState> {
        if self.slice_decoder {
            self.start_decoding_slices(encoded)
        } else {
            self.start_decoding_tensors(encoded)
        }
    }

    /// A state for [`T5Net::decode_step`] on quill's slice kernels.
    fn start_decoding_slices(&self, encoded: &Tensor) -> candle_core::Result<DecodeState> {
        let rows = encoded.dim(0)?;
        let enc: Vec<f32> = encoded.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        let layers = self
            .decoder
            .iter()
            .map(|b| {
                Ok(SliceLayer {
                    keys: Vec::new(),
                    values: Vec::new(),
                    cross_keys: b.cross_attn.k.rows(&enc, rows)?,
                    cross_values: b.cross_attn.v.rows(&enc, rows)?,
                })
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(DecodeState {
            layers: DecodeLayers::Slices {
                layers,
                encoded: rows,
            },
            steps: 0,
        })
    }

    /// A state for [`T5Net::decode_step`] on candle's ops.
    fn start_decoding_tensors(&self, encoded: &Tensor) -> candle_core::Result<DecodeState> {
        let cross_kv = self
            .decoder
            .iter()
            .map(|b| {
                let k = b.cross_attn.heads(&b.cross_attn.k.forward(encoded)?)?;
                let v = b.cross_attn.heads(&b.cross_attn.v.forward(encoded)?)?;
                Ok((k, v))
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(DecodeState {
            layers: DecodeLayers::Tensors {
                self_kv: vec![None; self.decoder.len()],
                cross_kv,
            },
            steps: 0,
        })
    }

    /// Feeds one decoder token; returns the next token's logits `(vocab,)` in f32.
    pub fn decode_step(&self, id: u32, state: &mut DecodeState) -> candle_core::Result<Vec<f32>> {
        let pos = state.steps;
        let logits = match &mut state.layers {
            DecodeLayers::Tensors { self_kv, cross_kv } => {
                self.decode_step_tensors(id, pos, self_kv, cross_kv)?
            }
            DecodeLayers::Slices { layers, encoded } => {
                self.decode_step_slices(id, pos, layers, *encoded)?
            }
        };
        state.steps += 1;
        Ok(logits)
    }

    /// [`T5Net::decode_step`] on quill's slice kernels: one row of activations, keys and
    /// values appended to the layer's rows, attention read in place.
    fn decode_step_slices(
        &self,
        id: u32,
        pos: usize,
        layers: &mut [SliceLayer],
        encoded: usize,
    ) -> candle_core::Result<Vec<f32>> {
        let embedded = self.shared.forward(&Tensor::new(&[id], &self.device)?)?;
        let mut x: Vec<f32> = embedded.flatten_all()?.to_vec1()?;
        let bias = self.decoder_bias.table(pos, 1, pos + 1);
        for (block, layer) in self.decoder.iter().zip(layers) {
            let a = &block.self_attn;
            let h = block.self_norm.rows(&x);
            let q = a.q.rows(&h, 1)?;
            layer.keys.extend(a.k.rows(&h, 1)?);
            layer.values.extend(a.v.rows(&h, 1)?);
            let y = t5kernels::attention_biased(
                &q,
                &layer.keys,
                &layer.values,
                1,
                pos + 1,
                a.n_heads,
                a.d_kv,
                Some(&bias),
            );
            t5kernels::add_in_place(&mut x, &a.o.rows(&y, 1)?);
            let c = &block.cross_attn;
            let h = block.cross_norm.rows(&x);
            let y = t5kernels::attention_biased(
                &c.q.rows(&h, 1)?,
                &layer.cross_keys,
                &layer.cross_values,
                1,
                encoded,
                c.n_heads,
                c.d_kv,
                None,
            );
            t5kernels::add_in_place(&mut x, &c.o.rows(&y, 1)?);
            let h = block.ff_norm.rows(&x);
            t5kernels::add_in_place(&mut x, &block.ff.rows(&h, 1)?);
        }
        let mut x = self.decoder_norm.rows(&x);
        let scale = self.head_scale as f32;
        for v in &mut x {
            *v *= scale;
        }
        match &self.lm_head {
            Weight::Cpu(m) => Ok(m.matmul_t(&x, 1)),
            _ => candle_core::bail!("the slice kernels need the output projection on the CPU"),
        }
    }

    /// [`T5Net::decode_step`] on candle's ops.
    fn decode_step_tensors(
        &self,
        id: u32,
        pos: usize,
        self_kv: &mut [Option<(Tensor, Tensor)>],
        cross_kv: &[(Tensor, Tensor)],
    ) -> candle_core::Result<Vec<f32>> {
        let mut x = self.shared.forward(&Tensor::new(&[id], &self.device)?)?;
        let bias = self
            .decoder_bias
            .bias(pos, 1, pos + 1, &self.device)?
            .to_dtype(x.dtype())?;
        for (layer, block) in self.decoder.iter().enumerate() {
            let h = block.self_norm.forward(&x)?;
            let k = block.self_attn.heads(&block.self_attn.k.forward(&h)?)?;
            let v = block.self_attn.heads(&block.self_attn.v.forward(&h)?)?;
            let (k, v) = match self_kv[layer].take() {
                Some((pk, pv)) => (Tensor::cat(&[&pk, &k], 1)?, Tensor::cat(&[&pv, &v], 1)?),
                None => (k, v),
            };
            x = (&x + block.self_attn.attend(&h, &k, &v, Some(&bias))?)?;
            self_kv[layer] = Some((k, v));
            let h = block.cross_norm.forward(&x)?;
            let (ck, cv) = &cross_kv[layer];
            x = (&x + block.cross_attn.attend(&h, ck, cv, None)?)?;
            let h = block.ff_norm.forward(&x)?;
            x = (&x + block.ff.forward(&h)?)?;
        }
        let x = (self.decoder_norm.forward(&x)? * self.head_scale)?;
        let logits = self.lm_head.matmul_t(&x)?;
        logits.squeeze(0)?.to_dtype(DType::F32)?.to_vec1()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bias(bidirectional: bool) -> PositionBias {
        PositionBias {
            embedding: Embedding::new(Tensor::zeros((32, 1), DType::F32, &Device::Cpu).unwrap(), 1),
            embedding_f32: vec![0.0; 32],
            n_heads: 1,
            bidirectional,
            num_buckets: 32,
            max_distance: 128,
        }
    }

    #[test]
    fn buckets_follow_transformers() {
        // Values of transformers' _relative_position_bucket(num_buckets=32, max_distance=128).
        let enc = bias(true);
        let want_enc = [
            (0, 0),
            (1, 17),
            (-1, 1),
            (7, 23),
            (8, 24),
            (-8, 8),
            (12, 25),
            (-20, 10),
            (100, 31),
            (-1000, 15),
        ];
        for (rel, b) in want_enc {
            assert_eq!(enc.bucket(rel), b, "bidirectional {rel}");
        }
        let dec = bias(false);
        let want_dec = [
            (0, 0),
            (3, 0),
            (-3, 3),
            (-15, 15),
            (-16, 16),
            (-20, 17),
            (-40, 23),
            (-127, 31),
            (-1000, 31),
        ];
        for (rel, b) in want_dec {
            assert_eq!(dec.bucket(rel), b, "unidirectional {rel}");
        }
    }

    /// A random T5 of `feed_forward_proj` `ff`: 2 layers, 4 heads of 8, d_model 32, d_ff 64.
    fn random_net(ff: &str, format: WeightFormat) -> T5Net {
        let dev = Device::Cpu;
        let (d, inner, d_ff, heads, vocab) = (32, 32, 64, 4, 50);
        let cfg: T5Config = serde_json::from_value(serde_json::json!({
            "vocab_size": vocab, "d_model": d, "d_kv": 8, "d_ff": d_ff, "num_layers": 2,
            "num_heads": heads, "feed_forward_proj": ff,
        }))
        .unwrap();
        // Seeded weights (uniform, of standard deviation `std`): the same net every run, so
        // that the q8_0 bounds, where an activation's rounding can go either way, cannot
        // pass on one draw and fail on another.
        let seed = std::cell::Cell::new(0u64);
        let rnd = |shape: &[usize], std: f32| {
            seed.set(seed.get() + 1);
            let n = shape.iter().product();
            let v = crate::engine::cpu::testutil::random(n, seed.get());
            let v: Vec<f32> = v.into_iter().map(|x| x * std * 3f32.sqrt()).collect();
            Tensor::from_vec(v, shape, &dev).unwrap()
        };
        let mut w = std::collections::HashMap::new();
        w.insert("shared.weight".to_string(), rnd(&[vocab, d], 1.0));
        for stack in ["encoder", "decoder"] {
            for i in 0..2 {
                let b = format!("{stack}.block.{i}");
                let attns: &[&str] = if stack == "encoder" {
                    &["layer.0.SelfAttention"]
                } else {
                    &["layer.0.SelfAttention", "layer.1.EncDecAttention"]
                };
                for (l, a) in attns.iter().enumerate() {
                    for k in ["q", "k", "v"] {
                        w.insert(format!("{b}.{a}.{k}.weight"), rnd(&[inner, d], 0.5));
                    }
                    w.insert(format!("{b}.{a}.o.weight"), rnd(&[d, inner], 0.3));
                    w.insert(format!("{b}.layer.{l}.layer_norm.weight"), rnd(&[d], 1.0));
                }
                let l = attns.len();
                let dense = format!("{b}.layer.{l}.DenseReluDense");
                let wis: &[&str] = if ff.starts_with("gated") {
                    &["wi_0", "wi_1"]
                } else {
                    &["wi"]
                };
                for wi in wis {
                    w.insert(format!("{dense}.{wi}.weight"), rnd(&[d_ff, d], 0.4));
                }
                w.insert(format!("{dense}.wo.weight"), rnd(&[d, d_ff], 0.3));
                w.insert(format!("{b}.layer.{l}.layer_norm.weight"), rnd(&[d], 1.0));
            }
            w.insert(
                format!("{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"),
                rnd(&[32, heads], 1.0),
            );
            w.insert(format!("{stack}.final_layer_norm.weight"), rnd(&[d], 1.0));
        }
        let vb = VarBuilder::from_tensors(w, DType::F32, &dev);
        T5Net::load(vb, &cfg, format).unwrap()
    }

    #[test]
    fn the_slice_encoder_equals_the_tensor_one() {
        // Inputs past the exact buckets (16) and the attention kernel's 48-query blocks.
        let ids: Vec<u32> = (0..150u32).map(|i| (i * 17 + 3) % 50).collect();
        let ids = Tensor::new(ids.as_slice(), &Device::Cpu).unwrap();
        for ff in ["relu", "gated-gelu", "gated-silu", "gelu"] {
            for format in ["f32", "q8_0"] {
                let net = random_net(ff, crate::models::parse_format(format).unwrap());
                assert!(net.slice_encoder, "{ff} {format}");
                let fast = net.encode_slices(&ids).unwrap();
                let plain = net.encode_tensors(&ids).unwrap();
                let diff: f32 = (fast - &plain)
                    .unwrap()
                    .abs()
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .max(0)
                    .unwrap()
                    .to_scalar()
                    .unwrap();
                let largest: f32 = plain
                    .abs()
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .max(0)
                    .unwrap()
                    .to_scalar()
                    .unwrap();
                // f32 sums in another order; q8_0 also quantizes the activations of its
                // decoding products, where a rounding can go the other way.
                let tol = if format == "f32" { 1e-4 } else { 1e-3 };
                assert!(diff < tol * largest, "{ff} {format}: {diff} of {largest}");
                // Not a trivial output.
                let spread: f32 = plain
                    .abs()
                    .unwrap()
                    .mean_all()
                    .unwrap()
                    .to_scalar()
                    .unwrap();
                assert!(spread > 0.1, "{ff} {format}: {spread}");
            }
        }
    }

    #[test]
    fn slice_decoding_equals_tensor_decoding() {
        let ids: Vec<u32> = (0..70u32).map(|i| (i * 13 + 5) % 50).collect();
        let ids = Tensor::new(ids.as_slice(), &Device::Cpu).unwrap();
        for ff in ["relu", "gated-gelu"] {
            for format in ["f32", "q8_0"] {
                let net = random_net(ff, crate::models::parse_format(format).unwrap());
                assert!(net.slice_decoder, "{ff} {format}");
                let encoded = net.encode(&ids).unwrap();
                let mut fast = net.start_decoding_slices(&encoded).unwrap();
                let mut plain = net.start_decoding_tensors(&encoded).unwrap();
                // Past the 16 exact buckets of the decoder's position bias.
                for step in 0..24u32 {
                    let id = (step * 7 + 2) % 50;
                    let got = net.decode_step(id, &mut fast).unwrap();
                    let want = net.decode_step(id, &mut plain).unwrap();
                    let largest = want.iter().fold(0f32, |m, v| m.max(v.abs()));
                    let diff = crate::engine::cpu::testutil::max_diff(&got, &want);
                    // q8_0 quantizes the activations, where a rounding can go either way, and
                    // the cached keys and values carry such differences on from step to step.
                    let tol = if format == "f32" { 1e-4 } else { 5e-2 };
                    assert!(diff < tol * largest, "{ff} {format} step {step}: {diff}");
                    assert!(largest > 0.1, "{ff} {format} step {step}: {largest}");
                }
                assert_eq!((fast.steps, plain.steps), (24, 24));
            }
        }
    }
}
