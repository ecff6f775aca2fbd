//! `scripts/find-libclang` accepts exactly the libraries bindgen can load: a directory holding only
//! the C++ library `libclang-cpp.so.<N>` (what every Debian clang tool pulls in) is not libclang, and
//! each of the names bindgen's loader opens is.

use std::path::{Path, PathBuf};
use std::process::Command;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/find-libclang")
}

/// Runs the script on one directory holding empty files with the given names.
fn find_in(names: &[&str]) -> (bool, String) {
    let dir = tempfile::tempdir().expect("a temp dir");
    for name in names {
        std::fs::write(dir.path().join(name), b"").expect("the temp dir is writable");
    }
    let out = Command::new("bash")
        .arg(script())
        .arg(dir.path())
        .output()
        .expect("bash runs");
    let found = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if out.status.success() {
        let name = Path::new(&found)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .to_string();
        (true, name)
    } else {
        (false, String::from_utf8_lossy(&out.stderr).to_string())
    }
}

#[test]
fn libclang_cpp_alone_is_not_libclang() {
    let (found, message) = find_in(&["libclang-cpp.so.14", "libclang-cpp.so"]);
    assert!(!found, "accepted the C++ library: {message}");
    assert!(message.contains("no libclang.so"), "{message}");
}

#[test]
fn every_name_bindgen_loads_is_accepted() {
    for name in [
        "libclang-14.so.1",
        "libclang.so",
        "libclang-14.so",
        "libclang.so.1",
        "libclang.so.14.0.6",
    ] {
        assert_eq!(
            find_in(&["libclang-cpp.so.14", name]),
            (true, name.to_string()),
            "{name}"
        );
    }
}

#[test]
fn near_misses_are_rejected() {
    for name in [
        "libclang-cpp14.so",
        "libclangBasic.a",
        "libclang.a",
        "libclang-cpp.so.14.0",
        "libclang.so.x",
    ] {
        let (found, what) = find_in(&[name]);
        assert!(!found, "{name} accepted as {what}");
    }
}
