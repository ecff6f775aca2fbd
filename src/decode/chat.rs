//! Prompts: the model's own Jinja chat template (from tokenizer_config.json or GGUF metadata),
//! rendered with minijinja the way transformers' `apply_chat_template` does (messages, bos/eos
//! tokens, `add_generation_prompt`), and [`encode_prompt`], a prompt's token ids.

use crate::model::{weights::TokenizerFiles, LlamaConfig};
use crate::{Error, Result};

/// One chat turn.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

impl Message {
    /// A user turn.
    pub fn user(content: impl Into<String>) -> Self {
        Message {
            role: "user".into(),
            content: content.into(),
        }
    }
}

/// Renders `template` for `messages`, ending with the assistant's turn opened when
/// `add_generation_prompt`.
///
/// # Errors
/// A template that does not parse or fails to render (the message says where).
pub fn render(
    template: &str,
    messages: &[Message],
    bos_token: &str,
    eos_token: &str,
    add_generation_prompt: bool,
) -> Result<String> {
    let mut env = minijinja::Environment::new();
    env.add_function(
        "raise_exception",
        |msg: String| -> std::result::Result<String, minijinja::Error> {
            Err(minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                msg,
            ))
        },
    );
    let bad =
        |e: minijinja::Error| Error::parameter("chat template", "a Jinja template that renders", e);
    env.add_template("chat", template).map_err(bad)?;
    let ctx = minijinja::context! {
        messages => messages,
        bos_token => bos_token,
        eos_token => eos_token,
        add_generation_prompt => add_generation_prompt,
    };
    env.get_template("chat")
        .and_then(|t| t.render(ctx))
        .map_err(bad)
}

/// The token ids that prompt the model with `prompt`.
///
/// With `chat`, the model's chat template is rendered for `prompt` as one user message with the
/// assistant's turn opened, and the result encoded without adding special tokens: the template
/// places those it wants, as transformers' `apply_chat_template` does (the BOS and EOS it sees are
/// the tokens of `config.bos_token_id` and of the first of `config.eos_token_ids`). Without, the
/// plain text is encoded with the tokenizer's own special tokens (a BOS its post-processor adds).
///
/// ```
/// use ascend_cold::decode::encode_prompt;
/// use ascend_cold::model::{hf::load_hf, weights::TokenizerFiles};
/// let files = load_hf(std::path::Path::new("tests/fixtures/tiny-gqa-tied/model"))?;
/// let tokenizer = TokenizerFiles {
///     chat_template: Some(
///         "{{ bos_token }}{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}\
///          {% if add_generation_prompt %}assistant:{% endif %}".into(),
///     ),
///     ..files.tokenizer.expect("the fixture has a tokenizer.json")
/// };
/// let plain = encode_prompt(&tokenizer, &files.config, "the cat", false)?;
/// assert_eq!(plain[0], 0); // <s>, from the tokenizer's post-processor
/// let chat = encode_prompt(&tokenizer, &files.config, "the cat", true)?;
/// let by_hand = tokenizer.tokenizer.encode("<s>user: the cat\nassistant:", false).unwrap();
/// assert_eq!(chat, by_hand.get_ids());
/// # Ok::<(), ascend_cold::Error>(())
/// ```
///
/// # Errors
/// `chat` with a tokenizer that has no chat template, a template that fails to render, or text the
/// tokenizer cannot encode.
pub fn encode_prompt(
    tokenizer: &TokenizerFiles,
    config: &LlamaConfig,
    prompt: &str,
    chat: bool,
) -> Result<Vec<u32>> {
    let rendered;
    let (text, add_special) = if chat {
        let template = tokenizer.chat_template.as_deref().ok_or_else(|| {
            Error::parameter(
                "chat",
                "a tokenizer with a chat template (chat_template.jinja, tokenizer_config.json \
                 chat_template or GGUF tokenizer.chat_template)",
                "none",
            )
        })?;
        let name = |id: Option<u32>| {
            id.and_then(|i| tokenizer.tokenizer.id_to_token(i))
                .unwrap_or_default()
        };
        rendered = render(
            template,
            &[Message::user(prompt)],
            &name(config.bos_token_id),
            &name(config.eos_token_ids.first().copied()),
            true,
        )?;
        (rendered.as_str(), false)
    } else {
        (prompt, true)
    };
    let encoding = tokenizer
        .tokenizer
        .encode(text, add_special)
        .map_err(|e| Error::parameter("prompt", "text the tokenizer can encode", e))?;
    Ok(encoding.get_ids().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatml_template_renders_with_generation_prompt() {
        let t = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}\
                 {% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
        let s = render(t, &[Message::user("hi")], "", "", true).unwrap();
        assert_eq!(s, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
        let err = render("{{ raise_exception('no system role') }}", &[], "", "", true).unwrap_err();
        assert!(err.to_string().contains("no system role"), "{err}");
    }
}
