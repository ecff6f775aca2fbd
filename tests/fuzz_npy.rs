//! Fuzz-style properties of the `.npy` reader (`NpyArray::parse` and `NpyArray::read`): random
//! bytes and mutations of valid files (v1.0, v2.0 and v3.0 headers it builds itself, and a fixture
//! numpy wrote) never panic, every error is an `InvalidFile` naming the file and a field, whatever
//! is accepted is self-consistent and round-trips, and memory stays within a bound of the input
//! size.
//!
//! Bound: the reader copies the payload once (at most the file size) and may quote the header in an
//! error message (a dimension and the shape text, escaped: at most twice the header), so its largest
//! single allocation is at most `2 len + 1 KiB` (the message, when the header is most of the file)
//! and what it holds at once at most `3 len + 4 KiB`; `read` adds the file contents themselves
//! (`+ len`).

mod fuzz_common;

use ascend_cold::npy::{NpyArray, NpyDtype};
use fuzz_common::*;
use proptest::prelude::*;
use std::path::Path;

const NAME: &str = "fuzzed.npy";

const PARSE_BOUND: Bound = Bound {
    largest_factor: 2,
    largest_const: 1024,
    peak_factor: 3,
    peak_const: 4096,
};

const READ_BOUND: Bound = Bound {
    largest_factor: 2,
    largest_const: 1024,
    peak_factor: 4,
    peak_const: 4096,
};

const MAGIC: &[u8] = b"\x93NUMPY";

/// A `.npy` image: magic, version, header length (u16 for 1.x, u32 after), header, data.
fn image(major: u8, minor: u8, header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&[major, minor]);
    if major == 1 {
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

/// The fields of a `.npy` image: the version bytes and the header length.
fn fields(bytes: &[u8]) -> Vec<Field> {
    let len_width = if bytes.get(6) == Some(&1) { 2 } else { 4 };
    vec![
        Field {
            offset: 6,
            width: 1,
        },
        Field {
            offset: 7,
            width: 1,
        },
        Field {
            offset: 8,
            width: len_width,
        },
    ]
}

/// A valid array and how to write its header.
#[derive(Debug, Clone)]
struct Valid {
    dtype: usize,
    shape: Vec<usize>,
    major: u8,
    double_quotes: bool,
    reversed_keys: bool,
}

const DTYPES: [(NpyDtype, &str); 6] = [
    (NpyDtype::F32, "<f4"),
    (NpyDtype::F16, "<f2"),
    (NpyDtype::I64, "<i8"),
    (NpyDtype::Bits16, "<u2"),
    (NpyDtype::Bits16, "|V2"),
    (NpyDtype::Bits16, "<V2"),
];

impl Valid {
    fn array(&self) -> NpyArray {
        let dtype = DTYPES[self.dtype].0;
        let n: usize = self.shape.iter().product();
        let data = (0..n * dtype.size())
            .map(|i| (i * 131 % 251) as u8)
            .collect();
        NpyArray {
            dtype,
            shape: self.shape.clone(),
            data,
        }
    }

    fn header(&self, descr: &str, fortran: &str, shape: &str) -> String {
        let q = if self.double_quotes { '"' } else { '\'' };
        let mut items = [
            format!("{q}descr{q}: {q}{descr}{q}"),
            format!("{q}fortran_order{q}: {fortran}"),
            format!("{q}shape{q}: {shape}"),
        ];
        if self.reversed_keys {
            items.reverse();
        }
        let mut h = format!("{{{}, }}", items.join(", "));
        let prefix = MAGIC.len() + 2 + if self.major == 1 { 2 } else { 4 };
        let unpadded = prefix + h.len() + 1;
        h.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
        h.push('\n');
        h
    }

    fn shape_text(&self) -> String {
        match self.shape.as_slice() {
            [one] => format!("({one},)"),
            dims => format!(
                "({})",
                dims.iter()
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    fn bytes(&self, edit: &HeaderEdit) -> Vec<u8> {
        let a = self.array();
        let mut descr = DTYPES[self.dtype].1.to_string();
        let mut fortran = "False".to_string();
        let mut shape = self.shape_text();
        let mut data = a.data;
        match edit {
            HeaderEdit::None => {}
            HeaderEdit::Descr(d) => descr = d.clone(),
            HeaderEdit::Fortran(f) => fortran = f.clone(),
            HeaderEdit::Shape(s) => shape = s.clone(),
            HeaderEdit::DataLen(extra) => {
                data.resize((data.len() as i64 + extra).max(0) as usize, 7)
            }
        }
        let major = self.major;
        // A 1.0 header cannot exceed u16; numpy switches to 2.0 then, and so does this writer.
        let header = self.header(&descr, &fortran, &shape);
        let major = if major == 1 && header.len() > u16::MAX as usize {
            2
        } else {
            major
        };
        image(major, 0, &header, &data)
    }
}

fn valid() -> impl Strategy<Value = Valid> {
    (
        0..DTYPES.len(),
        proptest::collection::vec(0usize..6, 0..4),
        1u8..=3,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(dtype, shape, major, double_quotes, reversed_keys)| Valid {
                dtype,
                shape,
                major,
                double_quotes,
                reversed_keys,
            },
        )
}

/// A change to one header value or to the amount of data.
#[derive(Debug, Clone)]
enum HeaderEdit {
    None,
    Descr(String),
    Fortran(String),
    Shape(String),
    DataLen(i64),
}

fn header_edit() -> impl Strategy<Value = HeaderEdit> {
    let descr = prop_oneof![
        proptest::sample::select(vec![
            "<f8",
            ">f4",
            "=f4",
            "f4",
            "<f4 ",
            "",
            "'",
            "<i4",
            "|u1",
            "<c8",
            "O",
            "<U3",
            "<V4",
            "[('a', '<f4')]",
        ])
        .prop_map(String::from),
        "[<>|=]?[a-zA-Z][0-9]{0,3}",
    ];
    let fortran = proptest::sample::select(vec!["True", "false", "0", "", "None", "False)"])
        .prop_map(String::from);
    let shape = prop_oneof![
        proptest::sample::select(vec![
            "(",
            ")",
            "()",
            "(,)",
            "(-1,)",
            "(1.5,)",
            "(+2,)",
            "(0x10,)",
            "(99999999999999999999,)",
            "(18446744073709551615,)",
            "(18446744073709551615, 0)",
            "(0, 18446744073709551615)",
            "(9223372036854775807, 2)",
            "(4294967296, 4294967296)",
            "((2, 3))",
            "[2, 3]",
            "2",
            "(2 3)",
            "(2,,3)",
        ])
        .prop_map(String::from),
        (0usize..40).prop_map(|n| format!("({})", vec!["1"; n].join(", "))),
        proptest::collection::vec(any::<u64>(), 0..5).prop_map(|d| format!(
            "({})",
            d.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
        )),
    ];
    prop_oneof![
        2 => Just(HeaderEdit::None),
        1 => descr.prop_map(HeaderEdit::Descr),
        1 => fortran.prop_map(HeaderEdit::Fortran),
        2 => shape.prop_map(HeaderEdit::Shape),
        1 => prop_oneof![-16i64..16, Just(-1_000_000), Just(1 << 16)].prop_map(HeaderEdit::DataLen),
    ]
}

fn fixture() -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smollm2/logits_chat.npy"),
    )
    .unwrap()
}

/// Parses `bytes` under the tracker and checks the properties every outcome must have.
fn check_parse(bytes: &[u8]) -> Result<Outcome, TestCaseError> {
    let (r, usage) = measure(|| NpyArray::parse(Path::new(NAME), bytes));
    let r = no_panic("NpyArray::parse", r)?;
    PARSE_BOUND.check("NpyArray::parse", bytes.len(), usage)?;
    let rejected = match r {
        Ok(a) => {
            check_accepted(&a)?;
            None
        }
        Err(e) => Some(named_error(&e, NAME)?),
    };
    Ok(Outcome {
        rejected,
        input: bytes.len(),
        usage,
    })
}

/// What an accepted array must satisfy: its data is exactly its shape's worth, and writing it out
/// and reading it back gives it again.
fn check_accepted(a: &NpyArray) -> Result<(), TestCaseError> {
    prop_assert_eq!(a.data.len(), a.len() * a.dtype.size());
    let again = NpyArray::parse(Path::new(NAME), &a.to_bytes());
    prop_assert_eq!(again.as_ref().ok(), Some(a));
    Ok(())
}

#[test]
fn random_bytes() {
    let _serial = serial();
    let any_bytes = proptest::collection::vec(any::<u8>(), 0..600);
    // Past the magic, so the version, length and header logic see the random bytes.
    let after_magic = (
        0u8..5,
        0u8..3,
        proptest::collection::vec(any::<u8>(), 0..600),
    )
        .prop_map(|(major, minor, rest)| {
            let mut b = MAGIC.to_vec();
            b.extend_from_slice(&[major, minor]);
            b.extend_from_slice(&rest);
            b
        });
    let s = run(
        "npy random bytes",
        file!(),
        20_000,
        prop_oneof![any_bytes, after_magic],
        |bytes| check_parse(&bytes),
    );
    assert!(s.rejected > 0);
}

#[test]
fn mutated_valid_files() {
    let _serial = serial();
    let strategy = (
        valid(),
        header_edit(),
        proptest::collection::vec(byte_op(), 0..4),
    );
    let s = run(
        "npy mutated",
        file!(),
        20_000,
        strategy,
        |(valid, edit, ops)| {
            let bytes = valid.bytes(&edit);
            let pristine = matches!(edit, HeaderEdit::None) && ops.is_empty();
            if pristine {
                let a = NpyArray::parse(Path::new(NAME), &bytes);
                prop_assert_eq!(a.ok(), Some(valid.array()), "a valid file was rejected");
            }
            let f = fields(&bytes);
            check_parse(&apply(bytes, &ops, &f))
        },
    );
    assert!(
        s.accepted > 0 && s.rejected > 0,
        "mutations all went one way"
    );
}

/// numpy's own file (a 192 KiB payload) with byte edits, mostly in the header.
#[test]
fn mutated_fixture() {
    let _serial = serial();
    let original = fixture();
    let header_end = 10 + u16::from_le_bytes([original[8], original[9]]) as usize;
    let a = NpyArray::parse(Path::new(NAME), &original).unwrap();
    assert_eq!((a.dtype, a.shape.as_slice()), (NpyDtype::F32, &[49152][..]));
    let f = fields(&original);
    let s = run(
        "npy fixture mutated",
        file!(),
        2_000,
        proptest::collection::vec(
            prop_oneof![
                // Edits of the header bytes, where the parser's decisions are.
                3 => (0..header_end, 0u8..8).prop_map(|(at, bit)| (Some((at, bit)), None)),
                2 => byte_op().prop_map(|op| (None, Some(op))),
            ],
            1..4,
        ),
        |edits| {
            let mut bytes = original.clone();
            let mut ops = Vec::new();
            for (flip, op) in edits {
                if let Some((at, bit)) = flip {
                    bytes[at] ^= 1 << bit;
                }
                ops.extend(op);
            }
            check_parse(&apply(bytes, &ops, &f))
        },
    );
    assert!(s.rejected > 0);
}

/// The file API: errors name the path given, and reading adds the file's bytes to the bound.
#[test]
fn read_from_files() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(NAME);
    let shown = path.display().to_string();
    let s = run(
        "npy read",
        file!(),
        2_000,
        (
            valid(),
            header_edit(),
            proptest::collection::vec(byte_op(), 0..3),
        ),
        |(valid, edit, ops)| {
            let bytes = valid.bytes(&edit);
            let f = fields(&bytes);
            let bytes = apply(bytes, &ops, &f);
            replace_file(&path, &bytes);
            let (r, usage) = measure(|| NpyArray::read(&path));
            let r = no_panic("NpyArray::read", r)?;
            READ_BOUND.check("NpyArray::read", bytes.len(), usage)?;
            let rejected = match r {
                Ok(a) => {
                    check_accepted(&a)?;
                    None
                }
                Err(e) => Some(named_error(&e, &shown)?),
            };
            Ok(Outcome {
                rejected,
                input: bytes.len(),
                usage,
            })
        },
    );
    assert!(s.accepted > 0 && s.rejected > 0);
}

// ---- regressions the fuzzing found ----

/// A 2.0 file cut inside its 4-byte header length used to be called an unsupported version 2.0.
#[test]
fn truncated_v2_header_length_is_a_truncation() {
    for major in [2, 3] {
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&[major, 0, 0x40, 0]);
        let e = NpyArray::parse(Path::new(NAME), &bytes).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains(NAME) && msg.contains("header") && msg.contains("10 bytes"),
            "{msg}"
        );
        assert!(!msg.contains("version"), "{msg}");
    }
}

/// numpy only writes and reads minor version 0; 1.5 was read as if it were 1.0.
#[test]
fn nonzero_minor_version_is_rejected() {
    let valid = Valid {
        dtype: 0,
        shape: vec![2],
        major: 1,
        double_quotes: false,
        reversed_keys: false,
    };
    let mut bytes = valid.bytes(&HeaderEdit::None);
    assert!(NpyArray::parse(Path::new(NAME), &bytes).is_ok());
    bytes[7] = 5;
    let msg = NpyArray::parse(Path::new(NAME), &bytes)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("version 1.5 is not 1.0, 2.0 or 3.0"), "{msg}");
}

/// `{"descr": "<f4", ...}` is a Python dict numpy reads; it was rejected as having no 'descr'.
#[test]
fn double_quoted_keys_are_read() {
    for reversed_keys in [false, true] {
        let valid = Valid {
            dtype: 1,
            shape: vec![3, 2],
            major: 1,
            double_quotes: true,
            reversed_keys,
        };
        let a = NpyArray::parse(Path::new(NAME), &valid.bytes(&HeaderEdit::None)).unwrap();
        assert_eq!(a, valid.array());
    }
}
