//! Finding and opening `libascendcl.so` at run time.
//!
//! The search list is a value ([`SearchPath`]), built from the environment by
//! [`SearchPath::from_env`] or from any variable lookup by [`SearchPath::from_vars`], so that tests and
//! tools can inspect or replace it without touching the process environment. [`AclLibrary::open`]
//! tries it in order and keeps the first library that exports every entry of [`AclFunctions`]; when
//! none does, the [`LoadError`] lists every candidate with the reason it failed, and a remedy.
//!
//! Nothing here panics: every failure is a value.

use crate::functions::{AclFunctions, MissingSymbol};
use std::ffi::OsStr;
use std::fmt;
use std::os::raw::c_void;
use std::path::{Path, PathBuf};

/// File name of the AscendCL runtime library.
pub const LIBRARY_NAME: &str = "libascendcl.so";

/// Where a candidate came from: what the error message names, so the user knows which setting to fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CandidateSource {
    /// `ASCEND_ACL_LIB`: the path of the library file itself.
    AscendAclLib,
    /// `$ASCEND_HOME_PATH/lib64` (set by CANN's `set_env.sh`).
    AscendHomePath,
    /// `$ASCEND_TOOLKIT_HOME/lib64` (set by older toolkits' `set_env.sh`).
    AscendToolkitHome,
    /// A default install prefix of the CANN toolkit.
    DefaultInstall,
    /// The system dynamic loader's own search (`LD_LIBRARY_PATH`, `ld.so.cache`, ...).
    SystemLoader,
    /// Given explicitly by the caller.
    Explicit,
}

impl fmt::Display for CandidateSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::AscendAclLib => "ASCEND_ACL_LIB",
            Self::AscendHomePath => "$ASCEND_HOME_PATH/lib64",
            Self::AscendToolkitHome => "$ASCEND_TOOLKIT_HOME/lib64",
            Self::DefaultInstall => "default install",
            Self::SystemLoader => "system loader",
            Self::Explicit => "explicit",
        })
    }
}

/// One place to look for the library.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Candidate {
    /// Where this candidate came from.
    pub source: CandidateSource,
    /// A file path, or for [`CandidateSource::SystemLoader`] a bare file name that the dynamic
    /// loader resolves itself.
    pub path: PathBuf,
}

impl Candidate {
    /// A library file at `path`; it must exist to be opened.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Self {
            source: CandidateSource::Explicit,
            path: path.into(),
        }
    }

    /// A bare library name resolved by the system loader (`dlopen` with no slash).
    pub fn system(name: impl Into<PathBuf>) -> Self {
        Self {
            source: CandidateSource::SystemLoader,
            path: name.into(),
        }
    }

    fn is_loader_name(&self) -> bool {
        self.source == CandidateSource::SystemLoader
    }
}

impl fmt::Display for Candidate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.path.display(), self.source)
    }
}

/// The ordered list of places where `libascendcl.so` is looked for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SearchPath {
    candidates: Vec<Candidate>,
}

impl SearchPath {
    /// Default install prefixes, tried after the environment. `ascend-toolkit/latest` is the
    /// toolkit's default; `cann` is the prefix newer CANN packages install to by default (the
    /// fallback `ASCEND_INSTALL_PATH` of `build.sh` in the hicann/runtime repository).
    pub const DEFAULT_PREFIXES: &'static [&'static str] = &[
        "/usr/local/Ascend/ascend-toolkit/latest",
        "/usr/local/Ascend/cann",
    ];

    /// The search list from the process environment; see [`SearchPath::from_vars`].
    pub fn from_env() -> Self {
        Self::from_vars(|name| std::env::var_os(name))
    }

    /// The search list from a variable lookup, in this order:
    /// 1. `ASCEND_ACL_LIB`, the library file itself;
    /// 2. `$ASCEND_HOME_PATH/lib64/libascendcl.so` (CANN's `set_env.sh` sets `ASCEND_HOME_PATH`; the
    ///    runtime libraries live in its `lib64`, as the hicann/runtime examples link them, e.g.
    ///    `example/2_advanced_features/kernel/0_launch_kernel/CMakeLists.txt`);
    /// 3. `$ASCEND_TOOLKIT_HOME/lib64/libascendcl.so` (older toolkits' `set_env.sh`);
    /// 4. each of [`SearchPath::DEFAULT_PREFIXES`] followed by `lib64/libascendcl.so`;
    /// 5. `libascendcl.so` through the system loader.
    ///
    /// Unset or empty variables are skipped; a path already listed is not listed again. Every
    /// candidate is tried even when an earlier one was set explicitly: the first that loads wins
    /// and [`AclLibrary::skipped`] says what was passed over.
    pub fn from_vars<F, V>(mut var: F) -> Self
    where
        F: FnMut(&str) -> Option<V>,
        V: AsRef<OsStr>,
    {
        let mut list = Self::default();
        let mut get = |name: &str| var(name).filter(|v| !v.as_ref().is_empty());
        if let Some(file) = get("ASCEND_ACL_LIB") {
            list.push(CandidateSource::AscendAclLib, PathBuf::from(file.as_ref()));
        }
        for (name, source) in [
            ("ASCEND_HOME_PATH", CandidateSource::AscendHomePath),
            ("ASCEND_TOOLKIT_HOME", CandidateSource::AscendToolkitHome),
        ] {
            if let Some(home) = get(name) {
                list.push(source, lib64(Path::new(home.as_ref())));
            }
        }
        for prefix in Self::DEFAULT_PREFIXES {
            list.push(CandidateSource::DefaultInstall, lib64(Path::new(prefix)));
        }
        list.push(CandidateSource::SystemLoader, PathBuf::from(LIBRARY_NAME));
        list
    }

    /// A search list of exactly these candidates.
    pub fn new(candidates: Vec<Candidate>) -> Self {
        Self { candidates }
    }

    /// The candidates, in the order they are tried.
    pub fn candidates(&self) -> &[Candidate] {
        &self.candidates
    }

    fn push(&mut self, source: CandidateSource, path: PathBuf) {
        if !self.candidates.iter().any(|c| c.path == path) {
            self.candidates.push(Candidate { source, path });
        }
    }
}

fn lib64(prefix: &Path) -> PathBuf {
    prefix.join("lib64").join(LIBRARY_NAME)
}

/// The symbol exported by `standin-acl` (an emulator behind the C ABI of `acl.h`, not AscendCL).
/// A library exporting it is accepted only when named explicitly ([`CandidateSource::AscendAclLib`] or
/// [`CandidateSource::Explicit`]): `cargo test` and `cargo run` put the target directory, where a built
/// stand-in sits, on `LD_LIBRARY_PATH`, and it must never pass for the toolkit's runtime there.
pub const STANDIN_MARKER: &str = "ascend_cold_standin_version";

/// Why one candidate was not used.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// No file at the candidate's path.
    NotFound,
    /// The dynamic loader refused it; its message.
    Open(String),
    /// It loaded but lacks an entry point of [`AclFunctions`] (an older runtime than the headers).
    MissingSymbol(MissingSymbol),
    /// It is the emulator stand-in ([`STANDIN_MARKER`]), found where the real runtime was looked for.
    StandIn,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound => f.write_str("not found"),
            Self::Open(message) => write!(f, "could not be opened: {message}"),
            Self::MissingSymbol(missing) => write!(f, "missing symbol {}", missing.name),
            Self::StandIn => f.write_str(
                "the emulator stand-in (standin-acl), not AscendCL: name it with ASCEND_ACL_LIB to use it",
            ),
        }
    }
}

/// One candidate tried, and why it was passed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The candidate.
    pub candidate: Candidate,
    /// Why it was not used.
    pub failure: Failure,
}

impl fmt::Display for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.candidate, self.failure)
    }
}

/// No candidate provided a usable AscendCL runtime.
///
/// Its message lists every candidate with its failure and ends with a remedy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    attempts: Vec<Attempt>,
}

impl LoadError {
    /// Every candidate tried, in order, with its failure.
    pub fn attempts(&self) -> &[Attempt] {
        &self.attempts
    }

    /// The first missing entry point among the libraries that did load, if any.
    pub fn missing_symbol(&self) -> Option<&'static str> {
        self.attempts.iter().find_map(|a| match &a.failure {
            Failure::MissingSymbol(missing) => Some(missing.name),
            _ => None,
        })
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the AscendCL runtime ({LIBRARY_NAME}) could not be loaded"
        )?;
        if self.attempts.is_empty() {
            f.write_str("; the search list was empty")?;
        } else {
            f.write_str("; tried:")?;
            for attempt in &self.attempts {
                write!(f, "\n  - {attempt}")?;
            }
        }
        if let Some(name) = self.missing_symbol() {
            write!(
                f,
                "\nA library was found but does not export {name}: that CANN runtime is older than \
                 the headers these bindings were generated from; install a newer CANN toolkit, or \
                 point ASCEND_ACL_LIB at a newer {LIBRARY_NAME}."
            )?;
        }
        write!(
            f,
            "\nRemedy: set up the CANN environment with `source $ASCEND_TOOLKIT_HOME/set_env.sh` \
             (default install: `source /usr/local/Ascend/ascend-toolkit/set_env.sh`), or set \
             ASCEND_HOME_PATH to the toolkit directory (the one containing lib64/{LIBRARY_NAME}), \
             or set ASCEND_ACL_LIB=/path/to/{LIBRARY_NAME}."
        )
    }
}

impl std::error::Error for LoadError {}

/// An opened AscendCL runtime and its table of entry points.
///
/// The library stays loaded as long as this value lives; [`AclLibrary::functions`] borrows from it,
/// so the table cannot outlive it through safe code. (The table is `Copy`: a copy taken out and
/// called after this value is dropped calls into unloaded code. Calling is `unsafe` anyway; keeping
/// the library alive is part of that contract.)
///
/// # Threads
/// `AclLibrary` is `Send` and `Sync`: it holds a [`libloading::Library`] (`Send + Sync`) and plain
/// function pointers, which are valid from any thread while the library is loaded. That makes the
/// *pointers* shareable; it says nothing of AscendCL's own rules (for example that the current
/// context is per thread), which remain the caller's to follow.
pub struct AclLibrary {
    functions: AclFunctions,
    path: PathBuf,
    source: CandidateSource,
    skipped: Vec<Attempt>,
    // Dropped last (fields drop in declaration order), after nothing can use the table.
    library: libloading::Library,
}

impl fmt::Debug for AclLibrary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AclLibrary")
            .field("path", &self.path)
            .field("skipped", &self.skipped)
            .finish_non_exhaustive()
    }
}

impl AclLibrary {
    /// Opens the AscendCL runtime from [`SearchPath::from_env`].
    ///
    /// This is safe in the sense in which linking against `libascendcl.so` is: the locations are
    /// the ones the CANN installation and the user's environment define, trusted like the
    /// environment that runs this program (as `LD_LIBRARY_PATH` is trusted for any linked
    /// library), and a library found there is taken to be AscendCL. Only the functions' signatures
    /// are assumed, and calling them is `unsafe`.
    ///
    /// # Errors
    /// [`LoadError`] when no candidate loads with every symbol of [`AclFunctions`].
    pub fn open() -> Result<Self, LoadError> {
        let search = SearchPath::from_env();
        // SAFETY: the candidates are the locations of the installed CANN runtime, or ones the user
        // named in the environment for it; see the trust argument in the doc comment above.
        unsafe { Self::open_from(search.candidates()) }
    }

    /// Opens the first of `candidates` that loads and exports every symbol of [`AclFunctions`].
    ///
    /// # Errors
    /// [`LoadError`] listing every candidate tried and why it failed.
    ///
    /// # Safety
    /// Loading a library runs its initialisers: each candidate that exists must be a library that
    /// is sound to load into this process. A library that loads and exports every name is taken to
    /// be an AscendCL runtime whose functions have the signatures of [`AclFunctions`] (those of the
    /// headers the bindings were generated from); a stand-in must export them with those
    /// signatures before any of them is called.
    pub unsafe fn open_from(candidates: &[Candidate]) -> Result<Self, LoadError> {
        let mut attempts = Vec::new();
        for candidate in candidates {
            // SAFETY: forwarded from this function's contract.
            match unsafe { Self::try_one(candidate) } {
                Ok((library, functions)) => {
                    return Ok(Self {
                        functions,
                        path: candidate.path.clone(),
                        source: candidate.source,
                        skipped: attempts,
                        library,
                    })
                }
                Err(failure) => attempts.push(Attempt {
                    candidate: candidate.clone(),
                    failure,
                }),
            }
        }
        Err(LoadError { attempts })
    }

    /// # Safety
    /// As [`AclLibrary::open_from`], for this one candidate.
    unsafe fn try_one(
        candidate: &Candidate,
    ) -> Result<(libloading::Library, AclFunctions), Failure> {
        // A bare name goes to the loader's own search; a path must name an existing file, so a
        // missing one reads "not found" rather than the loader's wording.
        if !candidate.is_loader_name() && !candidate.path.is_file() {
            return Err(Failure::NotFound);
        }
        // SAFETY: the caller guarantees this library is sound to load (its initialisers run here).
        let library = unsafe { libloading::Library::new(candidate.path.as_os_str()) }
            .map_err(|e| Failure::Open(e.to_string()))?;
        // SAFETY: the caller guarantees a library with these symbols is AscendCL, whose functions
        // have the table's signatures; `library` is returned with the table and kept alongside it.
        let functions = unsafe { AclFunctions::load(&library) }.map_err(Failure::MissingSymbol)?;
        let named = matches!(
            candidate.source,
            CandidateSource::AscendAclLib | CandidateSource::Explicit
        );
        // SAFETY: the symbol is only looked up, never called or read.
        if !named && unsafe { library.get::<*const c_void>(STANDIN_MARKER.as_bytes()) }.is_ok() {
            return Err(Failure::StandIn);
        }
        Ok((library, functions))
    }

    /// The table of entry points, valid while `self` lives.
    pub fn functions(&self) -> &AclFunctions {
        &self.functions
    }

    /// The candidate path the library was opened from (a bare name when the system loader found it).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Which setting the library was found through.
    pub fn source(&self) -> CandidateSource {
        self.source
    }

    /// Whether the library exports `name` (for optional entry points and for recognising a stand-in
    /// runtime by a marker symbol).
    pub fn has_symbol(&self, name: &str) -> bool {
        // SAFETY: the symbol is only looked up, never called or read: its type does not matter.
        unsafe { self.library.get::<*const c_void>(name.as_bytes()) }.is_ok()
    }

    /// The candidates tried before this one, and why each was passed over.
    pub fn skipped(&self) -> &[Attempt] {
        &self.skipped
    }
}
