//! `fireweave-ai run`, the embedded default, as a user runs it: the quickstart YAML (with fewer training
//! steps) end to end on CPU — dataset, LoRA fine-tune of SmolLM2, GGUF, served — then a question through the
//! official `ollama` Python client, the status digests checked against the files, and a second run that
//! skips every unchanged step. Bad manifests fail before any work starts, naming file, document and field.
#![cfg(all(feature = "train", feature = "serve"))]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> PathBuf {
    let root = std::env::var_os("FIREWEAVE_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/fireweave-ai/fixtures")
        });
    let p = root.join(name);
    assert!(
        p.join("config.json").is_file(),
        "{} is missing: run scripts/test.sh (or python tests/fixtures/make_fixtures.py)",
        p.display()
    );
    p
}

fn fireweave() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fireweave-ai"));
    c.env("RUST_LOG", "warn");
    c
}

fn run_to_end(args: &[&str]) -> Output {
    fireweave().args(args).output().expect("fireweave-ai runs")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The quickstart manifest with test-sized training and absolute paths to the sample data and base model.
fn quickstart(dir: &Path, max_steps: u32) -> PathBuf {
    let text = std::fs::read_to_string(repo().join("examples/quickstart/pipeline.yaml")).expect("quickstart");
    let data = repo().join("examples/data/fireweave");
    let text = text
        .replace("path: ../data/fireweave", &format!("path: {}", data.display()))
        .replace(
            "path: models/SmolLM2-135M-Instruct",
            &format!("path: {}", fixture("smollm2-135m").display()),
        )
        .replace(
            "    seed: 42\n  checkpointEverySteps",
            &format!("    seed: 42\n    maxSteps: {max_steps}\n  checkpointEverySteps"),
        );
    assert!(
        text.contains("maxSteps"),
        "the quickstart's layout changed; update this test"
    );
    let path = dir.join("pipeline.yaml");
    std::fs::write(&path, text).expect("write manifest");
    path
}

fn sha256_file(path: &Path) -> String {
    let mut f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    format!("sha256:{}", hex::encode(h.finalize()))
}

fn status(artifacts: &Path, file: &str) -> serde_json::Value {
    let path = artifacts.join("status/default").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).expect("status is YAML")
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn http_get(port: u16, path: &str) -> Option<u16> {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

#[test]
fn quickstart_builds_serves_answers_and_skips_unchanged_steps() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let manifest = quickstart(tmp.path(), 6);
    let artifacts = tmp.path().join("artifacts");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let child = fireweave()
        .args([
            "run",
            "--threads",
            "2",
            "--device",
            "cpu",
            "--addr",
            &addr,
            "--artifacts",
        ])
        .arg(&artifacts)
        .arg(&manifest)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start fireweave-ai run");
    let mut running = Running(child);
    let deadline = Instant::now() + Duration::from_secs(1200);
    while http_get(port, "/readyz") != Some(200) {
        if let Ok(Some(code)) = running.0.try_wait() {
            panic!("fireweave-ai run exited before serving: {code}");
        }
        assert!(Instant::now() < deadline, "not serving after 20 minutes");
        std::thread::sleep(Duration::from_millis(500));
    }

    // A FireWeave question through the official client, as FireWeave's services ask it.
    let ask = format!(
        "import ollama\n\
         r = ollama.Client(host='http://{addr}').chat(model='network-security-expert', \
         messages=[{{'role': 'user', 'content': 'How do I check whether traffic from 10.1.1.5 to 10.2.0.8 on port 443 is allowed in FireWeave?'}}], \
         options={{'temperature': 0, 'num_predict': 64}})\n\
         print(r['message']['content'])"
    );
    let out = Command::new("python")
        .args(["-c", &ask])
        .output()
        .expect("python with the ollama client");
    let answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success(),
        "ollama client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let words = answer
        .split_whitespace()
        .filter(|w| w.chars().any(char::is_alphabetic))
        .count();
    assert!(words >= 5, "expected a real answer, got {answer:?}");

    // The seed's three FireWeave tools through the official ollama and openai clients: accepted (the model
    // was trained, and is served, in a tools-capable template), and a call the model makes — held to the
    // call's JSON shape by a schema, as a 135M model will not reliably choose to call on its own — comes back
    // parsed as tool_calls by both.
    let tools = serde_json::to_string(&fireweave_ai::api::dataset::default_tools()).expect("tools");
    let tools_check = format!(
        "import json, ollama, openai
         tools = json.loads({tools:?})
         ask = [{{'role': 'user', 'content': 'Is traffic from 10.1.1.5 to 10.2.0.8 on tcp port 443 allowed?'}}]
         schema = {{'type': 'object', 'required': ['name', 'arguments'], 'properties': {{
             'name': {{'const': 'check_traffic_flow'}}, 'arguments': tools[0]['function']['parameters']}}}}
         c = ollama.Client(host='http://{addr}')
         plain = c.chat(model='network-security-expert', messages=ask, tools=tools, options={{'temperature': 0, 'num_predict': 48}})
         assert plain.done, plain
         r = c.chat(model='network-security-expert', messages=ask, tools=tools, format=schema, options={{'temperature': 0, 'num_predict': 120}})
         calls = r.message.tool_calls
         assert calls and calls[0].function.name == 'check_traffic_flow' and 'source' in calls[0].function.arguments, r.message
         o = openai.OpenAI(base_url='http://{addr}/v1', api_key='unused')
         oa = o.chat.completions.create(model='network-security-expert', messages=ask, tools=tools, temperature=0, max_tokens=120,
             response_format={{'type': 'json_schema', 'json_schema': {{'name': 'call', 'schema': schema}}}})
         tc = oa.choices[0].message.tool_calls
         assert oa.choices[0].finish_reason == 'tool_calls' and tc[0].function.name == 'check_traffic_flow', oa
         print('tools ok:', json.dumps(calls[0].function.arguments))"
    );
    // Python reads the script's lines at column 0 (the lines that continue a bracket may start anywhere).
    let tools_check: Vec<&str> = tools_check.lines().map(str::trim_start).collect();
    let tools_check = tools_check.join("\n");
    let out = Command::new("python")
        .args(["-c", &tools_check])
        .output()
        .expect("python with the ollama and openai clients");
    assert!(
        out.status.success(),
        "tools through the clients failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The serving status says Ready and names the GGUF it serves; the run's status digests are the files'.
    let serving = status(&artifacts, "modelserving-network-security-expert.yaml");
    assert_eq!(serving["status"]["phase"], "Serving", "{serving:#}");
    assert_eq!(serving["status"]["endpoint"], format!("http://{addr}"));
    let run = status(&artifacts, "trainingrun-network-security-expert.yaml");
    let gguf = run["status"]["artifacts"]["gguf"]
        .as_array()
        .expect("gguf list")
        .clone();
    let kinds: Vec<&str> = gguf.iter().filter_map(|g| g["quantization"].as_str()).collect();
    assert_eq!(kinds, ["Q8_0", "Q4_K_M"], "{run:#}");
    for g in &gguf {
        let file = artifacts.join(g["uri"].as_str().expect("uri"));
        assert_eq!(
            g["digest"].as_str(),
            Some(sha256_file(&file).as_str()),
            "{}",
            file.display()
        );
        assert_eq!(
            g["sizeBytes"].as_u64(),
            Some(std::fs::metadata(&file).expect("gguf").len())
        );
    }
    let served = &serving["status"]["servedModel"];
    assert_eq!(served["digest"], gguf[1]["digest"], "the Q4_K_M file is served");
    let dataset = status(&artifacts, "dataset-fireweave-sample.yaml");
    let stats = &dataset["status"]["stats"];
    assert_eq!(
        stats["input"].as_u64(),
        Some(
            stats["kept"].as_u64().unwrap()
                + stats["rejected"].as_u64().unwrap()
                + stats["duplicates"].as_u64().unwrap()
        )
    );
    assert!(run["status"]["finalLoss"].as_f64().is_some(), "{run:#}");
    drop(running);

    // Nothing changed: the second run skips the dataset and the training (and quantization) steps.
    let again = run_to_end(&[
        "run",
        "--no-serve",
        "--device",
        "cpu",
        "--artifacts",
        artifacts.to_str().expect("utf-8 path"),
        manifest.to_str().expect("utf-8 path"),
    ]);
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(
        again.status.success(),
        "second run failed: {stdout}\n{}",
        String::from_utf8_lossy(&again.stderr)
    );
    for key in [
        "Dataset default/fireweave-sample",
        "TrainingRun default/network-security-expert",
    ] {
        let line = stdout
            .lines()
            .find(|l| l.contains(key) && (l.contains("unchanged") || l.contains("ran")));
        assert!(
            line.is_some_and(|l| l.contains("unchanged")),
            "{key} was not skipped:\n{stdout}"
        );
    }
    let after = status(&artifacts, "trainingrun-network-security-expert.yaml");
    assert_eq!(after["status"]["artifacts"], run["status"]["artifacts"]);
}

/// Runs `fireweave-ai run` on one manifest text and returns its stderr; asserts it failed without starting.
fn rejected(text: &str) -> String {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("bad.yaml");
    std::fs::write(&file, text).expect("write");
    let artifacts = tmp.path().join("artifacts");
    let out = run_to_end(&[
        "run",
        "--no-serve",
        "--artifacts",
        artifacts.to_str().unwrap(),
        file.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "accepted a bad manifest:\n{stderr}");
    assert!(
        !artifacts.join("datasets").exists() && !artifacts.join("runs").exists(),
        "work started: {stderr}"
    );
    stderr
}

const DATASET: &str =
    "apiVersion: ai.fireweave.io/v1alpha1\nkind: Dataset\nmetadata: {name: d}\nspec:\n  sources: [{path: DATA}]\n";

fn dataset() -> String {
    DATASET.replace("DATA", &repo().join("examples/data/fireweave").display().to_string())
}

fn training_run(name: &str, dataset: &str) -> String {
    format!(
        "apiVersion: ai.fireweave.io/v1alpha1\nkind: TrainingRun\nmetadata: {{name: {name}}}\nspec:\n  baseModel: {{path: {}}}\n  datasetRef: {{name: {dataset}}}\n",
        fixture("tiny-llama31").display()
    )
}

#[test]
fn bad_manifests_fail_before_any_work_naming_file_document_and_field() {
    let unknown = rejected(&format!(
        "{}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c}}\n",
        dataset()
    ));
    assert!(
        unknown.contains("bad.yaml, document 2: kind: unknown kind \"ConfigMap\""),
        "{unknown}"
    );

    let missing = rejected(&format!("{}---\n{}", dataset(), training_run("t", "nope")));
    assert!(
        missing.contains("bad.yaml, document 2 (TrainingRun default/t): spec.datasetRef.name: Dataset default/nope is not among the manifests"),
        "{missing}"
    );

    let invalid = rejected(&dataset().replace("sources:", "filters: {minQualityScore: 150}\n  sources:"));
    assert!(
        invalid.contains("bad.yaml, document 1 (Dataset default/d): spec.filters.minQualityScore: minQualityScore is a score from 0 to 100"),
        "{invalid}"
    );

    let no_file = rejected(&format!(
        "{}---\n{}",
        dataset(),
        training_run("t", "d").replace("tiny-llama31", "no-such-model")
    ));
    assert!(
        no_file.contains("document 2 (TrainingRun default/t): spec.baseModel.path:"),
        "{no_file}"
    );
}
