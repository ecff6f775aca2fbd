//! llama.cpp tensor names <-> Hugging Face Llama names, and the q/k row permutation.
//!
//! Names: gguf-py `gguf/tensor_mapping.py` / `gguf/constants.py` (`MODEL_TENSOR` names for
//! `LLAMA`). Permutation: llama.cpp's `convert_hf_to_gguf.py` (`LlamaModel.permute`) reorders the
//! rows of `q_proj` (with the query head count) and `k_proj` (with the key/value head count) so that
//! the two halves of each head's rotary pair are interleaved, the layout of llama.cpp's "normal"
//! RoPE: viewing the rows as `[n_head, 2, head_dim / 2]`, it swaps the last two axes. So GGUF row
//! `h * head_dim + 2 * i + j` holds Hugging Face row `h * head_dim + j * head_dim / 2 + i`.

/// The per-layer names: `(llama.cpp suffix after "blk.N.", Hugging Face suffix after "model.layers.N.")`.
const LAYER_NAMES: &[(&str, &str)] = &[
    ("attn_q.weight", "self_attn.q_proj.weight"),
    ("attn_k.weight", "self_attn.k_proj.weight"),
    ("attn_v.weight", "self_attn.v_proj.weight"),
    ("attn_output.weight", "self_attn.o_proj.weight"),
    ("ffn_gate.weight", "mlp.gate_proj.weight"),
    ("ffn_up.weight", "mlp.up_proj.weight"),
    ("ffn_down.weight", "mlp.down_proj.weight"),
    ("attn_norm.weight", "input_layernorm.weight"),
    ("ffn_norm.weight", "post_attention_layernorm.weight"),
];

/// The global names.
const GLOBAL_NAMES: &[(&str, &str)] = &[
    ("token_embd.weight", "model.embed_tokens.weight"),
    ("output_norm.weight", "model.norm.weight"),
    ("output.weight", "lm_head.weight"),
];

/// The Hugging Face name of a llama.cpp Llama tensor, or `None` for a name outside the Llama set.
pub fn hf_name(gguf: &str) -> Option<String> {
    if let Some(&(_, hf)) = GLOBAL_NAMES.iter().find(|(g, _)| *g == gguf) {
        return Some(hf.to_string());
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (layer, suffix) = rest.split_once('.')?;
    let layer = parse_layer(layer)?;
    let &(_, hf) = LAYER_NAMES.iter().find(|(g, _)| *g == suffix)?;
    Some(format!("model.layers.{layer}.{hf}"))
}

/// The llama.cpp name of a Hugging Face Llama tensor (the inverse of [`hf_name`]).
pub fn gguf_name(hf: &str) -> Option<String> {
    if let Some(&(g, _)) = GLOBAL_NAMES.iter().find(|(_, h)| *h == hf) {
        return Some(g.to_string());
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, suffix) = rest.split_once('.')?;
    let layer = parse_layer(layer)?;
    let &(g, _) = LAYER_NAMES.iter().find(|(_, h)| *h == suffix)?;
    Some(format!("blk.{layer}.{g}"))
}

/// A decimal layer index without sign or leading zeros (so each name has one spelling).
fn parse_layer(s: &str) -> Option<usize> {
    let ok =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    if ok {
        s.parse().ok()
    } else {
        None
    }
}

/// Which head count permutes a tensor's rows, if any: `q_proj` uses the query heads, `k_proj` the
/// key/value heads.
pub fn permuted_heads(hf: &str, n_head: usize, n_head_kv: usize) -> Option<usize> {
    if hf.ends_with(".self_attn.q_proj.weight") {
        Some(n_head)
    } else if hf.ends_with(".self_attn.k_proj.weight") {
        Some(n_head_kv)
    } else {
        None
    }
}

/// Undoes the converter's permutation: `data` is `[rows, cols]` row-major in GGUF row order; the
/// result is in Hugging Face row order. `None` when `rows` is not a multiple of `2 * n_head` or the
/// data is not `rows * cols` long.
pub fn unpermute_rows(data: &[f32], rows: usize, cols: usize, n_head: usize) -> Option<Vec<f32>> {
    reorder(data, rows, cols, n_head, false)
}

/// Applies the converter's permutation (Hugging Face row order -> GGUF row order); the inverse of
/// [`unpermute_rows`], for writers and tests.
pub fn permute_rows(data: &[f32], rows: usize, cols: usize, n_head: usize) -> Option<Vec<f32>> {
    reorder(data, rows, cols, n_head, true)
}

fn reorder(
    data: &[f32],
    rows: usize,
    cols: usize,
    n_head: usize,
    forward: bool,
) -> Option<Vec<f32>> {
    if n_head == 0 || rows % (2 * n_head) != 0 || rows.checked_mul(cols)? != data.len() {
        return None;
    }
    let head_dim = rows / n_head;
    let half = head_dim / 2;
    let mut out = vec![0f32; data.len()];
    for h in 0..n_head {
        for i in 0..half {
            for j in 0..2 {
                let hf_row = h * head_dim + j * half + i;
                let gguf_row = h * head_dim + 2 * i + j;
                let (dst, src) = if forward {
                    (gguf_row, hf_row)
                } else {
                    (hf_row, gguf_row)
                };
                out[dst * cols..(dst + 1) * cols]
                    .copy_from_slice(&data[src * cols..(src + 1) * cols]);
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for g in [
            "token_embd.weight",
            "output.weight",
            "output_norm.weight",
            "blk.0.attn_q.weight",
            "blk.29.ffn_down.weight",
            "blk.7.ffn_norm.weight",
        ] {
            let h = hf_name(g).unwrap();
            assert_eq!(gguf_name(&h).as_deref(), Some(g));
        }
        assert_eq!(
            hf_name("blk.3.attn_output.weight").as_deref(),
            Some("model.layers.3.self_attn.o_proj.weight")
        );
        for bad in [
            "blk.x.attn_q.weight",
            "blk.01.attn_q.weight",
            "blk.1.attn_qkv.weight",
            "rope_freqs.weight",
            "blk..attn_q.weight",
        ] {
            assert_eq!(hf_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn permutation_interleaves_rotary_halves() {
        // One head of width 4, one column: HF rows [a0 a1 | b0 b1] become [a0 b0 a1 b1].
        let hf = [0.0, 1.0, 2.0, 3.0];
        assert_eq!(
            permute_rows(&hf, 4, 1, 1).unwrap(),
            vec![0.0, 2.0, 1.0, 3.0]
        );
        assert_eq!(
            unpermute_rows(&[0.0, 2.0, 1.0, 3.0], 4, 1, 1).unwrap(),
            hf.to_vec()
        );
        assert!(permute_rows(&hf, 4, 1, 3).is_none());
    }
}
