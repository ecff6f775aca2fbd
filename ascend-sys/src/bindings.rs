// PROVISIONAL: hand-typed placeholder with bindgen's naming, replaced by scripts/regen-bindings output.
pub type aclError = ::std::os::raw::c_int;
pub type aclrtStream = *mut ::std::os::raw::c_void;
pub type aclrtEvent = *mut ::std::os::raw::c_void;
pub type aclrtContext = *mut ::std::os::raw::c_void;
pub type aclrtBinHandle = *mut ::std::os::raw::c_void;
pub type aclrtFuncHandle = *mut ::std::os::raw::c_void;
pub type aclrtMemMallocPolicy = ::std::os::raw::c_uint;
pub const ACL_MEM_MALLOC_HUGE_FIRST: aclrtMemMallocPolicy = 0;
pub type aclrtMemcpyKind = ::std::os::raw::c_uint;
pub const ACL_MEMCPY_HOST_TO_HOST: aclrtMemcpyKind = 0;
pub const ACL_MEMCPY_HOST_TO_DEVICE: aclrtMemcpyKind = 1;
pub const ACL_MEMCPY_DEVICE_TO_HOST: aclrtMemcpyKind = 2;
pub const ACL_MEMCPY_DEVICE_TO_DEVICE: aclrtMemcpyKind = 3;
pub type aclrtDevAttr = ::std::os::raw::c_uint;
pub const ACL_DEV_ATTR_AICORE_CORE_NUM: aclrtDevAttr = 101;
pub const ACL_DEV_ATTR_VECTOR_CORE_NUM: aclrtDevAttr = 201;
pub const ACL_DEV_ATTR_UBUF_PER_VECTOR_CORE: aclrtDevAttr = 204;
pub type aclDeviceInfo = ::std::os::raw::c_int;
pub const ACL_DEVICE_INFO_AI_CORE_NUM: aclDeviceInfo = 0;
pub const ACL_DEVICE_INFO_VECTOR_CORE_NUM: aclDeviceInfo = 1;
pub const ACL_SUCCESS: ::std::os::raw::c_int = 0;
pub const ACL_ERROR_INVALID_PARAM: ::std::os::raw::c_int = 100000;
pub const ACL_ERROR_UNINITIALIZE: ::std::os::raw::c_int = 100001;
pub const ACL_ERROR_REPEAT_INITIALIZE: ::std::os::raw::c_int = 100002;
pub const ACL_ERROR_BAD_ALLOC: ::std::os::raw::c_int = 200000;
#[repr(C)]
pub struct aclrtBinaryLoadOptions {
    pub options: *mut ::std::os::raw::c_void,
    pub numOpt: usize,
}
extern "C" {
    pub fn aclInit(configPath: *const ::std::os::raw::c_char) -> aclError;
    pub fn aclFinalize() -> aclError;
    pub fn aclGetRecentErrMsg() -> *const ::std::os::raw::c_char;
    pub fn aclrtSetDevice(deviceId: i32) -> aclError;
    pub fn aclrtResetDevice(deviceId: i32) -> aclError;
    pub fn aclrtGetDeviceCount(count: *mut u32) -> aclError;
    pub fn aclrtSynchronizeDevice() -> aclError;
    pub fn aclrtGetDeviceInfo(deviceId: u32, attr: aclrtDevAttr, value: *mut i64) -> aclError;
    pub fn aclGetDeviceCapability(
        deviceId: u32,
        deviceInfo: aclDeviceInfo,
        value: *mut i64,
    ) -> aclError;
    pub fn aclrtGetSocName() -> *const ::std::os::raw::c_char;
    pub fn aclrtCreateStream(stream: *mut aclrtStream) -> aclError;
    pub fn aclrtDestroyStream(stream: aclrtStream) -> aclError;
    pub fn aclrtSynchronizeStream(stream: aclrtStream) -> aclError;
    pub fn aclrtStreamWaitEvent(stream: aclrtStream, event: aclrtEvent) -> aclError;
    pub fn aclrtCreateEvent(event: *mut aclrtEvent) -> aclError;
    pub fn aclrtDestroyEvent(event: aclrtEvent) -> aclError;
    pub fn aclrtRecordEvent(event: aclrtEvent, stream: aclrtStream) -> aclError;
    pub fn aclrtSynchronizeEvent(event: aclrtEvent) -> aclError;
    pub fn aclrtEventElapsedTime(
        ms: *mut f32,
        startEvent: aclrtEvent,
        endEvent: aclrtEvent,
    ) -> aclError;
    pub fn aclrtMalloc(
        devPtr: *mut *mut ::std::os::raw::c_void,
        size: usize,
        policy: aclrtMemMallocPolicy,
    ) -> aclError;
    pub fn aclrtFree(devPtr: *mut ::std::os::raw::c_void) -> aclError;
    pub fn aclrtMemset(
        devPtr: *mut ::std::os::raw::c_void,
        maxCount: usize,
        value: i32,
        count: usize,
    ) -> aclError;
    pub fn aclrtMemcpy(
        dst: *mut ::std::os::raw::c_void,
        destMax: usize,
        src: *const ::std::os::raw::c_void,
        count: usize,
        kind: aclrtMemcpyKind,
    ) -> aclError;
    pub fn aclrtMemcpyAsync(
        dst: *mut ::std::os::raw::c_void,
        destMax: usize,
        src: *const ::std::os::raw::c_void,
        count: usize,
        kind: aclrtMemcpyKind,
        stream: aclrtStream,
    ) -> aclError;
    pub fn aclrtBinaryLoadFromData(
        data: *const ::std::os::raw::c_void,
        length: usize,
        options: *const aclrtBinaryLoadOptions,
        binHandle: *mut aclrtBinHandle,
    ) -> aclError;
    pub fn aclrtBinaryUnLoad(binHandle: aclrtBinHandle) -> aclError;
    pub fn aclrtBinaryGetFunction(
        binHandle: aclrtBinHandle,
        kernelName: *const ::std::os::raw::c_char,
        funcHandle: *mut aclrtFuncHandle,
    ) -> aclError;
    pub fn aclrtLaunchKernel(
        funcHandle: aclrtFuncHandle,
        numBlocks: u32,
        argsData: *const ::std::os::raw::c_void,
        argsSize: usize,
        stream: aclrtStream,
    ) -> aclError;
}
