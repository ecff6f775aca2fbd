//! The loader's search and its errors, against stand-in libraries built at test time with the system
//! C compiler (`cc`): no CANN toolkit needed. The stand-ins only export the names; nothing is called.

use ascend_sys::loader::{CandidateSource, Failure};
use ascend_sys::{AclFunctions, AclLibrary, Candidate, SearchPath};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds `dir/name` as a shared library exporting a dummy function for each of `symbols`.
fn build_stand_in(dir: &Path, name: &str, symbols: &[&str]) -> PathBuf {
    let source = dir.join(format!("{name}.c"));
    let mut text = String::from("/* Stand-in for libascendcl.so: exports the names only. */\n");
    for symbol in symbols {
        text.push_str(&format!("int {symbol}(void) {{ return 0; }}\n"));
    }
    std::fs::write(&source, text).expect("write stand-in source");
    let library = dir.join(name);
    let output = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&library)
        .arg(&source)
        .output()
        .expect("run the system C compiler `cc`");
    assert!(
        output.status.success(),
        "cc failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    library
}

fn open_one(path: &Path) -> Result<AclLibrary, ascend_sys::LoadError> {
    // SAFETY: the only candidate is a stand-in built above whose initialisers are the C runtime's
    // defaults; none of its functions is called.
    unsafe { AclLibrary::open_from(&[Candidate::file(path)]) }
}

#[test]
fn missing_candidates_are_all_named_with_a_remedy() {
    let dir = tempfile::tempdir().unwrap();
    let absent_file = dir.path().join("absent").join("libascendcl.so");
    let absent_home = dir.path().join("home").join("lib64").join("libascendcl.so");
    let candidates = [
        Candidate::file(&absent_file),
        Candidate::file(&absent_home),
        Candidate::system("libascendcl-ascend-cold-test-absent.so"),
    ];
    // SAFETY: no candidate exists, so nothing is loaded.
    let error = unsafe { AclLibrary::open_from(&candidates) }.unwrap_err();

    assert_eq!(error.attempts().len(), 3);
    assert_eq!(error.attempts()[0].failure, Failure::NotFound);
    assert_eq!(error.attempts()[1].failure, Failure::NotFound);
    assert!(matches!(error.attempts()[2].failure, Failure::Open(_)));
    assert_eq!(error.missing_symbol(), None);

    let message = error.to_string();
    for path in [&absent_file, &absent_home] {
        assert!(
            message.contains(&format!("{}", path.display())),
            "{path:?} not in {message}"
        );
    }
    assert!(
        message.contains("libascendcl-ascend-cold-test-absent.so"),
        "{message}"
    );
    assert!(message.contains("not found"), "{message}");
    assert!(message.contains("set_env.sh"), "{message}");
    assert!(message.contains("ASCEND_HOME_PATH"), "{message}");
    assert!(message.contains("ASCEND_ACL_LIB="), "{message}");
}

#[test]
fn empty_search_list_is_an_error_with_a_remedy() {
    // SAFETY: nothing to load.
    let error = unsafe { AclLibrary::open_from(&[]) }.unwrap_err();
    assert!(error.attempts().is_empty());
    assert!(error.to_string().contains("search list was empty"));
    assert!(error.to_string().contains("set_env.sh"));
}

#[test]
fn stand_in_missing_one_symbol_names_exactly_that_symbol() {
    let dir = tempfile::tempdir().unwrap();
    let names = AclFunctions::NAMES;
    // The first entry, the last, and one of the newer kernel-binary APIs an old CANN lacks.
    for omitted in [names[0], names[names.len() - 1], "aclrtBinaryLoadFromData"] {
        assert!(names.contains(&omitted), "{omitted} not in the table");
        let exported: Vec<&str> = names.iter().copied().filter(|n| *n != omitted).collect();
        let path = build_stand_in(
            dir.path(),
            &format!("libacl-without-{omitted}.so"),
            &exported,
        );

        let error = open_one(&path).unwrap_err();
        assert_eq!(error.missing_symbol(), Some(omitted));
        match &error.attempts()[0].failure {
            Failure::MissingSymbol(missing) => assert_eq!(missing.name, omitted),
            other => panic!("expected a missing symbol, got {other:?}"),
        }
        let message = error.to_string();
        assert!(
            message.contains(&format!("missing symbol {omitted}")),
            "{message}"
        );
        assert!(
            message.contains(&format!("does not export {omitted}")),
            "{message}"
        );
        // No other name of the table is reported missing.
        for other in names.iter().filter(|n| **n != omitted) {
            assert!(!message.contains(&format!("symbol {other}\n")), "{message}");
        }
    }
}

#[test]
fn stand_in_with_every_symbol_loads() {
    let dir = tempfile::tempdir().unwrap();
    let path = build_stand_in(dir.path(), "libascendcl.so", AclFunctions::NAMES);
    let library = open_one(&path).expect("a library exporting every name loads");
    assert_eq!(library.path(), path);
    assert!(library.skipped().is_empty());
    // The table is filled (and not, say, all pointing to one symbol).
    let table = library.functions();
    assert_ne!(table.aclInit as usize, table.aclFinalize as usize);
}

#[test]
fn earlier_failures_are_kept_when_a_later_candidate_loads() {
    let dir = tempfile::tempdir().unwrap();
    let path = build_stand_in(dir.path(), "libascendcl.so", AclFunctions::NAMES);
    let absent = dir.path().join("nowhere.so");
    // SAFETY: the first candidate does not exist; the second is the stand-in, never called.
    let library =
        unsafe { AclLibrary::open_from(&[Candidate::file(&absent), Candidate::file(&path)]) }
            .unwrap();
    assert_eq!(library.path(), path);
    assert_eq!(library.skipped().len(), 1);
    assert_eq!(library.skipped()[0].candidate.path, absent);
    assert_eq!(library.skipped()[0].failure, Failure::NotFound);
}

#[test]
fn search_path_order_from_variables() {
    let vars = HashMap::from([
        ("ASCEND_ACL_LIB", "/opt/x/libascendcl.so"),
        ("ASCEND_HOME_PATH", "/opt/cann"),
        ("ASCEND_TOOLKIT_HOME", "/opt/toolkit"),
    ]);
    let search = SearchPath::from_vars(|name| vars.get(name).copied());
    let got: Vec<(CandidateSource, String)> = search
        .candidates()
        .iter()
        .map(|c| (c.source, c.path.display().to_string()))
        .collect();
    let want = [
        (CandidateSource::AscendAclLib, "/opt/x/libascendcl.so"),
        (
            CandidateSource::AscendHomePath,
            "/opt/cann/lib64/libascendcl.so",
        ),
        (
            CandidateSource::AscendToolkitHome,
            "/opt/toolkit/lib64/libascendcl.so",
        ),
        (
            CandidateSource::DefaultInstall,
            "/usr/local/Ascend/ascend-toolkit/latest/lib64/libascendcl.so",
        ),
        (
            CandidateSource::DefaultInstall,
            "/usr/local/Ascend/cann/lib64/libascendcl.so",
        ),
        (CandidateSource::SystemLoader, "libascendcl.so"),
    ];
    let want: Vec<(CandidateSource, String)> =
        want.iter().map(|(s, p)| (*s, p.to_string())).collect();
    assert_eq!(got, want);
}

#[test]
fn search_path_skips_empty_variables_and_duplicates() {
    let vars = HashMap::from([
        ("ASCEND_ACL_LIB", ""),
        (
            "ASCEND_HOME_PATH",
            "/usr/local/Ascend/ascend-toolkit/latest",
        ),
        (
            "ASCEND_TOOLKIT_HOME",
            "/usr/local/Ascend/ascend-toolkit/latest",
        ),
    ]);
    let search = SearchPath::from_vars(|name| vars.get(name).copied());
    let sources: Vec<CandidateSource> = search.candidates().iter().map(|c| c.source).collect();
    assert_eq!(
        sources,
        [
            CandidateSource::AscendHomePath,
            CandidateSource::DefaultInstall,
            CandidateSource::SystemLoader
        ]
    );
}

#[test]
fn the_emulator_stand_in_is_taken_only_when_named_explicitly() {
    let dir = tempfile::tempdir().unwrap();
    let mut symbols: Vec<&str> = AclFunctions::NAMES.to_vec();
    symbols.push(ascend_sys::STANDIN_MARKER);
    let home = dir.path().join("home");
    std::fs::create_dir_all(home.join("lib64")).unwrap();
    let standin = build_stand_in(&home.join("lib64"), "libascendcl.so", &symbols);

    // Found where the toolkit's runtime is looked for: passed over, and the error says what it is.
    let vars = HashMap::from([("ASCEND_HOME_PATH", home.as_os_str())]);
    let search = SearchPath::from_vars(|name| vars.get(name).copied());
    let found_by_home: Vec<Candidate> = search.candidates()[..1].to_vec();
    assert_eq!(found_by_home[0].source, CandidateSource::AscendHomePath);
    // SAFETY: the only candidate is the stand-in built above; none of its functions is called.
    let error = unsafe { AclLibrary::open_from(&found_by_home) }.unwrap_err();
    assert_eq!(error.attempts()[0].failure, Failure::StandIn);
    assert!(error.to_string().contains("ASCEND_ACL_LIB"), "{error}");

    // Named by ASCEND_ACL_LIB, or explicitly: taken, and recognisable.
    let vars = HashMap::from([("ASCEND_ACL_LIB", standin.as_os_str())]);
    let search = SearchPath::from_vars(|name| vars.get(name).copied());
    // SAFETY: as above.
    let library = unsafe { AclLibrary::open_from(&search.candidates()[..1]) }.unwrap();
    assert_eq!(library.source(), CandidateSource::AscendAclLib);
    assert!(library.has_symbol(ascend_sys::STANDIN_MARKER));
    let library = open_one(&standin).unwrap();
    assert!(library.has_symbol(ascend_sys::STANDIN_MARKER));
    assert!(!library.has_symbol("aclNoSuchFunction"));
}
