//! Devices by name (`auto`, `emu[:N]`, `npu[:N]`), opened once per process.
//!
//! `auto` is resolved once: probing for AscendCL on every op call would cost more than the op.

use ascend_cold::{Device, DeviceSpec, Result};
use pyo3::prelude::*;
use std::sync::Mutex;

static OPENED: Mutex<Vec<(DeviceSpec, Device, String)>> = Mutex::new(Vec::new());

/// The device `name` names, and the sentence saying which it is and why.
pub fn open(name: &str) -> Result<(Device, String)> {
    let spec: DeviceSpec = name.parse()?;
    let mut opened = OPENED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, d, why)) = opened.iter().find(|(s, _, _)| *s == spec) {
        return Ok((d.clone(), why.clone()));
    }
    let (device, why) = spec.open()?;
    opened.push((spec, device.clone(), why.clone()));
    Ok((device, why))
}

/// Which device `device` resolves to, and why (e.g. "the emulator, because ...").
#[pyfunction]
#[pyo3(signature = (device = "auto"))]
pub fn describe_device(py: Python<'_>, device: &str) -> PyResult<String> {
    let (d, why) = py.detach(|| open(device)).map_err(crate::to_py)?;
    Ok(format!("{d}: {why}"))
}
