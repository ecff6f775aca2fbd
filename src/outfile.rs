//! Output files a run never loses or corrupts (docs/EVAL.md, "Output files"): a whole-file output
//! appears whole or not at all, an output is never also an input of the same run, and a file that
//! a run appends to is held by that run alone.

use crate::{Error, Result};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` whole or not at all: into a temporary file in the same directory,
/// flushed to disk, then renamed over `path`. An interrupted or failed write leaves `path` as it
/// was; a reader never sees half a file. The new file gets the permissions a plain create would
/// (0666 less the umask).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(".ascend-cold-").suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let mut tmp = builder.tempfile_in(dir).map_err(io)?;
    tmp.write_all(bytes).map_err(io)?;
    tmp.as_file().sync_data().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

/// Refuses a run whose output is also one of its inputs or another of its outputs, which would
/// overwrite what it reads or mix two results in one file. Each entry is a flag and its path (when
/// given); paths are compared after resolving links and `..` (an output need not exist yet: its
/// directory is resolved instead). The error names both flags.
pub fn refuse_overlap(
    outputs: &[(&'static str, Option<&Path>)],
    inputs: &[(&'static str, Option<&Path>)],
) -> Result<()> {
    let resolved = |list: &[(&'static str, Option<&Path>)]| -> Vec<(&'static str, PathBuf)> {
        list.iter()
            .filter_map(|(flag, p)| p.map(|p| (*flag, identity(p))))
            .collect()
    };
    let (outputs_r, inputs_r) = (resolved(outputs), resolved(inputs));
    for (k, (flag, path)) in outputs_r.iter().enumerate() {
        let others = outputs_r[k + 1..].iter().chain(&inputs_r);
        if let Some((other, _)) = others.into_iter().find(|(_, p)| p == path) {
            return Err(Error::parameter(
                flag,
                format!("a file other than {other}'s (one file cannot be both)"),
                format!("{}, which is also {other}", path.display()),
            ));
        }
    }
    Ok(())
}

/// What a path names, for comparing: the resolved path when it exists, else its resolved
/// directory and its name, else the path made absolute.
fn identity(path: &Path) -> PathBuf {
    if let Ok(p) = path.canonicalize() {
        return p;
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    match (dir.canonicalize(), path.file_name()) {
        (Ok(d), Some(name)) => d.join(name),
        _ => std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()),
    }
}

/// Opens `path` for reading and appending (creating it when missing) and takes an advisory
/// exclusive lock on it for as long as the file stays open, so that a second run on the same file
/// is refused instead of interleaving its lines with ours.
pub fn open_locked(path: &Path) -> Result<File> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .map_err(io)?;
    match fs4::FileExt::try_lock(&file) {
        Ok(()) => Ok(file),
        Err(fs4::TryLockError::WouldBlock) => Err(io(std::io::Error::new(
            std::io::ErrorKind::WouldBlock,
            "in use by another ascend-cold run (it holds the file's lock); wait for it to end \
             or write to another file",
        ))),
        Err(fs4::TryLockError::Error(e)) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_atomic_write_replaces_whole_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.json");
        write_atomic(&p, b"first").unwrap();
        write_atomic(&p, b"second, longer").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second, longer");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "{names:?}");
        // A directory that does not exist: an error naming the file, nothing written.
        let missing = dir.path().join("no/such/out.json");
        let e = write_atomic(&missing, b"x").unwrap_err().to_string();
        assert!(e.contains("out.json"), "{e}");
    }

    #[test]
    fn overlapping_paths_are_refused_naming_both_flags() {
        let dir = tempfile::tempdir().unwrap();
        let task = dir.path().join("task.jsonl");
        std::fs::write(&task, "").unwrap();
        let same = dir.path().join("sub/../task.jsonl");
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let e = refuse_overlap(&[("--out", Some(&same))], &[("--task", Some(&task))])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--out") && e.contains("--task"), "{e}");
        // Two outputs that do not exist yet, spelled differently.
        let a = dir.path().join("r.jsonl");
        let b = dir.path().join("sub/../r.jsonl");
        let e = refuse_overlap(&[("--out", Some(&a)), ("--summary", Some(&b))], &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--out") && e.contains("--summary"), "{e}");
        refuse_overlap(
            &[("--out", Some(&a)), ("--summary", None)],
            &[("--task", Some(&task))],
        )
        .unwrap();
    }

    #[test]
    fn a_second_lock_on_one_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("records.jsonl");
        let first = open_locked(&p).unwrap();
        let e = open_locked(&p).unwrap_err().to_string();
        assert!(e.contains("in use by another ascend-cold run"), "{e}");
        drop(first);
        open_locked(&p).unwrap();
    }
}
