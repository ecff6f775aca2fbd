//! Reading and writing NumPy `.npy` files (format versions 1.0 to 3.0), for the `run` tool.
//!
//! Only what the kernels exchange: little-endian `f2`, `f4`, `i8`, and 2-byte bit patterns (`u2` or
//! `V2`, how numpy with ml_dtypes saves bfloat16), C order. Anything else is an error that says, in
//! numpy's words, what the file holds and what was expected. Format facts: numpy's
//! `numpy/lib/format.py` docstring (magic `\x93NUMPY`, version bytes, header length u16 in 1.0 and
//! u32 in 2.0/3.0, a Python dict literal padded so the data starts at a multiple of 64).
//!
//! Hand-written rather than a crate because the void `V2` bf16 case and numpy-worded errors are the
//! whole point here, and the format is a few dozen lines.

use crate::{Error, Result};
use std::path::Path;

/// Element type of a `.npy` array as far as this crate cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NpyDtype {
    /// `<f2`.
    F16,
    /// `<f4`.
    F32,
    /// `<i8`.
    I64,
    /// `<u2` or `|V2`: raw 16-bit patterns (bf16 with `--dtype bf16`).
    Bits16,
}

impl NpyDtype {
    fn descr(self) -> &'static str {
        match self {
            NpyDtype::F16 => "<f2",
            NpyDtype::F32 => "<f4",
            NpyDtype::I64 => "<i8",
            NpyDtype::Bits16 => "<u2",
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            NpyDtype::F16 | NpyDtype::Bits16 => 2,
            NpyDtype::F32 => 4,
            NpyDtype::I64 => 8,
        }
    }

    fn parse(descr: &str) -> Option<Self> {
        match descr {
            "<f2" => Some(NpyDtype::F16),
            "<f4" => Some(NpyDtype::F32),
            "<i8" => Some(NpyDtype::I64),
            "<u2" | "|V2" | "<V2" => Some(NpyDtype::Bits16),
            _ => None,
        }
    }
}

/// An array read from or to be written to a `.npy` file: raw little-endian bytes plus header facts.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    /// Element type.
    pub dtype: NpyDtype,
    /// Shape, outermost first.
    pub shape: Vec<usize>,
    /// `shape.product() * dtype.size()` bytes, C order.
    pub data: Vec<u8>,
}

const MAGIC: &[u8] = b"\x93NUMPY";

fn invalid(path: &Path, field: &str, detail: impl Into<String>) -> Error {
    Error::InvalidFile {
        path: path.to_path_buf(),
        field: field.to_string(),
        detail: detail.into(),
    }
}

/// Finds `'key': value` in the header dict and returns the raw value text.
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    // numpy writes 'key', but reads the header with `ast.literal_eval`, so "key" is as valid.
    let start = [format!("'{key}'"), format!("\"{key}\"")]
        .iter()
        .find_map(|quoted| header.find(quoted.as_str()))?
        + key.len()
        + 2;
    let rest = header[start..].trim_start().strip_prefix(':')?.trim_start();
    let end = if rest.starts_with('(') {
        rest.find(')')? + 1
    } else {
        rest.find([',', '}']).unwrap_or(rest.len())
    };
    Some(rest[..end].trim())
}

impl NpyArray {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Builds an array from typed values (`T` must be the dtype's width).
    pub fn from_values<T: bytemuck::Pod>(
        dtype: NpyDtype,
        shape: Vec<usize>,
        values: &[T],
    ) -> Result<Self> {
        let expected: usize = shape.iter().product();
        if values.len() != expected || std::mem::size_of::<T>() != dtype.size() {
            return Err(Error::shape(
                "npy data",
                format!(
                    "{expected} values of {} bytes for shape {shape:?}",
                    dtype.size()
                ),
                format!(
                    "{} values of {} bytes",
                    values.len(),
                    std::mem::size_of::<T>()
                ),
            ));
        }
        Ok(NpyArray {
            dtype,
            shape,
            data: bytemuck::cast_slice(values).to_vec(),
        })
    }

    /// The elements as `T` (copied); `T` must be the dtype's width.
    pub fn values<T: bytemuck::Pod>(&self) -> Result<Vec<T>> {
        if std::mem::size_of::<T>() != self.dtype.size() {
            return Err(Error::shape(
                "npy element",
                format!("{} bytes ({})", self.dtype.size(), self.dtype.descr()),
                format!("{} bytes", std::mem::size_of::<T>()),
            ));
        }
        Ok(bytemuck::pod_collect_to_vec(&self.data))
    }

    /// Parses `.npy` bytes; `path` only names the file in errors.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Self> {
        let header = Header::parse(path, bytes)?;
        let payload = &bytes[header.data_start..];
        header.check_payload(path, payload.len())?;
        Ok(NpyArray {
            dtype: header.dtype,
            shape: header.shape,
            data: payload.to_vec(),
        })
    }
}

/// What a `.npy` header says, and where its data starts.
struct Header {
    dtype: NpyDtype,
    shape: Vec<usize>,
    shape_text: String,
    data_start: usize,
}

impl Header {
    /// The header at the start of `bytes` (which may hold only a prefix of the file's data).
    fn parse(path: &Path, bytes: &[u8]) -> Result<Self> {
        if bytes.len() < 10 || &bytes[..6] != MAGIC {
            return Err(invalid(
                path,
                "magic",
                "not a .npy file (expected the bytes \\x93NUMPY at the start)",
            ));
        }
        let (header_len, header_start) = match (bytes[6], bytes[7]) {
            (1, 0) => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
            (2 | 3, 0) if bytes.len() >= 12 => (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            ),
            (2 | 3, 0) => {
                return Err(invalid(
                    path,
                    "header",
                    format!(
                        "file of {} bytes ends inside the 4-byte header length",
                        bytes.len()
                    ),
                ))
            }
            (major, minor) => {
                return Err(invalid(
                    path,
                    "version",
                    format!("format version {major}.{minor} is not 1.0, 2.0 or 3.0"),
                ))
            }
        };
        let data_start = header_start
            .checked_add(header_len)
            .filter(|&end| end <= bytes.len())
            .ok_or_else(|| {
                invalid(
                    path,
                    "header",
                    format!("header of {header_len} bytes runs past the end of the file"),
                )
            })?;
        let header = std::str::from_utf8(&bytes[header_start..data_start])
            .map_err(|_| invalid(path, "header", "header is not text"))?;
        let descr = dict_value(header, "descr")
            .map(|d| d.trim_matches(|c| c == '\'' || c == '"'))
            .ok_or_else(|| invalid(path, "descr", "header has no 'descr'"))?;
        let dtype = NpyDtype::parse(descr).ok_or_else(|| {
            invalid(path, "descr", format!("dtype '{descr}' is not one of <f2 (float16), <f4 (float32), <i8 (int64), <u2 / V2 (bfloat16 bits)"))
        })?;
        if dict_value(header, "fortran_order") != Some("False") {
            return Err(invalid(
                path,
                "fortran_order",
                "array is not C-contiguous (save with np.ascontiguousarray)",
            ));
        }
        let shape_text = dict_value(header, "shape")
            .ok_or_else(|| invalid(path, "shape", "header has no 'shape'"))?;
        let shape = shape_text
            .trim_matches(|c| c == '(' || c == ')')
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<usize>().map_err(|_| {
                    invalid(
                        path,
                        "shape",
                        format!("bad dimension '{s}' in {shape_text}"),
                    )
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Header {
            dtype,
            shape,
            shape_text: shape_text.to_string(),
            data_start,
        })
    }

    /// Refuses data of `present` bytes unless it is exactly what the shape and dtype need.
    fn check_payload(&self, path: &Path, present: usize) -> Result<()> {
        self.shape
            .iter()
            .try_fold(self.dtype.size(), |acc, &d| acc.checked_mul(d))
            .filter(|&n| n == present)
            .map(drop)
            .ok_or_else(|| {
                invalid(
                    path,
                    "data",
                    format!(
                        "shape {} of {} needs a different size than the {present} data bytes present",
                        self.shape_text,
                        self.dtype.descr()
                    ),
                )
            })
    }
}

/// numpy's way of printing a shape, as a `.npy` header holds it: `(4,)`, `(2, 3)`, `()`.
pub fn shape_text(shape: &[usize]) -> String {
    match shape {
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

/// Most header bytes [`NpyArray::read`] looks at before it has checked the file's size (numpy
/// itself refuses headers over 10,000 bytes unless told otherwise).
const MAX_HEADER_BYTES: u64 = 1 << 20;

impl NpyArray {
    /// Reads a `.npy` file. The header is read and checked first: a file whose size is not what its
    /// header describes, or whose data would not fit in the memory the host has available, is
    /// refused before its data is read.
    pub fn read(path: &Path) -> Result<Self> {
        use std::io::Read;
        let io = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = std::fs::File::open(path).map_err(io)?;
        let file_len = file.metadata().map_err(io)?.len();
        let mut prefix = vec![0u8; file_len.min(MAX_HEADER_BYTES) as usize];
        file.read_exact(&mut prefix).map_err(io)?;
        let header = Header::parse(path, &prefix)?;
        let data_len = usize::try_from(file_len - header.data_start as u64).unwrap_or(usize::MAX);
        header.check_payload(path, data_len)?;
        // Only a large file can exceed memory; small ones skip reading /proc/meminfo.
        let large = data_len > MAX_HEADER_BYTES as usize;
        if let Some(available) = large.then(crate::host::available_memory).flatten() {
            if data_len > available {
                return Err(invalid(
                    path,
                    "data",
                    format!(
                        "{data_len} bytes of data, more than the {available} bytes of memory \
                         available (MemAvailable)"
                    ),
                ));
            }
        }
        let total = header.data_start + data_len;
        let mut bytes = Vec::new();
        bytes
            .try_reserve_exact(total)
            .map_err(|e| invalid(path, "data", format!("cannot hold {data_len} bytes: {e}")))?;
        bytes.extend_from_slice(&prefix);
        drop(prefix);
        let read = bytes.len();
        bytes.resize(total, 0);
        file.read_exact(&mut bytes[read..]).map_err(io)?;
        Self::parse(path, &bytes)
    }

    /// Serialises as format version 1.0.
    pub fn to_bytes(&self) -> Vec<u8> {
        let shape = shape_text(&self.shape);
        let mut header = format!(
            "{{'descr': '{}', 'fortran_order': False, 'shape': {shape}, }}",
            self.dtype.descr()
        );
        let unpadded = MAGIC.len() + 4 + header.len() + 1;
        header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
        header.push('\n');
        let mut out = Vec::with_capacity(MAGIC.len() + 4 + header.len() + self.data.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(&self.data);
        out
    }

    /// Writes a `.npy` file, whole or not at all ([`crate::outfile::write_atomic`]).
    pub fn write(&self, path: &Path) -> Result<()> {
        crate::outfile::write_atomic(path, &self.to_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_every_dtype_and_rank() {
        let p = Path::new("t.npy");
        for (dtype, shape) in [
            (NpyDtype::F32, vec![3, 5]),
            (NpyDtype::F16, vec![7]),
            (NpyDtype::I64, vec![2, 1, 3]),
            (NpyDtype::Bits16, vec![0, 4]),
            (NpyDtype::F32, vec![]),
        ] {
            let n: usize = shape.iter().product();
            let data: Vec<u8> = (0..n * dtype.size())
                .map(|i| (i * 37 % 251) as u8)
                .collect();
            let a = NpyArray { dtype, shape, data };
            let bytes = a.to_bytes();
            assert_eq!((bytes.len() - a.data.len()) % 64, 0);
            assert_eq!(NpyArray::parse(p, &bytes).unwrap(), a);
        }
    }

    #[test]
    fn reads_numpy_written_header_variants() {
        // As numpy 1.x writes a bfloat16 array from ml_dtypes: void descr, version 1.0.
        let file = |descr: &str| {
            let header =
                format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': (2, 2), }}");
            let mut bytes = MAGIC.to_vec();
            bytes.extend_from_slice(&[1, 0]);
            bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
            bytes.extend_from_slice(header.as_bytes());
            bytes.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
            bytes
        };
        let bytes = file("|V2");
        let a = NpyArray::parse(Path::new("b.npy"), &bytes).unwrap();
        assert_eq!((a.dtype, a.shape.clone()), (NpyDtype::Bits16, vec![2, 2]));
        let err = NpyArray::parse(Path::new("b.npy"), &file("<f8"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("'<f8'") && err.contains("b.npy"), "{err}");
        let err = NpyArray::parse(Path::new("b.npy"), &bytes[..bytes.len() - 1])
            .unwrap_err()
            .to_string();
        assert!(err.contains("data bytes"), "{err}");
        for cut in 0..bytes.len() - 8 {
            assert!(NpyArray::parse(Path::new("b.npy"), &bytes[..cut]).is_err());
        }
    }

    /// A 1 TiB sparse file: refused from its header and size, in well under the time reading it
    /// would take, whether its header agrees with its size (more than memory) or not.
    #[test]
    fn huge_sparse_files_are_refused_before_their_data_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let huge: u64 = 1 << 40;
        for (shape, words) in [
            (
                vec![(huge / 4) as usize],
                &["more than", "MemAvailable"][..],
            ),
            (vec![10], &["different size"][..]),
        ] {
            let header = NpyArray {
                dtype: NpyDtype::F32,
                shape,
                data: vec![],
            }
            .to_bytes();
            let path = dir.path().join("huge.npy");
            std::fs::write(&path, &header).unwrap();
            let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            file.set_len(header.len() as u64 + huge).unwrap();
            let started = std::time::Instant::now();
            let err = NpyArray::read(&path).unwrap_err().to_string();
            assert!(started.elapsed().as_secs() < 5, "the data was read");
            for w in words {
                assert!(err.contains(w), "{w:?} not in {err}");
            }
        }
    }
}
