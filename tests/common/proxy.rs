//! A unix-socket proxy in front of the Docker socket, in threads of the test process: a test
//! points `DOCKER_HOST` at it, then drops the open connections (a blip: new ones still work) or
//! cuts it for good (as an engine restart does).

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::docker::docker_socket;

/// Copies `from` to `to` until either side ends, then half-closes `to`.
pub fn pipe(mut from: UnixStream, mut to: UnixStream) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
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
        let _ = to.shutdown(std::net::Shutdown::Write);
    })
}

/// A unix-socket proxy in front of the Docker socket; every connection is a pair of copying
/// threads, so that dropping or cutting needs nothing but `shutdown`.
pub struct Proxy {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<UnixStream>>>,
    thread: Option<JoinHandle<()>>,
}

impl Proxy {
    pub fn start(path: &Path) -> Proxy {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).expect("bind the proxy socket");
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<UnixStream>>> = Arc::default();
        let (s, c) = (stop.clone(), conns.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).unwrap();
                        let Ok(upstream) = UnixStream::connect(docker_socket()) else { continue };
                        pipe(client.try_clone().unwrap(), upstream.try_clone().unwrap());
                        pipe(upstream.try_clone().unwrap(), client.try_clone().unwrap());
                        c.lock().unwrap().extend([client, upstream]);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Proxy { path: path.to_path_buf(), stop, conns, thread: Some(thread) }
    }

    /// `DOCKER_HOST` for a client that should go through this proxy.
    pub fn host(&self) -> String {
        format!("unix://{}", self.path.display())
    }

    /// Cuts the open connections; new ones still work.
    pub fn drop_connections(&self) {
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Refuses new connections and cuts the open ones.
    pub fn cut(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.drop_connections();
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
    }
}
