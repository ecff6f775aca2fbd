//! Host <-> device copies of every element type, sizes from 0 to tens of MiB, sync and async.

mod common;

use ascend_cold::{Device, DeviceBuffer, DeviceRepr, Stream};
use rand::{rngs::StdRng, RngCore, SeedableRng};

/// Random bit patterns (NaNs included: compared as bytes): 64 KiB of random bytes, tiled with a
/// per-tile stamp so no two tiles are equal (fast enough for tens of MiB in a debug build).
fn random<T: DeviceRepr>(rng: &mut StdRng, len: usize) -> Vec<T> {
    let mut v: Vec<T> = bytemuck::zeroed_vec(len);
    let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut v);
    let mut tile = vec![0u8; 64 << 10];
    rng.fill_bytes(&mut tile);
    for (i, chunk) in bytes.chunks_mut(tile.len()).enumerate() {
        chunk.copy_from_slice(&tile[..chunk.len()]);
        let stamp = (i as u32).to_le_bytes();
        let n = chunk.len().min(4);
        chunk[..n].copy_from_slice(&stamp[..n]);
    }
    v
}

fn round_trip<T: DeviceRepr>(device: &Device, rng: &mut StdRng) {
    let stream = Stream::new(device).unwrap();
    let big = (20 << 20) / std::mem::size_of::<T>(); // 20 MiB
    for len in [0, 1, 3, 31, 4097, (1 << 16) + 5, big] {
        let host: Vec<T> = random(rng, len);
        // sync: from_host / to_vec
        let buf = DeviceBuffer::from_host(device, &host).unwrap();
        assert_eq!(buf.len(), len);
        let back = buf.to_vec().unwrap();
        assert!(
            bytemuck::cast_slice::<T, u8>(&back) == bytemuck::cast_slice::<T, u8>(&host),
            "{} x {len} sync",
            T::NAME
        );
        // async: upload into a poisoned buffer, download, wait
        let mut dst = DeviceBuffer::<T>::zeroed(device, len).unwrap();
        stream.upload(dst.view_mut(), host.clone()).unwrap();
        let back = stream.download(dst.view()).unwrap().wait().unwrap();
        assert!(
            bytemuck::cast_slice::<T, u8>(&back) == bytemuck::cast_slice::<T, u8>(&host),
            "{} x {len} async",
            T::NAME
        );
        // device to device, sync and on the stream, on a sub-range
        if len >= 3 {
            let mut copy = DeviceBuffer::<T>::zeroed(device, len - 2).unwrap();
            copy.view_mut()
                .copy_from(buf.slice(1..len - 1).unwrap())
                .unwrap();
            let got = copy.to_vec().unwrap();
            assert!(
                bytemuck::cast_slice::<T, u8>(&got)
                    == bytemuck::cast_slice::<T, u8>(&host[1..len - 1])
            );
            let mut again = DeviceBuffer::<T>::zeroed(device, len - 2).unwrap();
            stream.copy(again.view_mut(), copy.view()).unwrap();
            let got = again.to_vec().unwrap(); // waits for the stream that wrote it
            assert!(
                bytemuck::cast_slice::<T, u8>(&got)
                    == bytemuck::cast_slice::<T, u8>(&host[1..len - 1])
            );
        }
    }
}

#[test]
fn every_element_type_round_trips_at_every_size() {
    for device in common::devices() {
        let mut rng = StdRng::seed_from_u64(0xC01D);
        round_trip::<f32>(&device, &mut rng);
        round_trip::<half::f16>(&device, &mut rng);
        round_trip::<half::bf16>(&device, &mut rng);
        round_trip::<i32>(&device, &mut rng);
        round_trip::<i64>(&device, &mut rng);
        round_trip::<u32>(&device, &mut rng);
        round_trip::<u8>(&device, &mut rng);
    }
}

#[test]
fn zeroed_is_zero_and_slices_write_in_place() {
    for device in common::devices() {
        let mut buf = DeviceBuffer::<i64>::zeroed(&device, 100).unwrap();
        assert!(buf.to_vec().unwrap().iter().all(|&x| x == 0));
        buf.slice_mut(10..20)
            .unwrap()
            .copy_from_host(&[7; 10])
            .unwrap();
        let v = buf.to_vec().unwrap();
        assert!(
            v[..10].iter().all(|&x| x == 0)
                && v[10..20].iter().all(|&x| x == 7)
                && v[20..].iter().all(|&x| x == 0)
        );
        assert_eq!(buf.slice(95..).unwrap().len(), 5);
        assert_eq!(
            buf.slice(..=4)
                .unwrap()
                .slice(1..3)
                .unwrap()
                .to_vec()
                .unwrap(),
            [0, 0]
        );
    }
}

#[test]
fn device_facts_come_from_the_device() {
    for device in common::devices() {
        let p = device.profile().unwrap();
        assert!(
            p.vector_cores > 0 && p.ub_bytes > 0 && !p.soc_name.is_empty(),
            "{p:?}"
        );
        if common::is_emu(&device) {
            assert_eq!(
                (p.soc_name.as_str(), p.ai_cores, p.vector_cores, p.ub_bytes),
                (
                    "Ascend910B2",
                    24,
                    48,
                    192 * 1024 - ascend_cold::profile::UB_RESERVED_BYTES
                )
            );
        }
    }
}

#[test]
fn auto_says_which_device_and_why() {
    common::configure_emulator();
    let (device, reason) = Device::auto().unwrap();
    assert!(!reason.is_empty());
    if std::env::var_os("ASCEND_TEST_DEVICE").is_none() && !common::is_emu(&device) {
        eprintln!("auto picked {device}: {reason}");
    }
    if common::is_emu(&device) {
        assert!(reason.contains("emulator"), "{reason}");
    }
}
