//! A Hugging Face `tokenizers::Tokenizer` rebuilt from GGUF tokenizer metadata.
//!
//! Keys (gguf-py `gguf/constants.py`, `Keys.Tokenizer`): `tokenizer.ggml.model` (only `"gpt2"`,
//! byte-level BPE, is supported), `tokenizer.ggml.tokens` (the vocabulary, id = index, in the
//! byte-level alphabet), `tokenizer.ggml.merges` (`"left right"` in rank order),
//! `tokenizer.ggml.token_type` (gguf-py `TokenType`: 1 normal, 2 unknown, 3 control,
//! 4 user-defined, 5 unused, 6 byte), `tokenizer.ggml.pre` (which pre-tokenizer regexes the source
//! tokenizer used), `tokenizer.ggml.add_bos_token` / `add_eos_token`, `tokenizer.chat_template`.
//!
//! llama.cpp's converter (`convert_hf_to_gguf.py`, `get_vocab_base`) marks an added token CONTROL
//! when Hugging Face calls it special and USER_DEFINED otherwise; the inverse here adds both as
//! added tokens (so `<|im_start|>` is matched whole in text), special only for CONTROL.
//!
//! Pre-tokenizers, by `tokenizer.ggml.pre` (regex sets from llama.cpp `src/llama-vocab.cpp`,
//! expressed as the Hugging Face pre-tokenizers that produce the same splits):
//! - `default`, `gpt2`, `mpt`, `olmo`: byte-level with the GPT-2 regex;
//! - `smollm`, `starcoder`, `refact`, `command-r`, `codeshell`, `exaone`, `minerva`: every digit
//!   split alone, then byte-level with the GPT-2 regex (SmolLM2's `tokenizer.json` is exactly
//!   `Digits(individual_digits)` + `ByteLevel`);
//! - `llama-bpe`, `llama3`: the Llama 3 split regex, then byte-level without its own regex.

use super::reader::{invalid, GgufFile, Value};
use crate::error::Result;
use crate::model::weights::TokenizerFiles;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::processors::PostProcessorWrapper;
use tokenizers::SplitDelimiterBehavior;
use tokenizers::{AddedToken, Tokenizer};

const CONTROL: i64 = 3;
const USER_DEFINED: i64 = 4;

/// The Llama 3 pre-tokenizer split (llama.cpp `llama-vocab.cpp`, `LLAMA_VOCAB_PRE_TYPE_LLAMA3`).
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The `tokenizer.ggml.pre` values this builder knows.
pub const SUPPORTED_PRE: &[&str] = &[
    "default",
    "gpt2",
    "mpt",
    "olmo",
    "smollm",
    "starcoder",
    "refact",
    "command-r",
    "codeshell",
    "exaone",
    "minerva",
    "llama-bpe",
    "llama3",
];

/// The tokenizer and chat template, or `None` when the file has no `tokenizer.ggml.model`.
pub fn tokenizer_from_gguf(file: &GgufFile) -> Result<Option<TokenizerFiles>> {
    let bad = |key: &str, detail: String| invalid(file.path(), format!("metadata '{key}'"), detail);
    let model = match file.get("tokenizer.ggml.model") {
        None => return Ok(None),
        Some(Value::String(s)) => s.as_str(),
        Some(v) => {
            return Err(bad(
                "tokenizer.ggml.model",
                format!("expected a string, found {:?}", v.value_type()),
            ))
        }
    };
    if model != "gpt2" {
        return Err(bad(
            "tokenizer.ggml.model",
            format!("tokenizer model '{model}' is not supported (supported: gpt2, byte-level BPE)"),
        ));
    }
    let tokens = string_array(file, "tokenizer.ggml.tokens")?;
    let merges = string_array(file, "tokenizer.ggml.merges")?;
    let types = match file.get("tokenizer.ggml.token_type") {
        None => None,
        Some(v) => {
            let t = v.as_array().and_then(|a| a.to_i64_vec()).ok_or_else(|| {
                bad(
                    "tokenizer.ggml.token_type",
                    "expected an integer array".into(),
                )
            })?;
            if t.len() != tokens.len() {
                return Err(bad(
                    "tokenizer.ggml.token_type",
                    format!("{} entries for {} tokens", t.len(), tokens.len()),
                ));
            }
            Some(t)
        }
    };
    let pre = match file.get("tokenizer.ggml.pre") {
        None => "default",
        Some(Value::String(s)) => s.as_str(),
        Some(v) => {
            return Err(bad(
                "tokenizer.ggml.pre",
                format!("expected a string, found {:?}", v.value_type()),
            ))
        }
    };

    let mut vocab = Vocab::with_capacity(tokens.len());
    for (id, t) in tokens.iter().enumerate() {
        // A duplicated token string keeps its first id, as a JSON vocabulary would.
        vocab.entry(t.clone()).or_insert(id as u32);
    }
    let mut pairs = Vec::with_capacity(merges.len());
    for (i, m) in merges.iter().enumerate() {
        let (a, b) = m
            .split_once(' ')
            .filter(|(a, b)| !a.is_empty() && !b.is_empty() && !b.contains(' '))
            .ok_or_else(|| {
                bad(
                    "tokenizer.ggml.merges",
                    format!("merge {i} is {m:?}, expected two tokens separated by one space"),
                )
            })?;
        pairs.push((a.to_string(), b.to_string()));
    }
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, pairs)
        .build()
        .map_err(|e| {
            bad(
                "tokenizer.ggml.merges",
                format!("cannot build the BPE model: {e}"),
            )
        })?;

    let byte_level = ByteLevel::new(false, true, true);
    let pre_tokenizer: PreTokenizerWrapper = match pre {
        "default" | "gpt2" | "mpt" | "olmo" => byte_level.into(),
        "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" | "minerva" => {
            Sequence::new(vec![Digits::new(true).into(), byte_level.into()]).into()
        }
        "llama-bpe" | "llama3" => {
            let split = Split::new(
                SplitPattern::Regex(LLAMA3_SPLIT.to_string()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map_err(|e| {
                bad(
                    "tokenizer.ggml.pre",
                    format!("cannot compile the split regex: {e}"),
                )
            })?;
            Sequence::new(vec![split.into(), byte_level.use_regex(false).into()]).into()
        }
        other => {
            return Err(bad(
                "tokenizer.ggml.pre",
                format!(
                    "pre-tokenizer '{other}' is not supported (supported: {})",
                    SUPPORTED_PRE.join(", ")
                ),
            ))
        }
    };

    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(pre_tokenizer));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));

    if let Some(types) = &types {
        let added: Vec<AddedToken> = types
            .iter()
            .zip(tokens)
            .filter(|(t, _)| matches!(**t, CONTROL | USER_DEFINED))
            .map(|(&t, s)| AddedToken::from(s.clone(), t == CONTROL).normalized(false))
            .collect();
        // Tokens already in the vocabulary keep their ids.
        tokenizer.add_special_tokens(&added);
    }

    let flag = |k: &str| -> Result<bool> {
        match file.get(k) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(v) => Err(bad(
                k,
                format!("expected a bool, found {:?}", v.value_type()),
            )),
        }
    };
    let add_bos = flag("tokenizer.ggml.add_bos_token")?;
    let add_eos = flag("tokenizer.ggml.add_eos_token")?;
    let post: PostProcessorWrapper = if add_bos || add_eos {
        let special = |key: &str| -> Result<(String, u32)> {
            let id = file
                .get(key)
                .and_then(Value::as_u64)
                .filter(|&id| id < tokens.len() as u64)
                .ok_or_else(|| {
                    bad(
                        key,
                        "missing or out of range, but the file asks to add it".into(),
                    )
                })?;
            Ok((tokens[id as usize].clone(), id as u32))
        };
        let mut single = Vec::new();
        let mut pair = Vec::new();
        let mut specials = Vec::new();
        if add_bos {
            let (s, id) = special("tokenizer.ggml.bos_token_id")?;
            single.push(s.clone());
            pair.push(s.clone());
            specials.push((s, id));
        }
        single.push("$A".to_string());
        pair.push("$A".to_string());
        if add_eos {
            let (s, id) = special("tokenizer.ggml.eos_token_id")?;
            single.push(s.clone());
            pair.push(s.clone());
            specials.push((s, id));
        }
        pair.push("$B:1".to_string());
        let template = TemplateProcessing::builder()
            .try_single(single)
            .and_then(|b| b.try_pair(pair))
            .map_err(|e| bad("tokenizer.ggml.add_bos_token", format!("bad template: {e}")))?
            .special_tokens(specials)
            .build()
            .map_err(|e| bad("tokenizer.ggml.add_bos_token", format!("bad template: {e}")))?;
        template.into()
    } else {
        // What Hugging Face byte-level tokenizers carry: offsets trimmed, no tokens added.
        ByteLevel::new(false, true, true).into()
    };
    tokenizer.with_post_processor(Some(post));

    let chat_template = match file.get("tokenizer.chat_template") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(v) => {
            return Err(bad(
                "tokenizer.chat_template",
                format!("expected a string, found {:?}", v.value_type()),
            ))
        }
    };
    Ok(Some(TokenizerFiles {
        tokenizer,
        chat_template,
    }))
}

fn string_array<'f>(file: &'f GgufFile, key: &str) -> Result<&'f [String]> {
    match file.get(key) {
        Some(Value::Array(super::reader::Array::String(v))) => Ok(v),
        Some(v) => Err(invalid(
            file.path(),
            format!("metadata '{key}'"),
            format!("expected a string array, found {:?}", v.value_type()),
        )),
        None => Err(invalid(
            file.path(),
            format!("metadata '{key}'"),
            "required key is missing",
        )),
    }
}
