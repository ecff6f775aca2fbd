//! Chat prompts: the model's own Jinja chat template (from tokenizer_config.json or GGUF metadata),
//! rendered with minijinja the way transformers' `apply_chat_template` does (messages, bos/eos
//! tokens, `add_generation_prompt`).

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
