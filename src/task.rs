//! Task files of `ascend-cold eval`: word problems with exact numeric answers, one JSON object per
//! line (docs/EVAL.md, "Task files"; study/README.md describes the study's own).
//!
//! Each non-blank line is an object with a string `id` (non-empty, unique in the file), a string
//! `prompt`, a string `answer` that is one number as [`Number::parse_exact`] reads it, and an optional
//! string `split`; other members are ignored. The file is read a line at a time, so what it costs in
//! memory is the problems it holds plus its longest line.

use crate::answer::Number;
use crate::{Error, Result};
use std::collections::HashSet;
use std::io::BufRead;
use std::path::{Path, PathBuf};

/// One problem of a task file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Unique within the file; the key of eval's records.
    pub id: String,
    /// The user message (the chat template is applied by the caller).
    pub prompt: String,
    /// The exact answer.
    pub answer: Number,
    /// `train`, `dev`, `test` or absent.
    pub split: Option<String>,
}

#[derive(serde::Deserialize)]
struct Line {
    id: String,
    prompt: String,
    answer: String,
    #[serde(default)]
    split: Option<String>,
}

/// Reads the task file at `path`.
pub fn read(path: &Path) -> Result<Vec<Problem>> {
    let file = std::fs::File::open(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, std::io::BufReader::new(file))
}

/// Parses a task file from `source`; `path` names it in errors. Every error is an
/// [`Error::InvalidFile`] naming the line (and the member when one is at fault), or an
/// [`Error::Io`] when reading fails.
pub fn parse(path: &Path, mut source: impl BufRead) -> Result<Vec<Problem>> {
    let invalid = |line: usize, field: &str, detail: String| Error::InvalidFile {
        path: PathBuf::from(path),
        field: format!("line {line}{field}"),
        detail,
    };
    let mut problems = Vec::new();
    let mut ids = HashSet::new();
    let mut bytes = Vec::new();
    for number in 1.. {
        bytes.clear();
        let n = source
            .read_until(b'\n', &mut bytes)
            .map_err(|source| Error::Io {
                path: path.to_path_buf(),
                source,
            })?;
        if n == 0 {
            break;
        }
        let text = std::str::from_utf8(&bytes).map_err(|e| {
            invalid(
                number,
                "",
                format!("not UTF-8 (byte {} of the line)", e.valid_up_to() + 1),
            )
        })?;
        if text.trim().is_empty() {
            continue;
        }
        let line: Line = serde_json::from_str(text).map_err(|e| {
            invalid(
                number,
                "",
                format!(
                    "expected a JSON object with string members \"id\", \"prompt\", \"answer\" \
                     (and optionally \"split\"): {e}"
                ),
            )
        })?;
        let answer = Number::parse_exact(&line.answer).ok_or_else(|| {
            invalid(
                number,
                ": answer",
                format!(
                    "expected one number such as \"23\", \"-3\" or \"4.5\", found {:?}",
                    truncated(&line.answer)
                ),
            )
        })?;
        if line.id.is_empty() {
            return Err(invalid(number, ": id", "expected a non-empty id".into()));
        }
        if !ids.insert(line.id.clone()) {
            return Err(invalid(
                number,
                ": id",
                format!(
                    "expected unique ids; {:?} is on an earlier line",
                    truncated(&line.id)
                ),
            ));
        }
        problems.push(Problem {
            id: line.id,
            prompt: line.prompt,
            answer,
            split: line.split,
        });
    }
    Ok(problems)
}

/// At most 40 characters of `s`, so that an error quoting a hostile value stays short.
fn truncated(s: &str) -> String {
    let mut out: String = s.chars().take(40).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<Vec<Problem>> {
        parse(Path::new("t.jsonl"), text.as_bytes())
    }

    #[test]
    fn reads_problems_and_skips_blank_lines() {
        let p = parse_str(
            "{\"id\":\"a\",\"prompt\":\"p\",\"answer\":\"1,200\",\"split\":\"dev\",\"x\":[1]}\n\n\
             {\"id\":\"b\",\"prompt\":\"q\",\"answer\":\"4.50\"}",
        )
        .unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(
            (p[0].answer.as_str(), p[0].split.as_deref()),
            ("1200", Some("dev"))
        );
        assert_eq!((p[1].answer.as_str(), p[1].split.as_deref()), ("4.5", None));
    }

    #[test]
    fn errors_name_the_line_and_member() {
        for (text, field) in [
            ("{\"id\":\"a\",\"prompt\":\"p\",\"answer\":\"x\"}", "line 1: answer"),
            ("\n{\"id\":\"\",\"prompt\":\"p\",\"answer\":\"1\"}", "line 2: id"),
            (
                "{\"id\":\"a\",\"prompt\":\"p\",\"answer\":\"1\"}\n{\"id\":\"a\",\"prompt\":\"p\",\"answer\":\"2\"}",
                "line 2: id",
            ),
            ("{\"id\":\"a\",\"answer\":\"1\"}", "line 1"),
            ("{\"id\":\"a\",\"prompt\":\"p\",\"answer\":1}", "line 1"),
        ] {
            match parse_str(text) {
                Err(Error::InvalidFile { field: f, path, .. }) => {
                    assert_eq!((f.as_str(), path.as_path()), (field, Path::new("t.jsonl")))
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
        assert!(matches!(
            parse(Path::new("t.jsonl"), &b"\xff\n"[..]),
            Err(Error::InvalidFile { .. })
        ));
    }
}
