//! `Model`: the Rust decoder (`ascend_cold::decode::Decoder`) on a model file and PEFT adapters, for
//! callers without torch.
//!
//! Contract: as `ascend-cold decode` (src/bin/ascend-cold/decode.rs): the same loading, adapter
//! stacking on the device, prompt encoding, stop rules and decoder, so the same arguments give the
//! same tokens. A `generate` call runs its prompts as one batch to the end, with the GIL released;
//! calls on one `Model` from several threads run one after the other.

use crate::{devices, to_py};
use ascend_cold::decode::{
    encode_prompt, Decoder, Output, Request, SamplingParams, StopRules, Strategy,
};
use ascend_cold::model::{
    load_model, Adapter, DeviceLora, LlamaModel, LoraDelta, ModelFiles, StackedAdapters,
    WeightDtype,
};
use ascend_cold::{Error, Result, Stream};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::path::PathBuf;
use std::sync::Mutex;

/// Registers `Model` in the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Model>()
}

/// The LoRA path on the device, in the dtype the caller chose.
enum Lora {
    Bf16(DeviceLora<half::bf16>),
    F16(DeviceLora<half::f16>),
}

impl Lora {
    fn delta(&self) -> &dyn LoraDelta {
        match self {
            Lora::Bf16(l) => l,
            Lora::F16(l) => l,
        }
    }
}

/// A loaded model with its adapters on a device.
#[pyclass(frozen, module = "ascend_cold._native")]
pub struct Model {
    model: LlamaModel,
    /// The config and tokenizer; its weights are dropped once the model has its own copy.
    files: ModelFiles,
    adapter_names: Vec<String>,
    lora: Option<Lora>,
    stream: Stream,
    /// One decode at a time: the stream's scratch and the LoRA staging buffers are shared.
    busy: Mutex<()>,
    device: String,
}

/// A prompt: text (encoded with the model's tokenizer) or token ids.
#[derive(FromPyObject)]
enum Prompt {
    Text(String),
    Ids(Vec<u32>),
}

#[pymethods]
impl Model {
    /// Loads `path` (a Hugging Face folder or a .gguf file) and the PEFT adapters `adapters`
    /// (name, folder), and uploads the adapters to `device`.
    #[new]
    #[pyo3(signature = (path, adapters = Vec::new(), *, device = "auto", lora_dtype = "bf16", weights = "bf16"))]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        adapters: Vec<(String, PathBuf)>,
        device: &str,
        lora_dtype: &str,
        weights: &str,
    ) -> PyResult<Self> {
        py.detach(|| Model::open(path, &adapters, device, lora_dtype, weights))
            .map_err(to_py)
    }

    /// The adapter names, in index order.
    #[getter]
    fn adapters(&self) -> Vec<String> {
        self.adapter_names.clone()
    }

    /// The device the model runs its LoRA path and CoLD scoring on, and why.
    #[getter]
    fn device(&self) -> String {
        self.device.clone()
    }

    /// Generates for each prompt, all in one batch; one dict per prompt with `tokens`, `text`,
    /// `prompt_tokens` and `finish` ("eos", "length" or "stop"), as `ascend-cold decode --json`.
    #[pyo3(signature = (prompts, *, adapter = None, strategy = "greedy", alpha = 0.1, beta = 0.5,
        max_new_tokens = 128, chat = false, ignore_eos = false, stop = Vec::new(), temperature = 0.0,
        top_k = 0, top_p = 1.0, seed = 0))]
    #[allow(clippy::too_many_arguments)] // the CLI's request fields
    fn generate<'py>(
        &self,
        py: Python<'py>,
        prompts: Vec<Prompt>,
        adapter: Option<&str>,
        strategy: &str,
        alpha: f32,
        beta: f32,
        max_new_tokens: usize,
        chat: bool,
        ignore_eos: bool,
        stop: Vec<String>,
        temperature: f32,
        top_k: usize,
        top_p: f32,
        seed: u64,
    ) -> PyResult<Vec<Bound<'py, PyDict>>> {
        let strategy = match strategy {
            "greedy" => Strategy::Greedy,
            "cold" => Strategy::Cold { alpha, beta },
            other => return Err(to_py(Error::parameter("strategy", "greedy or cold", other))),
        };
        let template = Request {
            prompt: vec![],
            adapter: self.adapter_index(adapter).map_err(to_py)?,
            strategy,
            sampling: SamplingParams {
                temperature,
                top_k,
                top_p,
                seed,
            },
            stop: StopRules {
                ignore_eos,
                stop_strings: stop,
                ..StopRules::for_model(&self.files.config, max_new_tokens)
            },
        };
        let outputs = py
            .detach(|| self.run(prompts, chat, &template))
            .map_err(to_py)?;
        outputs
            .into_iter()
            .map(|out| {
                let d = PyDict::new(py);
                d.set_item("tokens", out.tokens)?;
                d.set_item("text", out.text)?;
                d.set_item("prompt_tokens", out.prompt_tokens)?;
                d.set_item("finish", out.finish.map(|f| f.as_str()))?;
                Ok(d)
            })
            .collect()
    }

    /// Token ids of `prompt`, through the chat template as a user message when `chat` (what
    /// `generate` feeds the model for a text prompt).
    #[pyo3(signature = (prompt, *, chat = false))]
    fn encode(&self, prompt: &str, chat: bool) -> PyResult<Vec<u32>> {
        self.encode_text(prompt, chat).map_err(to_py)
    }
}

impl Model {
    fn open(
        path: PathBuf,
        adapters: &[(String, PathBuf)],
        device: &str,
        lora_dtype: &str,
        weights: &str,
    ) -> Result<Self> {
        let dtype = match weights {
            "bf16" => WeightDtype::Bf16,
            "f32" => WeightDtype::F32,
            other => return Err(Error::parameter("weights", "bf16 or f32", other)),
        };
        if !matches!(lora_dtype, "bf16" | "f16") {
            return Err(Error::parameter("lora_dtype", "bf16 or f16", lora_dtype));
        }
        let (dev, why) = devices::open(device)?;
        let mut files = load_model(&path)?;
        let model = LlamaModel::new(&files, dtype)?;
        files.tensors = Default::default();
        let stream = Stream::new(&dev)?;
        let loaded = adapters
            .iter()
            .map(|(name, dir)| Ok((name.clone(), Adapter::load(dir, &files.config)?)))
            .collect::<Result<Vec<_>>>()?;
        let lora = match loaded.is_empty() {
            true => None,
            false => {
                let stacked = StackedAdapters::new(&loaded, &files.config)?;
                Some(match lora_dtype {
                    "f16" => Lora::F16(DeviceLora::new(&stacked, &stream)?),
                    _ => Lora::Bf16(DeviceLora::new(&stacked, &stream)?),
                })
            }
        };
        Ok(Model {
            model,
            files,
            adapter_names: loaded.into_iter().map(|(n, _)| n).collect(),
            lora,
            stream,
            busy: Mutex::new(()),
            device: format!("{dev}: {why}"),
        })
    }

    fn adapter_index(&self, name: Option<&str>) -> Result<i64> {
        let Some(name) = name else { return Ok(-1) };
        match self.adapter_names.iter().position(|a| a == name) {
            Some(i) => Ok(i as i64),
            None => Err(Error::parameter(
                "adapter",
                format!("one of {:?}", self.adapter_names),
                name,
            )),
        }
    }

    fn encode_text(&self, prompt: &str, chat: bool) -> Result<Vec<u32>> {
        let tokenizer = self.files.tokenizer.as_ref().ok_or_else(|| {
            Error::parameter(
                "prompt",
                "a model with a tokenizer (or pass token ids)",
                "text",
            )
        })?;
        encode_prompt(tokenizer, &self.files.config, prompt, chat)
    }

    fn run(&self, prompts: Vec<Prompt>, chat: bool, template: &Request) -> Result<Vec<Output>> {
        let _busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        let mut decoder = Decoder::new(
            &self.model,
            self.lora.as_ref().map(Lora::delta),
            self.stream.clone(),
        );
        if let Some(t) = &self.files.tokenizer {
            decoder = decoder.with_tokenizer(&t.tokenizer);
        }
        let ids = prompts
            .into_iter()
            .map(|p| {
                let prompt = match p {
                    Prompt::Text(text) => self.encode_text(&text, chat)?,
                    Prompt::Ids(ids) => ids,
                };
                decoder.submit(Request {
                    prompt,
                    ..template.clone()
                })
            })
            .collect::<Result<Vec<_>>>()?;
        decoder.run()?;
        Ok(ids
            .iter()
            .filter_map(|id| decoder.output(*id).cloned())
            .collect())
    }
}
