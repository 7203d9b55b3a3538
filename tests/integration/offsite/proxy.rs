//! A TCP proxy on 127.0.0.1 that the tests can cut: in front of Garage, it shows what a client
//! sees when the network fails mid-upload. Plain threads; every connection is tracked so a cut
//! closes them all at once.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct State {
    /// While down, new connections are closed at once and live ones are cut.
    down: AtomicBool,
    /// Client-to-server bytes forwarded so far.
    sent: AtomicU64,
    /// Cut everything (and stay down) once `sent` passes this many bytes; 0 = never.
    cut_after: AtomicU64,
    /// Accepted connections.
    connections: AtomicU64,
    /// HTTP/1.1 request lines seen going upstream (a request's head fits one read).
    requests: AtomicU64,
    live: Mutex<Vec<TcpStream>>,
}

pub struct Proxy {
    pub port: u16,
    state: Arc<State>,
}

impl Proxy {
    pub fn start(upstream_port: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State::default());
        let st = Arc::clone(&state);
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                st.connections.fetch_add(1, Ordering::SeqCst);
                if st.down.load(Ordering::SeqCst) {
                    refuse_after_request(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream_port)) else { continue };
                st.live.lock().unwrap().extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap(), Arc::clone(&st), true);
                pipe(server, client, Arc::clone(&st), false);
            }
        });
        Proxy { port, state }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Cuts every connection and refuses new ones once `bytes` more have gone upstream.
    pub fn cut_after(&self, bytes: u64) {
        self.state.cut_after.store(self.state.sent.load(Ordering::SeqCst) + bytes, Ordering::SeqCst);
    }

    /// Cuts every connection now; `stay_down` refuses new ones until [`Proxy::up`].
    pub fn cut(&self, stay_down: bool) {
        self.state.down.store(stay_down, Ordering::SeqCst);
        cut_all(&self.state);
    }

    pub fn up(&self) {
        self.state.cut_after.store(0, Ordering::SeqCst);
        self.state.down.store(false, Ordering::SeqCst);
    }

    pub fn is_down(&self) -> bool {
        self.state.down.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::SeqCst)
    }

    pub fn connections(&self) -> u64 {
        self.state.connections.load(Ordering::SeqCst)
    }
}

fn cut_all(state: &State) {
    for s in state.live.lock().unwrap().drain(..) {
        let _ = s.shutdown(Shutdown::Both);
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream, state: Arc<State>, upstream: bool) {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if upstream {
                let lines = buf[..n].windows(11).filter(|w| w == b" HTTP/1.1\r\n").count();
                state.requests.fetch_add(lines as u64, Ordering::SeqCst);
                let sent = state.sent.fetch_add(n as u64, Ordering::SeqCst) + n as u64;
                let limit = state.cut_after.load(Ordering::SeqCst);
                if limit > 0 && sent >= limit {
                    state.down.store(true, Ordering::SeqCst);
                    cut_all(&state);
                    break;
                }
            }
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

/// Closes a connection once the client has sent its request: closed before the request was
/// written, the HTTP client would count it as never sent and retry it on a new connection, which
/// makes connection counts depend on timing.
fn refuse_after_request(mut client: TcpStream) {
    let _ = client.set_read_timeout(Some(std::time::Duration::from_secs(2)));
    let mut head = [0u8; 1024];
    let _ = client.read(&mut head);
    let _ = client.shutdown(Shutdown::Both);
}
