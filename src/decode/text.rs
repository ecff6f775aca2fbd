//! A request's generated text, released a step at a time.

use super::stop::{FinishReason, StopRules};
use crate::{Error, Result};

/// Turns one request's tokens into text deltas, and cuts the text at a stop string.
///
/// Decoding only the newest token goes wrong where a token's text depends on its neighbour (a
/// SentencePiece word-start space is dropped at the start of a decode) or a character's bytes span
/// tokens (byte-level BPE, byte fallback); decoding the whole output every step is quadratic. So a
/// step decodes a window from the last released token (as context) to the end, and takes what it
/// adds to the context's text. A window ending in U+FFFD is a character still incomplete: nothing is
/// released until a later token completes it, or the request ends.
#[derive(Debug, Default)]
pub(crate) struct TextStream {
    /// Start of the window: the last token whose text was released before `read`.
    prefix: usize,
    /// First token whose text is not decoded yet.
    read: usize,
    /// Decoded text not released yet: the end that may still begin a stop string. Every stop string
    /// that can appear with the next text starts in it, so it is all that needs searching.
    pending: String,
}

impl TextStream {
    /// Takes in the newest of `tokens` (all generated so far) and returns the finish reason (`finish`,
    /// or `Stop` when the text now holds a stop string) with the text to release.
    ///
    /// `finish` is the token's own verdict (EOS, length): an EOS wins over a stop string, and a
    /// finished request releases everything, an incomplete last character as U+FFFD included.
    pub(crate) fn push(
        &mut self,
        tokenizer: Option<&tokenizers::Tokenizer>,
        tokens: &[u32],
        stop: &StopRules,
        mut finish: Option<FinishReason>,
    ) -> Result<(Option<FinishReason>, String)> {
        if let Some(tokenizer) = tokenizer {
            let decode = |ids: &[u32]| {
                tokenizer
                    .decode(ids, true)
                    .map_err(|e| Error::parameter("token ids", "ids the tokenizer can decode", e))
            };
            let context = decode(&tokens[self.prefix..self.read])?;
            let window = decode(&tokens[self.prefix..])?;
            let settled = |new: &str| {
                !new.is_empty() && (finish.is_some() || !new.ends_with(char::REPLACEMENT_CHARACTER))
            };
            if let Some(new) = window.strip_prefix(context.as_str()).filter(|n| settled(n)) {
                self.pending.push_str(new);
                self.prefix = self.read;
                self.read = tokens.len();
            }
        }
        if finish != Some(FinishReason::Eos) {
            if let Some(cut) = stop.find_stop(&self.pending) {
                self.pending.truncate(cut);
                finish = Some(FinishReason::Stop);
            }
        }
        let release = if finish.is_some() {
            self.pending.len()
        } else {
            floor_char_boundary(
                &self.pending,
                self.pending.len().saturating_sub(stop.holdback()),
            )
        };
        let rest = self.pending.split_off(release);
        Ok((finish, std::mem::replace(&mut self.pending, rest)))
    }
}

/// The largest char boundary of `s` at or below `i` (`str::floor_char_boundary` is newer than the
/// crate's minimum Rust).
fn floor_char_boundary(s: &str, i: usize) -> usize {
    (0..=i.min(s.len()))
        .rev()
        .find(|&k| s.is_char_boundary(k))
        .unwrap_or(0)
}
