//! Helpers shared by the model tests: tiny configurations, writing Hugging Face and PEFT folders,
//! and a naive float64 reference forward written independently of `src/model/llama.rs`.
#![allow(dead_code)]

use ascend_cold::model::adapter::{Adapter, LoraPair};
use ascend_cold::model::llama::random_model_files;
use ascend_cold::model::weights::HostTensor;
use ascend_cold::model::{LlamaConfig, LoraTarget, ModelFiles, RopeScaling};
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// A tiny model: hidden 32, 2 layers, 4 heads of 8, `kv_heads` key/value heads, vocab 40.
pub fn tiny_config(kv_heads: usize, tied: bool, rope_scaling: RopeScaling) -> LlamaConfig {
    LlamaConfig {
        vocab_size: 40,
        hidden_size: 32,
        intermediate_size: 48,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: kv_heads,
        head_dim: 8,
        rms_norm_eps: 1e-5,
        rope_theta: 10000.0,
        rope_scaling,
        max_position_embeddings: 64,
        tie_word_embeddings: tied,
        bos_token_id: Some(0),
        eos_token_ids: vec![1],
    }
}

pub fn tiny_files(kv_heads: usize, tied: bool, seed: u64) -> ModelFiles {
    random_model_files(&tiny_config(kv_heads, tied, RopeScaling::None), seed)
}

/// Deterministic pseudo-random values in [-scale, scale).
pub fn values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

/// An in-memory adapter of rank `r` on `targets` (every layer).
pub fn make_adapter(
    config: &LlamaConfig,
    r: usize,
    alpha: f32,
    rslora: bool,
    targets: &[LoraTarget],
    seed: u64,
) -> Adapter {
    let dir = tempfile::tempdir().unwrap();
    let mut tensors = BTreeMap::new();
    for l in 0..config.num_hidden_layers {
        for (j, &t) in targets.iter().enumerate() {
            let (inf, outf) = t.dims(config);
            let s = seed * 1000 + (l * 10 + j) as u64;
            tensors.insert(
                format!(
                    "base_model.model.model.layers.{l}.{}.lora_A.weight",
                    t.module_path()
                ),
                (vec![r, inf], values(r * inf, s, (1.0 / inf as f32).sqrt())),
            );
            tensors.insert(
                format!(
                    "base_model.model.model.layers.{l}.{}.lora_B.weight",
                    t.module_path()
                ),
                (vec![outf, r], values(outf * r, s + 500, 0.3)),
            );
        }
    }
    let names: Vec<&str> = targets.iter().map(|t| t.hf_name()).collect();
    write_adapter(
        dir.path(),
        &serde_json::json!({"peft_type": "LORA", "r": r, "lora_alpha": alpha, "use_rslora": rslora,
            "target_modules": names, "fan_in_fan_out": false}),
        &tensors,
        Dtype::F32,
    );
    Adapter::load(dir.path(), config).unwrap()
}

fn encode(dtype: Dtype, data: &[f32]) -> Vec<u8> {
    match dtype {
        Dtype::F32 => data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        Dtype::F16 => data
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect(),
        Dtype::BF16 => data
            .iter()
            .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
            .collect(),
        _ => unreachable!(),
    }
}

/// Serialise tensors `name -> (shape, values)` as a safetensors file in `dtype`.
pub fn safetensors_bytes(
    tensors: &BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    dtype: Dtype,
) -> Vec<u8> {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, (s, d))| (n.clone(), s.clone(), encode(dtype, d)))
        .collect();
    let views = bytes
        .iter()
        .map(|(n, s, b)| (n.clone(), TensorView::new(dtype, s.clone(), b).unwrap()));
    safetensors::serialize(views, None).unwrap()
}

pub fn write_adapter(
    dir: &Path,
    config: &serde_json::Value,
    tensors: &BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    dtype: Dtype,
) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("adapter_config.json"),
        serde_json::to_vec_pretty(config).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.join("adapter_model.safetensors"),
        safetensors_bytes(tensors, dtype),
    )
    .unwrap();
}

/// config.json as transformers 4 writes it.
pub fn config_json(c: &LlamaConfig) -> serde_json::Value {
    let mut j = serde_json::json!({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
        "vocab_size": c.vocab_size, "hidden_size": c.hidden_size, "intermediate_size": c.intermediate_size,
        "num_hidden_layers": c.num_hidden_layers, "num_attention_heads": c.num_attention_heads,
        "num_key_value_heads": c.num_key_value_heads, "head_dim": c.head_dim, "rms_norm_eps": c.rms_norm_eps,
        "rope_theta": c.rope_theta, "max_position_embeddings": c.max_position_embeddings,
        "tie_word_embeddings": c.tie_word_embeddings, "bos_token_id": c.bos_token_id,
        "eos_token_id": c.eos_token_ids,
    });
    if let RopeScaling::Linear { factor } = c.rope_scaling {
        j["rope_scaling"] = serde_json::json!({"rope_type": "linear", "factor": factor});
    }
    j
}

/// Write `files` as a Hugging Face folder (config.json + model.safetensors in `dtype`).
pub fn write_hf(dir: &Path, files: &ModelFiles, dtype: Dtype) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_vec_pretty(&config_json(&files.config)).unwrap(),
    )
    .unwrap();
    let tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)> = files
        .tensors
        .iter()
        .map(|(n, t)| (n.clone(), (t.shape.clone(), t.data.clone())))
        .collect();
    std::fs::write(
        dir.join("model.safetensors"),
        safetensors_bytes(&tensors, dtype),
    )
    .unwrap();
}

/// `files` with `scaling * B @ A` of `adapter` added into every targeted weight (a merged model).
pub fn merge(files: &ModelFiles, adapter: &Adapter) -> ModelFiles {
    let mut tensors: HashMap<String, HostTensor> = files.tensors.clone();
    let s = adapter.config.scaling();
    let r = adapter.config.r;
    for (&(l, t), LoraPair { a, b }) in &adapter.modules {
        let w = tensors
            .get_mut(&format!("model.layers.{l}.{}.weight", t.module_path()))
            .unwrap();
        let (outf, inf) = (w.shape[0], w.shape[1]);
        for o in 0..outf {
            for i in 0..inf {
                let d: f64 = (0..r)
                    .map(|k| b.data[o * r + k] as f64 * a.data[k * inf + i] as f64)
                    .sum();
                w.data[o * inf + i] += (s as f64 * d) as f32;
            }
        }
    }
    ModelFiles {
        config: files.config.clone(),
        tensors,
        tokenizer: None,
        source: "merged".into(),
    }
}

/// Logits after the last of `tokens`, computed in float64 over the whole sequence without a cache,
/// straight from the definitions (independent of the crate's forward).
pub fn reference_logits(files: &ModelFiles, tokens: &[u32]) -> Vec<f64> {
    let c = &files.config;
    let w = |n: &str| -> Vec<f64> { files.tensors[n].data.iter().map(|&v| v as f64).collect() };
    let (h, hd, nh, nkv) = (
        c.hidden_size,
        c.head_dim,
        c.num_attention_heads,
        c.num_key_value_heads,
    );
    let n = tokens.len();
    let emb = w("model.embed_tokens.weight");
    let mut x: Vec<Vec<f64>> = tokens
        .iter()
        .map(|&t| emb[t as usize * h..(t as usize + 1) * h].to_vec())
        .collect();
    let linear = |m: &[f64], v: &[f64]| -> Vec<f64> {
        let cols = v.len();
        m.chunks(cols)
            .map(|row| row.iter().zip(v).map(|(a, b)| a * b).sum())
            .collect()
    };
    let norm = |v: &[f64], g: &[f64]| -> Vec<f64> {
        let ms = v.iter().map(|a| a * a).sum::<f64>() / v.len() as f64;
        let inv = 1.0 / (ms + c.rms_norm_eps as f64).sqrt();
        v.iter().zip(g).map(|(a, b)| a * inv * b).collect()
    };
    let freq = |i: usize| -> f64 {
        let f = 1.0 / (c.rope_theta as f64).powf(2.0 * i as f64 / hd as f64);
        match c.rope_scaling {
            RopeScaling::Linear { factor } => f / factor as f64,
            _ => f,
        }
    };
    let rope = |v: &mut [f64], p: usize| {
        for head in v.chunks_mut(hd) {
            let half = hd / 2;
            for i in 0..half {
                let (s, co) = (p as f64 * freq(i)).sin_cos();
                let (a, b) = (head[i], head[i + half]);
                head[i] = a * co - b * s;
                head[i + half] = b * co + a * s;
            }
        }
    };
    for l in 0..c.num_hidden_layers {
        let p = format!("model.layers.{l}");
        let (wq, wk, wv, wo) = (
            w(&format!("{p}.self_attn.q_proj.weight")),
            w(&format!("{p}.self_attn.k_proj.weight")),
            w(&format!("{p}.self_attn.v_proj.weight")),
            w(&format!("{p}.self_attn.o_proj.weight")),
        );
        let g1 = w(&format!("{p}.input_layernorm.weight"));
        let mut qs = vec![];
        let mut ks = vec![];
        let mut vs = vec![];
        for (t, xt) in x.iter().enumerate() {
            let nx = norm(xt, &g1);
            let mut q = linear(&wq, &nx);
            let mut k = linear(&wk, &nx);
            rope(&mut q, t);
            rope(&mut k, t);
            qs.push(q);
            ks.push(k);
            vs.push(linear(&wv, &nx));
        }
        for t in 0..n {
            let mut attn = vec![0.0; nh * hd];
            for head in 0..nh {
                let kvh = head * nkv / nh;
                let q = &qs[t][head * hd..(head + 1) * hd];
                let scores: Vec<f64> = (0..=t)
                    .map(|j| {
                        q.iter()
                            .zip(&ks[j][kvh * hd..(kvh + 1) * hd])
                            .map(|(a, b)| a * b)
                            .sum::<f64>()
                            / (hd as f64).sqrt()
                    })
                    .collect();
                let m = scores.iter().cloned().fold(f64::MIN, f64::max);
                let e: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
                let z: f64 = e.iter().sum();
                for j in 0..=t {
                    for d in 0..hd {
                        attn[head * hd + d] += e[j] / z * vs[j][kvh * hd + d];
                    }
                }
            }
            let o = linear(&wo, &attn);
            for (a, b) in x[t].iter_mut().zip(o) {
                *a += b;
            }
        }
        let g2 = w(&format!("{p}.post_attention_layernorm.weight"));
        let (wg, wu, wd) = (
            w(&format!("{p}.mlp.gate_proj.weight")),
            w(&format!("{p}.mlp.up_proj.weight")),
            w(&format!("{p}.mlp.down_proj.weight")),
        );
        for xt in x.iter_mut() {
            let nx = norm(xt, &g2);
            let g = linear(&wg, &nx);
            let u = linear(&wu, &nx);
            let act: Vec<f64> = g
                .iter()
                .zip(&u)
                .map(|(g, u)| g / (1.0 + (-g).exp()) * u)
                .collect();
            for (a, b) in xt.iter_mut().zip(linear(&wd, &act)) {
                *a += b;
            }
        }
    }
    let last = norm(&x[n - 1], &w("model.norm.weight"));
    let head = if c.tie_word_embeddings {
        emb
    } else {
        w("lm_head.weight")
    };
    linear(&head, &last)
}

pub fn max_abs_diff(a: &[f32], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - y).abs())
        .fold(0.0, f64::max)
}
