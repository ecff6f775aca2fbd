//! The devices every runtime test runs on: the emulator always, and the NPU named by
//! `ASCEND_TEST_DEVICE=<id>` when set (otherwise the NPU run is skipped with a printed reason).
#![allow(dead_code)]

use ascend_cold::runtime::emu::{self, EmuConfig};
use ascend_cold::{Device, Provider};

/// Emulated devices the tests use: 0 shared, 1 for cross-device misuse, 2 for allocation counting,
/// 3 for reset.
pub const EMU_DEVICES: u32 = 4;

pub fn configure_emulator() {
    emu::configure(EmuConfig {
        devices: EMU_DEVICES,
        ..EmuConfig::default()
    })
    .expect("one emulator configuration per test process");
}

/// Emulated device `id` (configured for the tests).
pub fn emu(id: i32) -> Device {
    configure_emulator();
    Device::emulator_device(id).expect("emulated device")
}

/// The NPU under test, or None with the reason printed.
pub fn npu() -> Option<Device> {
    configure_emulator();
    match std::env::var("ASCEND_TEST_DEVICE") {
        Ok(id) => {
            let id: i32 = id
                .trim()
                .parse()
                .expect("ASCEND_TEST_DEVICE must be a device id");
            Some(Device::npu(id).unwrap_or_else(|e| panic!("ASCEND_TEST_DEVICE={id} but: {e}")))
        }
        Err(_) => {
            eprintln!("skipping the NPU run: ASCEND_TEST_DEVICE is not set (set it to a device id on a board)");
            None
        }
    }
}

/// Emulated device 0, then the NPU under test if any.
pub fn devices() -> Vec<Device> {
    let mut v = vec![emu(0)];
    v.extend(npu());
    v
}

pub fn is_emu(d: &Device) -> bool {
    d.provider() == Provider::Emulator
}

/// The AscendCL code of an `Error::Acl`, else panics with the error.
pub fn acl_code<T: std::fmt::Debug>(r: ascend_cold::Result<T>) -> (i32, String) {
    match r {
        Err(ascend_cold::Error::Acl { code, message, .. }) => (code, message),
        other => panic!("expected an AscendCL error, got {other:?}"),
    }
}
