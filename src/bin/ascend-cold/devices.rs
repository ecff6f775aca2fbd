//! `ascend-cold devices`: what was found (the emulator always, NPUs when AscendCL loads and answers), why
//! there is no NPU when there is none, what `--device auto` picks, and a kernel self-check per device.

use crate::check::{self, Knobs, TilingChoice};
use ascend_cold::contracts::{ColdShape, ExpandShape, ShrinkShape};
use ascend_cold::harness::{DeviceArg, KernelShape};
use ascend_cold::tiling::DType;
use ascend_cold::{Device, KernelSource, Provider, Result};
use ascend_sys::AclLibrary;
use rand::rngs::StdRng;
use rand::SeedableRng;

/// Arguments of `devices`.
#[derive(clap::Args, Debug)]
pub struct DevicesArgs {
    /// Self-check only this device (default: emulated device 0 and every NPU).
    #[arg(long)]
    device: Option<DeviceArg>,
    /// Skip the kernel self-check.
    #[arg(long)]
    no_check: bool,
}

/// Lists the devices; exit code 0, or 1 when a self-check failed.
pub fn run(args: &DevicesArgs) -> Result<u8> {
    let mut to_check: Vec<Device> = Vec::new();
    let emu_count = Device::count(Provider::Emulator)?;
    for id in 0..emu_count as i32 {
        let d = Device::emulator_device(id)?;
        let p = d.profile()?;
        println!(
            "{d}  {}  {} AI cores, {} vector cores, {} B of UB usable per core  ({})",
            p.soc_name,
            p.ai_cores,
            p.vector_cores,
            p.ub_bytes,
            d.origin()
        );
        if id == 0 {
            to_check.push(d);
        }
    }
    // The library search, with every path tried and why each failed.
    match AclLibrary::open() {
        Err(e) => {
            println!("npu   none: AscendCL could not be loaded");
            ascend_cold::harness::print_load_error(&e, "      ");
        }
        Ok(lib) => {
            drop(lib);
            match Device::count(Provider::Npu) {
                Ok(0) => println!(
                    "npu   none: AscendCL loaded but no device answered (aclrtGetDeviceCount = 0)"
                ),
                Ok(n) => {
                    for id in 0..n as i32 {
                        match Device::npu(id).and_then(|d| d.profile().map(|p| (d, p))) {
                            Ok((d, p)) => {
                                let kernels = match d.kernel_source() {
                                    KernelSource::DeviceBinary => {
                                        "device kernel binary".to_string()
                                    }
                                    KernelSource::StandIn => {
                                        "standin-acl: the emulator behind acl.h, not a board".into()
                                    }
                                    KernelSource::Missing(why) => format!("no kernels: {why}"),
                                    other => format!("{other:?}"),
                                };
                                println!(
                                    "{d}  {}  {} AI cores, {} vector cores, {} B of UB usable per core  ({}; {kernels})",
                                    p.soc_name, p.ai_cores, p.vector_cores, p.ub_bytes, d.origin()
                                );
                                to_check.push(d);
                            }
                            Err(e) => println!("npu:{id}  not usable: {e}"),
                        }
                    }
                }
                Err(e) => {
                    println!("npu   none: AscendCL loaded but asking for devices failed: {e}")
                }
            }
        }
    }
    let (auto, why) = Device::auto()?;
    if auto.provider() == Provider::Emulator {
        println!("--device auto picks {auto}, the emulator (no usable NPU, as above)");
    } else {
        println!("--device auto picks {auto}: {why}");
    }
    if let Some(arg) = args.device {
        to_check = vec![ascend_cold::harness::open_device(arg)?.0];
    }
    if args.no_check {
        return Ok(0);
    }
    let mut failed = false;
    for d in &to_check {
        let (ok, text) = self_check(d);
        failed |= !ok;
        println!("self-check {d}: {text}");
    }
    Ok(u8::from(failed))
}

/// bgmv_shrink, bgmv_expand and cold_score on small random inputs against the reference.
fn self_check(device: &Device) -> (bool, String) {
    let shapes = [
        (
            KernelShape::Shrink(ShrinkShape {
                batch: 4,
                hidden_in: 256,
                rank: 8,
                num_loras: 2,
            }),
            DType::F16,
        ),
        (
            KernelShape::Expand(ExpandShape {
                batch: 4,
                rank: 8,
                hidden_out: 256,
                hidden_full: 300,
                slice_offset: 16,
                num_loras: 2,
            }),
            DType::Bf16,
        ),
        (
            KernelShape::Cold(ColdShape {
                rows: 3,
                vocab: 5000,
            }),
            DType::F32,
        ),
    ];
    let mut parts = Vec::new();
    let mut all_ok = true;
    for (i, (shape, dtype)) in shapes.into_iter().enumerate() {
        let mut rng = StdRng::seed_from_u64(i as u64);
        let knobs = Knobs {
            scores: Some(true),
            add: Some(true),
            ..Knobs::default()
        };
        match check::trial(
            device,
            shape,
            dtype,
            &TilingChoice::Default,
            knobs,
            &mut rng,
        ) {
            Ok(t) if t.errors.ok() => parts.push(format!(
                "{} {} ok (max abs err {:.1e})",
                shape.kernel().op(),
                dtype.suffix(),
                t.errors.max_abs
            )),
            Ok(t) => {
                all_ok = false;
                parts.push(format!(
                    "{} {} FAILED: {}",
                    shape.kernel().op(),
                    dtype.suffix(),
                    t.errors.first_failure.unwrap_or_default()
                ));
            }
            Err(e) => {
                all_ok = false;
                parts.push(format!("{} error: {e}", shape.kernel().op()));
            }
        }
    }
    (all_ok, parts.join("; "))
}
