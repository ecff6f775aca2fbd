//! Every op on memory and a stream the crate did not make, as a runtime with its own allocator uses
//! it: allocated, filled, read back and freed through the emulator's AscendCL entry points
//! (`runtime::emu::table()`, the same C functions `standin-acl` exports), wrapped with
//! `DeviceView::from_raw` / `DeviceViewMut::from_raw` / `Stream::from_raw`, and checked against the
//! reference on fresh random inputs (outputs poisoned first).

mod common;

use ascend_cold::contracts::ColdParams;
use ascend_cold::contracts::{ColdShape, ExpandShape, ShrinkShape};
use ascend_cold::ops::{self, AdapterIndices, ColdOutputs};
use ascend_cold::runtime::emu;
use ascend_cold::{reference, Device, DeviceView, DeviceViewMut, Stream};
use ascend_sys::{AclFunctions, ACL_MEMCPY_DEVICE_TO_HOST, ACL_MEMCPY_HOST_TO_DEVICE, ACL_SUCCESS};
use half::f16;
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::os::raw::c_void;

/// Device memory owned by the "runtime" (this test), not by the crate.
struct Foreign {
    table: &'static AclFunctions,
    ptr: *mut c_void,
    bytes: usize,
}

impl Foreign {
    fn new<T: bytemuck::Pod>(table: &'static AclFunctions, host: &[T]) -> Foreign {
        let bytes = std::mem::size_of_val(host).max(1);
        let mut ptr = std::ptr::null_mut();
        // SAFETY: a valid out-pointer; the calling thread's device is set (by the test's Device).
        assert_eq!(
            unsafe { (table.aclrtMalloc)(&mut ptr, bytes, 0) },
            ACL_SUCCESS
        );
        let f = Foreign { table, ptr, bytes };
        f.write(host);
        f
    }
    fn write<T: bytemuck::Pod>(&self, host: &[T]) {
        let src: &[u8] = bytemuck::cast_slice(host);
        // SAFETY: `src` is readable for its length, `ptr` holds `bytes` >= its length.
        let code = unsafe {
            (self.table.aclrtMemcpy)(
                self.ptr,
                self.bytes,
                src.as_ptr().cast(),
                src.len(),
                ACL_MEMCPY_HOST_TO_DEVICE,
            )
        };
        assert_eq!(code, ACL_SUCCESS);
    }
    fn read<T: bytemuck::Pod>(&self, len: usize) -> Vec<T> {
        let mut out = vec![T::zeroed(); len];
        let dst: &mut [u8] = bytemuck::cast_slice_mut(&mut out);
        // SAFETY: `dst` is writable for its length, which `ptr`'s allocation covers.
        let code = unsafe {
            (self.table.aclrtMemcpy)(
                dst.as_mut_ptr().cast(),
                dst.len(),
                self.ptr,
                dst.len(),
                ACL_MEMCPY_DEVICE_TO_HOST,
            )
        };
        assert_eq!(code, ACL_SUCCESS);
        out
    }
    fn view<'a, T: ascend_cold::DeviceRepr>(
        &self,
        device: &'a Device,
        len: usize,
    ) -> DeviceView<'a, T> {
        assert!(len * std::mem::size_of::<T>() <= self.bytes);
        // SAFETY: a live allocation of this device holding `len` elements, freed only in Drop, after the
        // test synchronised the stream that used it.
        unsafe { DeviceView::from_raw(device, self.ptr as u64, len) }
    }
    fn view_mut<'a, T: ascend_cold::DeviceRepr>(
        &self,
        device: &'a Device,
        len: usize,
    ) -> DeviceViewMut<'a, T> {
        assert!(len * std::mem::size_of::<T>() <= self.bytes);
        // SAFETY: as `view`; nothing else reads or writes it while the op runs.
        unsafe { DeviceViewMut::from_raw(device, self.ptr as u64, len) }
    }
}

impl Drop for Foreign {
    fn drop(&mut self) {
        // SAFETY: allocated by aclrtMalloc above; every stream that used it was synchronised.
        assert_eq!(unsafe { (self.table.aclrtFree)(self.ptr) }, ACL_SUCCESS);
    }
}

fn random_f16(rng: &mut StdRng, n: usize) -> Vec<f16> {
    (0..n)
        .map(|_| f16::from_f32(rng.gen_range(-1.0..1.0)))
        .collect()
}

#[test]
fn every_op_runs_on_foreign_memory_and_a_foreign_stream() {
    let device = common::emu(0);
    let table = emu::table();
    // The stream, as a host framework would make it: on the thread's current device.
    let mut raw_stream = std::ptr::null_mut();
    // SAFETY: device 0 is initialised (the Device above); a valid out-pointer.
    unsafe {
        assert_eq!((table.aclrtSetDevice)(device.id()), ACL_SUCCESS);
        assert_eq!((table.aclrtCreateStream)(&mut raw_stream), ACL_SUCCESS);
    }
    // SAFETY: a live stream of this emulated device, destroyed below after every use.
    let stream = unsafe { Stream::from_raw(&device, raw_stream) };
    let mut rng = StdRng::seed_from_u64(rand::random());

    // bgmv_shrink then bgmv_expand, rows 1 and 3 without an adapter.
    let (batch, hidden, rank, loras, full, offset) = (4, 96, 8, 2, 160, 40);
    let idx = [1i64, -1, 0, -1];
    let x = random_f16(&mut rng, batch * hidden);
    let a = random_f16(&mut rng, loras * rank * hidden);
    let b = random_f16(&mut rng, loras * hidden * rank);
    let poison_f32 = vec![f32::NAN; batch * rank];
    let y0 = random_f16(&mut rng, batch * full);
    let (fx, fa, fb) = (
        Foreign::new(table, &x),
        Foreign::new(table, &a),
        Foreign::new(table, &b),
    );
    let (fmid, fy, fidx) = (
        Foreign::new(table, &poison_f32),
        Foreign::new(table, &y0),
        Foreign::new(table, &idx),
    );

    let shrink = ShrinkShape {
        batch,
        hidden_in: hidden,
        rank,
        num_loras: loras,
    };
    let idx_dev = AdapterIndices::Device(fidx.view(&device, batch));
    ops::bgmv_shrink(
        &stream,
        ops::BgmvShrink {
            x: fx.view::<f16>(&device, batch * hidden),
            weights: fa.view::<f16>(&device, a.len()),
            indices: idx_dev,
            y: fmid.view_mut(&device, batch * rank),
            shape: shrink,
            scale: 0.5,
        },
        None,
    )
    .unwrap();
    stream.synchronize().unwrap();
    let mut want_mid = poison_f32.clone();
    reference::bgmv_shrink(&x, &a, &idx, &mut want_mid, shrink, 0.5).unwrap();
    let got_mid: Vec<f32> = fmid.read(batch * rank);
    for (i, (g, w)) in got_mid.iter().zip(&want_mid).enumerate() {
        // Rows without an adapter keep their poison (NaN): compared bit for bit.
        let close = (g.is_nan() && w.is_nan()) || (g - w).abs() <= 1e-4 * (1.0 + w.abs());
        assert!(close, "shrink element {i}: got {g}, want {w}");
    }

    // expand reads the shrink's result: make the skipped rows finite first, as a runtime would.
    let mid: Vec<f32> = got_mid
        .iter()
        .map(|v| if v.is_nan() { 0.25 } else { *v })
        .collect();
    fmid.write(&mid);
    let expand = ExpandShape {
        batch,
        rank,
        hidden_out: hidden,
        hidden_full: full,
        slice_offset: offset,
        num_loras: loras,
    };
    let idx_host = AdapterIndices::Host(&idx);
    ops::bgmv_expand(
        &stream,
        ops::BgmvExpand {
            x: fmid.view(&device, batch * rank),
            weights: fb.view::<f16>(&device, b.len()),
            indices: idx_host,
            y: fy.view_mut::<f16>(&device, batch * full),
            shape: expand,
            add_inputs: true,
        },
        None,
    )
    .unwrap();
    stream.synchronize().unwrap();
    let mut want_y = y0.clone();
    reference::bgmv_expand(&mid, &b, &idx, &mut want_y, expand, true).unwrap();
    let got_y: Vec<f16> = fy.read(batch * full);
    for (i, (g, w)) in got_y.iter().zip(&want_y).enumerate() {
        // One f16 rounding of the sum plus f32 accumulation error: 2 ulp of f16 at the value.
        let tol = 2.0 * f16::EPSILON.to_f32() * (1.0 + w.to_f32().abs());
        assert!(
            (g.to_f32() - w.to_f32()).abs() <= tol,
            "expand element {i}: got {g}, want {w}"
        );
    }

    // cold_score on foreign logits, outputs and scores.
    let shape = ColdShape {
        rows: 3,
        vocab: 1000,
    };
    let e: Vec<f32> = (0..shape.rows * shape.vocab)
        .map(|_| rng.gen_range(-4.0..4.0))
        .collect();
    let am: Vec<f32> = (0..shape.rows * shape.vocab)
        .map(|_| rng.gen_range(-4.0..4.0))
        .collect();
    let (fe, fam) = (Foreign::new(table, &e), Foreign::new(table, &am));
    let ftok = Foreign::new(table, &[i64::MIN; 3]);
    let fbest = Foreign::new(table, &[f32::NAN; 3]);
    let fscores = Foreign::new(table, &vec![f32::NAN; shape.rows * shape.vocab]);
    let out = ColdOutputs {
        tokens: ftok.view_mut(&device, 3),
        best_scores: fbest.view_mut(&device, 3),
        scores: Some(fscores.view_mut(&device, shape.rows * shape.vocab)),
    };
    ops::cold_score(
        &stream,
        fe.view::<f32>(&device, e.len()),
        fam.view::<f32>(&device, am.len()),
        shape,
        ColdParams::new(0.1, 0.5).unwrap(),
        out,
        None,
    )
    .unwrap();
    stream.synchronize().unwrap();
    let mut want_scores = vec![0.0f32; shape.rows * shape.vocab];
    let picks = reference::cold_score(
        &e,
        &am,
        shape,
        ColdParams::new(0.1, 0.5).unwrap(),
        Some(&mut want_scores),
    )
    .unwrap();
    let tokens: Vec<i64> = ftok.read(3);
    assert_eq!(tokens, picks.iter().map(|p| p.token).collect::<Vec<_>>());
    let scores: Vec<f32> = fscores.read(shape.rows * shape.vocab);
    for (i, (g, w)) in scores.iter().zip(&want_scores).enumerate() {
        // (1 + beta) e - beta a in f32 from f32 inputs: a few ulp of the larger term.
        let ok = (g.is_infinite() && w.is_infinite())
            || (g - w).abs() <= 4.0 * f32::EPSILON * (1.5 * 4.0 + 0.5 * 4.0);
        assert!(ok, "score {i}: got {g}, want {w}");
    }

    drop(stream);
    // SAFETY: the stream was synchronised and the crate's wrapper dropped; this runtime destroys it.
    assert_eq!(
        unsafe { (table.aclrtDestroyStream)(raw_stream) },
        ACL_SUCCESS
    );
}
