//! When a request stops: end-of-sequence tokens, stop strings, or the token budget.

use crate::model::LlamaConfig;

/// Why a request finished (the `finish` field of `--json` output).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// The model produced an end-of-sequence token.
    Eos,
    /// `max_new_tokens` were generated, or the model's context is full.
    Length,
    /// The generated text reached one of the stop strings.
    Stop,
}

impl FinishReason {
    /// The name used in JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Eos => "eos",
            FinishReason::Length => "length",
            FinishReason::Stop => "stop",
        }
    }
}

/// A request's stopping rules.
///
/// There is no `Default`: rules without the model's EOS ids silently generate through every EOS, so
/// they are built from the model with [`StopRules::for_model`] and then adjusted:
///
/// ```
/// # use ascend_cold::decode::StopRules;
/// # let config = ascend_cold::model::LlamaConfig {
/// #     vocab_size: 64, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2,
/// #     num_attention_heads: 4, num_key_value_heads: 2, head_dim: 8, rms_norm_eps: 1e-5,
/// #     rope_theta: 10000.0, rope_scaling: ascend_cold::model::RopeScaling::None,
/// #     max_position_embeddings: 128, tie_word_embeddings: true, bos_token_id: Some(0),
/// #     eos_token_ids: vec![1, 2],
/// # };
/// let stop = StopRules {
///     stop_strings: vec!["\n\n".into()],
///     ..StopRules::for_model(&config, 64)
/// };
/// assert_eq!(stop.eos_tokens, [1, 2]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopRules {
    /// Tokens that end generation, unless `ignore_eos`: [`StopRules::for_model`] fills in the model's
    /// EOS ids; empty means no token ends a request.
    pub eos_tokens: Vec<u32>,
    /// Generate through EOS tokens.
    pub ignore_eos: bool,
    /// Strings that end generation when they appear in the generated text; the text is cut before them
    /// (and no step's text delta ever contains any of one: see [`crate::decode::StepToken`]).
    pub stop_strings: Vec<String>,
    /// Most tokens to generate, at least 1: [`crate::decode::Decoder::submit`] refuses 0 with an error
    /// rather than run a request that asks for nothing.
    pub max_new_tokens: usize,
}

impl StopRules {
    /// Rules that stop at the model's EOS ids (`config.eos_token_ids`: `eos_token_id` of config.json
    /// and generation_config.json, or GGUF `tokenizer.ggml.eos_token_id`) or after `max_new_tokens`,
    /// with no stop strings.
    pub fn for_model(config: &LlamaConfig, max_new_tokens: usize) -> Self {
        StopRules {
            eos_tokens: config.eos_token_ids.clone(),
            ignore_eos: false,
            stop_strings: vec![],
            max_new_tokens,
        }
    }

    /// Whether `token`, the `generated`-th new token, ends the request by itself: an EOS token (first),
    /// or the budget spent.
    pub fn finish_on_token(&self, token: u32, generated: usize) -> Option<FinishReason> {
        if !self.ignore_eos && self.eos_tokens.contains(&token) {
            Some(FinishReason::Eos)
        } else {
            (generated >= self.max_new_tokens).then_some(FinishReason::Length)
        }
    }

    /// The byte offset of the earliest stop string in `text`, where the text is to be cut.
    pub fn find_stop(&self, text: &str) -> Option<usize> {
        self.stop_strings
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| text.find(s.as_str()))
            .min()
    }

    /// How many bytes at the end of the generated text may still turn out to begin a stop string, so
    /// cannot be streamed yet: one less than the longest stop string.
    pub(crate) fn holdback(&self) -> usize {
        self.stop_strings
            .iter()
            .map(|s| s.len().saturating_sub(1))
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eos_then_length_on_the_token_and_the_earliest_stop_string_in_the_text() {
        let rules = StopRules {
            eos_tokens: vec![2],
            ignore_eos: false,
            stop_strings: vec!["\n\n".into(), "####".into(), String::new()],
            max_new_tokens: 4,
        };
        assert_eq!(rules.finish_on_token(2, 4), Some(FinishReason::Eos));
        assert_eq!(rules.finish_on_token(5, 3), None);
        assert_eq!(rules.finish_on_token(5, 4), Some(FinishReason::Length));
        assert_eq!(rules.find_stop("ab #### cd\n\n"), Some(3));
        assert_eq!(rules.find_stop("ab ###"), None);
        assert_eq!(rules.holdback(), 3);
        let ignoring = StopRules {
            ignore_eos: true,
            ..rules
        };
        assert_eq!(ignoring.finish_on_token(2, 1), None);
    }
}
