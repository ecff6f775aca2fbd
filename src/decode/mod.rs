//! The decoding loop: requests, strategies (greedy, CoLD, sampling) and stopping.
//!
//! A [`Decoder`] runs many requests in one batched forward per step; each keeps its own KV caches,
//! position and stop state, and requests may join and finish at different steps. Under CoLD a request
//! is two rows of the batch, the expert (its adapter) and the amateur (no adapter), fed the same
//! tokens; their logits go through [`crate::ops::cold_score`] on the device. [`AdmissionLimits`]
//! bound the rows and the KV-cache memory a step runs; the requests beyond them wait in a queue.

pub mod chat;
mod engine;
pub mod requests;
pub mod sampling;
pub mod stop;
mod text;

pub use chat::encode_prompt;
pub use engine::{
    greedy_token, AdmissionLimits, Decoder, Output, Request, RequestId, StepToken, Strategy,
    Timings,
};
pub use requests::{read_request_lines, RequestDefaults, RequestLine, StrategyName};
pub use sampling::SamplingParams;
pub use stop::{FinishReason, StopRules};
