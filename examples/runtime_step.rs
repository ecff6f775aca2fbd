//! What an inference runtime does with this crate, end to end, on whichever device `Device::auto`
//! finds (the emulator here, NPU 0 on a board):
//!
//! 1. its own device memory: one arena the runtime allocates, carved into typed views
//!    (`DeviceView::from_raw`), as a runtime with its own allocator would;
//! 2. one multi-LoRA step: expert rows through their adapters and amateur rows through none, in one
//!    `bgmv_shrink` and one `bgmv_expand` per projection, the expand writing its slice of a fused
//!    q/k/v output in place (`slice_offset`);
//! 3. CoLD over the step's logits as the batch lays them out, each expert row followed by its amateur
//!    row, in one `cold_score_strided` launch with no gather;
//! 4. a streaming decode with the `Decoder` on a small Llama model and a PEFT adapter (the test
//!    fixtures), printing each token's text as it is released.
//!
//! Run: `cargo run --release --example runtime_step`.

use ascend_cold::contracts::{ColdParams, ColdShape, ExpandShape, ShrinkShape};
use ascend_cold::decode::{encode_prompt, Decoder, Request, SamplingParams, StopRules, Strategy};
use ascend_cold::half::f16;
use ascend_cold::model::hf::load_hf;
use ascend_cold::model::{Adapter, DeviceLora, LlamaModel, StackedAdapters, WeightDtype};
use ascend_cold::ops::{self, AdapterIndices, ColdOutputs, RowStrides};
use ascend_cold::{Device, DeviceBuffer, DeviceRepr, DeviceView, DeviceViewMut, Result, Stream};
use std::io::Write;
use std::marker::PhantomData;
use std::path::Path;

/// A typed carve-out of the arena: address and element count.
struct Slot<T> {
    addr: u64,
    len: usize,
    ty: PhantomData<T>,
}

impl<T> Clone for Slot<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Slot<T> {}

/// A bump allocator over one device allocation, handing out 512-byte aligned typed slots: the shape
/// of a runtime's own memory pool. Views borrow the arena, so they cannot outlive it.
struct Arena {
    buffer: DeviceBuffer<u8>,
    used: usize,
}

impl Arena {
    fn new(device: &Device, bytes: usize) -> Result<Arena> {
        Ok(Arena {
            buffer: DeviceBuffer::zeroed(device, bytes)?,
            used: 0,
        })
    }

    /// The next `len` elements of `T` (panics when the arena is full: an example, not a runtime).
    fn take<T: DeviceRepr>(&mut self, len: usize) -> Slot<T> {
        let start = self.used.next_multiple_of(512);
        let end = start + len * std::mem::size_of::<T>();
        assert!(end <= self.buffer.len(), "arena exhausted");
        self.used = end;
        Slot {
            addr: self.buffer.device_addr() + start as u64,
            len,
            ty: PhantomData,
        }
    }

    fn view<'a, T: DeviceRepr>(&self, device: &'a Device, slot: Slot<T>) -> DeviceView<'a, T> {
        // SAFETY: the slot is `len` elements of T inside the arena's live allocation on `device`,
        // disjoint from every other slot; the arena outlives every use (it is dropped last, after the
        // stream that used it was synchronised).
        unsafe { DeviceView::from_raw(device, slot.addr, slot.len) }
    }

    fn view_mut<'a, T: DeviceRepr>(
        &self,
        device: &'a Device,
        slot: Slot<T>,
    ) -> DeviceViewMut<'a, T> {
        // SAFETY: as `view`; nothing else reads or writes this slot while the op runs.
        unsafe { DeviceViewMut::from_raw(device, slot.addr, slot.len) }
    }
}

/// A tiny deterministic generator, so the example needs no extra dependency.
fn values(seed: u32, n: usize) -> Vec<f16> {
    (0..n as u32)
        .map(|i| {
            let h = (i ^ seed).wrapping_mul(2_654_435_761) >> 16;
            f16::from_f32((h % 2001) as f32 / 1000.0 - 1.0)
        })
        .collect()
}

fn main() -> Result<()> {
    let (device, why) = Device::auto()?;
    println!("device {device}: {why}");
    let stream = Stream::new(&device)?;
    let mut arena = Arena::new(&device, 4 << 20)?;

    // --- 2. one multi-LoRA step: 2 requests x (expert, amateur) = 4 rows --------------------------
    let (hidden, rank, loras, q_out, kv_out) = (256, 16, 2, 256, 64);
    let full = q_out + 2 * kv_out; // fused q/k/v output, one row per batch row
    let batch = 4;
    let indices = [0i64, -1, 1, -1]; // request 0 uses adapter 0, request 1 adapter 1; amateurs none
    let x = arena.take::<f16>(batch * hidden);
    let a = arena.take::<f16>(loras * rank * hidden);
    let b_q = arena.take::<f16>(loras * q_out * rank);
    let mid = arena.take::<f32>(batch * rank);
    let qkv = arena.take::<f16>(batch * full);
    stream.upload(arena.view_mut(&device, x), values(1, batch * hidden))?;
    stream.upload(arena.view_mut(&device, a), values(2, loras * rank * hidden))?;
    stream.upload(
        arena.view_mut(&device, b_q),
        values(3, loras * q_out * rank),
    )?;
    stream.upload(arena.view_mut(&device, mid), vec![0.0f32; batch * rank])?;
    stream.upload(arena.view_mut(&device, qkv), vec![f16::ZERO; batch * full])?;

    let shrink = ShrinkShape {
        batch,
        hidden_in: hidden,
        rank,
        num_loras: loras,
    };
    ops::bgmv_shrink(
        &stream,
        ops::BgmvShrink {
            x: arena.view(&device, x),
            weights: arena.view(&device, a),
            indices: AdapterIndices::Host(&indices),
            y: arena.view_mut(&device, mid),
            shape: shrink,
            scale: 2.0,
        }, // lora_alpha / r
        None,
    )?;
    // The q slice of the fused output, written in place; k and v would follow at their offsets.
    let expand = ExpandShape {
        batch,
        rank,
        hidden_out: q_out,
        hidden_full: full,
        slice_offset: 0,
        num_loras: loras,
    };
    ops::bgmv_expand(
        &stream,
        ops::BgmvExpand {
            x: arena.view(&device, mid),
            weights: arena.view(&device, b_q),
            indices: AdapterIndices::Host(&indices),
            y: arena.view_mut(&device, qkv),
            shape: expand,
            add_inputs: true,
        },
        None,
    )?;
    let delta = stream.download(arena.view(&device, qkv))?.wait()?;
    let touched: Vec<bool> = (0..batch)
        .map(|r| {
            delta[r * full..r * full + q_out]
                .iter()
                .any(|v| *v != f16::ZERO)
        })
        .collect();
    println!("LoRA step: rows with an adapter got a q delta {touched:?} (amateur rows untouched), k/v slices untouched: {}",
        (0..batch).all(|r| delta[r * full + q_out..(r + 1) * full].iter().all(|v| *v == f16::ZERO)));

    // --- 3. CoLD on interleaved rows: [expert 0, amateur 0, expert 1, amateur 1] x vocab ----------
    let vocab = 1000;
    let logits: Vec<f32> = values(4, 4 * vocab)
        .iter()
        .map(|v| v.to_f32() * 8.0)
        .collect();
    let dev_logits = arena.take::<f32>(4 * vocab);
    stream.upload(arena.view_mut(&device, dev_logits), logits)?;
    let (tokens, best) = (arena.take::<i64>(2), arena.take::<f32>(2));
    let all = arena.view(&device, dev_logits);
    ops::cold_score_strided(
        &stream,
        all,
        all.slice(vocab..)?,
        ColdShape { rows: 2, vocab },
        RowStrides::interleaved(vocab),
        ColdParams::new(0.1, 0.5)?,
        ColdOutputs {
            tokens: arena.view_mut(&device, tokens),
            best_scores: arena.view_mut(&device, best),
            scores: None,
        },
        None,
    )?;
    let picks = stream
        .download(arena.view::<i64>(&device, tokens))?
        .wait()?;
    println!("CoLD over interleaved rows, one launch: tokens {picks:?}");

    // --- 4. streaming decode with an adapter -----------------------------------------------------
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-gqa-tied");
    let mut files = load_hf(&fixture.join("model"))?;
    let adapter = Adapter::load(&fixture.join("adapters/a-qv"), &files.config)?;
    let stacked = StackedAdapters::new(&[("a-qv".to_string(), adapter)], &files.config)?;
    let model = LlamaModel::new(&files, WeightDtype::F32)?;
    // The f32 tensors are not needed once the model is built: keep only the tokenizer.
    let tokenizer = files.tokenizer.take().expect("the fixture has a tokenizer");
    let config = files.config.clone();
    drop(files);
    let lora = DeviceLora::<ascend_cold::half::bf16>::new(&stacked, &stream)?;
    let prompt = encode_prompt(&tokenizer, &config, "The quick brown fox", false)?;
    let mut decoder =
        Decoder::new(&model, Some(&lora), stream.clone()).with_tokenizer(&tokenizer.tokenizer);
    let id = decoder.submit(Request {
        prompt,
        adapter: 0,
        strategy: Strategy::Cold {
            alpha: 0.1,
            beta: 0.5,
        },
        sampling: SamplingParams::default(),
        stop: StopRules::for_model(&config, 12),
    })?;
    print!("streaming CoLD decode: ");
    while !decoder.is_idle() {
        for token in decoder.step()? {
            print!("{}", token.text_delta);
            std::io::stdout().flush().ok();
        }
    }
    let output = decoder.output(id).expect("submitted above");
    println!(
        "\n  {} tokens, finish {:?}",
        output.tokens.len(),
        output.finish
    );
    stream.synchronize()
}
