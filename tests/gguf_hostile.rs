//! Hostile GGUF files: each malformation must be an `Error::InvalidFile` naming the file and the
//! field, never a panic, and parsing must never allocate more than the file's size because a header
//! said so (checked with a per-thread allocation tracker installed as the global allocator).

mod gguf_util;

use ascend_cold::model::gguf::{load_gguf, GgufFile};
use ascend_cold::Error;
use gguf_util::{gt, tiny_llama, vt, write_temp, Meta, Writer};
use rand::{rngs::StdRng, SeedableRng};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Records the largest single allocation made by the current thread while tracking is on.
struct Tracker;

thread_local! {
    static TRACKING: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = TRACKING.try_with(|on| {
        if on.get() {
            let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
        }
    });
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the bookkeeping
// only touches const-initialised thread-locals, which never allocate.
unsafe impl GlobalAlloc for Tracker {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Tracker = Tracker;

const NAME: &str = "hostile.gguf";

/// Parses `bytes` in memory; returns the outcome and the largest allocation it made.
fn parse(bytes: Vec<u8>) -> (Result<GgufFile, Error>, usize) {
    LARGEST.with(|l| l.set(0));
    TRACKING.with(|t| t.set(true));
    let r = std::panic::catch_unwind(|| GgufFile::from_bytes(NAME, bytes));
    TRACKING.with(|t| t.set(false));
    let largest = LARGEST.with(|l| l.get());
    match r {
        Ok(r) => (r, largest),
        Err(_) => panic!("the reader panicked"),
    }
}

/// The error message for a file that must be rejected, after checking that it is an
/// `InvalidFile` naming the file and `field`, and that no allocation exceeded the file size.
#[track_caller]
fn rejected(bytes: Vec<u8>, field: &str) -> String {
    let len = bytes.len();
    let (r, largest) = parse(bytes);
    let e = r.expect_err("hostile file was accepted");
    assert!(
        largest <= len + 4096,
        "largest allocation {largest} bytes for a {len}-byte file ({e})"
    );
    match &e {
        Error::InvalidFile { path, field: f, .. } => {
            assert_eq!(path.to_str(), Some(NAME));
            assert!(
                f.contains(field),
                "field {f:?} does not name {field:?}: {e}"
            );
        }
        other => panic!("expected InvalidFile, got {other:?}"),
    }
    let msg = e.to_string();
    assert!(msg.contains(NAME), "{msg}");
    msg
}

#[track_caller]
fn says(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "message {msg:?} lacks {p:?}");
    }
}

/// A small valid file with a string, an array of strings and two tensors.
fn small() -> Writer {
    let mut w = Writer::default();
    w.kv("general.architecture", Meta::s("llama"))
        .kv(
            "tokenizer.ggml.tokens",
            Meta::StrArray(vec!["a".into(), "bc".into()]),
        )
        .kv("flag", Meta::Bool(true))
        .f32_tensor("blk.0.attn_q.weight", &[2, 4], &[1.0; 8])
        .tensor("blk.0.attn_k.weight", &[32], gt::Q8_0, vec![0; 34]);
    w
}

fn with_tensor(f: impl FnOnce(&mut gguf_util::TensorSpec)) -> Vec<u8> {
    let mut w = small();
    f(&mut w.tensors[0]);
    w.bytes()
}

#[test]
fn truncated_at_every_offset() {
    let w = small();
    let (bytes, data_start) = w.build();
    // The last tensor's data ends here; any prefix at least this long is still a valid file.
    let end = data_start + 32 + 34;
    assert!(parse(bytes.clone()).0.is_ok());
    for cut in 0..bytes.len() {
        let prefix = bytes[..cut].to_vec();
        if cut >= end {
            assert!(parse(prefix).0.is_ok(), "prefix {cut} holds every tensor");
            continue;
        }
        let (r, largest) = parse(prefix);
        let msg = r
            .err()
            .unwrap_or_else(|| panic!("prefix of {cut} bytes accepted"))
            .to_string();
        assert!(largest <= cut + 4096, "cut {cut}: allocation {largest}");
        assert!(msg.contains(NAME), "{msg}");
        assert!(
            msg.contains("truncated")
                || msg.contains("past the file end")
                || msg.contains("remain"),
            "cut {cut}: {msg}"
        );
    }
}

#[test]
fn truncated_model_files_through_the_file_api() {
    let mut rng = StdRng::seed_from_u64(3);
    let (w, _) = tiny_llama(gt::Q4_1, true, &mut rng);
    let bytes = w.bytes();
    assert!(load_gguf(&write_temp("trunc-full", &bytes)).is_ok());
    for (i, cut) in (0..bytes.len() - 64).step_by(bytes.len() / 37).enumerate() {
        let path = write_temp(&format!("trunc-{i}"), &bytes[..cut]);
        let e = load_gguf(&path).err().expect("truncated file accepted");
        let msg = e.to_string();
        assert!(matches!(e, Error::InvalidFile { .. }), "{msg}");
        assert!(msg.contains(&path.display().to_string()), "{msg}");
    }
}

#[test]
fn bad_magic() {
    for magic in [*b"GGUG", *b"\0\0\0\0", *b"lmgg", *b"FUGG"] {
        let mut w = small();
        w.magic = magic;
        says(&rejected(w.bytes(), "header.magic"), &["expected \"GGUF\""]);
    }
    says(&rejected(vec![], "header.magic"), &["truncated"]);
    says(
        &rejected(b"GG".to_vec(), "header.magic"),
        &["needs 4 bytes"],
    );
}

#[test]
fn unsupported_versions() {
    for (v, text) in [
        (1u32, "version 1"),
        (4, "expected 2 or 3, found 4"),
        (0x0300_0000, "big-endian"),
    ] {
        let mut w = small();
        w.version = v;
        says(&rejected(w.bytes(), "header.version"), &[text]);
    }
}

#[test]
fn absurd_counts() {
    for count in [u64::MAX, 1 << 40, 1000] {
        let mut w = small();
        w.tensor_count = Some(count);
        says(
            &rejected(w.bytes(), "header.tensor_count"),
            &["tensor infos need at least"],
        );
        let mut w = small();
        w.kv_count = Some(count);
        says(
            &rejected(w.bytes(), "header.kv_count"),
            &["key/value pairs need at least"],
        );
    }
    // A count that fits the remaining bytes but whose items are not there.
    let mut w = small();
    w.kv_count = Some(5);
    rejected(w.bytes(), "");
}

#[test]
fn absurd_string_and_array_lengths() {
    let mut w = small();
    w.kv(
        "name",
        Meta::Raw(vt::STRING, u64::MAX.to_le_bytes().to_vec()),
    );
    says(
        &rejected(w.bytes(), "metadata 'name'"),
        &["string of 18446744073709551615 bytes", "past the file end"],
    );

    // A key whose length runs past the end.
    let mut bytes = b"GGUF".to_vec();
    bytes.extend_from_slice(&3u32.to_le_bytes());
    bytes.extend_from_slice(&0u64.to_le_bytes());
    bytes.extend_from_slice(&1u64.to_le_bytes());
    bytes.extend_from_slice(&(1u64 << 50).to_le_bytes());
    bytes.extend_from_slice(&[b'x'; 16]);
    says(&rejected(bytes, "metadata[0].key"), &["past the file end"]);

    for (ty, name) in [
        (vt::U64, "U64"),
        (vt::STRING, "String"),
        (vt::ARRAY, "Array"),
        (vt::U8, "U8"),
    ] {
        let mut raw = ty.to_le_bytes().to_vec();
        raw.extend_from_slice(&(u64::MAX / 2).to_le_bytes());
        let mut w = small();
        w.kv("arr", Meta::Raw(vt::ARRAY, raw));
        says(
            &rejected(w.bytes(), "metadata 'arr' (array length)"),
            &[name, "remain"],
        );
    }
}

#[test]
fn absurd_dimensions() {
    let msg = rejected(
        with_tensor(|t| t.dims = vec![1; 5]),
        "tensor 'blk.0.attn_q.weight'.n_dims",
    );
    says(&msg, &["5 dimensions, at most 4"]);
    let msg = rejected(
        with_tensor(|t| t.dims = vec![1 << 32, 1 << 32, 1 << 32]),
        "tensor 'blk.0.attn_q.weight'.dims",
    );
    says(&msg, &["overflows 64 bits"]);
    let msg = rejected(
        with_tensor(|t| t.dims = vec![u64::MAX]),
        "tensor 'blk.0.attn_q.weight'.dims[0]",
    );
    says(&msg, &["negative"]);
    let msg = rejected(
        with_tensor(|t| t.dims = vec![1 << 61, 2]),
        "tensor 'blk.0.attn_q.weight'.dims",
    );
    says(&msg, &["overflow a 64-bit byte size"]);
    // Fits 64 bits, not the file.
    let msg = rejected(
        with_tensor(|t| t.dims = vec![1 << 20, 1 << 20]),
        "tensor 'blk.0.attn_q.weight'",
    );
    says(&msg, &["ends past the file end"]);
    let msg = rejected(
        with_tensor(|t| {
            t.ggml_type = gt::Q4_0;
            t.dims = vec![33];
        }),
        "tensor 'blk.0.attn_q.weight'.dims[0]",
    );
    says(&msg, &["33 is not a multiple of the Q4_0 block size 32"]);
}

#[test]
fn offsets_past_the_end() {
    let (bytes, data_start) = small().build();
    let len = bytes.len();
    let msg = rejected(
        with_tensor(|t| t.offset = Some(1 << 20)),
        "tensor 'blk.0.attn_q.weight'",
    );
    let start = data_start + (1 << 20);
    says(
        &msg,
        &[&format!(
            "data [{start}, {}) ends past the file end ({len} bytes)",
            start + 32
        )],
    );
    let msg = rejected(
        with_tensor(|t| t.offset = Some(u64::MAX - 31)),
        "tensor 'blk.0.attn_q.weight'",
    );
    says(&msg, &["overflows 64 bits"]);
    let msg = rejected(
        with_tensor(|t| t.offset = Some(8)),
        "tensor 'blk.0.attn_q.weight'.offset",
    );
    says(&msg, &["not a multiple of the alignment 32"]);
}

#[test]
fn unknown_types() {
    for ty in [99u32, 4, 5, u32::MAX] {
        let msg = rejected(
            with_tensor(|t| t.ggml_type = ty),
            "tensor 'blk.0.attn_q.weight'.type",
        );
        says(&msg, &[&format!("unknown ggml type {ty}")]);
    }
    let mut w = small();
    w.kv("odd", Meta::Raw(13, vec![0; 8]));
    says(
        &rejected(w.bytes(), "metadata 'odd'.type"),
        &["unknown value type 13"],
    );
    let mut w = small();
    let mut raw = 77u32.to_le_bytes().to_vec();
    raw.extend_from_slice(&1u64.to_le_bytes());
    w.kv("arr", Meta::Raw(vt::ARRAY, raw));
    says(
        &rejected(w.bytes(), "metadata 'arr'"),
        &["unknown array element type 77"],
    );
}

#[test]
fn non_utf8_strings() {
    let mut w = small();
    w.kvs.push((vec![b'k', 0xff, 0xfe], Meta::U8(1)));
    says(
        &rejected(w.bytes(), "metadata[3].key"),
        &["not valid UTF-8"],
    );

    let mut w = small();
    w.kv(
        "s",
        Meta::Raw(
            vt::STRING,
            [&3u64.to_le_bytes()[..], &[b'a', 0xc3, b'(']].concat(),
        ),
    );
    says(
        &rejected(w.bytes(), "metadata 's'"),
        &["not valid UTF-8", "index 1"],
    );

    let mut raw = vt::STRING.to_le_bytes().to_vec();
    raw.extend_from_slice(&2u64.to_le_bytes());
    raw.extend_from_slice(&1u64.to_le_bytes());
    raw.push(b'a');
    raw.extend_from_slice(&1u64.to_le_bytes());
    raw.push(0x80);
    let mut w = small();
    w.kvs[1].1 = Meta::Raw(vt::ARRAY, raw);
    says(
        &rejected(w.bytes(), "metadata 'tokenizer.ggml.tokens'[1]"),
        &["not valid UTF-8"],
    );

    let msg = rejected(
        with_tensor(|t| t.name = vec![0xed, 0xa0, 0x80]),
        "tensor[0].name",
    );
    says(&msg, &["not valid UTF-8"]);
}

#[test]
fn malformed_values_and_structure() {
    let mut w = small();
    w.kv("b", Meta::Raw(vt::BOOL, vec![2]));
    says(
        &rejected(w.bytes(), "metadata 'b'"),
        &["bool byte 2", "expected 0 or 1"],
    );

    // Arrays of arrays nested five deep.
    let mut raw = Vec::new();
    for _ in 0..5 {
        raw.extend_from_slice(&vt::ARRAY.to_le_bytes());
        raw.extend_from_slice(&1u64.to_le_bytes());
    }
    raw.extend_from_slice(&[0; 64]);
    let mut w = small();
    w.kv("deep", Meta::Raw(vt::ARRAY, raw));
    says(
        &rejected(w.bytes(), "metadata 'deep'"),
        &["nested deeper than 4"],
    );

    let mut w = small();
    w.kv("flag", Meta::Bool(false));
    says(&rejected(w.bytes(), "metadata 'flag'"), &["appears twice"]);

    let mut w = small();
    w.tensors[1].name = w.tensors[0].name.clone();
    says(
        &rejected(w.bytes(), "tensor 'blk.0.attn_q.weight'"),
        &["appears twice"],
    );

    for bad in [Meta::U32(0), Meta::U32(48), Meta::U64(32), Meta::s("32")] {
        let mut w = small();
        w.kv("general.alignment", bad);
        says(
            &rejected(w.bytes(), "metadata 'general.alignment'"),
            &["power of two"],
        );
    }
}

/// Failures that only the model loader can see, through the file API.
#[test]
fn model_level_errors_name_the_field() {
    let base = || tiny_llama(gt::F32, true, &mut StdRng::seed_from_u64(4)).0;
    let set = |w: &mut Writer, key: &str, v: Meta| {
        let kv = w.kvs.iter_mut().find(|kv| kv.0 == key.as_bytes()).unwrap();
        kv.1 = v;
    };
    let load_err = |tag: &str, w: &Writer| {
        let path = write_temp(tag, &w.bytes());
        let r = std::panic::catch_unwind(|| load_gguf(&path));
        let e = r
            .expect("loader panicked")
            .err()
            .expect("bad model accepted");
        let msg = e.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(matches!(e, Error::InvalidFile { .. }), "{msg}");
        msg
    };

    let mut w = base();
    set(&mut w, "general.architecture", Meta::s("gpt2"));
    says(
        &load_err("arch", &w),
        &["general.architecture", "'gpt2' is not supported"],
    );

    let mut w = base();
    w.kvs.retain(|kv| kv.0 != b"llama.block_count");
    says(&load_err("nokey", &w), &["llama.block_count", "missing"]);

    let mut w = base();
    set(&mut w, "llama.embedding_length", Meta::U32(1 << 30));
    says(
        &load_err("huge-width", &w),
        &["llama.embedding_length", "1..=1048576"],
    );

    let mut w = base();
    set(&mut w, "llama.attention.head_count_kv", Meta::U32(3));
    says(&load_err("gqa", &w), &["head_count_kv", "does not divide"]);

    let mut w = base();
    set(&mut w, "llama.feed_forward_length", Meta::U32(128));
    says(
        &load_err("shape", &w),
        &[
            "tensor 'blk.0.ffn_gate.weight'",
            "shape [96, 64] (row-major) but the metadata implies [128, 64]",
        ],
    );

    let mut w = base();
    w.tensors.retain(|t| t.name != b"blk.1.ffn_up.weight");
    says(
        &load_err("missing", &w),
        &["tensor 'blk.1.ffn_up.weight'", "missing"],
    );

    let mut w = base();
    w.tensors[0].name = b"blk.0.attn_qkv.weight".to_vec();
    says(
        &load_err("unknown-name", &w),
        &["tensor 'blk.0.attn_qkv.weight'", "not a tensor"],
    );

    let mut w = base();
    set(&mut w, "tokenizer.ggml.pre", Meta::s("unheard-of"));
    says(
        &load_err("pre", &w),
        &["tokenizer.ggml.pre", "'unheard-of' is not supported"],
    );

    let mut w = base();
    set(&mut w, "tokenizer.ggml.model", Meta::s("llama"));
    says(
        &load_err("spm", &w),
        &["tokenizer.ggml.model", "'llama' is not supported"],
    );

    let mut w = base();
    set(
        &mut w,
        "tokenizer.ggml.token_type",
        Meta::I32Array(vec![1; 3]),
    );
    says(
        &load_err("types", &w),
        &["tokenizer.ggml.token_type", "3 entries"],
    );

    let mut w = base();
    set(&mut w, "tokenizer.ggml.bos_token_id", Meta::U32(1 << 30));
    says(
        &load_err("bos", &w),
        &["tokenizer.ggml.bos_token_id", "below"],
    );

    let missing = std::env::temp_dir().join("ascend-cold-no-such-file.gguf");
    assert!(matches!(load_gguf(&missing), Err(Error::Io { .. })));
}

#[test]
fn unsupported_quantisation_type_is_named() {
    let mut w = tiny_llama(gt::F32, true, &mut StdRng::seed_from_u64(5)).0;
    // IQ4_NL: 32 values in 18 bytes, a valid ggml type this loader does not dequantise.
    let t = w
        .tensors
        .iter_mut()
        .find(|t| t.name == b"blk.0.ffn_gate.weight")
        .unwrap();
    let blocks = (t.dims[0] * t.dims[1] / 32) as usize;
    t.ggml_type = gt::IQ4_NL;
    t.data = vec![0; blocks * 18];
    let path = write_temp("iq4nl-type", &w.bytes());
    let e = load_gguf(&path).err().unwrap();
    let Error::InvalidFile { field, .. } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(field, "tensor 'blk.0.ffn_gate.weight'.type");
    says(
        &e.to_string(),
        &["IQ4_NL cannot be dequantised yet (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1)"],
    );
    // The reader alone accepts it: the container is well-formed.
    assert!(GgufFile::open(&path).is_ok());
}
