//! When a request stops: end-of-sequence tokens, stop strings, or the token budget.

/// Why a request finished (the `finish` field of `--json` output).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// The model produced an end-of-sequence token.
    Eos,
    /// `max_new_tokens` were generated.
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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StopRules {
    /// Tokens that end generation (the model's EOS ids), unless `ignore_eos`.
    pub eos_tokens: Vec<u32>,
    /// Generate through EOS tokens.
    pub ignore_eos: bool,
    /// Strings that end generation when they appear in the generated text; the text is cut before them.
    pub stop_strings: Vec<String>,
    /// Most tokens to generate.
    pub max_new_tokens: usize,
}

impl StopRules {
    /// Decides after a token was appended. `text` is the decoded generated text so far; returns the
    /// reason and, for stop strings, the byte length of the text to keep.
    pub fn check(
        &self,
        token: u32,
        generated: usize,
        text: &str,
    ) -> Option<(FinishReason, Option<usize>)> {
        if !self.ignore_eos && self.eos_tokens.contains(&token) {
            return Some((FinishReason::Eos, None));
        }
        let first_stop = self
            .stop_strings
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| text.find(s.as_str()))
            .min();
        if let Some(cut) = first_stop {
            return Some((FinishReason::Stop, Some(cut)));
        }
        (generated >= self.max_new_tokens).then_some((FinishReason::Length, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eos_then_stop_string_then_length() {
        let rules = StopRules {
            eos_tokens: vec![2],
            ignore_eos: false,
            stop_strings: vec!["\n\n".into(), "####".into()],
            max_new_tokens: 4,
        };
        assert_eq!(rules.check(2, 1, "a"), Some((FinishReason::Eos, None)));
        assert_eq!(
            rules.check(5, 1, "ab\n\ncd ####"),
            Some((FinishReason::Stop, Some(2)))
        );
        assert_eq!(rules.check(5, 3, "abc"), None);
        assert_eq!(
            rules.check(5, 4, "abcd"),
            Some((FinishReason::Length, None))
        );
        let ignoring = StopRules {
            ignore_eos: true,
            ..rules
        };
        assert_eq!(ignoring.check(2, 1, "a"), None);
    }
}
