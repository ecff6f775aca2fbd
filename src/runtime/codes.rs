//! AscendCL error codes by name.
//!
//! Values from the AscendCL headers (`acl/acl_base_rt.h` for the `ACL_ERROR_*` codes of the ACL layer,
//! `acl/error_codes/rt_error_codes.h` for the `ACL_ERROR_RT_*` codes of the runtime beneath it; hicann/runtime,
//! `include/external/acl/`). The generated bindings carry only the constants the allowlist selects, so
//! the emulator and the error messages use this table.

macro_rules! codes {
    ($($name:ident = $value:expr;)*) => {
        $( #[doc = concat!("`", stringify!($name), "`")] pub const $name: i32 = $value; )*

        /// The header name of an `aclError` value, or `"unknown"`.
        pub fn error_name(code: i32) -> &'static str {
            match code {
                $( $value => stringify!($name), )*
                _ => "unknown",
            }
        }
    };
}

codes! {
    ACL_SUCCESS = 0;
    ACL_ERROR_INVALID_PARAM = 100000;
    ACL_ERROR_UNINITIALIZE = 100001;
    ACL_ERROR_REPEAT_INITIALIZE = 100002;
    ACL_ERROR_INVALID_FILE = 100003;
    ACL_ERROR_KERNEL_NOT_FOUND = 100029;
    ACL_ERROR_REPEAT_FINALIZE = 100037;
    ACL_ERROR_BAD_ALLOC = 200000;
    ACL_ERROR_API_NOT_SUPPORT = 200001;
    ACL_ERROR_INVALID_DEVICE = 200002;
    ACL_ERROR_MEMORY_ADDRESS_UNALIGNED = 200003;
    ACL_ERROR_RESOURCE_NOT_MATCH = 200004;
    ACL_ERROR_INVALID_RESOURCE_HANDLE = 200005;
    ACL_ERROR_FEATURE_UNSUPPORTED = 200006;
    ACL_ERROR_STORAGE_OVER_LIMIT = 300000;
    ACL_ERROR_INTERNAL_ERROR = 500000;
    ACL_ERROR_FAILURE = 500001;
    ACL_ERROR_RT_FAILURE = 500003;
    ACL_ERROR_RT_PARAM_INVALID = 107000;
    ACL_ERROR_RT_INVALID_DEVICEID = 107001;
    ACL_ERROR_RT_CONTEXT_NULL = 107002;
    ACL_ERROR_RT_STREAM_CONTEXT = 107003;
    ACL_ERROR_RT_EVENT_TIMESTAMP_INVALID = 107006;
    ACL_ERROR_RT_EVENT_TIMESTAMP_REVERSAL = 107007;
    ACL_ERROR_RT_ADDR_UNALIGNED = 107008;
    ACL_ERROR_RT_INVALID_MEMORY_TYPE = 107016;
    ACL_ERROR_RT_INVALID_HANDLE = 107017;
    ACL_ERROR_RT_SYMBOL_NOT_FOUND = 107042;
    ACL_ERROR_RT_INVALID_DEVICE_FUNCTION = 107044;
    ACL_ERROR_RT_FEATURE_NOT_SUPPORT = 207000;
    ACL_ERROR_RT_MEMORY_ALLOCATION = 207001;
    ACL_ERROR_RT_MEMORY_FREE = 207002;
    ACL_ERROR_RT_NO_DEVICE = 207004;
    ACL_ERROR_RT_INTERNAL_ERROR = 507000;
    ACL_ERROR_RT_AICORE_EXCEPTION = 507015;
    ACL_ERROR_RT_VECTOR_CORE_EXCEPTION = 507035;
    ACL_ERROR_RT_VECTOR_CORE_TRAP_READ_OVERFLOW = 507044;
    ACL_ERROR_RT_VECTOR_CORE_TRAP_WRITE_OVERFLOW = 507045;
    ACL_ERROR_RT_STREAM_SYNC_TIMEOUT = 507046;
}
