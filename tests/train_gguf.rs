//! The trainer's merged checkpoint is what the rest of the pipeline serves: converted by our GGUF quantizer
//! and run by llama.cpp, it computes the logits our adapted model computes.
#![cfg(all(feature = "train", feature = "serve"))]

#[path = "train_support/mod.rs"]
mod support;

#[path = "support/llama_cpp.rs"]
mod llama_cpp;

use fireweave_ai::api::training_run::LoraSpec;
use fireweave_ai::gguf::Mix;
use fireweave_ai::gguf::convert::{Request, convert};
use fireweave_ai::hf::Checkpoint;
use fireweave_ai::train::export;
use fireweave_ai::train::lora::LoraStore;
use fireweave_ai::train::model::Llama;
use std::collections::BTreeMap;
use tch::{Device, Kind, Tensor};

#[test]
fn merged_checkpoint_through_our_gguf_quantizer_matches_our_model_in_llama_cpp() {
    let base_dir = support::fixture("tiny-llama31-gqa-tied");
    let ck = Checkpoint::open(&base_dir).unwrap();
    let model = Llama::load(&ck, Kind::Float, Device::Cpu, false).unwrap();
    tch::manual_seed(5);
    let spec = LoraSpec {
        r: 8,
        alpha: 16,
        ..Default::default()
    };
    let mut lora = LoraStore::new(&model, &spec);
    let values: BTreeMap<String, Tensor> = lora
        .named()
        .into_iter()
        .map(|(n, t)| (n, t.detach().randn_like() * 0.05))
        .collect();
    lora.load_values(&values).unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let merged = tmp.path().join("merged");
    let (_, template) = fireweave_ai::train::run::training_template(ck.dir()).unwrap();
    export::save_merged(&merged, &ck, &lora, template.source()).unwrap();
    let merged_ck = Checkpoint::open(&merged).unwrap();
    let requests: Vec<Request> = [Mix::F32, Mix::Q8_0]
        .iter()
        .map(|&mix| Request {
            mix,
            path: tmp.path().join(format!("merged-{mix}.gguf")),
        })
        .collect();
    convert(&merged_ck, "merged", &requests, &|_| {}).unwrap();

    let reference = support::reference_ids("tiny-llama31-gqa-tied");
    let input = Tensor::from_slice(&reference).unsqueeze(0);
    let ours = tch::no_grad(|| model.logits(&input, Some(&lora))).squeeze_dim(0);
    let base = tch::no_grad(|| model.logits(&input, None)).squeeze_dim(0);
    let ours_v: Vec<f32> = Vec::try_from(ours.view([-1])).unwrap();
    let base_v: Vec<f32> = Vec::try_from(base.view([-1])).unwrap();
    let ids: Vec<i32> = reference.iter().map(|&i| i as i32).collect();
    for (req, min_cos, max_diff) in [(&requests[0], 0.999_999, 2e-3), (&requests[1], 0.999, f32::INFINITY)] {
        let (theirs, vocab) = llama_cpp::logits(&req.path, &ids);
        assert_eq!(theirs.len(), ids.len() * vocab);
        let diff = ours_v
            .iter()
            .zip(&theirs)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        let cos_ours = support::cosine(&ours_v, &theirs);
        let cos_base = support::cosine(&base_v, &theirs);
        eprintln!(
            "{}: llama.cpp vs our adapted model: cosine {cos_ours:.7}, max |diff| {diff:.2e}; vs the base: cosine {cos_base:.5}",
            req.mix
        );
        assert!(cos_ours >= min_cos, "{}: cosine {cos_ours} < {min_cos}", req.mix);
        assert!(diff <= max_diff, "{}: max |diff| {diff}", req.mix);
        assert!(
            cos_ours > cos_base,
            "{}: llama.cpp is closer to the base than to the adapted model",
            req.mix
        );
    }
}
