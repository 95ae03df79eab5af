//! A Pod's own network, as far as the tests need one. Each worker container runs in a network namespace of its
//! own (only loopback), so two trainers can both listen on their metrics port 9090; and the Pod IP that KWOK
//! gave the Pod (a 127.96.x.y address, local to this machine) is made to answer on the container's declared
//! ports by forwarding each connection into the container's namespace — so the operator scrapes a trainer at
//! `http://<podIP>:9090/metrics` exactly as it would in a cluster.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Connects to `127.0.0.1:port` inside the network namespace of process `pid` (this thread only visits it).
fn connect_in(pid: u32, port: u16) -> std::io::Result<TcpStream> {
    let target = File::open(format!("/proc/{pid}/ns/net"))?;
    let home = File::open("/proc/thread-self/ns/net")?;
    // SAFETY: setns on this thread only, with descriptors of namespace files we hold open.
    if unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let stream = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(3));
    // SAFETY: as above; back to the namespace this thread started in. A socket keeps the namespace it was made in.
    if unsafe { libc::setns(home.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        panic!(
            "cannot return to the host network namespace: {}",
            std::io::Error::last_os_error()
        );
    }
    stream
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// Serves `pod_ip:port` until `stop` is set, each connection forwarded to the container process `pid`.
pub fn forward(pod_ip: &str, port: u16, pid: u32, stop: Arc<AtomicBool>) -> std::io::Result<()> {
    let listener = TcpListener::bind((pod_ip, port))?;
    listener.set_nonblocking(true)?;
    std::thread::Builder::new()
        .name(format!("pod-port-{pod_ip}:{port}"))
        .spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let _ = client.set_nonblocking(false);
                        std::thread::spawn(move || {
                            let Ok(server) = connect_in(pid, port) else {
                                return;
                            };
                            let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
                                return;
                            };
                            let up = std::thread::spawn(move || pipe(client, server));
                            pipe(s2, c2);
                            let _ = up.join();
                        });
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(_) => break,
                }
            }
        })?;
    Ok(())
}
