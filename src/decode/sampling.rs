//! Choosing a token from a row of scores: greedy, or sampling with temperature, top-k and top-p.
//!
//! The row is either the model's logits or CoLD's masked scores (`-inf` where the alpha-mask removed
//! a token); masked tokens are never sampled. Sampling is reproducible: a request's generator is
//! ChaCha8 seeded from the request's seed, whose stream is fixed across platforms and crate versions.

use crate::{Error, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// How to turn a row of scores into a token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingParams {
    /// Softmax temperature; 0 means greedy.
    pub temperature: f32,
    /// Keep only the k best tokens (0 = all).
    pub top_k: usize,
    /// Keep the smallest set of best tokens whose probability reaches p (1 = all).
    pub top_p: f32,
    /// Seed of the request's generator.
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            seed: 0,
        }
    }
}

impl SamplingParams {
    /// Whether this is plain greedy decoding.
    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }

    /// Checks the parameters' domains.
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(Error::parameter(
                "temperature",
                "a finite value >= 0",
                self.temperature,
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(Error::parameter("top_p", "a value in (0, 1]", self.top_p));
        }
        Ok(())
    }
}

/// The index of the highest score, lowest index on ties; `None` when no score is a number above -inf.
pub fn argmax(scores: &[f32]) -> Option<usize> {
    let mut best: Option<(usize, f32)> = None;
    for (i, &s) in scores.iter().enumerate() {
        if s > f32::NEG_INFINITY && best.is_none_or(|(_, b)| s > b) {
            best = Some((i, s));
        }
    }
    best.map(|(i, _)| i)
}

/// A request's token chooser: its parameters and its generator.
#[derive(Debug, Clone)]
pub struct Sampler {
    params: SamplingParams,
    rng: ChaCha8Rng,
}

impl Sampler {
    /// A sampler seeded from `params.seed`.
    pub fn new(params: SamplingParams) -> Result<Self> {
        params.validate()?;
        Ok(Sampler {
            params,
            rng: ChaCha8Rng::seed_from_u64(params.seed),
        })
    }

    /// Chooses a token from `scores`. Errors when the row has no finite candidate (all masked or NaN).
    pub fn choose(&mut self, scores: &[f32]) -> Result<u32> {
        let no_candidate = || Error::NonFinite {
            what: "score row (no finite candidate)".into(),
            rows: vec![],
        };
        if self.params.is_greedy() {
            return argmax(scores).map(|i| i as u32).ok_or_else(no_candidate);
        }
        if scores.iter().any(|s| s.is_nan()) {
            return Err(no_candidate());
        }
        let mut candidates: Vec<(usize, f32)> = scores
            .iter()
            .copied()
            .enumerate()
            .filter(|&(_, s)| s > f32::NEG_INFINITY)
            .collect();
        if candidates.is_empty() {
            return Err(no_candidate());
        }
        // Best first; ties by index so the order (and thus the draw) is deterministic.
        candidates.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if self.params.top_k > 0 {
            candidates.truncate(self.params.top_k);
        }
        let inv_t = 1.0 / f64::from(self.params.temperature);
        let top = f64::from(candidates[0].1);
        let mut weights: Vec<f64> = candidates
            .iter()
            .map(|&(_, s)| ((f64::from(s) - top) * inv_t).exp())
            .collect();
        let total: f64 = weights.iter().sum();
        let mut kept = 0;
        let mut mass = 0.0;
        for w in &weights {
            kept += 1;
            mass += w / total;
            if mass >= f64::from(self.params.top_p) {
                break;
            }
        }
        weights.truncate(kept);
        let kept_total: f64 = weights.iter().sum();
        let mut draw = self.rng.gen::<f64>() * kept_total;
        for (&(index, _), w) in candidates.iter().zip(&weights) {
            if draw < *w {
                return Ok(index as u32);
            }
            draw -= w;
        }
        Ok(candidates[kept - 1].0 as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_lowest_index_of_ties_and_skips_masked() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0]), Some(1));
        assert_eq!(argmax(&[f32::NEG_INFINITY, -5.0]), Some(1));
        assert_eq!(argmax(&[f32::NEG_INFINITY; 3]), None);
        let mut s = Sampler::new(SamplingParams::default()).unwrap();
        assert!(s.choose(&[f32::NEG_INFINITY]).is_err());
    }

    #[test]
    fn top_k_one_is_greedy_and_masked_tokens_are_never_drawn() {
        let params = SamplingParams {
            temperature: 1.0,
            top_k: 1,
            top_p: 1.0,
            seed: 7,
        };
        let mut s = Sampler::new(params).unwrap();
        for _ in 0..50 {
            assert_eq!(s.choose(&[0.0, 2.0, 1.9]).unwrap(), 1);
        }
        let mut s = Sampler::new(SamplingParams { top_k: 0, ..params }).unwrap();
        for _ in 0..200 {
            assert_ne!(s.choose(&[0.0, f32::NEG_INFINITY, 0.5]).unwrap(), 1);
        }
    }

    #[test]
    fn frequencies_follow_the_softmax_within_binomial_error() {
        // p = softmax([0, ln 3]) = [0.25, 0.75]; 4000 draws: sd = sqrt(4000 * .25 * .75) ~ 27.4, allow 5 sd.
        let mut s = Sampler::new(SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            seed: 1,
        })
        .unwrap();
        let ones = (0..4000)
            .filter(|_| s.choose(&[0.0, 3f32.ln()]).unwrap() == 1)
            .count() as f64;
        assert!((ones - 3000.0).abs() < 5.0 * 27.4, "{ones}");
        // top_p = 0.7 keeps only the 0.75 token.
        let mut s = Sampler::new(SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 0.7,
            seed: 1,
        })
        .unwrap();
        assert!((0..100).all(|_| s.choose(&[0.0, 3f32.ln()]).unwrap() == 1));
    }

    #[test]
    fn same_seed_same_tokens() {
        let p = SamplingParams {
            temperature: 0.8,
            top_k: 5,
            top_p: 0.9,
            seed: 42,
        };
        let row: Vec<f32> = (0..50).map(|i| (i as f32 * 0.37).sin()).collect();
        let (mut a, mut b) = (Sampler::new(p).unwrap(), Sampler::new(p).unwrap());
        let xs: Vec<u32> = (0..20).map(|_| a.choose(&row).unwrap()).collect();
        let ys: Vec<u32> = (0..20).map(|_| b.choose(&row).unwrap()).collect();
        assert_eq!(xs, ys);
        assert!(Sampler::new(SamplingParams { top_p: 0.0, ..p }).is_err());
        assert!(Sampler::new(SamplingParams {
            temperature: -1.0,
            ..p
        })
        .is_err());
    }
}
