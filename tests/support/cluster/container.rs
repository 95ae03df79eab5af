//! Runs one container of a Pod as a local process, the way a container runtime would start it: the image's
//! entrypoint (our `fireweave-ai` binary), the Pod's command, args and env untouched, and each volume mounted at
//! the Pod's own `mountPath` inside a private mount namespace (`unshare --mount`), with a fresh `/dev` holding
//! the termination-message file and, when the container asks for it, a read-only root file system.
//!
//! Where `unshare` is not allowed (no CAP_SYS_ADMIN), the fallback runs the process in the host's file system
//! and rewrites every mount path that appears as a prefix of an argument or environment value to the host
//! folder behind it. That mode cannot move `/dev/termination-log`; the message then comes from the log tail,
//! as with `terminationMessagePolicy: FallbackToLogsOnError`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// One volume mount, resolved to a host path.
#[derive(Clone, Debug)]
pub struct Mount {
    pub host: PathBuf,
    pub path: String,
    pub read_only: bool,
}

/// Everything needed to start a container process.
#[derive(Clone, Debug)]
pub struct Launch {
    /// Entrypoint plus arguments, `$(VAR)` references already expanded.
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub mounts: Vec<Mount>,
    pub read_only_root: bool,
    pub working_dir: Option<String>,
    /// Host file behind the container's termination-message path.
    pub termination_log: PathBuf,
    /// The container's termination-message path (`/dev/termination-log` unless the spec says otherwise).
    pub termination_path: String,
    /// Scratch folder of this container (holds the mount namespace's view of the host's /dev).
    pub scratch: PathBuf,
    /// A network namespace of its own (a Pod's): only loopback, reached from outside through network.rs.
    pub own_network: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isolation {
    MountNamespace,
    PathRewrite,
}

/// Whether this machine lets us make a private mount namespace (root with CAP_SYS_ADMIN); probed once.
pub fn isolation() -> Isolation {
    static MODE: OnceLock<Isolation> = OnceLock::new();
    *MODE.get_or_init(|| {
        if std::env::var_os("FIREWEAVE_CLUSTER_NO_UNSHARE").is_some() {
            return Isolation::PathRewrite;
        }
        let probe = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c"])
            .arg("mount -t tmpfs tmpfs /mnt")
            .output();
        match probe {
            Ok(out) if out.status.success() => Isolation::MountNamespace,
            _ => {
                eprintln!("cluster harness: no private mount namespaces here; containers run with rewritten paths");
                Isolation::PathRewrite
            }
        }
    })
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The shell program that builds the container's file system view, then `exec`s the entrypoint.
fn mount_script(launch: &Launch) -> String {
    let mut s = String::from("set -eu\n");
    if launch.own_network {
        s += "ip link set lo up\n";
    }
    // A container's /dev is a small tmpfs with the standard device nodes, not the host's: the termination
    // message file is created there, and the host's /dev is left alone.
    let host_dev = launch.scratch.join("host-dev");
    s += &format!(
        "mkdir -p {hd}\nmount --rbind /dev {hd}\nmount -t tmpfs -o mode=755,nosuid tmpfs /dev\n\
         for n in null zero full random urandom tty; do : > /dev/$n; mount --bind {hd}/$n /dev/$n; done\n\
         ln -s /proc/self/fd /dev/fd; ln -s /proc/self/fd/0 /dev/stdin; ln -s /proc/self/fd/1 /dev/stdout\n\
         ln -s /proc/self/fd/2 /dev/stderr; mkdir /dev/shm /dev/pts; mount -t tmpfs -o nosuid,nodev tmpfs /dev/shm\n",
        hd = quote(&host_dev.display().to_string())
    );
    // Every host folder is bound into a staging folder on the new /dev first: a volume mounted over /tmp (the
    // operator's emptyDir) would otherwise hide the host folders of the volumes after it whenever they live
    // under /tmp themselves (a CARGO_TARGET_DIR there).
    let stage = "/dev/.fireweave-volumes";
    s += &format!("mkdir -m 700 {stage}\n");
    let mut mounts = launch.mounts.clone();
    // Parents before children, as the kubelet orders them, so a nested mount is not hidden by its parent.
    mounts.sort_by_key(|m| m.path.matches('/').count());
    for (i, m) in mounts.iter().enumerate() {
        let host = quote(&m.host.display().to_string());
        s += &format!(
            "if [ -d {host} ]; then mkdir {stage}/{i}; else : > {stage}/{i}; fi\nmount --bind {host} {stage}/{i}\n"
        );
    }
    let term_log = quote(&launch.termination_log.display().to_string());
    s += &format!(": > {stage}/term\nmount --bind {term_log} {stage}/term\n");
    for (i, m) in mounts.iter().enumerate() {
        let (staged, path) = (format!("{stage}/{i}"), quote(&m.path));
        // A mount point that does not exist yet is made, as a runtime makes it in the image's root.
        s += &format!(
            "if [ -d {staged} ]; then mkdir -p {path}; else mkdir -p \"$(dirname {path})\"; [ -e {path} ] || : > {path}; fi\n"
        );
        s += &format!("mount --bind {staged} {path}\n");
        if m.read_only {
            s += &format!("mount -o remount,bind,ro {path}\n");
        }
    }
    let term = quote(&launch.termination_path);
    s += &format!("mkdir -p \"$(dirname {term})\"; [ -e {term} ] || : > {term}\nmount --bind {stage}/term {term}\n");
    if launch.read_only_root {
        s += "mount -o remount,bind,ro /\n";
    }
    s += &format!(
        "cd {}\nexec \"$@\"\n",
        quote(launch.working_dir.as_deref().unwrap_or("/"))
    );
    s
}

/// Replaces a mount path at the start of `value` (or after `=`, as in `--flag=/path`) by its host folder.
pub fn rewrite(value: &str, mounts: &[Mount]) -> String {
    let mut sorted: Vec<&Mount> = mounts.iter().collect();
    sorted.sort_by_key(|m| std::cmp::Reverse(m.path.len()));
    let (head, tail) = match value.split_once('=') {
        Some((k, v)) if v.starts_with('/') => (format!("{k}="), v),
        _ => (String::new(), value),
    };
    for m in sorted {
        let root = m.path.trim_end_matches('/');
        if tail == root || tail.starts_with(&format!("{root}/")) {
            return format!("{head}{}{}", m.host.display(), &tail[root.len()..]);
        }
    }
    value.to_string()
}

/// Refuses to start a container whose own binary or libraries would be hidden by one of its mounts: the
/// entrypoint (this build's `fireweave-ai`) and libtorch are host paths, and a host path under /tmp disappears
/// behind the chart's emptyDir on /tmp, so the process would fail with a bare "not found" and the test only
/// time out.
fn hidden_host_paths(launch: &Launch) {
    let libraries = launch
        .env
        .iter()
        .filter(|(k, _)| k == "LD_LIBRARY_PATH" || k == "LIBTORCH")
        .flat_map(|(_, v)| v.split(':').map(str::to_string));
    for path in launch.argv.iter().take(1).cloned().chain(libraries) {
        for m in &launch.mounts {
            let root = m.path.trim_end_matches('/');
            if !root.is_empty() && (path == root || path.starts_with(&format!("{root}/"))) {
                panic!(
                    "{path} is under {root}, which this container mounts a volume over, so the container \
                     cannot see it: put CARGO_TARGET_DIR and FIREWEAVE_CACHE (libtorch's venv) outside {root}"
                );
            }
        }
    }
}

/// The command that starts the container.
pub fn command(launch: &Launch) -> Command {
    std::fs::create_dir_all(&launch.scratch).expect("container scratch dir");
    if !launch.termination_log.exists() {
        std::fs::write(&launch.termination_log, "").expect("termination log file");
    }
    let mut c = match isolation() {
        Isolation::MountNamespace => {
            hidden_host_paths(launch);
            let mut c = Command::new("unshare");
            c.args(["--mount", "--propagation", "private"]);
            if launch.own_network {
                c.arg("--net");
            }
            c.args(["--", "/bin/sh", "-c"])
                .arg(mount_script(launch))
                .arg("container")
                .args(&launch.argv);
            c
        }
        Isolation::PathRewrite => {
            let argv: Vec<String> = launch.argv.iter().map(|a| rewrite(a, &launch.mounts)).collect();
            let mut c = Command::new(&argv[0]);
            c.args(&argv[1..]);
            if let Some(dir) = &launch.working_dir {
                c.current_dir(rewrite(dir, &launch.mounts));
            }
            c
        }
    };
    c.env_clear();
    for (k, v) in &launch.env {
        let v = match isolation() {
            Isolation::MountNamespace => v.clone(),
            Isolation::PathRewrite => rewrite(v, &launch.mounts),
        };
        c.env(k, v);
    }
    // unshare and mount are found through the Pod's PATH only if it has one; the image always does.
    if !launch.env.iter().any(|(k, _)| k == "PATH") {
        c.env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    }
    c
}

/// What a kubelet puts in `state.terminated.message`: the termination-message file (at most 4096 bytes); with
/// `FallbackToLogsOnError`, a failed container that wrote none gets the tail of its log (80 lines, 2048 bytes).
pub fn termination_message(file: &Path, log: &Path, exit_code: i32, fallback_to_logs: bool) -> String {
    let mut message = std::fs::read(file).unwrap_or_default();
    message.truncate(4096);
    let fallback = fallback_to_logs && message.is_empty() && (exit_code != 0 || isolation() == Isolation::PathRewrite);
    if fallback {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let mut tail = lines[lines.len().saturating_sub(80)..].join("\n");
        if tail.len() > 2048 {
            let mut cut = tail.len() - 2048;
            while !tail.is_char_boundary(cut) {
                cut += 1;
            }
            tail = tail[cut..].to_string();
        }
        return tail;
    }
    String::from_utf8_lossy(&message).into_owned()
}

/// Expands `$(VAR)` references from `env` as the kubelet does (`$$` escapes; unknown references stay as they are).
pub fn expand(value: &str, env: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('(')
            && let Some(end) = body.find(')')
        {
            let name = &body[..end];
            match env.iter().rev().find(|(k, _)| k == name) {
                Some((_, v)) => out.push_str(v),
                None => out.push_str(&format!("$({name})")),
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}
