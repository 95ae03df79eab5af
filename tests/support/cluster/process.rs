//! Child processes of the harness: started from one long-lived thread so that the kernel kills each of them
//! when the test binary dies, however it dies, and stopped by their PID when their owner is dropped.
//!
//! `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits, not the process. Test threads end
//! with their test, and the shared control plane must outlive the test that happened to start it, so every
//! child is forked by the `cluster-spawner` thread, which lives until the process exits.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

type Request = (Command, mpsc::Sender<std::io::Result<Child>>);

fn spawner() -> &'static Mutex<mpsc::Sender<Request>> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Request>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("cluster-spawner".into())
            .spawn(move || {
                for (mut command, reply) in rx {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("spawn the cluster-spawner thread");
        Mutex::new(tx)
    })
}

/// Starts `command` with stdout and stderr appended to `log`; the child gets SIGKILL if this process dies.
pub fn spawn(mut command: Command, log: &Path) -> std::io::Result<Child> {
    let out = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
    command.stdin(Stdio::null()).stdout(out.try_clone()?).stderr(out);
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (tx, rx) = mpsc::channel();
    spawner()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .send((command, tx))
        .expect("cluster-spawner thread is alive");
    rx.recv().expect("cluster-spawner replies")
}

/// Sends `signal` to `pid` (ignored when it is already gone).
pub fn signal(pid: u32, signal: i32) {
    // SAFETY: kill(2) on a PID we started.
    unsafe {
        libc::kill(pid as i32, signal);
    }
}

/// Waits for `child` up to `grace`, then SIGKILLs it; returns its exit status.
pub fn stop(child: &mut Child, term: i32, grace: Duration) -> Option<ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        return Some(status);
    }
    signal(child.id(), term);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    signal(child.id(), libc::SIGKILL);
    child.wait().ok()
}

/// The exit code a container runtime reports: the process's own, or 128 + the signal that ended it.
pub fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(255)
}

/// A long-running program of the harness (etcd, an API server, an operator replica): killed by its PID when
/// dropped, its log kept in `log`.
pub struct Daemon {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
}

impl Daemon {
    pub fn start(name: &str, command: Command, log: PathBuf) -> Self {
        let child = spawn(command, &log).unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Self {
            name: name.to_string(),
            child,
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Panics with the tail of its log when it has exited: a dead component explains most hangs.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "{} exited ({status}); last lines of {}:\n{}",
                self.name,
                self.log.display(),
                tail(&self.log, 40)
            );
        }
    }

    /// SIGKILL, as `kill -9` does to a crashed or OOM-killed process.
    pub fn kill(&mut self) {
        signal(self.pid(), libc::SIGKILL);
        let _ = self.child.wait();
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        stop(&mut self.child, libc::SIGTERM, grace)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last `lines` lines of a text file (for failure messages).
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A TCP port on 127.0.0.1 that nothing listens on, for a component to bind. Taken below the kernel's
/// ephemeral range where there is room: a port from that range (what binding port 0 returns) can meanwhile
/// become the local end of an outgoing connection, and kube-apiserver opens its connections to etcd before it
/// binds its own port — it once failed to start with "address already in use" that way under the benchmark.
/// A port is handed out once per process.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(0);
    const FIRST: u32 = 10_000;
    if ephemeral_low > FIRST + 1_000 {
        let span = ephemeral_low - FIRST;
        // Where the search starts differs between processes: a component of an earlier test binary that is
        // still shutting down may hold a port this one would otherwise pick first.
        let start = std::process::id().wrapping_mul(7_919) % span;
        for i in 0..span {
            let port = (FIRST + (start + i) % span) as u16;
            if !given.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                given.push(port);
                return port;
            }
        }
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1");
    given.push(port);
    port
}
