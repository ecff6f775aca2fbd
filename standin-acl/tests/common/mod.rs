//! The stand-in library as a test opens it: through `ascend_sys::AclLibrary`, as any host program would,
//! from the file cargo built for this very test run.
//!
//! The package's library is also an rlib so that `cargo test` compiles it, and with it the cdylib,
//! before the tests: the fresh `libascendcl.so` is in `target/<profile>/deps/`, beside the test
//! executable (cargo copies it to `target/<profile>/` only on `cargo build`, as `scripts/standin-acl`
//! runs it). A test never runs cargo itself (that would recurse into the build lock). Each test binary
//! is one process with one emulator: `aclInit` runs once, `aclFinalize` never (tests run in parallel
//! threads), and each test binds its own thread to a device.
#![allow(dead_code)]

use ascend_sys::*;
use std::ffi::CStr;
use std::os::raw::c_void;
use std::path::PathBuf;
use std::ptr;
use std::sync::OnceLock;

/// The emulator's kernel manifest naming the self-test kernel (args x, y, z, n: z[i] = x[i] + y[i] for
/// i < *n, n an i64 count).
pub const SELFTEST_BINARY: &[u8] = b"ascend-cold-emu-binary 1\nemu_selftest_add_f32\n";
pub const SELFTEST_KERNEL: &CStr = c"emu_selftest_add_f32";

/// `target/<profile>/deps/libascendcl.so`, beside this test executable, else `target/<profile>/`'s.
pub fn standin_path() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let deps = exe
        .parent()
        .expect("the test executable lives in target/<profile>/deps");
    let beside = deps.join("libascendcl.so");
    match deps.parent() {
        Some(profile) if !beside.is_file() => profile.join("libascendcl.so"),
        _ => beside,
    }
}

static LIBRARY: OnceLock<AclLibrary> = OnceLock::new();

/// The opened stand-in, initialised (`aclInit`) once per process.
pub fn lib() -> &'static AclLibrary {
    LIBRARY.get_or_init(|| {
        let path = standin_path();
        assert!(
            path.is_file(),
            "{} is missing: cargo test -p standin-acl builds it; otherwise build it with \
             scripts/standin-acl (release; for a debug test run, cargo build -p standin-acl)",
            path.display()
        );
        // SAFETY: the file is this workspace's standin-acl cdylib, built by cargo from this checkout: its
        // initialisers are Rust's and it exports every AclFunctions entry with the table's signatures.
        let lib = unsafe { AclLibrary::open_from(&[Candidate::file(&path)]) }
            .unwrap_or_else(|e| panic!("opening the stand-in: {e}"));
        assert!(
            lib.has_symbol("ascend_cold_standin_version"),
            "{} does not export the stand-in marker ascend_cold_standin_version",
            path.display()
        );
        // SAFETY: a null configPath is documented as "no configuration file".
        let code = unsafe { (lib.functions().aclInit)(ptr::null()) };
        assert!(
            code == ACL_SUCCESS || code == ACL_ERROR_REPEAT_INITIALIZE,
            "aclInit returned {code}"
        );
        lib
    })
}

/// The stand-in's table.
pub fn f() -> &'static AclFunctions {
    lib().functions()
}

/// `aclGetRecentErrMsg` of this thread, empty when it returns null.
pub fn recent() -> String {
    // SAFETY: takes no argument; returns null or a NUL-terminated string valid until the next call on
    // this thread, copied out at once.
    unsafe {
        let p = (f().aclGetRecentErrMsg)();
        if p.is_null() {
            String::new()
        } else {
            CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    }
}

/// Panics unless `code` is ACL_SUCCESS, with the recent-error message.
#[track_caller]
pub fn check(code: aclError, what: &str) {
    if code != ACL_SUCCESS {
        panic!("{what} returned {code}: {}", recent());
    }
}

/// Asserts that a call was refused: a non-zero AscendCL code and a recent-error message; returns the
/// message.
#[track_caller]
pub fn refused(code: aclError, what: &str) -> String {
    assert_ne!(code, ACL_SUCCESS, "{what} succeeded but must be refused");
    let message = recent();
    assert!(
        !message.trim().is_empty(),
        "{what} returned {code} with an empty aclGetRecentErrMsg"
    );
    message
}

pub fn set_device(id: i32) {
    // SAFETY: takes a plain id; an absent device is an error code.
    check(unsafe { (f().aclrtSetDevice)(id) }, "aclrtSetDevice");
}

pub fn malloc(size: usize) -> *mut c_void {
    let mut p = ptr::null_mut();
    // SAFETY: `p` is a writable out-parameter.
    check(
        unsafe { (f().aclrtMalloc)(&mut p, size, ACL_MEM_MALLOC_HUGE_FIRST) },
        "aclrtMalloc",
    );
    assert!(!p.is_null());
    p
}

pub fn free(p: *mut c_void) {
    // SAFETY: device pointers are checked by the stand-in (a wrong one is an error code).
    check(unsafe { (f().aclrtFree)(p) }, "aclrtFree");
}

/// `aclrtMallocHost`: page-locked host memory, `size` bytes.
pub fn malloc_host(size: usize) -> *mut u8 {
    let mut p = ptr::null_mut();
    // SAFETY: `p` is a writable out-parameter.
    check(
        unsafe { (f().aclrtMallocHost)(&mut p, size) },
        "aclrtMallocHost",
    );
    assert!(!p.is_null());
    p.cast()
}

pub fn free_host(p: *mut u8) {
    // SAFETY: pointers are checked by the stand-in against its aclrtMallocHost table.
    check(unsafe { (f().aclrtFreeHost)(p.cast()) }, "aclrtFreeHost");
}

pub fn create_stream() -> aclrtStream {
    let mut s = ptr::null_mut();
    // SAFETY: `s` is a writable out-parameter.
    check(
        unsafe { (f().aclrtCreateStream)(&mut s) },
        "aclrtCreateStream",
    );
    s
}

pub fn destroy_stream(s: aclrtStream) {
    // SAFETY: stream handles are checked by the stand-in.
    check(unsafe { (f().aclrtDestroyStream)(s) }, "aclrtDestroyStream");
}

pub fn create_event() -> aclrtEvent {
    let mut e = ptr::null_mut();
    // SAFETY: `e` is a writable out-parameter.
    check(
        unsafe { (f().aclrtCreateEvent)(&mut e) },
        "aclrtCreateEvent",
    );
    e
}

pub fn sync(s: aclrtStream) {
    // SAFETY: stream handles are checked by the stand-in.
    check(
        unsafe { (f().aclrtSynchronizeStream)(s) },
        "aclrtSynchronizeStream",
    );
}

pub fn stream_status(s: aclrtStream) -> aclrtStreamStatus {
    let mut status = ACL_STREAM_STATUS_RESERVED;
    // SAFETY: `status` is a writable out-parameter; the handle is checked by the stand-in.
    check(
        unsafe { (f().aclrtStreamQuery)(s, &mut status) },
        "aclrtStreamQuery",
    );
    status
}

/// Synchronous copy of `src` into device memory at `dst`.
pub fn h2d(dst: *mut c_void, src: &[u8]) {
    // SAFETY: `src` is readable for its length; the device side is checked by the stand-in.
    let code = unsafe {
        (f().aclrtMemcpy)(
            dst,
            src.len(),
            src.as_ptr().cast(),
            src.len(),
            ACL_MEMCPY_HOST_TO_DEVICE,
        )
    };
    check(code, "aclrtMemcpy H2D");
}

/// Synchronous copy of `dst.len()` bytes of device memory at `src` into `dst`.
pub fn d2h(dst: &mut [u8], src: *const c_void) {
    // SAFETY: `dst` is writable for its length; the device side is checked by the stand-in.
    let code = unsafe {
        (f().aclrtMemcpy)(
            dst.as_mut_ptr().cast(),
            dst.len(),
            src,
            dst.len(),
            ACL_MEMCPY_DEVICE_TO_HOST,
        )
    };
    check(code, "aclrtMemcpy D2H");
}

/// One `ACL_RT_BINARY_LOAD_OPT_MAGIC` load option (a board needs the vector-core one for the kernels
/// of this project, and the stand-in requires it).
pub struct LoadMagic {
    option: aclrtBinaryLoadOption,
}

impl LoadMagic {
    pub fn new(magic: u32) -> Self {
        LoadMagic {
            option: aclrtBinaryLoadOption {
                type_: ACL_RT_BINARY_LOAD_OPT_MAGIC,
                value: aclrtBinaryLoadOptionValue { magic },
            },
        }
    }

    pub fn vector_core() -> Self {
        Self::new(ACL_RT_BINARY_MAGIC_ELF_VECTOR_CORE as u32)
    }

    /// The options struct, pointing into `self` (valid while `self` is neither moved nor dropped).
    pub fn options(&mut self) -> aclrtBinaryLoadOptions {
        aclrtBinaryLoadOptions {
            options: &mut self.option,
            numOpt: 1,
        }
    }
}

/// `aclrtBinaryLoadFromData` of `binary` with `options` (null: none); the code and the handle.
pub fn load_binary(
    binary: &[u8],
    options: Option<&aclrtBinaryLoadOptions>,
) -> (aclError, aclrtBinHandle) {
    let mut handle = ptr::null_mut();
    let options = options.map_or(ptr::null(), |o| o as *const _);
    // SAFETY: `binary` is readable for its length, `options` is null or points to a live options struct
    // whose `options` array holds `numOpt` entries, `handle` is a writable out-parameter.
    let code = unsafe {
        (f().aclrtBinaryLoadFromData)(binary.as_ptr().cast(), binary.len(), options, &mut handle)
    };
    (code, handle)
}

/// The self-test kernel, loaded on the current device as a board program loads a vector-core binary.
pub fn selftest_kernel() -> aclrtFuncHandle {
    let mut magic = LoadMagic::vector_core();
    let options = magic.options();
    let (code, binary) = load_binary(SELFTEST_BINARY, Some(&options));
    check(code, "aclrtBinaryLoadFromData");
    let mut function = ptr::null_mut();
    // SAFETY: the name is NUL-terminated, `function` a writable out-parameter, the handle checked.
    let code =
        unsafe { (f().aclrtBinaryGetFunction)(binary, SELFTEST_KERNEL.as_ptr(), &mut function) };
    check(code, "aclrtBinaryGetFunction");
    function
}

/// Device buffers for one run of the self-test kernel over `n` elements: x = 0, 1, 2, ...,
/// y = 0.5 x, z poisoned with 0xFF bytes (NaN), n = the count.
pub struct AddBuffers {
    pub n: usize,
    pub x: *mut c_void,
    pub y: *mut c_void,
    pub z: *mut c_void,
    pub count: *mut c_void,
}

impl AddBuffers {
    pub fn new(n: usize) -> Self {
        let x: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let y: Vec<f32> = x.iter().map(|v| 0.5 * v).collect();
        let buffers = AddBuffers {
            n,
            x: malloc(4 * n),
            y: malloc(4 * n),
            z: malloc(4 * n),
            count: malloc(8),
        };
        h2d(buffers.x, &f32_bytes(&x));
        h2d(buffers.y, &f32_bytes(&y));
        h2d(buffers.count, &(n as i64).to_le_bytes());
        buffers.poison_z();
        buffers
    }

    pub fn poison_z(&self) {
        // SAFETY: `z` is a live device allocation of 4n bytes (checked by the stand-in anyway).
        let code = unsafe { (f().aclrtMemset)(self.z, 4 * self.n, 0xFF, 4 * self.n) };
        check(code, "aclrtMemset");
    }

    /// The argument block: the four device addresses, in declaration order.
    pub fn args(&self) -> Vec<u64> {
        vec![
            self.x as u64,
            self.y as u64,
            self.z as u64,
            self.count as u64,
        ]
    }

    pub fn z(&self) -> Vec<f32> {
        let mut bytes = vec![0u8; 4 * self.n];
        d2h(&mut bytes, self.z);
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }

    /// Asserts z[i] = 1.5 i for every i.
    #[track_caller]
    pub fn assert_sum(&self, what: &str) {
        for (i, z) in self.z().into_iter().enumerate() {
            assert_eq!(z, 1.5 * i as f32, "{what}: z[{i}]");
        }
    }

    /// Asserts z still holds the poison (the kernel did not run).
    #[track_caller]
    pub fn assert_untouched(&self, what: &str) {
        assert!(
            self.z().iter().all(|z| z.to_bits() == u32::MAX),
            "{what}: z was written"
        );
    }

    pub fn free(self) {
        for p in [self.x, self.y, self.z, self.count] {
            free(p);
        }
    }
}

pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub fn u64_bytes(v: &[u64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
