//! Shared machinery of the `fuzz_*` suites: a process-wide allocation tracker, a proptest runner
//! that tallies accepted and rejected inputs, and mutation recipes for binary files and JSON
//! documents.
//!
//! Recipes, not bytes, are what proptest generates and shrinks: a failing case then prints as a
//! short list of operations on a named valid file instead of a wall of bytes.
#![allow(dead_code)]

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};
use serde_json::Value;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

// ---- allocation tracking ----

/// Counts every thread's allocations while a measurement is open: the loaders hand work to rayon,
/// so a per-thread count would miss most of a model load. [`serial`] keeps the other tests of the
/// binary from allocating inside a measurement.
struct Tracker;

static ON: AtomicBool = AtomicBool::new(false);
static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);
static LARGEST: AtomicUsize = AtomicUsize::new(0);

fn grow(size: usize) {
    if ON.load(Relaxed) {
        LARGEST.fetch_max(size, Relaxed);
        let now = LIVE.fetch_add(size as isize, Relaxed) + size as isize;
        PEAK.fetch_max(now, Relaxed);
    }
}

fn shrink(size: usize) {
    if ON.load(Relaxed) {
        LIVE.fetch_sub(size as isize, Relaxed);
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the bookkeeping
// only touches atomics, which never allocate.
unsafe impl GlobalAlloc for Tracker {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grow(layout.size());
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        grow(layout.size());
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        shrink(layout.size());
        grow(new_size);
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        shrink(layout.size());
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Tracker = Tracker;

static SERIAL: Mutex<()> = Mutex::new(());

/// Held for a whole test so that no other test of the binary allocates during its measurements.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Memory a measured call took: its largest single request, and the most it held at once beyond
/// what was live when it started (memory it freed that predates the call counts against that).
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    pub largest: usize,
    pub peak: usize,
}

/// Runs `f`, catching a panic, and reports what it allocated.
pub fn measure<R>(f: impl FnOnce() -> R) -> (std::thread::Result<R>, Usage) {
    LIVE.store(0, Relaxed);
    PEAK.store(0, Relaxed);
    LARGEST.store(0, Relaxed);
    ON.store(true, Relaxed);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    ON.store(false, Relaxed);
    let usage = Usage {
        largest: LARGEST.load(Relaxed),
        peak: PEAK.load(Relaxed).max(0) as usize,
    };
    (r, usage)
}

/// `Err` with the panic's message when `r` is a caught panic.
pub fn no_panic<R>(what: &str, r: std::thread::Result<R>) -> Result<R, TestCaseError> {
    r.map_err(|p| {
        let msg = p
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| p.downcast_ref::<&str>().copied())
            .unwrap_or("non-string payload");
        TestCaseError::fail(format!("{what} panicked: {msg}"))
    })
}

/// A bound `factor * input + constant` bytes, checked for both the largest request and the peak.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub largest_factor: usize,
    pub largest_const: usize,
    pub peak_factor: usize,
    pub peak_const: usize,
}

impl Bound {
    pub fn check(&self, what: &str, input: usize, u: Usage) -> Result<(), TestCaseError> {
        let largest = self.largest_factor * input + self.largest_const;
        let peak = self.peak_factor * input + self.peak_const;
        prop_assert!(
            u.largest <= largest,
            "{what}: one allocation of {} bytes for {input} input bytes (bound {largest})",
            u.largest
        );
        prop_assert!(
            u.peak <= peak,
            "{what}: {} bytes held at once for {input} input bytes (bound {peak})",
            u.peak
        );
        Ok(())
    }
}

/// Writes a fresh file: rewriting one in place makes ext4 flush it (`auto_da_alloc`), which costs
/// milliseconds a case.
pub fn replace_file(path: &std::path::Path, bytes: &[u8]) {
    let _ = std::fs::remove_file(path);
    std::fs::write(path, bytes).unwrap();
}

// ---- running and reporting ----

/// What one case did, for the tally.
pub struct Outcome {
    /// `None` when accepted; else a short class of the rejection (the error's field).
    pub rejected: Option<String>,
    pub input: usize,
    pub usage: Usage,
}

#[derive(Default)]
struct Tally {
    cases: usize,
    accepted: usize,
    rejected: BTreeMap<String, usize>,
    largest: usize,
    peak: usize,
    ratio: f64,
}

/// Counts of one finished run.
pub struct Summary {
    pub accepted: usize,
    pub rejected: usize,
}

/// Runs `cases` cases of `strategy` through `check` with fresh seeds (and the seeds of earlier
/// failures persisted next to `source_file`), prints what was accepted and rejected, and panics
/// with the minimal failing recipe if any case fails.
pub fn run<S: Strategy>(
    name: &str,
    source_file: &'static str,
    cases: u32,
    strategy: S,
    check: impl Fn(S::Value) -> Result<Outcome, TestCaseError>,
) -> Summary
where
    S::Value: std::fmt::Debug,
{
    let config = Config {
        cases,
        source_file: Some(source_file),
        ..Config::default()
    };
    let tally = RefCell::new(Tally::default());
    let start = Instant::now();
    let result = TestRunner::new(config).run(&strategy, |v| {
        let o = check(v)?;
        let mut t = tally.borrow_mut();
        t.cases += 1;
        match o.rejected {
            None => t.accepted += 1,
            Some(class) => *t.rejected.entry(class).or_default() += 1,
        }
        t.largest = t.largest.max(o.usage.largest);
        t.peak = t.peak.max(o.usage.peak);
        t.ratio = t.ratio.max(o.usage.peak as f64 / o.input.max(1) as f64);
        Ok(())
    });
    let t = tally.into_inner();
    let rejected: usize = t.rejected.values().sum();
    let mut classes: Vec<_> = t.rejected.iter().collect();
    classes.sort_by(|a, b| b.1.cmp(a.1));
    let top: Vec<String> = classes
        .iter()
        .take(6)
        .map(|(c, n)| format!("{c} x{n}"))
        .collect();
    eprintln!(
        "[{name}] {} cases in {:.1} s: {} accepted, {rejected} rejected ({} kinds; most: {}); \
         largest allocation {} B, peak {} B, peak/input up to {:.1}",
        t.cases,
        start.elapsed().as_secs_f64(),
        t.accepted,
        t.rejected.len(),
        top.join(", "),
        t.largest,
        t.peak,
        t.ratio,
    );
    match result {
        Ok(()) => Summary {
            accepted: t.accepted,
            rejected,
        },
        Err(TestError::Fail(reason, value)) => {
            panic!("[{name}] {reason}\nminimal failing case: {value:#?}")
        }
        Err(TestError::Abort(reason)) => panic!("[{name}] aborted: {reason}"),
    }
}

/// The error's field for the tally, after checking the error names `file_name` and a non-empty
/// field and detail.
pub fn named_error(e: &ascend_cold::Error, file_name: &str) -> Result<String, TestCaseError> {
    let msg = e.to_string();
    prop_assert!(!msg.is_empty());
    prop_assert!(msg.contains(file_name), "{msg:?} does not name {file_name}");
    match e {
        ascend_cold::Error::InvalidFile { field, detail, .. } => {
            prop_assert!(
                !field.is_empty() && !detail.is_empty(),
                "empty field or detail: {msg:?}"
            );
            Ok(class_of(field))
        }
        ascend_cold::Error::Io { .. } => Ok("io".into()),
        other => Err(TestCaseError::fail(format!(
            "expected InvalidFile or Io, got {other:?}"
        ))),
    }
}

/// A field with indices and quoted names folded, so the tally groups like errors.
fn class_of(field: &str) -> String {
    let mut out = String::new();
    let mut quoted = false;
    for c in field.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                if quoted {
                    out.push_str("'…'");
                }
            }
            _ if quoted => {}
            '0'..='9' => {
                if !out.ends_with('#') {
                    out.push('#');
                }
            }
            _ => out.push(c),
        }
    }
    out.chars().take(48).collect()
}

// ---- byte-level mutations ----

/// A value to write into a length, count, type or offset field: the classic boundary values, and
/// values relative to the file's own length (just past the end, exactly the end, just short).
#[derive(Debug, Clone, Copy)]
pub enum Extreme {
    Zero,
    One,
    Max,
    HalfMax,
    TopBit,
    Pow32,
    Pow40,
    FileLen,
    FileLenPlusOne,
    FileLenMinusOne,
    Small(u8),
    Any(u64),
}

impl Extreme {
    fn value(self, width: usize, file_len: usize) -> u64 {
        let max = if width >= 8 {
            u64::MAX
        } else {
            (1u64 << (8 * width)) - 1
        };
        let v = match self {
            Extreme::Zero => 0,
            Extreme::One => 1,
            Extreme::Max => max,
            Extreme::HalfMax => max / 2,
            Extreme::TopBit => max / 2 + 1,
            Extreme::Pow32 => 1 << 32,
            Extreme::Pow40 => 1 << 40,
            Extreme::FileLen => file_len as u64,
            Extreme::FileLenPlusOne => file_len as u64 + 1,
            Extreme::FileLenMinusOne => (file_len as u64).saturating_sub(1),
            Extreme::Small(s) => s.into(),
            Extreme::Any(v) => v,
        };
        v & max
    }
}

pub fn extreme() -> impl Strategy<Value = Extreme> {
    prop_oneof![
        Just(Extreme::Zero),
        Just(Extreme::One),
        Just(Extreme::Max),
        Just(Extreme::HalfMax),
        Just(Extreme::TopBit),
        Just(Extreme::Pow32),
        Just(Extreme::Pow40),
        Just(Extreme::FileLen),
        Just(Extreme::FileLenPlusOne),
        Just(Extreme::FileLenMinusOne),
        any::<u8>().prop_map(Extreme::Small),
        any::<u64>().prop_map(Extreme::Any),
    ]
}

/// One edit of a file image. Positions are [`Index`]es, resolved against the image as it is when
/// the edit applies.
#[derive(Debug, Clone)]
pub enum ByteOp {
    Flip(Index, u8),
    Set(Index, u8),
    Truncate(Index),
    Insert(Index, Vec<u8>),
    Remove(Index, usize),
    /// Copies `len` bytes from the first position over the bytes at the second (a duplicated or
    /// shifted section).
    Copy(Index, usize, Index),
    /// Writes an extreme value into one of the format's length/count/type/offset fields.
    Field(Index, Extreme),
}

pub fn byte_op() -> impl Strategy<Value = ByteOp> {
    prop_oneof![
        3 => (any::<Index>(), 0u8..8).prop_map(|(i, b)| ByteOp::Flip(i, b)),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(i, v)| ByteOp::Set(i, v)),
        2 => any::<Index>().prop_map(ByteOp::Truncate),
        1 => (any::<Index>(), proptest::collection::vec(any::<u8>(), 1..24))
            .prop_map(|(i, b)| ByteOp::Insert(i, b)),
        1 => (any::<Index>(), 1usize..64).prop_map(|(i, n)| ByteOp::Remove(i, n)),
        1 => (any::<Index>(), 1usize..256, any::<Index>())
            .prop_map(|(a, n, b)| ByteOp::Copy(a, n, b)),
        4 => (any::<Index>(), extreme()).prop_map(|(i, e)| ByteOp::Field(i, e)),
    ]
}

fn at(i: &Index, len: usize) -> usize {
    if len == 0 {
        0
    } else {
        i.index(len)
    }
}

/// A field of a file format: `width` little-endian bytes at `offset`.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub offset: usize,
    pub width: usize,
}

/// Applies `ops` in order; `fields` are the format's fields in the unedited image (an edit that
/// moves bytes may leave later field edits landing beside the field, which is also a fine input).
pub fn apply(mut bytes: Vec<u8>, ops: &[ByteOp], fields: &[Field]) -> Vec<u8> {
    for op in ops {
        let len = bytes.len();
        match op {
            ByteOp::Flip(i, bit) if len > 0 => bytes[at(i, len)] ^= 1 << bit,
            ByteOp::Set(i, v) if len > 0 => bytes[at(i, len)] = *v,
            ByteOp::Truncate(i) => bytes.truncate(at(i, len + 1)),
            ByteOp::Insert(i, b) => {
                let p = at(i, len + 1);
                bytes.splice(p..p, b.iter().copied());
            }
            ByteOp::Remove(i, n) if len > 0 => {
                let p = at(i, len);
                bytes.drain(p..(p + n).min(len));
            }
            ByteOp::Copy(from, n, to) if len > 0 => {
                let (f, t) = (at(from, len), at(to, len));
                let n = (*n).min(len - f).min(len - t);
                bytes.copy_within(f..f + n, t);
            }
            ByteOp::Field(i, e) if !fields.is_empty() => {
                let f = fields[at(i, fields.len())];
                let v = e.value(f.width, len).to_le_bytes();
                let end = (f.offset + f.width.min(8)).min(len);
                if f.offset < end {
                    bytes[f.offset..end].copy_from_slice(&v[..end - f.offset]);
                }
            }
            _ => {}
        }
    }
    bytes
}

// ---- JSON mutations ----

/// A replacement value for a JSON node: wrong types, boundary and absurd numbers, odd strings,
/// and text serde_json's `Value` cannot hold (numbers past f64, nesting past the parser's limit).
#[derive(Debug, Clone)]
pub enum Hostile {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    /// `"xxx…"`, `n` bytes long (kept apart from `Str` so failures print short).
    Long(usize),
    EmptyArray,
    EmptyObject,
    /// `[v, v, ...]`.
    Repeat(Box<Hostile>, usize),
    /// `{"key": v}`.
    Object(String, Box<Hostile>),
    /// Written verbatim into the text.
    Raw(String),
}

fn interesting_string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("llama".to_string()),
        Just("LORA".to_string()),
        Just("all-linear".to_string()),
        Just("linear".to_string()),
        Just("llama3".to_string()),
        Just("default".to_string()),
        Just("silu".to_string()),
        Just("none".to_string()),
        Just("F32".to_string()),
        Just("F16".to_string()),
        Just("BF16".to_string()),
        Just("I64".to_string()),
        Just("F8_E4M3".to_string()),
        Just("q_proj".to_string()),
        Just("model.safetensors".to_string()),
        Just("../config.json".to_string()),
        Just(".*".to_string()),
        Just("(".to_string()),
        Just(r"(?:\w{100}){100}".to_string()),
        Just(r"((((a*)*)*)*)*b".to_string()),
        Just("\u{0}\u{ffff}\u{10ffff}".to_string()),
        "[a-z_.0-9]{0,12}",
    ]
}

/// Scalars and empty containers: cheap enough to repeat by the thousand.
fn small_leaf() -> impl Strategy<Value = Hostile> {
    prop_oneof![
        Just(Hostile::Null),
        any::<bool>().prop_map(Hostile::Bool),
        prop_oneof![
            Just(-1i64),
            Just(i64::MIN),
            Just(i64::MAX),
            Just(0),
            Just(1),
            Just(2),
            Just(3),
            -10i64..100
        ]
        .prop_map(Hostile::Int),
        prop_oneof![
            Just(u64::MAX),
            Just(1u64 << 32),
            Just(1u64 << 24),
            Just((1u64 << 24) + 1),
            Just(1u64 << 16),
            Just(4096),
            Just(4097),
            any::<u64>()
        ]
        .prop_map(Hostile::UInt),
        prop_oneof![
            Just(0.0f64),
            Just(-0.0),
            Just(0.5),
            Just(1.5),
            Just(-1.0),
            Just(1e308),
            Just(-1e308),
            Just(1e39),
            Just(1e-300),
            Just(5e-324),
            Just(3.4e38),
            any::<f64>().prop_filter("JSON numbers are finite", |x| x.is_finite())
        ]
        .prop_map(Hostile::Float),
        interesting_string().prop_map(Hostile::Str),
        Just(Hostile::EmptyArray),
        Just(Hostile::EmptyObject),
    ]
}

/// Besides the scalars: long strings, and text past what `Value` holds (numbers beyond f64,
/// nesting far past serde_json's recursion limit of 128).
fn leaf() -> impl Strategy<Value = Hostile> {
    prop_oneof![
        4 => small_leaf(),
        1 => (1usize..20_000).prop_map(Hostile::Long),
        1 => prop_oneof![
            Just("1e999".to_string()),
            Just("-1e999".to_string()),
            Just("123456789012345678901234567890".to_string()),
            Just("-0".to_string()),
            Just("1e-400".to_string()),
            (1usize..5_000).prop_map(|d| format!("{}{}", "[".repeat(d), "]".repeat(d))),
            (1usize..5_000).prop_map(|d| format!("{}1{}", "{\"a\":".repeat(d), "}".repeat(d))),
            Just("\"\\ud800\"".to_string()),
            Just("NaN".to_string()),
        ]
        .prop_map(Hostile::Raw),
    ]
}

pub fn hostile() -> impl Strategy<Value = Hostile> {
    let key = prop_oneof![
        proptest::sample::select(KEYS).prop_map(String::from),
        interesting_string()
    ];
    prop_oneof![
        6 => leaf(),
        2 => (small_leaf(), 0usize..2000).prop_map(|(v, n)| Hostile::Repeat(Box::new(v), n)),
        1 => (key.clone(), leaf()).prop_map(|(k, v)| Hostile::Object(k, Box::new(v))),
        1 => (key, small_leaf(), 0usize..64).prop_map(|(k, v, n)| {
            Hostile::Object(k, Box::new(Hostile::Repeat(Box::new(v), n)))
        }),
    ]
}

impl Hostile {
    fn render(&self, out: &mut String) {
        match self {
            Hostile::Null => out.push_str("null"),
            Hostile::Bool(b) => out.push_str(&b.to_string()),
            Hostile::Int(v) => out.push_str(&v.to_string()),
            Hostile::UInt(v) => out.push_str(&v.to_string()),
            Hostile::Float(v) => out.push_str(&Value::from(*v).to_string()),
            Hostile::Str(s) => out.push_str(&Value::from(s.as_str()).to_string()),
            Hostile::Long(n) => {
                out.push('"');
                out.push_str(&"x".repeat(*n));
                out.push('"');
            }
            Hostile::EmptyArray => out.push_str("[]"),
            Hostile::EmptyObject => out.push_str("{}"),
            Hostile::Repeat(v, n) => {
                out.push('[');
                for k in 0..*n {
                    if k > 0 {
                        out.push(',');
                    }
                    v.render(out);
                }
                out.push(']');
            }
            Hostile::Object(k, v) => {
                out.push('{');
                out.push_str(&Value::from(k.as_str()).to_string());
                out.push(':');
                v.render(out);
                out.push('}');
            }
            Hostile::Raw(s) => out.push_str(s),
        }
    }
}

/// Keys the parsers look for, so that inserted members often land on a field that matters.
pub const KEYS: &[&str] = &[
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "rms_norm_eps",
    "rope_theta",
    "rope_scaling",
    "rope_parameters",
    "rope_type",
    "factor",
    "low_freq_factor",
    "high_freq_factor",
    "original_max_position_embeddings",
    "max_position_embeddings",
    "tie_word_embeddings",
    "bos_token_id",
    "eos_token_id",
    "model_type",
    "hidden_act",
    "attention_bias",
    "weight_map",
    "peft_type",
    "r",
    "lora_alpha",
    "use_rslora",
    "use_dora",
    "fan_in_fan_out",
    "target_modules",
    "layers_to_transform",
    "rank_pattern",
    "modules_to_save",
    "bias",
    "__metadata__",
    "dtype",
    "shape",
    "data_offsets",
];

/// One edit of a JSON document. Nodes are numbered in document order (the root is 0).
#[derive(Debug, Clone)]
pub enum JsonOp {
    Replace(Index, Hostile),
    /// Removes a member or element.
    Remove(Index),
    /// Adds (or overwrites) a member of an object node.
    Insert(Index, Index, Hostile),
    /// Writes one member of an object twice (the parser sees a duplicate key).
    Duplicate(Index, Index),
    /// Writes an object's members in reverse order.
    Reverse(Index),
    /// Edits the serialized text.
    Text(ByteOp),
}

pub fn json_op() -> impl Strategy<Value = JsonOp> {
    prop_oneof![
        6 => (any::<Index>(), hostile()).prop_map(|(i, h)| JsonOp::Replace(i, h)),
        2 => any::<Index>().prop_map(JsonOp::Remove),
        3 => (any::<Index>(), any::<Index>(), hostile())
            .prop_map(|(i, k, h)| JsonOp::Insert(i, k, h)),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(i, k)| JsonOp::Duplicate(i, k)),
        1 => any::<Index>().prop_map(JsonOp::Reverse),
        2 => byte_op().prop_map(JsonOp::Text),
    ]
}

/// A JSON tree that can hold what `Value` cannot: verbatim text and repeated or reordered members.
enum Node {
    Leaf(Value),
    Raw(String),
    Array(Vec<Node>),
    Object(Vec<(String, Node)>),
}

impl Node {
    fn from_value(v: &Value) -> Node {
        match v {
            Value::Array(a) => Node::Array(a.iter().map(Node::from_value).collect()),
            Value::Object(o) => Node::Object(
                o.iter()
                    .map(|(k, v)| (k.clone(), Node::from_value(v)))
                    .collect(),
            ),
            leaf => Node::Leaf(leaf.clone()),
        }
    }

    fn from_hostile(h: &Hostile) -> Node {
        let mut text = String::new();
        h.render(&mut text);
        Node::Raw(text)
    }

    fn count(&self) -> usize {
        1 + match self {
            Node::Array(a) => a.iter().map(Node::count).sum(),
            Node::Object(o) => o.iter().map(|(_, v)| v.count()).sum(),
            _ => 0,
        }
    }

    /// The node numbered `n` in document order (counting from this one as 0).
    fn nth(&mut self, n: usize) -> Option<&mut Node> {
        if n == 0 {
            return Some(self);
        }
        let mut n = n - 1;
        let children: Vec<&mut Node> = match self {
            Node::Array(a) => a.iter_mut().collect(),
            Node::Object(o) => o.iter_mut().map(|(_, v)| v).collect(),
            _ => return None,
        };
        for c in children {
            let size = c.count();
            if n < size {
                return c.nth(n);
            }
            n -= size;
        }
        None
    }

    fn render(&self, out: &mut String) {
        match self {
            Node::Leaf(v) => out.push_str(&v.to_string()),
            Node::Raw(s) => out.push_str(s),
            Node::Array(a) => {
                out.push('[');
                for (k, v) in a.iter().enumerate() {
                    if k > 0 {
                        out.push(',');
                    }
                    v.render(out);
                }
                out.push(']');
            }
            Node::Object(o) => {
                out.push('{');
                for (k, (key, v)) in o.iter().enumerate() {
                    if k > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::from(key.as_str()).to_string());
                    out.push(':');
                    v.render(out);
                }
                out.push('}');
            }
        }
    }

    fn duplicate(&self) -> Node {
        let mut text = String::new();
        self.render(&mut text);
        Node::Raw(text)
    }
}

/// `doc` with `ops` applied, as text.
pub fn mutate_json(doc: &Value, ops: &[JsonOp]) -> Vec<u8> {
    let mut root = Node::from_value(doc);
    let mut text_ops = Vec::new();
    for op in ops {
        let n = root.count();
        match op {
            JsonOp::Replace(i, h) => {
                if let Some(node) = root.nth(i.index(n)) {
                    *node = Node::from_hostile(h);
                }
            }
            JsonOp::Remove(i) => {
                // Drops one child of the chosen container.
                if let Some(node) = root.nth(i.index(n)) {
                    match node {
                        Node::Array(a) if !a.is_empty() => drop(a.remove(i.index(a.len()))),
                        Node::Object(o) if !o.is_empty() => drop(o.remove(i.index(o.len()))),
                        _ => {}
                    }
                }
            }
            JsonOp::Insert(i, k, h) => {
                if let Some(Node::Object(o)) = root.nth(i.index(n)) {
                    let key = k.get(KEYS).to_string();
                    o.retain(|(name, _)| *name != key);
                    o.push((key, Node::from_hostile(h)));
                }
            }
            JsonOp::Duplicate(i, k) => {
                if let Some(Node::Object(o)) = root.nth(i.index(n)) {
                    if !o.is_empty() {
                        let (key, v) = &o[k.index(o.len())];
                        let copy = (key.clone(), v.duplicate());
                        o.push(copy);
                    }
                }
            }
            JsonOp::Reverse(i) => {
                if let Some(Node::Object(o)) = root.nth(i.index(n)) {
                    o.reverse();
                }
            }
            JsonOp::Text(op) => text_ops.push(op.clone()),
        }
    }
    let mut text = String::new();
    root.render(&mut text);
    apply(text.into_bytes(), &text_ops, &[])
}

// ---- safetensors ----

/// The header length field, the JSON header and the data of a safetensors image.
pub fn split_safetensors(bytes: &[u8]) -> (Value, Vec<u8>) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    (header, bytes[8 + n..].to_vec())
}

/// An edit of a safetensors file: to its JSON header (with the length prefix rewritten to match, or
/// left as it was), or to the whole image.
#[derive(Debug, Clone)]
pub enum SafetensorsOp {
    Header(Vec<JsonOp>, bool),
    Bytes(Vec<ByteOp>),
}

pub fn safetensors_op() -> impl Strategy<Value = SafetensorsOp> {
    prop_oneof![
        3 => (proptest::collection::vec(json_op(), 1..4), any::<bool>())
            .prop_map(|(ops, fix)| SafetensorsOp::Header(ops, fix)),
        2 => proptest::collection::vec(byte_op(), 1..4).prop_map(SafetensorsOp::Bytes),
    ]
}

pub fn mutate_safetensors(bytes: &[u8], op: &SafetensorsOp) -> Vec<u8> {
    match op {
        SafetensorsOp::Header(ops, fix_len) => {
            let old_len = u64::from_le_bytes(bytes[..8].try_into().unwrap());
            let (header, data) = split_safetensors(bytes);
            let text = mutate_json(&header, ops);
            let len = if *fix_len { text.len() as u64 } else { old_len };
            let mut out = len.to_le_bytes().to_vec();
            out.extend_from_slice(&text);
            out.extend_from_slice(&data);
            out
        }
        // The length prefix is the one binary field.
        SafetensorsOp::Bytes(ops) => apply(
            bytes.to_vec(),
            ops,
            &[Field {
                offset: 0,
                width: 8,
            }],
        ),
    }
}
