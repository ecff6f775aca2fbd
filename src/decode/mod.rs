//! The decoding loop: requests, strategies (greedy, CoLD, sampling) and stopping.

pub mod sampling;
pub mod stop;
