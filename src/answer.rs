//! The numeric answer of a generated reply: the one rule `ascend-cold eval` grades with and the study
//! reads back (docs/EVAL.md, "Answers", states the rule and why it was chosen).
//!
//! - **strict**: the number on the first `####` line that carries one: `####`, then spaces or tabs,
//!   an optional `$` and spaces, then the number. A `####` followed by anything else (a Markdown
//!   heading such as `#### Step 1`, a new line) is not an answer marker, and the search goes on.
//! - **flexible**: the strict answer when there is one, else the last number in the reply.
//!
//! A number is an optional `-`, digits with optional thousands separators (`1,200`; a comma
//! followed by anything but exactly three digits ends the number, so `3, 4` is 3), and an optional
//! fraction (`4.50`; a `.` not followed by a digit is punctuation, so `12.` is 12). What follows it
//! (units, `%`, punctuation) is ignored, except `/` and a digit: `1/2` is a fraction, which is not
//! read as 1 (there is then no number at that place). A digit glued to a letter or a point
//! (`SmolLM2`, `.5`) does not start a number. Numbers compare as normalised decimal text ([`Number`]), so `1,200.00`
//! equals `1200` exactly, whatever the magnitude.

use std::fmt;

/// A number as normalised decimal text: no thousands separators, no leading zeros, no trailing
/// zeros after the point, no point without a fraction, no sign on zero (`"$1,200.00"` reads as
/// `1200`, `"4.50"` as `4.5`, `"-0"` as `0`). Two numbers are equal exactly when their values are.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct Number(String);

impl Number {
    /// The whole of `text` (surrounding whitespace aside) as one number, as a task's reference
    /// answer is written; `None` when it is anything else (`"12 apples"`, `"1/2"`, `""`).
    pub fn parse_exact(text: &str) -> Option<Number> {
        let t = text.trim();
        match lex(t.as_bytes(), 0) {
            Some((Some(n), end)) if end == t.len() => Some(n),
            _ => None,
        }
    }

    /// The normalised text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a reply answers under each reading (the module documentation has the rules).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answers {
    /// The number on the first `####` line that carries one.
    pub strict: Option<Number>,
    /// `strict` when present, else the last number in the reply.
    pub flexible: Option<Number>,
}

/// Reads `reply` under both rules.
pub fn read(reply: &str) -> Answers {
    let strict = strict(reply);
    let flexible = strict.clone().or_else(|| last_number(reply));
    Answers { strict, flexible }
}

/// The number on the first `####` line that carries one.
pub fn strict(reply: &str) -> Option<Number> {
    let bytes = reply.as_bytes();
    let mut from = 0;
    while let Some(found) = reply[from..].find("####") {
        let marker_end = from + found + 4;
        let mut p = skip_blanks(bytes, marker_end);
        if bytes.get(p) == Some(&b'$') {
            p = skip_blanks(bytes, p + 1);
        }
        if starts_number(bytes, p) {
            if let Some((Some(n), _)) = lex(bytes, p) {
                return Some(n);
            }
        }
        // "#####": the marker may also start one byte later.
        from = from + found + 1;
    }
    None
}

/// The last number in `reply`.
pub fn last_number(reply: &str) -> Option<Number> {
    let bytes = reply.as_bytes();
    let (mut i, mut last) = (0, None);
    while i < bytes.len() {
        if starts_number(bytes, i) {
            if let Some((n, end)) = lex(bytes, i) {
                // A trailing fraction leaves no reading rather than an earlier number.
                last = n;
                i = end;
                continue;
            }
        }
        i += 1;
    }
    last
}

fn skip_blanks(bytes: &[u8], mut p: usize) -> usize {
    while matches!(bytes.get(p), Some(b' ' | b'\t')) {
        p += 1;
    }
    p
}

/// A number starts at `i`: a digit or `-` and a digit, not glued to a preceding letter, digit or
/// point (`SmolLM2` holds no number, and `.5` is not 5).
fn starts_number(bytes: &[u8], i: usize) -> bool {
    let digit_at = |k: usize| bytes.get(k).is_some_and(u8::is_ascii_digit);
    let first = if bytes.get(i) == Some(&b'-') {
        i + 1
    } else {
        i
    };
    digit_at(first) && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'.'))
}

/// Lexes the number starting at `start` (an optional `-`, then a digit). Returns the number (or
/// `None` for a fraction such as `1/2`, which has no single reading) and where it ends; `None`
/// when no number starts there.
fn lex(bytes: &[u8], start: usize) -> Option<(Option<Number>, usize)> {
    let digits_from = |mut k: usize| {
        while bytes.get(k).is_some_and(u8::is_ascii_digit) {
            k += 1;
        }
        k
    };
    let negative = bytes.get(start) == Some(&b'-');
    let int_start = start + usize::from(negative);
    let mut end = digits_from(int_start);
    if end == int_start {
        return None;
    }
    let mut integer: Vec<u8> = bytes[int_start..end].to_vec();
    // Thousands separators: only after a first group of 1-3 digits, and only before exactly three.
    if end - int_start <= 3 {
        while bytes.get(end) == Some(&b',') && digits_from(end + 1) == end + 4 {
            integer.extend_from_slice(&bytes[end + 1..end + 4]);
            end += 4;
        }
    }
    let mut fraction: &[u8] = &[];
    if bytes.get(end) == Some(&b'.') && bytes.get(end + 1).is_some_and(u8::is_ascii_digit) {
        let fraction_end = digits_from(end + 1);
        fraction = &bytes[end + 1..fraction_end];
        end = fraction_end;
    }
    if bytes.get(end) == Some(&b'/') && bytes.get(end + 1).is_some_and(u8::is_ascii_digit) {
        return Some((None, digits_from(end + 1)));
    }
    Some((Some(normalise(negative, &integer, fraction)), end))
}

fn normalise(negative: bool, integer: &[u8], fraction: &[u8]) -> Number {
    let integer = match integer.iter().position(|&d| d != b'0') {
        Some(first) => &integer[first..],
        None => b"0".as_slice(),
    };
    let fraction = match fraction.iter().rposition(|&d| d != b'0') {
        Some(last) => &fraction[..=last],
        None => &[],
    };
    let zero = integer == b"0" && fraction.is_empty();
    let mut text = String::with_capacity(integer.len() + fraction.len() + 2);
    if negative && !zero {
        text.push('-');
    }
    // Both slices hold ASCII digits only.
    text.extend(integer.iter().map(|&d| char::from(d)));
    if !fraction.is_empty() {
        text.push('.');
        text.extend(fraction.iter().map(|&d| char::from(d)));
    }
    Number(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Option<Number> {
        Some(Number(s.to_string()))
    }

    #[test]
    fn numbers_are_normalised() {
        for (text, want) in [
            ("#### 1,200", "1200"),
            ("#### -3", "-3"),
            ("#### 4.50", "4.5"),
            ("#### $1,200.00", "1200"),
            ("#### $ 12.", "12"),
            ("#### 007", "7"),
            ("#### -0.0", "0"),
            ("#### 0.05", "0.05"),
            ("#### 12 apples", "12"),
            ("#### 50%", "50"),
            ("####12", "12"),
            ("#### 1234,567", "1234"),
            ("#### 1,2345", "1"),
            ("#### 3, 4 and 5", "3"),
            (
                "#### 123456789012345678901234567890",
                "123456789012345678901234567890",
            ),
        ] {
            assert_eq!(strict(text), n(want), "{text:?}");
        }
    }

    #[test]
    fn the_first_marker_with_a_number_wins() {
        assert_eq!(strict("#### 23\nThe answer is 23.\n#### 24"), n("23"));
        // A Markdown heading or an empty marker line is not an answer.
        assert_eq!(strict("#### Step 1: add\n3 + 4 = 7\n#### 7"), n("7"));
        assert_eq!(strict("####\n7\n#### 8"), n("8"));
        assert_eq!(strict("##### 5"), n("5"));
        assert_eq!(strict("#### 1/2\n#### 3"), n("3"));
        assert_eq!(strict("no marker, 12 apples"), None);
        assert_eq!(strict("#### none"), None);
        assert_eq!(strict(""), None);
    }

    #[test]
    fn flexible_falls_back_to_the_last_number() {
        let a = read("So she has 7 left, not 8.5.");
        assert_eq!((a.strict, a.flexible), (None, n("8.5")));
        let a = read("12 apples\n#### 1,200\nor 13");
        assert_eq!((a.strict, a.flexible), (n("1200"), n("1200")));
        // Glued to a letter: not a number; "10-3" is 10 and 3, not -3.
        assert_eq!(last_number("I am SmolLM2"), None);
        assert_eq!(last_number("3 or .5"), n("3"));
        assert_eq!(last_number("3,4,5"), n("5"));
        assert_eq!(last_number("10-3"), n("3"));
        assert_eq!(last_number("a loss of -3"), n("-3"));
        assert_eq!(last_number("3 apples, half is 1/2"), None);
        assert_eq!(last_number("1/2 of 6 is 3"), n("3"));
        assert_eq!(
            read("no number"),
            Answers {
                strict: None,
                flexible: None
            }
        );
    }

    #[test]
    fn reference_answers_must_be_whole_numbers_of_text() {
        assert_eq!(Number::parse_exact(" 23 "), n("23"));
        assert_eq!(Number::parse_exact("1,200"), n("1200"));
        assert_eq!(Number::parse_exact("12 apples"), None);
        assert_eq!(Number::parse_exact("1/2"), None);
        assert_eq!(Number::parse_exact(""), None);
        assert_eq!(Number::parse_exact("$5"), None);
    }
}
