//! The decoder: requests batched into one forward per step, each with its own caches and stop state.

use super::sampling::{argmax, Sampler, SamplingParams};
use super::stop::{FinishReason, StopRules};
use super::text::TextStream;
use crate::contracts::{cold_token, ColdParams, ColdShape};
use crate::model::{KvCache, LlamaModel, LoraDelta, Row};
use crate::ops::{self, ColdOutputs, RowStrides};
use crate::{DeviceBuffer, Error, Result, Stream};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// How a request picks its next token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Strategy {
    /// From the model's logits (with the request's adapter, if any).
    Greedy,
    /// Contrastive LoRA decoding (docs/SEMANTICS.md section 1): the adapted model is the expert, the bare base
    /// model the amateur, both rows of the same batched forward.
    Cold {
        /// Plausibility mask on the expert, in (0, 1].
        alpha: f32,
        /// Penalty on the amateur, >= 0.
        beta: f32,
    },
}

impl Strategy {
    /// CoLD with the defaults of O'Brien & Lewis (2023): alpha 0.1, beta 0.5.
    pub const COLD_DEFAULT: Strategy = Strategy::Cold {
        alpha: 0.1,
        beta: 0.5,
    };
}

/// One generation request.
#[derive(Debug, Clone)]
pub struct Request {
    /// Prompt token ids (at least one).
    pub prompt: Vec<u32>,
    /// Adapter index (into the decoder's LoRA set), or -1 for the base model (not with CoLD, whose
    /// expert is the adapter).
    pub adapter: i64,
    /// Greedy or CoLD.
    pub strategy: Strategy,
    /// Temperature 0 = take the best token; otherwise sample (from the logits or the CoLD scores).
    pub sampling: SamplingParams,
    /// When to stop: [`StopRules::for_model`], adjusted.
    pub stop: StopRules,
}

/// Identifies a submitted request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub usize);

/// Wall-clock timings of one request.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Timings {
    /// The step that processed the prompt (and produced the first token).
    pub prefill: Duration,
    /// From the first token to the last.
    pub decode: Duration,
}

impl Timings {
    /// Generated tokens per second after the first.
    pub fn decode_tokens_per_s(&self, generated: usize) -> f64 {
        let secs = self.decode.as_secs_f64();
        if generated > 1 && secs > 0.0 {
            (generated - 1) as f64 / secs
        } else {
            0.0
        }
    }
}

/// What a request produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// Generated ids (an EOS that ended the request included).
    pub tokens: Vec<u32>,
    /// Generated text, when the decoder has a tokenizer: always the concatenation of the request's
    /// [`StepToken::text_delta`]s so far, so while running it may lag `tokens`; final text is cut before
    /// a stop string.
    pub text: String,
    /// Prompt length.
    pub prompt_tokens: usize,
    /// Why it stopped; `None` while running.
    pub finish: Option<FinishReason>,
    /// Timings.
    pub timings: Timings,
}

/// One token produced by a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepToken {
    /// The request.
    pub id: RequestId,
    /// The token.
    pub token: u32,
    /// The text released with this token (empty without a tokenizer), appended to [`Output::text`]:
    /// a request's deltas, concatenated, are exactly its text, final text included. Text is released
    /// only once settled, so a delta is never taken back: not while the last token ends inside a
    /// multi-byte character, nor while the end of the text could still begin a stop string (up to the
    /// longest stop string less a byte is held back). A token may thus release nothing and a later
    /// one its text; the finishing token releases the rest, cut before the stop string if one ended
    /// the request, so no delta ever holds any of a stop string that was matched.
    pub text_delta: String,
    /// Set when this token finished the request.
    pub finish: Option<FinishReason>,
}

/// What a decoder runs at once: the rest of the submitted requests wait in a queue, first in first
/// out, and join the batch as running ones finish (docs/DECODING.md, "Admission").
///
/// A request is counted at its largest: [`Decoder::rows_of`] rows (2 under CoLD: expert and amateur)
/// and [`Decoder::kv_bytes_of`] bytes of KV cache (every row's keys and values for its prompt and all
/// of its new tokens), so the running requests never outgrow the limits whatever they generate. A
/// cache grows by doubling (`Vec`), so the memory it holds may be up to twice the positions it
/// holds: the default budget leaves room for that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionLimits {
    /// Most batch rows per step (at least 1; a CoLD request needs 2).
    pub max_rows: usize,
    /// Most KV-cache bytes the running requests may need together.
    pub max_kv_bytes: usize,
}

impl AdmissionLimits {
    /// Rows per step unless told otherwise: enough for the batched forward to amortise reading the
    /// weights over many rows, few enough that a step's activations and logits stay small
    /// (256 rows of a 49,152-token vocabulary are 48 MiB of logits).
    pub const DEFAULT_MAX_ROWS: usize = 256;

    /// No limit: every submitted request runs in the next step (the decoder's behaviour before
    /// admission control; for callers that bound their own submissions).
    pub const UNBOUNDED: AdmissionLimits = AdmissionLimits {
        max_rows: usize::MAX,
        max_kv_bytes: usize::MAX,
    };

    /// [`Self::DEFAULT_MAX_ROWS`] rows, and a quarter of `available_bytes` (the memory the process may
    /// use, e.g. Linux's `MemAvailable`) for KV caches: a cache may hold up to twice what it is
    /// counted at, and the model, the activations and the outputs need the rest.
    pub fn for_memory(available_bytes: usize) -> Self {
        AdmissionLimits {
            max_rows: Self::DEFAULT_MAX_ROWS,
            max_kv_bytes: available_bytes / 4,
        }
    }
}

/// A submitted request waiting for room in the batch: nothing is allocated for it beyond the request
/// itself (its caches are created when it is admitted).
struct Queued {
    id: RequestId,
    request: Request,
    /// CoLD's parameters, checked at submit (`None` for greedy).
    cold: Option<ColdParams>,
    sampler: Sampler,
    rows: usize,
    kv_bytes: usize,
}

struct Active {
    id: RequestId,
    request: Request,
    /// CoLD's parameters, checked at submit (`None` for greedy).
    cold: Option<ColdParams>,
    /// What this request counts against the [`AdmissionLimits`].
    rows: usize,
    kv_bytes: usize,
    expert: KvCache,
    amateur: Option<KvCache>,
    /// Tokens to feed at the next step: the prompt, then the last generated token.
    feed: Vec<u32>,
    sampler: Sampler,
    text: TextStream,
    output: Output,
    started: Instant,
    first_token_at: Option<Instant>,
}

/// Device buffers for CoLD scoring, grown on demand.
struct ColdBuffers {
    /// The (expert, amateur) row pairs of one group, as `choose` lays them out.
    logits: DeviceBuffer<f32>,
    tokens: DeviceBuffer<i64>,
    best: DeviceBuffer<f32>,
    scores: DeviceBuffer<f32>,
}

/// Runs requests together, one batched forward per step, within [`AdmissionLimits`] (unbounded
/// unless set with [`Decoder::with_limits`]): requests beyond them are queued and admitted in
/// submission order as running ones finish.
///
/// ```
/// use ascend_cold::decode::{Decoder, Request, Strategy, SamplingParams, StopRules};
/// use ascend_cold::model::{llama::random_model_files, LlamaModel, WeightDtype, LlamaConfig, RopeScaling};
/// use ascend_cold::{Device, Stream};
/// let config = LlamaConfig {
///     vocab_size: 64, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2,
///     num_attention_heads: 4, num_key_value_heads: 2, head_dim: 8, rms_norm_eps: 1e-5,
///     rope_theta: 10000.0, rope_scaling: RopeScaling::None, max_position_embeddings: 128,
///     tie_word_embeddings: true, bos_token_id: Some(0), eos_token_ids: vec![1],
/// };
/// let model = LlamaModel::new(&random_model_files(&config, 7), WeightDtype::F32)?;
/// let stream = Stream::new(&Device::emulator()?)?;
/// let mut decoder = Decoder::new(&model, None, stream);
/// let stop = StopRules { ignore_eos: true, ..StopRules::for_model(model.config(), 5) };
/// let id = decoder.submit(Request {
///     prompt: vec![0, 5, 9], adapter: -1, strategy: Strategy::Greedy,
///     sampling: SamplingParams::default(), stop,
/// })?;
/// decoder.run()?;
/// assert_eq!(decoder.output(id).unwrap().tokens.len(), 5);
/// # Ok::<(), ascend_cold::Error>(())
/// ```
pub struct Decoder<'m> {
    model: &'m LlamaModel,
    lora: Option<&'m dyn LoraDelta>,
    tokenizer: Option<&'m tokenizers::Tokenizer>,
    stream: Stream,
    limits: AdmissionLimits,
    queue: VecDeque<Queued>,
    active: Vec<Active>,
    /// Rows and KV bytes of `active`, as counted by [`AdmissionLimits`].
    live_rows: usize,
    live_kv_bytes: usize,
    done: HashMap<RequestId, Output>,
    next_id: usize,
    cold: Option<ColdBuffers>,
}

impl<'m> Decoder<'m> {
    /// A decoder over `model`, with the adapters of `lora` (if any), scoring CoLD on `stream`'s device.
    pub fn new(model: &'m LlamaModel, lora: Option<&'m dyn LoraDelta>, stream: Stream) -> Self {
        Decoder {
            model,
            lora,
            tokenizer: None,
            stream,
            limits: AdmissionLimits::UNBOUNDED,
            queue: VecDeque::new(),
            active: vec![],
            live_rows: 0,
            live_kv_bytes: 0,
            done: HashMap::new(),
            next_id: 0,
            cold: None,
        }
    }

    /// Runs at most `limits` at once, queueing the rest (docs/DECODING.md, "Admission"). Set before
    /// the first [`Self::submit`]: each request is checked against the limits when submitted.
    ///
    /// ```
    /// use ascend_cold::decode::{AdmissionLimits, Decoder, Request, Strategy, SamplingParams, StopRules};
    /// use ascend_cold::model::{llama::random_model_files, LlamaModel, WeightDtype, LlamaConfig, RopeScaling};
    /// use ascend_cold::{Device, Stream};
    /// let config = LlamaConfig {
    ///     vocab_size: 64, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2,
    ///     num_attention_heads: 4, num_key_value_heads: 2, head_dim: 8, rms_norm_eps: 1e-5,
    ///     rope_theta: 10000.0, rope_scaling: RopeScaling::None, max_position_embeddings: 128,
    ///     tie_word_embeddings: true, bos_token_id: Some(0), eos_token_ids: vec![1],
    /// };
    /// let model = LlamaModel::new(&random_model_files(&config, 7), WeightDtype::F32)?;
    /// let stream = Stream::new(&Device::emulator()?)?;
    /// let limits = AdmissionLimits { max_rows: 2, max_kv_bytes: 1 << 20 };
    /// let mut decoder = Decoder::new(&model, None, stream).with_limits(limits)?;
    /// let stop = StopRules { ignore_eos: true, ..StopRules::for_model(model.config(), 4) };
    /// for t in 0..5 {
    ///     decoder.submit(Request {
    ///         prompt: vec![0, t], adapter: -1, strategy: Strategy::Greedy,
    ///         sampling: SamplingParams::default(), stop: stop.clone(),
    ///     })?;
    /// }
    /// assert_eq!((decoder.live_rows(), decoder.queued()), (2, 3));
    /// while !decoder.is_idle() {
    ///     assert!(decoder.step()?.len() <= 2);
    /// }
    /// # Ok::<(), ascend_cold::Error>(())
    /// ```
    ///
    /// # Errors
    /// `max_rows` 0 (nothing could ever run), or requests submitted already.
    pub fn with_limits(mut self, limits: AdmissionLimits) -> Result<Self> {
        if self.next_id != 0 {
            return Err(Error::parameter(
                "limits",
                "set before the first request is submitted",
                format!("after {} requests", self.next_id),
            ));
        }
        if limits.max_rows == 0 {
            return Err(Error::parameter(
                "max_rows",
                "at least 1 (a CoLD request needs 2)",
                0,
            ));
        }
        self.limits = limits;
        Ok(self)
    }

    /// The limits in force.
    pub fn limits(&self) -> AdmissionLimits {
        self.limits
    }

    /// Bytes of KV cache one position of one row holds: keys and values (2) of every layer,
    /// `num_key_value_heads * head_dim` f32 each. `None` if that overflows `usize`.
    pub fn kv_bytes_per_token(&self) -> Option<usize> {
        let c = self.model.config();
        c.num_hidden_layers
            .checked_mul(2)?
            .checked_mul(c.num_key_value_heads)?
            .checked_mul(c.head_dim)?
            .checked_mul(std::mem::size_of::<f32>())
    }

    /// Batch rows `request` takes while it runs: 2 under CoLD (expert and amateur), else 1.
    pub fn rows_of(request: &Request) -> usize {
        match request.strategy {
            Strategy::Greedy => 1,
            Strategy::Cold { .. } => 2,
        }
    }

    /// The most KV-cache bytes `request` can come to hold: its rows, each with its prompt and all of
    /// its new tokens (no more than the model's context), times [`Self::kv_bytes_per_token`].
    /// `None` if that overflows `usize`.
    pub fn kv_bytes_of(&self, request: &Request) -> Option<usize> {
        let positions = request
            .prompt
            .len()
            .saturating_add(request.stop.max_new_tokens)
            .min(self.model.config().max_position_embeddings);
        self.kv_bytes_per_token()?
            .checked_mul(positions)?
            .checked_mul(Self::rows_of(request))
    }

    /// Decodes generated text with `tokenizer` (for outputs, text deltas and stop strings); without
    /// one, outputs have no text and stop strings never match.
    pub fn with_tokenizer(mut self, tokenizer: &'m tokenizers::Tokenizer) -> Self {
        self.tokenizer = Some(tokenizer);
        self
    }

    /// Queues a request; it joins the batch at the next step.
    ///
    /// # Errors
    /// An empty prompt, a token id outside the vocabulary, an adapter index the decoder does not have,
    /// a prompt that cannot fit the model's context with at least one new token, CoLD without an
    /// adapter (its amateur is the base model, so the expert must be an adapter), or bad CoLD /
    /// sampling parameters. A valid request with `max_new_tokens` 0 asks for nothing: it is finished
    /// at once ([`Self::output`]: no tokens, [`FinishReason::Length`]) and never runs a forward.
    pub fn submit(&mut self, request: Request) -> Result<RequestId> {
        let config = self.model.config();
        if request.prompt.is_empty() {
            return Err(Error::shape("prompt", "at least one token", 0));
        }
        if let Some(&bad) = request
            .prompt
            .iter()
            .find(|&&t| t as usize >= config.vocab_size)
        {
            return Err(Error::parameter(
                "prompt token",
                format!("an id < {}", config.vocab_size),
                bad,
            ));
        }
        let adapters = self.lora.map_or(0, |l| l.num_adapters());
        if request.adapter >= adapters as i64 {
            return Err(Error::BadIndex {
                row: 0,
                index: request.adapter,
                num_adapters: adapters,
            });
        }
        if request.prompt.len() >= config.max_position_embeddings {
            return Err(Error::parameter(
                "prompt length",
                format!("< {} (the model's context)", config.max_position_embeddings),
                request.prompt.len(),
            ));
        }
        let mut cold = None;
        if let Strategy::Cold { alpha, beta } = request.strategy {
            if request.adapter < 0 {
                let have = match adapters {
                    0 => "the decoder has none".to_string(),
                    n => format!("index 0..{n}"),
                };
                return Err(Error::parameter(
                    "adapter",
                    format!(
                        "an expert adapter for CoLD ({have}): CoLD contrasts the adapted model with \
                         the base model, its amateur, so without an adapter it would contrast the \
                         base model with itself"
                    ),
                    format!("{} (no adapter)", request.adapter),
                ));
            }
            cold = Some(ColdParams::new(alpha, beta)?);
        }
        let sampler = Sampler::new(request.sampling)?;
        if request.stop.max_new_tokens == 0 {
            // Asks for nothing: finished at once, with no forward and no token.
            let id = self.next_request_id();
            let output = Output {
                tokens: vec![],
                text: String::new(),
                prompt_tokens: request.prompt.len(),
                finish: Some(FinishReason::Length),
                timings: Timings::default(),
            };
            self.done.insert(id, output);
            return Ok(id);
        }
        let rows = Self::rows_of(&request);
        if rows > self.limits.max_rows {
            return Err(Error::parameter(
                "max_rows",
                format!(
                    "at least {rows} (the rows this request needs: {})",
                    if rows == 2 {
                        "CoLD's expert and amateur"
                    } else {
                        "one"
                    }
                ),
                self.limits.max_rows,
            ));
        }
        let kv_bytes = self.kv_bytes_of(&request).ok_or_else(|| {
            Error::parameter(
                "request",
                "a KV-cache need that fits in usize",
                format!(
                    "{} prompt tokens + {} new tokens",
                    request.prompt.len(),
                    request.stop.max_new_tokens
                ),
            )
        })?;
        if kv_bytes > self.limits.max_kv_bytes {
            return Err(Error::parameter(
                "max_kv_bytes",
                format!(
                    "at least {kv_bytes} bytes ({:.1} MiB), the KV cache this request needs \
                     ({rows} row(s) x {} positions: prompt {} + max_new_tokens {}, at most the \
                     context): it could never be admitted",
                    kv_bytes as f64 / (1u64 << 20) as f64,
                    kv_bytes / rows / self.kv_bytes_per_token().unwrap_or(1).max(1),
                    request.prompt.len(),
                    request.stop.max_new_tokens,
                ),
                format!(
                    "{} bytes ({:.1} MiB)",
                    self.limits.max_kv_bytes,
                    self.limits.max_kv_bytes as f64 / (1u64 << 20) as f64
                ),
            ));
        }
        let id = self.next_request_id();
        self.queue.push_back(Queued {
            id,
            request,
            cold,
            sampler,
            rows,
            kv_bytes,
        });
        self.admit();
        Ok(id)
    }

    fn next_request_id(&mut self) -> RequestId {
        let id = RequestId(self.next_id);
        self.next_id += 1;
        id
    }

    /// Moves queued requests into the batch, in submission order, while they fit the limits.
    fn admit(&mut self) {
        while let Some(next) = self.queue.front() {
            let fits = self
                .live_rows
                .checked_add(next.rows)
                .is_some_and(|rows| rows <= self.limits.max_rows)
                && self
                    .live_kv_bytes
                    .checked_add(next.kv_bytes)
                    .is_some_and(|bytes| bytes <= self.limits.max_kv_bytes);
            if !fits {
                break;
            }
            let Some(q) = self.queue.pop_front() else {
                break;
            };
            self.live_rows += q.rows;
            self.live_kv_bytes += q.kv_bytes;
            let cold = q.cold.is_some();
            self.active.push(Active {
                id: q.id,
                cold: q.cold,
                rows: q.rows,
                kv_bytes: q.kv_bytes,
                expert: self.model.new_cache(),
                amateur: cold.then(|| self.model.new_cache()),
                feed: q.request.prompt.clone(),
                sampler: q.sampler,
                text: TextStream::default(),
                output: Output {
                    tokens: vec![],
                    text: String::new(),
                    prompt_tokens: q.request.prompt.len(),
                    finish: None,
                    timings: Timings::default(),
                },
                request: q.request,
                started: Instant::now(),
                first_token_at: None,
            });
        }
    }

    /// Batch rows of the running requests: the rows the next [`Self::step`] computes (at most
    /// [`AdmissionLimits::max_rows`]).
    pub fn live_rows(&self) -> usize {
        self.live_rows
    }

    /// KV-cache bytes the running requests are counted at (at most
    /// [`AdmissionLimits::max_kv_bytes`]).
    pub fn live_kv_bytes(&self) -> usize {
        self.live_kv_bytes
    }

    /// Requests submitted but not yet admitted.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Whether no request is running or queued.
    pub fn is_idle(&self) -> bool {
        self.active.is_empty() && self.queue.is_empty()
    }

    /// A running or finished request's output so far (or final); `None` while it is queued, or
    /// once taken with [`Self::take_output`].
    pub fn output(&self, id: RequestId) -> Option<&Output> {
        self.active
            .iter()
            .find(|a| a.id == id)
            .map(|a| &a.output)
            .or_else(|| self.done.get(&id))
    }

    /// Removes a finished request's output from the decoder and returns it (`None` if it has not
    /// finished or was taken already): a caller that writes outputs as they finish keeps the
    /// decoder's memory to the running requests.
    pub fn take_output(&mut self, id: RequestId) -> Option<Output> {
        self.done.remove(&id)
    }

    /// Steps until every request has finished.
    ///
    /// # Errors
    /// The first step's error.
    pub fn run(&mut self) -> Result<()> {
        while !self.is_idle() {
            self.step()?;
        }
        Ok(())
    }

    /// One batched forward over every running request (two rows for a CoLD request: expert, then
    /// amateur), then one token per request, with the text it releases; then queued requests are
    /// admitted into the room the finished ones left.
    ///
    /// # Errors
    /// Model or device errors; a request whose logits are not finite (named in the error).
    pub fn step(&mut self) -> Result<Vec<StepToken>> {
        if self.active.is_empty() {
            return Ok(vec![]);
        }
        let logits = self.forward_shared()?;
        let tokens = self.choose(&logits)?;
        let now = Instant::now();
        let mut events = Vec::with_capacity(tokens.len());
        for (a, token) in self.active.iter_mut().zip(tokens) {
            a.output.tokens.push(token);
            a.feed = vec![token];
            if a.first_token_at.is_none() {
                a.first_token_at = Some(now);
                a.output.timings.prefill = now - a.started;
            }
            a.output.timings.decode = now - a.first_token_at.unwrap_or(now);
            let context_full = a.expert.len() + 1 >= self.model.config().max_position_embeddings;
            let by_token = a
                .request
                .stop
                .finish_on_token(token, a.output.tokens.len())
                .or(context_full.then_some(FinishReason::Length));
            let (finish, text_delta) =
                a.text
                    .push(self.tokenizer, &a.output.tokens, &a.request.stop, by_token)?;
            a.output.text.push_str(&text_delta);
            a.output.finish = finish;
            events.push(StepToken {
                id: a.id,
                token,
                text_delta,
                finish,
            });
        }
        let (done, active): (Vec<_>, Vec<_>) = std::mem::take(&mut self.active)
            .into_iter()
            .partition(|a| a.output.finish.is_some());
        self.active = active;
        for a in done {
            self.live_rows -= a.rows;
            self.live_kv_bytes -= a.kv_bytes;
            self.done.insert(a.id, a.output);
        }
        self.admit();
        Ok(events)
    }

    /// The step's batched forward, in row order (per request its expert, then its amateur under CoLD).
    ///
    /// Prefills are shared: a row whose cache is empty and whose (prompt, adapter) equals an earlier
    /// row's in this step is not computed; it gets a copy of that row's cache and logits. The forward
    /// is row-independent (each row's result does not depend on the rest of the batch, bit for bit:
    /// tests/decode.rs), so this changes no token. It is what makes an evaluation that runs several
    /// strategies on the same prompts pay each prompt's prefill once per adapter: CoLD's amateur row
    /// shares the base-model greedy request's prefill, its expert the adapter's.
    fn forward_shared(&mut self) -> Result<crate::model::Logits> {
        // (request, amateur?) for every row, and the row each one copies (itself when computed).
        let mut slots: Vec<(usize, bool)> = Vec::with_capacity(2 * self.active.len());
        for (i, a) in self.active.iter().enumerate() {
            slots.push((i, false));
            if a.amateur.is_some() {
                slots.push((i, true));
            }
        }
        let adapter_of = |a: &Active, amateur: bool| if amateur { -1 } else { a.request.adapter };
        let cache_of = |a: &Active, amateur: bool| -> usize {
            if amateur {
                a.amateur.as_ref().map_or(0, KvCache::len)
            } else {
                a.expert.len()
            }
        };
        let mut source: Vec<usize> = (0..slots.len()).collect();
        for k in 0..slots.len() {
            let (i, am) = slots[k];
            let a = &self.active[i];
            if cache_of(a, am) != 0 {
                continue;
            }
            source[k] = (0..k)
                .find(|&j| {
                    let (ij, amj) = slots[j];
                    let b = &self.active[ij];
                    source[j] == j
                        && cache_of(b, amj) == 0
                        && adapter_of(b, amj) == adapter_of(a, am)
                        && b.feed == a.feed
                })
                .unwrap_or(k);
        }
        let computed: Vec<usize> = (0..slots.len()).filter(|&k| source[k] == k).collect();
        let unique = {
            // Every row in slot order, then only those that are computed.
            let mut all = Vec::with_capacity(slots.len());
            for a in &mut self.active {
                all.push(Row {
                    tokens: &a.feed,
                    cache: &mut a.expert,
                    adapter: a.request.adapter,
                });
                if let Some(amateur) = a.amateur.as_mut() {
                    all.push(Row {
                        tokens: &a.feed,
                        cache: amateur,
                        adapter: -1,
                    });
                }
            }
            let mut rows: Vec<Row<'_>> = all
                .into_iter()
                .enumerate()
                .filter(|(k, _)| source[*k] == *k)
                .map(|(_, row)| row)
                .collect();
            self.model.forward(&mut rows, self.lora)?
        };
        if computed.len() == slots.len() {
            return Ok(unique);
        }
        let vocab = unique.vocab;
        let position: Vec<usize> = {
            let mut at = vec![0; slots.len()];
            for (p, &k) in computed.iter().enumerate() {
                at[k] = p;
            }
            at
        };
        let mut data = Vec::with_capacity(slots.len() * vocab);
        for k in 0..slots.len() {
            data.extend_from_slice(unique.row(position[source[k]]));
            if source[k] != k {
                let (i, am) = slots[source[k]];
                let a = &self.active[i];
                let copied = if am {
                    a.amateur.clone()
                } else {
                    Some(a.expert.clone())
                };
                let (ti, tam) = slots[k];
                let t = &mut self.active[ti];
                if let Some(cache) = copied {
                    if tam {
                        t.amateur = Some(cache);
                    } else {
                        t.expert = cache;
                    }
                }
            }
        }
        Ok(crate::model::Logits {
            rows: slots.len(),
            vocab,
            data,
        })
    }

    /// The next token of every active request from this step's logits.
    fn choose(&mut self, logits: &crate::model::Logits) -> Result<Vec<u32>> {
        let vocab = logits.vocab;
        // Row of each request's expert in `logits`, and the CoLD requests grouped by parameters.
        let mut row = 0;
        let mut expert_rows = Vec::with_capacity(self.active.len());
        for a in &self.active {
            expert_rows.push(row);
            row += if a.amateur.is_some() { 2 } else { 1 };
        }
        let mut tokens = vec![0u32; self.active.len()];
        let mut cold: Vec<(usize, ColdParams)> = vec![];
        for (i, a) in self.active.iter_mut().enumerate() {
            match a.cold {
                None => {
                    let scores = logits.row(expert_rows[i]);
                    tokens[i] = a.sampler.choose(scores).map_err(|_| non_finite(a.id))?;
                }
                Some(params) => cold.push((i, params)),
            }
        }
        // One cold_score launch per distinct (alpha, beta, sampling-or-not) group.
        while let Some(&(first, params)) = cold.first() {
            let wants_scores = |i: usize| !self.active[i].request.sampling.is_greedy();
            let key = |(i, p): (usize, ColdParams)| {
                (p.alpha().to_bits(), p.beta().to_bits(), wants_scores(i))
            };
            let first_key = key((first, params));
            let (group, rest): (Vec<_>, Vec<_>) = cold.iter().partition(|&&c| key(c) == first_key);
            let group: Vec<usize> = group.into_iter().map(|(i, _)| i).collect();
            cold = rest;
            // The group's (expert, amateur) row pairs as they lie in the forward's output when they
            // are evenly spaced (every CoLD request of a batch in a row, the usual case): scored in
            // place, rows `pitch` apart. Otherwise gathered, pairs back to back.
            let rows: Vec<usize> = group.iter().map(|&i| expert_rows[i]).collect();
            let even = match rows.as_slice() {
                [a, b, ..] if rows.windows(2).all(|w| w[1] - w[0] == b - a) => Some(b - a),
                [_] => Some(2),
                _ => None,
            };
            let gathered: Vec<f32>;
            let (block, pitch) = if let Some(pitch) = even {
                let first = rows[0] * vocab;
                let span = ((rows.len() - 1) * pitch + 2) * vocab;
                (&logits.data[first..first + span], pitch)
            } else {
                gathered = rows
                    .iter()
                    .flat_map(|&r| logits.data[r * vocab..(r + 2) * vocab].iter().copied())
                    .collect();
                (gathered.as_slice(), 2)
            };
            let shape = ColdShape {
                rows: group.len(),
                vocab,
            };
            let (picks, scores) = self.cold_score(block, pitch, shape, params, first_key.2)?;
            for (g, &i) in group.iter().enumerate() {
                let a = &mut self.active[i];
                let what = format!("logits of request {}", a.id.0);
                let pick = cold_token(picks[g], a.id.0, &what, params)?;
                tokens[i] = match &scores {
                    Some(s) => a
                        .sampler
                        .choose(&s[g * vocab..(g + 1) * vocab])
                        .map_err(|_| non_finite(a.id))?,
                    None => pick,
                };
            }
        }
        Ok(tokens)
    }

    /// `cold_score` on the device for `shape.rows` (expert, amateur) pairs; the tokens, and the masked
    /// score rows when asked for. `block` holds the pairs `pitch` rows apart, each expert row followed
    /// by its amateur row: it is uploaded once and scored in place (`ops::cold_score_strided`).
    fn cold_score(
        &mut self,
        block: &[f32],
        pitch: usize,
        shape: ColdShape,
        params: ColdParams,
        with_scores: bool,
    ) -> Result<(Vec<i64>, Option<Vec<f32>>)> {
        let n = shape.rows * shape.vocab;
        let device = self.stream.device().clone();
        let fits = |c: &ColdBuffers| {
            c.logits.len() >= block.len()
                && c.tokens.len() >= shape.rows
                && (!with_scores || c.scores.len() >= n)
        };
        if !self.cold.as_ref().is_some_and(fits) {
            self.cold = Some(ColdBuffers {
                logits: DeviceBuffer::zeroed(&device, block.len())?,
                tokens: DeviceBuffer::zeroed(&device, shape.rows)?,
                best: DeviceBuffer::zeroed(&device, shape.rows)?,
                scores: DeviceBuffer::zeroed(&device, if with_scores { n } else { 1 })?,
            });
        }
        let Some(c) = self.cold.as_mut() else {
            unreachable!("allocated above")
        };
        self.stream
            .upload(c.logits.slice_mut(..block.len())?, block.to_vec())?;
        let out = ColdOutputs {
            tokens: c.tokens.slice_mut(..shape.rows)?,
            best_scores: c.best.slice_mut(..shape.rows)?,
            scores: if with_scores {
                Some(c.scores.slice_mut(..n)?)
            } else {
                None
            },
        };
        let stride = pitch * shape.vocab;
        ops::cold_score_strided(
            &self.stream,
            c.logits.slice(..block.len())?,
            c.logits.slice(shape.vocab..block.len())?,
            shape,
            RowStrides {
                expert: stride,
                amateur: stride,
            },
            params,
            out,
            None,
        )?;
        let tokens = self.stream.download(c.tokens.slice(..shape.rows)?)?;
        let scores = if with_scores {
            Some(self.stream.download(c.scores.slice(..n)?)?)
        } else {
            None
        };
        let tokens = tokens.wait()?;
        let scores = scores.map(|s| s.wait()).transpose()?;
        Ok((tokens, scores))
    }
}

fn non_finite(id: RequestId) -> Error {
    Error::NonFinite {
        what: format!("logits of request {}", id.0),
        rows: vec![id.0],
    }
}

/// The greedy choice over a logits row (lowest index on ties), for callers outside the decoder.
pub fn greedy_token(logits: &[f32]) -> Option<u32> {
    argmax(logits).map(|i| i as u32)
}
