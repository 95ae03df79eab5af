//! Must-show 1: the chart's CRDs on a real kube-apiserver — Established; every CEL rule rejects an invalid
//! object with its own message and the valid base passes; the transition rule guards `spec.baseModel`; every
//! example manifest is accepted by a server-side dry run; `kubectl get fireweave` prints the columns;
//! `kubectl explain trainingrun.spec.lora` prints the field docs without breaking their sentences.

use serde_json::{Value, json};

use crate::cluster;
use crate::cluster::release::repo;

/// A valid spec of each kind; every case below starts from it and replaces some of its fields.
fn valid(kind: &str) -> Value {
    match kind {
        "Dataset" => json!({"sources": [{"path": "data/fireweave"}]}),
        "TrainingRun" => json!({"baseModel": {"path": "models/base"}, "datasetRef": {"name": "fw"}}),
        "ModelServing" => json!({"model": {"trainingRunRef": {"name": "run"}}}),
        other => panic!("{other}"),
    }
}

/// One object per CEL rule that breaks exactly that rule: (kind, the rule's message, fields replaced).
fn cases() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        (
            "Dataset",
            "nearDuplicateThreshold is a similarity",
            json!({"filters": {"dedup": {"nearDuplicateThreshold": 1.5}}}),
        ),
        (
            "Dataset",
            "maxRecordBytes must be positive",
            json!({"filters": {"maxRecordBytes": 0}}),
        ),
        (
            "Dataset",
            "minQualityScore is a score from 0 to 100",
            json!({"filters": {"minQualityScore": 101}}),
        ),
        (
            "Dataset",
            "a source sets exactly one of",
            json!({"sources": [{"path": "a", "configMap": {"name": "c"}}]}),
        ),
        (
            "Dataset",
            "a url source needs sha256",
            json!({"sources": [{"url": "https://example.com/d.jsonl"}]}),
        ),
        (
            "Dataset",
            "evalFraction is a fraction",
            json!({"split": {"evalFraction": 1.0}}),
        ),
        (
            "Dataset",
            "batchSize must be positive",
            json!({"synthesis": {"provider": "openai", "model": "m", "batchSize": 0}}),
        ),
        (
            "Dataset",
            "tokensPerMinute must be positive",
            json!({"synthesis": {"provider": "openai", "model": "m", "tokensPerMinute": 0}}),
        ),
        ("Dataset", "a Dataset needs at least one entry", json!({"sources": []})),
        (
            "ModelServing",
            "sha256 must be 64 lower-case hex digits",
            json!({"model": {"gguf": {"path": "m.gguf", "sha256": "xyz"}}}),
        ),
        (
            "ModelServing",
            "quantization must be one of",
            json!({"model": {"trainingRunRef": {"name": "r", "quantization": "Q3_K_S"}}}),
        ),
        ("ModelServing", "model sets exactly one of", json!({"model": {}})),
        (
            "ModelServing",
            "modelName must be a lower-case Ollama model name",
            json!({"modelName": "Network Expert"}),
        ),
        (
            "ModelServing",
            "num_ctx must be positive",
            json!({"modelfile": {"parameters": {"num_ctx": 0}}}),
        ),
        (
            "ModelServing",
            "temperature cannot be negative",
            json!({"modelfile": {"parameters": {"temperature": -0.5}}}),
        ),
        (
            "ModelServing",
            "top_p is in (0, 1]",
            json!({"modelfile": {"parameters": {"top_p": 0.0}}}),
        ),
        ("ModelServing", "port must be between 1 and 65535", json!({"port": 0})),
        ("ModelServing", "replicas cannot be negative", json!({"replicas": -1})),
        (
            "ModelServing",
            "rollout.maxSurge must be at least 1",
            json!({"rollout": {"maxSurge": 0}}),
        ),
        (
            "TrainingRun",
            "baseModel sets exactly one of",
            json!({"baseModel": {"path": "a", "huggingFace": {"repo": "o/m"}}}),
        ),
        (
            "TrainingRun",
            "checkpointEverySteps must be positive",
            json!({"checkpointEverySteps": 0}),
        ),
        (
            "TrainingRun",
            "export.gguf entries must be one of",
            json!({"export": {"gguf": ["Q3_K_S"]}}),
        ),
        (
            "TrainingRun",
            "hyperparameters.batchSize must be positive",
            json!({"hyperparameters": {"batchSize": 0}}),
        ),
        (
            "TrainingRun",
            "hyperparameters.epochs must be positive",
            json!({"hyperparameters": {"epochs": 0}}),
        ),
        (
            "TrainingRun",
            "hyperparameters.gradientAccumulation must be positive",
            json!({"hyperparameters": {"gradientAccumulation": 0}}),
        ),
        (
            "TrainingRun",
            "hyperparameters.learningRate must be positive",
            json!({"hyperparameters": {"learningRate": 0.0}}),
        ),
        (
            "TrainingRun",
            "hyperparameters.maxSeqLength must be positive",
            json!({"hyperparameters": {"maxSeqLength": 0}}),
        ),
        (
            "TrainingRun",
            "lora.dropout is a probability",
            json!({"lora": {"dropout": 1.0}}),
        ),
        ("TrainingRun", "lora.r must be positive", json!({"lora": {"r": 0}})),
        (
            "TrainingRun",
            "lora.targetModules needs at least one module",
            json!({"lora": {"targetModules": []}}),
        ),
        (
            "TrainingRun",
            "lora.targetModules entries must be among",
            json!({"lora": {"targetModules": ["x_proj"]}}),
        ),
        (
            "TrainingRun",
            "evaluation.maxExamples must be positive",
            json!({"evaluation": {"maxExamples": 0}}),
        ),
    ]
}

/// A CEL rule found in a CRD schema: where it sits (as the API server names the field) and what it says.
struct Rule {
    kind: String,
    path: String,
    message: String,
    /// The rule's field is an enum: the structural schema refuses a wrong value before CEL runs.
    enum_field: bool,
    transition: bool,
}

fn rules(kind: &str, schema: &Value, path: &str, out: &mut Vec<Rule>) {
    let enum_field = schema["enum"].is_array() || schema["items"]["enum"].is_array();
    for v in schema["x-kubernetes-validations"].as_array().into_iter().flatten() {
        let rule = v["rule"].as_str().unwrap_or_default();
        out.push(Rule {
            kind: kind.to_string(),
            path: v["fieldPath"]
                .as_str()
                .map(|p| p.trim_start_matches('.').to_string())
                .unwrap_or(path.to_string()),
            message: v["message"].as_str().unwrap_or_default().to_string(),
            enum_field,
            transition: rule.contains("oldSelf"),
        });
    }
    for (name, sub) in schema["properties"].as_object().into_iter().flatten() {
        let child = if path.is_empty() {
            name.clone()
        } else {
            format!("{path}.{name}")
        };
        rules(kind, sub, &child, out);
    }
    if schema["items"].is_object() {
        rules(kind, &schema["items"], &format!("{path}[0]"), out);
    }
}

fn with(mut base: Value, fields: &Value) -> Value {
    for (k, v) in fields.as_object().expect("fields") {
        base[k] = v.clone();
    }
    base
}

fn object(kind: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "ai.fireweave.io/v1alpha1", "kind": kind, "metadata": {"name": name}, "spec": spec})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crds_cel_rules_examples_columns_and_explain() {
    let cp = cluster::shared();
    let rel = cp.install("crds", json!({}));

    // Established, and the schema the server holds is the chart's.
    let mut all_rules = Vec::new();
    for (kind, plural) in [
        ("Dataset", "datasets"),
        ("TrainingRun", "trainingruns"),
        ("ModelServing", "modelservings"),
    ] {
        let crd: Value =
            serde_json::from_str(&cp.kubectl(&["get", "crd", &format!("{plural}.ai.fireweave.io"), "-o", "json"]))
                .expect("CRD JSON");
        let established = crd["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Established" && c["status"] == "True");
        assert!(established, "{kind} CRD is not Established: {}", crd["status"]);
        rules(
            kind,
            &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"],
            "",
            &mut all_rules,
        );
    }

    // Every valid base is admitted.
    for kind in ["Dataset", "TrainingRun", "ModelServing"] {
        let obj = object(kind, "valid", valid(kind));
        cp.kubectl_with(
            &["-n", &rel.ns, "create", "--dry-run=server", "-f", "-"],
            Some(&obj.to_string()),
        )
        .unwrap_or_else(|e| panic!("the valid {kind} was refused: {e}"));
    }

    // Every rule has a case, and the server refuses that case with the rule's message at the rule's field.
    let cases = cases();
    let mut unreachable = Vec::new();
    for rule in all_rules.iter().filter(|r| !r.transition) {
        let (_, _, fields) = cases
            .iter()
            .find(|(kind, message, _)| *kind == rule.kind && rule.message.starts_with(message))
            .unwrap_or_else(|| {
                panic!(
                    "no test case for the {} rule {:?}: add one to cases()",
                    rule.kind, rule.message
                )
            });
        let obj = object(&rule.kind, "invalid", with(valid(&rule.kind), fields));
        let refused = cp
            .kubectl_with(
                &["-n", &rel.ns, "create", "--dry-run=server", "-f", "-"],
                Some(&obj.to_string()),
            )
            .expect_err(&format!("the API server admitted {obj} (rule {:?})", rule.message));
        if rule.enum_field {
            // The enum answers first and names the allowed values; this CEL rule can never be the one a user
            // sees (the operator's own validation and the local pipeline still use it).
            assert!(refused.contains("Unsupported value"), "{}: {refused}", rule.message);
            unreachable.push(format!("{} {}", rule.kind, rule.path));
            continue;
        }
        let expected = format!("{}: Invalid value: ", rule.path);
        assert!(
            refused.contains(&expected) && refused.contains(&rule.message),
            "{} rule at {}: expected {expected:?} and {:?}, got: {refused}",
            rule.kind,
            rule.path,
            rule.message
        );
    }
    eprintln!("CEL rules behind an enum (the enum's message is what users see): {unreachable:?}");

    // The transition rule: the base model may be corrected until training starts, not after.
    let run = object("TrainingRun", "frozen", valid("TrainingRun"));
    rel.apply(&run.to_string()).expect("create TrainingRun");
    rel.kubectl(&[
        "patch",
        "trainingrun",
        "frozen",
        "--type=merge",
        "-p",
        r#"{"spec":{"baseModel":{"path":"models/other"}}}"#,
    ]);
    rel.kubectl(&[
        "patch",
        "trainingrun",
        "frozen",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"attempt":1}}"#,
    ]);
    let refused = cp
        .kubectl_with(
            &[
                "-n",
                &rel.ns,
                "patch",
                "trainingrun",
                "frozen",
                "--type=merge",
                "-p",
                r#"{"spec":{"baseModel":{"path":"models/third"}}}"#,
            ],
            None,
        )
        .expect_err("baseModel changed after training started");
    let message = all_rules
        .iter()
        .find(|r| r.transition)
        .map(|r| r.message.clone())
        .expect("a transition rule");
    assert!(
        refused.contains("spec.baseModel: Invalid value") && refused.contains(&message),
        "{refused}"
    );
    rel.kubectl(&[
        "patch",
        "trainingrun",
        "frozen",
        "--type=merge",
        "-p",
        r#"{"spec":{"lora":{"r":8}}}"#,
    ]);

    // Every example manifest, as a user applies it.
    let mut files: Vec<_> = std::fs::read_dir(repo().join("manifests/examples"))
        .expect("manifests/examples")
        .flatten()
        .map(|e| e.path())
        .collect();
    files.push(repo().join("examples/quickstart/pipeline.yaml"));
    files.sort();
    for file in &files {
        let out = cp
            .kubectl_with(
                &[
                    "-n",
                    &rel.ns,
                    "apply",
                    "--server-side",
                    "--dry-run=server",
                    "-f",
                    &file.display().to_string(),
                ],
                None,
            )
            .unwrap_or_else(|e| panic!("{} was refused: {e}", file.display()));
        assert_eq!(
            out.matches("serverside-applied (server dry run)").count(),
            3,
            "{}: {out}",
            file.display()
        );
    }

    // `kubectl get fireweave`: one of each kind, under each CRD's printer columns.
    rel.apply(&object("Dataset", "columns", valid("Dataset")).to_string())
        .expect("Dataset");
    rel.apply(&object("ModelServing", "columns", valid("ModelServing")).to_string())
        .expect("ModelServing");
    let table = rel.kubectl(&["get", "fireweave"]);
    for (kind, plural) in [
        ("Dataset", "datasets"),
        ("TrainingRun", "trainingruns"),
        ("ModelServing", "modelservings"),
    ] {
        let crd: Value =
            serde_json::from_str(&cp.kubectl(&["get", "crd", &format!("{plural}.ai.fireweave.io"), "-o", "json"]))
                .expect("CRD JSON");
        let columns: Vec<String> = crd["spec"]["versions"][0]["additionalPrinterColumns"]
            .as_array()
            .expect("printer columns")
            .iter()
            .filter(|c| c["priority"].as_i64().unwrap_or(0) == 0)
            .map(|c| c["name"].as_str().unwrap_or_default().to_uppercase())
            .collect();
        let block = table
            .split("\n\n")
            .find(|b| b.contains(&format!("{}.ai.fireweave.io/", kind.to_lowercase())))
            .unwrap_or_else(|| panic!("kubectl get fireweave lists no {kind}:\n{table}"));
        let header: Vec<&str> = block.lines().next().unwrap_or_default().split_whitespace().collect();
        for column in &columns {
            assert!(
                header.contains(&column.as_str()),
                "{kind}: column {column} missing from {header:?}"
            );
        }
    }

    // `kubectl explain`: every field's description, each paragraph flowing as one text.
    let explain = rel.kubectl(&["explain", "trainingrun.spec.lora"]);
    let crd: Value = serde_json::from_str(&cp.kubectl(&["get", "crd", "trainingruns.ai.fireweave.io", "-o", "json"]))
        .expect("CRD JSON");
    let lora = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["lora"];
    let flat = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    for (field, schema) in lora["properties"].as_object().expect("lora fields") {
        let description = schema["description"]
            .as_str()
            .unwrap_or_else(|| panic!("lora.{field} has no description"));
        assert!(
            flat(&explain).contains(&flat(description)),
            "explain lacks lora.{field}: {explain}"
        );
    }
    // kubectl fills each line to its width; a short line followed by more text of the same paragraph is a line
    // break carried over from the source.
    let lines: Vec<&str> = explain.lines().collect();
    for pair in lines.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        let in_description = a.starts_with("    ") && b.starts_with("    ") && !b.trim().is_empty();
        assert!(
            !in_description || a.trim().len() >= 40 || a.trim().ends_with('.'),
            "kubectl explain breaks a sentence after {a:?}:\n{explain}"
        );
    }
}
