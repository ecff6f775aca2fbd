//! Fuzz-style properties of eval's task-file parser (`ascend_cold::task::parse`) and of the answer
//! reader it shares with eval (`ascend_cold::answer`): random bytes, files of valid, mutated and
//! random lines (JSON edits: wrong types, absurd numbers, deep nesting, duplicated and reordered
//! keys, text damage; CRLF, blank lines, no final newline) and hostile answer strings never panic;
//! every error is an `InvalidFile` naming the file and a line; whatever is accepted has one problem
//! per non-blank line, unique non-empty ids, and answers that a regex oracle accepts, with the
//! value the oracle reads; memory stays within a bound of the input size.
//!
//! Bound (`len` = input bytes). The parser holds one line (a buffer of at most twice the line, as
//! it grows by doubling), and per problem its four strings (at most the line's text), a copy of the
//! id in the set of seen ids, and a 96-byte `Problem` in a vector. A problem takes at least 36 bytes
//! of input (`{"id":"a","prompt":"","answer":"1"}` and a newline), and the vector doubles, so
//! its buffer is at most 2 x 96 / 36 < 6 bytes per input byte, and while it grows old and new
//! buffers coexist (< 9 per byte). The id set: at most 2 buckets of 25 bytes per id as it doubles,
//! 3 while it grows (< 3 per byte with the id copies). serde_json unescapes a string into a scratch
//! buffer no longer than the string. Errors quote at most 40 characters. So the largest allocation
//! is at most `6 len + 4 KiB` and what is held at once at most `16 len + 16 KiB`.

mod fuzz_common;

use ascend_cold::answer::{self, Number};
use ascend_cold::task;
use fuzz_common::*;
use proptest::prelude::*;
use serde_json::Value;
use std::collections::HashSet;
use std::path::Path;

const NAME: &str = "fuzzed-task.jsonl";

const BOUND: Bound = Bound {
    largest_factor: 6,
    largest_const: 4096,
    peak_factor: 16,
    peak_const: 16384,
};

/// The oracle for a reference answer: one number, optionally with thousands separators in groups
/// of three and a fraction (docs/EVAL.md, "Answers").
fn oracle_answer(text: &str) -> Option<f64> {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = RE.get_or_init(|| {
        regex::Regex::new(r"^-?(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]+)?$").unwrap()
    });
    let t = text.trim();
    re.is_match(t).then(|| t.replace(',', "").parse().unwrap())
}

/// A valid line of the study's format.
fn valid_line(i: usize) -> Value {
    serde_json::json!({
        "id": format!("dev-{i:05}"), "split": "dev", "template": "d_sum", "skeleton": "a+b",
        "prompt": format!("Mia has {i} apples and gets 3 more. How many now?\nSolve it step by step, then give the final answer on a last line as '#### <number>'."),
        "answer": (i + 3).to_string(),
        "completion": format!("{i} + 3 = {}.\n#### {}", i + 3, i + 3),
    })
}

/// One line of a fuzzed file.
#[derive(Debug, Clone)]
enum LineKind {
    Valid,
    Mutated(Vec<JsonOp>),
    Answer(String),
    Blank(String),
    Random(Vec<u8>),
}

fn line_kind() -> impl Strategy<Value = LineKind> {
    prop_oneof![
        4 => Just(LineKind::Valid),
        4 => proptest::collection::vec(json_op(), 1..4).prop_map(LineKind::Mutated),
        2 => hostile_answer().prop_map(LineKind::Answer),
        1 => "[ \t\r]{0,3}".prop_map(LineKind::Blank),
        1 => proptest::collection::vec(any::<u8>(), 0..64).prop_map(LineKind::Random),
    ]
}

/// Strings near the answer grammar: digits, signs, separators, currency, spaces, fractions.
fn hostile_answer() -> impl Strategy<Value = String> {
    prop_oneof![
        "[-0-9,.]{0,12}",
        "[-+$0-9,. /e]{0,16}",
        "-?[0-9]{1,4}(,[0-9]{2,4}){0,3}(\\.[0-9]{0,3})?",
        Just("1,200".to_string()),
        Just("-3".to_string()),
        Just("4.50".to_string()),
        Just("$1,200.00".to_string()),
        Just("1/2".to_string()),
        Just("9".repeat(400)),
    ]
}

fn render(kinds: &[LineKind], crlf: bool, final_newline: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, k) in kinds.iter().enumerate() {
        let line = match k {
            LineKind::Valid => valid_line(i).to_string().into_bytes(),
            LineKind::Mutated(ops) => mutate_json(&valid_line(i), ops),
            LineKind::Answer(a) => {
                let mut v = valid_line(i);
                v["answer"] = a.as_str().into();
                v.to_string().into_bytes()
            }
            LineKind::Blank(b) => b.clone().into_bytes(),
            LineKind::Random(b) => b.clone(),
        };
        out.extend_from_slice(&line);
        if i + 1 < kinds.len() || final_newline {
            out.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
        }
    }
    out
}

/// Parses `bytes` under the allocation tracker and checks what came out.
fn check(bytes: &[u8]) -> Result<Outcome, TestCaseError> {
    let (r, usage) = measure(|| task::parse(Path::new(NAME), bytes));
    let r = no_panic("task::parse", r)?;
    BOUND.check("task::parse", bytes.len(), usage)?;
    let rejected = match r {
        Ok(problems) => {
            check_accepted(bytes, &problems)?;
            None
        }
        Err(e) => {
            let class = named_error(&e, NAME)?;
            prop_assert!(class.starts_with("line #"), "{class}");
            Some(class)
        }
    };
    Ok(Outcome {
        rejected,
        input: bytes.len(),
        usage,
    })
}

#[derive(serde::Deserialize)]
struct Members {
    id: String,
    prompt: String,
    answer: String,
}

fn check_accepted(bytes: &[u8], problems: &[task::Problem]) -> Result<(), TestCaseError> {
    let text = std::str::from_utf8(bytes).expect("accepted input is UTF-8");
    let lines: Vec<&str> = text.split('\n').filter(|l| !l.trim().is_empty()).collect();
    prop_assert_eq!(lines.len(), problems.len());
    let mut ids = HashSet::new();
    for (line, p) in lines.iter().zip(problems) {
        // Only the three members: other members may hold what a `Value` cannot (1e999).
        let v: Members = serde_json::from_str(line).expect("an accepted line has the members");
        prop_assert_eq!(&v.id, &p.id);
        prop_assert!(
            !p.id.is_empty() && ids.insert(p.id.clone()),
            "id {:?}",
            p.id
        );
        prop_assert_eq!(&v.prompt, &p.prompt);
        let given = v.answer.as_str();
        let value = oracle_answer(given);
        prop_assert!(value.is_some(), "accepted answer {:?}", given);
        let normal = p.answer.as_str();
        prop_assert_eq!(Number::parse_exact(normal), Some(p.answer.clone()));
        let value = value.unwrap();
        if value.abs() < 1e15 {
            prop_assert_eq!(
                normal.parse::<f64>().unwrap(),
                value,
                "{:?} -> {}",
                given,
                normal
            );
        }
    }
    Ok(())
}

#[test]
fn random_bytes() {
    let _serial = serial();
    let s = run(
        "task random bytes",
        file!(),
        5_000,
        proptest::collection::vec(any::<u8>(), 0..2048),
        |b| check(&b),
    );
    assert!(s.rejected > 0);
}

#[test]
fn files_of_valid_mutated_and_random_lines() {
    let _serial = serial();
    let s = run(
        "task mutated files",
        file!(),
        10_000,
        (
            proptest::collection::vec(line_kind(), 0..12),
            any::<bool>(),
            any::<bool>(),
        ),
        |(kinds, crlf, final_newline)| check(&render(&kinds, crlf, final_newline)),
    );
    assert!(
        s.accepted > 0 && s.rejected > 0,
        "mutations all went one way"
    );
}

#[test]
fn hostile_answers_are_accepted_exactly_when_the_oracle_reads_one_number() {
    let _serial = serial();
    let s = run("task answers", file!(), 5_000, hostile_answer(), |a| {
        let mut v = valid_line(0);
        v["answer"] = a.as_str().into();
        let bytes = v.to_string().into_bytes();
        let o = check(&bytes)?;
        prop_assert_eq!(o.rejected.is_none(), oracle_answer(&a).is_some(), "{:?}", a);
        Ok(o)
    });
    assert!(s.accepted > 0 && s.rejected > 0);
}

/// The reply reader on arbitrary text: no panic; a strict answer only after a `####`, and then it
/// is also the flexible one; every number it returns is normalised and its digits are in the text.
#[test]
fn replies_of_any_text_read_without_panic() {
    let _serial = serial();
    let reply = prop_oneof![
        "(#{2,5}|[ \t$\n]|-?[0-9]{1,5}|,[0-9]{3}|[.,/%]|[a-zA-Z]{1,4}|\u{e9}){0,24}",
        proptest::collection::vec(any::<char>(), 0..64).prop_map(|c| c.into_iter().collect()),
    ];
    run("answer::read", file!(), 10_000, reply, |text: String| {
        let (r, usage) = measure(|| answer::read(&text));
        let a = no_panic("answer::read", r)?;
        if let Some(s) = &a.strict {
            prop_assert!(text.contains("####"), "{text:?}");
            prop_assert_eq!(a.flexible.as_ref(), Some(s));
        }
        let squeezed: String = text.chars().filter(|&c| c != ',').collect();
        for n in a.strict.iter().chain(&a.flexible) {
            prop_assert_eq!(Number::parse_exact(n.as_str()), Some(n.clone()));
            let digits = n.as_str().trim_start_matches('-');
            let int = digits.split('.').next().unwrap();
            prop_assert!(squeezed.contains(int), "{n} not in {text:?}");
        }
        Ok(Outcome {
            rejected: a.flexible.is_none().then(|| "no number".to_string()),
            input: text.len(),
            usage,
        })
    });
}
