//! Fuzz-style properties of the GGUF reader (`GgufFile::from_bytes` / `open`) and the model loader
//! on top of it (`load_from` / `load_gguf`): random bytes, and valid files (a small container and
//! tiny Llamas in six storage types) edited structurally (keys and tensors duplicated, dropped,
//! swapped or aliased, values replaced by extreme ones, counts, types and dimensions changed) and
//! byte by byte (bit flips, truncation, extreme values written into every length, count, type and
//! offset field). Nothing may panic; every error is an `InvalidFile` naming the file and a field;
//! whatever is accepted is consistent with the file; memory stays within a bound of the file size.
//!
//! Bounds (`len` = file size; the image itself is allocated before the measurement). The reader
//! checks every count against the bytes left before reserving for it, so each item it keeps is
//! backed by its encoding in the file: at least 16 bytes for a key/value (3-byte key, u8 value), 35
//! for an empty tensor info, 13 for a one-bool array inside an array. In memory a key/value is a
//! vector slot, a map entry and two copies of its key, and an array element a 32-byte `Array` in a
//! vector that may have doubled: about 10 bytes per byte of file at worst (9.3 measured by
//! `densest_files_stay_within_the_read_bound`), at most 4 in any one vector. So: largest allocation
//! at most `8 len + 4 KiB`, held at once at most `16 len + 64 KiB`. The loader adds every tensor as
//! f32 (at most 32 values per 18 bytes, ~7.1 times the tensor's bytes, which once tensors cannot
//! share bytes sum to at most `len`), one more copy of the tensor being unpermuted, and the
//! tokenizer (a few hashed copies of each token and merge): at most `64 len + 4 MiB` held at once.

mod fuzz_common;
mod gguf_util;

use ascend_cold::model::gguf::{load_from, load_gguf, GgufFile};
use ascend_cold::model::hf::expected_tensors;
use fuzz_common::*;
use gguf_util::{gt, tiny_llama, vt, Meta, Writer};
use proptest::prelude::*;
use proptest::sample::Index;
use rand::{rngs::StdRng, SeedableRng};
use std::sync::OnceLock;

const NAME: &str = "fuzzed.gguf";

const READ_BOUND: Bound = Bound {
    largest_factor: 8,
    largest_const: 4096,
    peak_factor: 16,
    peak_const: 64 << 10,
};

const LOAD_BOUND: Bound = Bound {
    largest_factor: 8,
    largest_const: 1 << 20,
    peak_factor: 64,
    peak_const: 4 << 20,
};

/// A small container: strings, an array, a bool and two tensors (as in `gguf_hostile`).
fn small() -> Writer {
    let mut w = Writer::default();
    w.kv("general.architecture", Meta::s("llama"))
        .kv(
            "tokenizer.ggml.tokens",
            Meta::StrArray(vec!["a".into(), "bc".into()]),
        )
        .kv("flag", Meta::Bool(true))
        .kv("general.alignment", Meta::U32(32))
        .kv("nested", Meta::Raw(vt::ARRAY, nested_array()))
        .f32_tensor("blk.0.attn_q.weight", &[2, 4], &[1.0; 8])
        .tensor("blk.0.attn_k.weight", &[32], gt::Q8_0, vec![0; 34]);
    w
}

/// `[[1u8, 2u8], []]`: an array of arrays.
fn nested_array() -> Vec<u8> {
    let mut raw = vt::ARRAY.to_le_bytes().to_vec();
    raw.extend_from_slice(&2u64.to_le_bytes());
    raw.extend_from_slice(&vt::U8.to_le_bytes());
    raw.extend_from_slice(&2u64.to_le_bytes());
    raw.extend_from_slice(&[1, 2]);
    raw.extend_from_slice(&vt::U16.to_le_bytes());
    raw.extend_from_slice(&0u64.to_le_bytes());
    raw
}

const STORES: [u32; 6] = [gt::F32, gt::F16, gt::BF16, gt::Q8_0, gt::Q4_0, gt::Q5_1];

/// Tiny Llamas in every storage type, tied and untied, built once.
fn models() -> &'static [Writer] {
    static MODELS: OnceLock<Vec<Writer>> = OnceLock::new();
    MODELS.get_or_init(|| {
        let mut rng = StdRng::seed_from_u64(11);
        STORES
            .iter()
            .enumerate()
            .map(|(i, &store)| tiny_llama(store, i % 2 == 0, &mut rng).0)
            .collect()
    })
}

// ---- the fields of a GGUF image ----

/// Every length, count, type, dimension, offset and scalar value field of a GGUF image, found by
/// walking it; stops quietly where the image stops making sense (edits come before the walk).
fn fields(b: &[u8]) -> Vec<Field> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    let mut field = |pos: &mut usize, width: usize| -> Option<u64> {
        let bytes = b.get(*pos..*pos + width)?;
        let mut v = [0u8; 8];
        v[..width].copy_from_slice(bytes);
        out.push(Field {
            offset: *pos,
            width,
        });
        *pos += width;
        Some(u64::from_le_bytes(v))
    };
    let _ = (|| -> Option<()> {
        field(&mut pos, 4)?;
        field(&mut pos, 4)?;
        let tensors = field(&mut pos, 8)?;
        let kvs = field(&mut pos, 8)?;
        for _ in 0..kvs.min(1 << 16) {
            let n = field(&mut pos, 8)?;
            pos = pos.checked_add(usize::try_from(n).ok()?)?;
            let ty = field(&mut pos, 4)?;
            walk_value(b, &mut pos, ty as u32, &mut field, 0)?;
        }
        for _ in 0..tensors.min(1 << 16) {
            let n = field(&mut pos, 8)?;
            pos = pos.checked_add(usize::try_from(n).ok()?)?;
            let dims = field(&mut pos, 4)?;
            for _ in 0..dims.min(8) {
                field(&mut pos, 8)?;
            }
            field(&mut pos, 4)?;
            field(&mut pos, 8)?;
        }
        Some(())
    })();
    out
}

fn walk_value(
    b: &[u8],
    pos: &mut usize,
    ty: u32,
    field: &mut impl FnMut(&mut usize, usize) -> Option<u64>,
    depth: usize,
) -> Option<()> {
    let width = match ty {
        vt::U8 | vt::I8 | vt::BOOL => 1,
        vt::U16 | vt::I16 => 2,
        vt::U32 | vt::I32 | vt::F32 => 4,
        vt::U64 | vt::I64 | vt::F64 => 8,
        vt::STRING => {
            let n = field(pos, 8)?;
            *pos = pos.checked_add(usize::try_from(n).ok()?)?;
            return (*pos <= b.len()).then_some(());
        }
        vt::ARRAY if depth < 4 => {
            let elem = field(pos, 4)? as u32;
            let count = field(pos, 8)?;
            // Long arrays (token lists): their first elements stand for the rest.
            for k in 0..count {
                if k < 4 {
                    walk_value(b, pos, elem, field, depth + 1)?;
                } else {
                    skip_value(b, pos, elem, depth + 1)?;
                }
            }
            return Some(());
        }
        _ => return None,
    };
    field(pos, width).map(|_| ())
}

fn skip_value(b: &[u8], pos: &mut usize, ty: u32, depth: usize) -> Option<()> {
    let mut ignore = |p: &mut usize, w: usize| -> Option<u64> {
        let bytes = b.get(*p..*p + w)?;
        let mut v = [0u8; 8];
        v[..w].copy_from_slice(bytes);
        *p += w;
        Some(u64::from_le_bytes(v))
    };
    walk_value(b, pos, ty, &mut ignore, depth)
}

// ---- structural edits ----

/// An edit of the file's structure, applied to the writer before the image is built.
#[derive(Debug, Clone)]
enum Edit {
    DupKv(Index),
    SwapKv(Index, Index),
    DropKv(Index),
    SetKv(Index, Meta),
    AddKv(Index, Meta),
    DupTensor(Index),
    SwapTensor(Index, Index),
    DropTensor(Index),
    /// Points a tensor's offset at another tensor's data.
    AliasTensor(Index, Index),
    TensorType(Index, u32),
    TensorDims(Index, Vec<u64>),
    TensorOffset(Index, u64),
    TensorCount(u64),
    KvCount(u64),
    Version(u32),
}

const META_KEYS: &[&str] = &[
    "general.alignment",
    "general.architecture",
    "llama.block_count",
    "llama.embedding_length",
    "llama.feed_forward_length",
    "llama.attention.head_count",
    "llama.attention.head_count_kv",
    "llama.attention.key_length",
    "llama.attention.value_length",
    "llama.attention.layer_norm_rms_epsilon",
    "llama.context_length",
    "llama.rope.freq_base",
    "llama.rope.dimension_count",
    "llama.rope.scaling.type",
    "llama.rope.scaling.factor",
    "llama.vocab_size",
    "tokenizer.ggml.model",
    "tokenizer.ggml.pre",
    "tokenizer.ggml.tokens",
    "tokenizer.ggml.merges",
    "tokenizer.ggml.token_type",
    "tokenizer.ggml.bos_token_id",
    "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.eot_token_id",
    "tokenizer.ggml.add_bos_token",
    "tokenizer.ggml.add_eos_token",
    "tokenizer.chat_template",
];

fn big() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1),
        Just(2),
        Just(3),
        Just(31),
        Just(32),
        Just(33),
        Just(64),
        Just(u32::MAX as u64),
        Just(1 << 32),
        Just(1 << 40),
        Just(i64::MAX as u64),
        Just(1 << 63),
        Just(u64::MAX),
        any::<u64>(),
    ]
}

fn meta() -> impl Strategy<Value = Meta> {
    let text = prop_oneof![
        proptest::sample::select(vec![
            "",
            "llama",
            "gpt2",
            "smollm",
            "llama3",
            "linear",
            "none",
            "yarn",
            "a b",
            "a  b",
            " ",
            "<|im_start|>",
        ])
        .prop_map(String::from),
        (0usize..3000).prop_map(|n| "x".repeat(n)),
    ];
    prop_oneof![
        big().prop_map(|v| Meta::U32(v as u32)),
        big().prop_map(Meta::U64),
        prop_oneof![Just(-1i32), Just(i32::MIN), Just(0), Just(64)].prop_map(Meta::I32),
        prop_oneof![Just(-1i64), Just(i64::MIN)].prop_map(Meta::I64),
        any::<u8>().prop_map(Meta::U8),
        prop_oneof![
            Just(f32::NAN),
            Just(f32::INFINITY),
            Just(0.0f32),
            Just(-1.0),
            Just(1e-45),
            Just(f32::MAX)
        ]
        .prop_map(Meta::F32),
        prop_oneof![
            Just(1e300f64),
            Just(1e-300),
            Just(-0.0),
            Just(f64::NAN),
            Just(4.0)
        ]
        .prop_map(Meta::F64),
        any::<bool>().prop_map(Meta::Bool),
        text.clone().prop_map(Meta::Str),
        proptest::collection::vec(text, 0..300).prop_map(Meta::StrArray),
        proptest::collection::vec(prop_oneof![Just(-1i32), 0i32..8], 0..300)
            .prop_map(Meta::I32Array),
        proptest::collection::vec(any::<f32>(), 0..8).prop_map(Meta::F32Array),
        (0u32..16, proptest::collection::vec(any::<u8>(), 0..40))
            .prop_map(|(t, b)| Meta::Raw(t, b)),
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        1 => any::<Index>().prop_map(Edit::DupKv),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Edit::SwapKv(a, b)),
        1 => any::<Index>().prop_map(Edit::DropKv),
        4 => (any::<Index>(), meta()).prop_map(|(i, m)| Edit::SetKv(i, m)),
        3 => (any::<Index>(), meta()).prop_map(|(i, m)| Edit::AddKv(i, m)),
        1 => any::<Index>().prop_map(Edit::DupTensor),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Edit::SwapTensor(a, b)),
        1 => any::<Index>().prop_map(Edit::DropTensor),
        2 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Edit::AliasTensor(a, b)),
        1 => (any::<Index>(), prop_oneof![0u32..41, Just(u32::MAX)])
            .prop_map(|(i, t)| Edit::TensorType(i, t)),
        2 => (any::<Index>(), proptest::collection::vec(big(), 0..6))
            .prop_map(|(i, d)| Edit::TensorDims(i, d)),
        1 => (any::<Index>(), big()).prop_map(|(i, o)| Edit::TensorOffset(i, o)),
        1 => big().prop_map(Edit::TensorCount),
        1 => big().prop_map(Edit::KvCount),
        1 => prop_oneof![0u32..5, Just(0x0300_0000), any::<u32>()].prop_map(Edit::Version),
    ]
}

/// The offsets `build` gives the tensors, for aliasing.
fn layout(w: &Writer) -> Vec<u64> {
    let align = w.alignment as usize;
    let mut next = 0usize;
    w.tensors
        .iter()
        .map(|t| {
            let at = next;
            next += t.data.len().div_ceil(align) * align;
            at as u64
        })
        .collect()
}

fn apply_edit(w: &mut Writer, e: &Edit) {
    let (nk, nt) = (w.kvs.len(), w.tensors.len());
    match e {
        Edit::DupKv(i) if nk > 0 => w.kvs.push(w.kvs[i.index(nk)].clone()),
        Edit::SwapKv(a, b) if nk > 0 => w.kvs.swap(a.index(nk), b.index(nk)),
        Edit::DropKv(i) if nk > 0 => drop(w.kvs.remove(i.index(nk))),
        Edit::SetKv(i, m) if nk > 0 => w.kvs[i.index(nk)].1 = m.clone(),
        Edit::AddKv(i, m) => {
            let key = i.get(META_KEYS).as_bytes().to_vec();
            w.kvs.retain(|kv| kv.0 != key);
            w.kvs.push((key, m.clone()));
        }
        Edit::DupTensor(i) if nt > 0 => w.tensors.push(w.tensors[i.index(nt)].clone()),
        Edit::SwapTensor(a, b) if nt > 0 => w.tensors.swap(a.index(nt), b.index(nt)),
        Edit::DropTensor(i) if nt > 0 => drop(w.tensors.remove(i.index(nt))),
        Edit::AliasTensor(a, b) if nt > 0 => {
            let at = layout(w)[b.index(nt)];
            w.tensors[a.index(nt)].offset = Some(at);
        }
        Edit::TensorType(i, t) if nt > 0 => w.tensors[i.index(nt)].ggml_type = *t,
        Edit::TensorDims(i, d) if nt > 0 => w.tensors[i.index(nt)].dims = d.clone(),
        Edit::TensorOffset(i, o) if nt > 0 => w.tensors[i.index(nt)].offset = Some(*o),
        Edit::TensorCount(c) => w.tensor_count = Some(*c),
        Edit::KvCount(c) => w.kv_count = Some(*c),
        Edit::Version(v) => w.version = *v,
        _ => {}
    }
}

/// A valid writer with structural edits, built, then with byte edits.
#[derive(Debug, Clone)]
struct Recipe {
    edits: Vec<Edit>,
    bytes: Vec<ByteOp>,
}

fn recipe() -> impl Strategy<Value = Recipe> {
    prop_oneof![
        // Half the cases edit the structure only, so that deeper checks see well-formed files.
        (proptest::collection::vec(edit(), 1..4)).prop_map(|edits| Recipe {
            edits,
            bytes: vec![]
        }),
        (
            proptest::collection::vec(edit(), 0..2),
            proptest::collection::vec(byte_op(), 1..4)
        )
            .prop_map(|(edits, bytes)| Recipe { edits, bytes }),
    ]
}

impl Recipe {
    fn build(&self, base: &Writer) -> Vec<u8> {
        let mut w = base.clone();
        for e in &self.edits {
            apply_edit(&mut w, e);
        }
        let image = w.bytes();
        let f = fields(&image);
        apply(image, &self.bytes, &f)
    }
}

// ---- properties ----

/// Parses under the tracker; the file when accepted, after checking what any outcome must satisfy.
fn read(bytes: Vec<u8>) -> Result<(Option<GgufFile>, Outcome), TestCaseError> {
    let len = bytes.len();
    let (r, usage) = measure(|| GgufFile::from_bytes(NAME, bytes));
    let r = no_panic("GgufFile::from_bytes", r)?;
    READ_BOUND.check("GgufFile::from_bytes", len, usage)?;
    let (file, rejected) = match r {
        Ok(f) => {
            check_file(&f)?;
            (Some(f), None)
        }
        Err(e) => (None, Some(named_error(&e, NAME)?)),
    };
    Ok((
        file,
        Outcome {
            rejected,
            input: len,
            usage,
        },
    ))
}

/// An accepted file's tensors lie inside it, each exactly its type's size, none sharing bytes.
fn check_file(f: &GgufFile) -> Result<(), TestCaseError> {
    let mut ranges = Vec::new();
    for t in f.tensors() {
        let n: Option<u64> = t.dims.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
        prop_assert_eq!(n, Some(t.n_elements), "{}", t.name);
        prop_assert_eq!(f.tensor_bytes(t).len() as u64, t.n_bytes, "{}", t.name);
        prop_assert_eq!(t.offset % f.alignment(), 0);
        if t.n_bytes > 0 {
            ranges.push((t.offset, t.offset + t.n_bytes));
        }
    }
    ranges.sort_unstable();
    for w in ranges.windows(2) {
        prop_assert!(w[0].1 <= w[1].0, "tensor data ranges overlap: {:?}", w);
    }
    Ok(())
}

/// Loads an accepted file under the tracker and checks the outcome.
fn load(file: &GgufFile) -> Result<Outcome, TestCaseError> {
    let len = file.len() as usize;
    let (r, usage) = measure(|| load_from(file));
    let r = no_panic("load_from", r)?;
    LOAD_BOUND.check("load_from", len, usage)?;
    let rejected = match r {
        Ok(m) => {
            let c = &m.config;
            for x in [c.rms_norm_eps, c.rope_theta] {
                prop_assert!(x.is_finite() && x > 0.0, "config {c:?}");
            }
            for (name, shape) in expected_tensors(c) {
                if let Some(t) = m.tensors.get(&name) {
                    prop_assert_eq!(&t.shape, &shape, "{}", name);
                    prop_assert_eq!(t.data.len(), shape.iter().product::<usize>());
                }
            }
            None
        }
        Err(e) => Some(named_error(&e, NAME)?),
    };
    Ok(Outcome {
        rejected,
        input: len,
        usage,
    })
}

#[test]
fn random_bytes() {
    let _serial = serial();
    let tail = || proptest::collection::vec(any::<u8>(), 0..2048);
    let strategy = prop_oneof![
        tail(),
        // Past the magic and version, so the counts and items see random bytes.
        (prop_oneof![Just(3u32), Just(2), any::<u32>()], tail()).prop_map(|(v, rest)| {
            let mut b = b"GGUF".to_vec();
            b.extend_from_slice(&v.to_le_bytes());
            b.extend_from_slice(&rest);
            b
        }),
        // Plausible counts too, so that random key/values and tensor infos get parsed.
        (0u64..4, 0u64..8, tail()).prop_map(|(t, k, rest)| {
            let mut b = b"GGUF".to_vec();
            b.extend_from_slice(&3u32.to_le_bytes());
            b.extend_from_slice(&t.to_le_bytes());
            b.extend_from_slice(&k.to_le_bytes());
            b.extend_from_slice(&rest);
            b
        }),
    ];
    let s = run("gguf random bytes", file!(), 20_000, strategy, |bytes| {
        Ok(read(bytes)?.1)
    });
    assert!(s.rejected > 0);
}

#[test]
fn mutated_small_container() {
    let _serial = serial();
    let base = small();
    assert!(GgufFile::from_bytes(NAME, base.bytes()).is_ok());
    let s = run(
        "gguf reader, mutated container",
        file!(),
        20_000,
        recipe(),
        |r| Ok(read(r.build(&base))?.1),
    );
    assert!(
        s.accepted > 0 && s.rejected > 0,
        "mutations all went one way"
    );
}

#[test]
fn mutated_models_through_the_reader() {
    let _serial = serial();
    let s = run(
        "gguf reader, mutated models",
        file!(),
        10_000,
        (0..STORES.len(), recipe()),
        |(m, r)| Ok(read(r.build(&models()[m]))?.1),
    );
    assert!(s.accepted > 0 && s.rejected > 0);
}

#[test]
fn mutated_models_through_the_loader() {
    let _serial = serial();
    for (m, w) in models().iter().enumerate() {
        let file = GgufFile::from_bytes(NAME, w.bytes()).unwrap();
        load_from(&file).unwrap_or_else(|e| panic!("model {m} does not load: {e}"));
    }
    let s = run(
        "gguf loader, mutated models",
        file!(),
        5_000,
        (0..STORES.len(), recipe()),
        |(m, r)| {
            let (file, outcome) = read(r.build(&models()[m]))?;
            match file {
                Some(f) => load(&f),
                None => Ok(outcome),
            }
        },
    );
    assert!(s.accepted > 0 && s.rejected > 0);
}

/// The file API maps the file instead of owning bytes; errors must name the path given.
#[test]
fn mutated_models_through_the_file_api() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(NAME);
    let shown = path.display().to_string();
    let s = run(
        "gguf load_gguf, mutated models",
        file!(),
        1_000,
        (0..STORES.len(), recipe()),
        |(m, r)| {
            let bytes = r.build(&models()[m]);
            replace_file(&path, &bytes);
            let (res, usage) = measure(|| load_gguf(&path));
            let res = no_panic("load_gguf", res)?;
            LOAD_BOUND.check("load_gguf", bytes.len(), usage)?;
            let rejected = match res {
                Ok(_) => None,
                Err(e) => Some(named_error(&e, &shown)?),
            };
            Ok(Outcome {
                rejected,
                input: bytes.len(),
                usage,
            })
        },
    );
    assert!(s.rejected > 0);
}

// ---- regressions the fuzzing found ----

/// Tensors pointing at the same bytes used to be accepted, so a file could declare hundreds of
/// layers backed by one layer's data and make the loader dequantise a copy for each: this 256-layer
/// file of 189 KB made `load_from` hold 33 MB at once, and nothing bounded the ratio (the layer
/// count and the width of the shared tensor multiply it).
#[test]
fn tensors_sharing_data_are_rejected() {
    let _serial = serial();
    let mut w = tiny_llama(gt::Q4_0, true, &mut StdRng::seed_from_u64(12)).0;
    let layers = 256;
    let kv = w
        .kvs
        .iter_mut()
        .find(|kv| kv.0 == b"llama.block_count")
        .unwrap();
    kv.1 = Meta::U32(layers);
    let offsets = layout(&w);
    let layer0: Vec<_> = w
        .tensors
        .iter()
        .zip(&offsets)
        .filter(|(t, _)| t.name.starts_with(b"blk.0."))
        .map(|(t, &at)| (t.clone(), at))
        .collect();
    for l in 2..layers {
        for (t, at) in &layer0 {
            let mut alias = t.clone();
            alias.name = String::from_utf8_lossy(&t.name)
                .replacen("blk.0.", &format!("blk.{l}."), 1)
                .into_bytes();
            alias.data = Vec::new();
            alias.offset = Some(*at);
            w.tensors.push(alias);
        }
    }
    let bytes = w.bytes();
    let len = bytes.len();
    let (r, usage) = measure(|| GgufFile::from_bytes(NAME, bytes));
    let msg = r.unwrap().unwrap_err().to_string();
    assert!(
        msg.contains(NAME) && msg.contains("overlaps tensor 'blk."),
        "{msg}"
    );
    READ_BOUND.check("from_bytes", len, usage).unwrap();
}

/// Two tensors of one element type may still be adjacent, and empty tensors may sit anywhere.
#[test]
fn adjacent_and_empty_tensors_are_not_overlaps() {
    let mut w = small();
    w.tensor("empty.a", &[0, 4], gt::F32, vec![])
        .tensor("empty.b", &[32, 0], gt::Q8_0, vec![]);
    let n = w.tensors.len();
    w.tensors[n - 1].offset = Some(0);
    let f = GgufFile::from_bytes(NAME, w.bytes()).unwrap();
    assert_eq!(f.tensors().len(), 4);
}

/// Float metadata was range-checked as f64 and then narrowed, so 1e300 loaded as an infinite RMS
/// epsilon and 1e-300 as a zero one.
#[test]
fn floats_that_do_not_fit_f32_are_rejected() {
    let _serial = serial();
    let base = || tiny_llama(gt::Q8_0, true, &mut StdRng::seed_from_u64(13)).0;
    for (key, value) in [
        ("llama.attention.layer_norm_rms_epsilon", 1e300),
        ("llama.attention.layer_norm_rms_epsilon", 1e-300),
        ("llama.rope.freq_base", 1e39),
        ("llama.rope.scaling.factor", 1e300),
    ] {
        let mut w = base();
        w.kvs.retain(|kv| kv.0 != key.as_bytes());
        w.kv(key, Meta::F64(value))
            .kv("llama.rope.scaling.type", Meta::s("linear"));
        let file = GgufFile::from_bytes(NAME, w.bytes()).unwrap();
        let e = load_from(&file)
            .err()
            .unwrap_or_else(|| panic!("{key} = {value} accepted"));
        let msg = e.to_string();
        assert!(msg.contains(NAME) && msg.contains(key), "{msg}");
    }
}

/// The reader's bound where the file is densest in items: thousands of the smallest key/values
/// (3-byte keys, u8 values: 16 bytes each), empty tensor infos (35 bytes each), and arrays of
/// one-element arrays.
#[test]
fn densest_files_stay_within_the_read_bound() {
    let _serial = serial();
    let key = |i: usize| {
        let c = |k: usize| (b'!' + (k % 94) as u8) as char;
        format!("{}{}{}", c(i), c(i / 94), c(i / (94 * 94)))
    };
    let mut kvs = Writer::default();
    for i in 0..20_000 {
        kvs.kv(&key(i), Meta::U8(1));
    }
    let mut tensors = Writer::default();
    for i in 0..20_000 {
        tensors.tensor(&key(i), &[0], gt::F32, vec![]);
    }
    let mut bytes = Writer::default();
    bytes.kv("b", Meta::Raw(vt::ARRAY, nested_bools(200_000)));
    for w in [kvs, tensors, bytes] {
        let image = w.bytes();
        let len = image.len();
        let (r, usage) = measure(|| GgufFile::from_bytes(NAME, image));
        r.unwrap().unwrap();
        eprintln!("{len} bytes: {usage:?}");
        READ_BOUND.check("dense file", len, usage).unwrap();
    }
}

/// An array of `n` one-element arrays of bools: 13 bytes of file per 32-byte `Array` in memory.
fn nested_bools(n: u64) -> Vec<u8> {
    let mut raw = vt::ARRAY.to_le_bytes().to_vec();
    raw.extend_from_slice(&n.to_le_bytes());
    for _ in 0..n {
        raw.extend_from_slice(&vt::BOOL.to_le_bytes());
        raw.extend_from_slice(&1u64.to_le_bytes());
        raw.push(1);
    }
    raw
}
