//! Child processes of the tests.

/// A child process (a `weir serve`, say) that is killed when dropped, so a test that
/// fails midway leaves nothing running (nor holding the test harness's pipes).
pub struct Running(pub std::process::Child);

impl std::ops::Deref for Running {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A port nobody listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("its address").port()
}

/// Starts `program serve ARGS... --port 0` in the repository's root and returns it once
/// it listens, with its address (`host:port`); its stderr is drained so that it never
/// blocks on a full pipe.
pub fn serve_http(program: &std::path::Path, args: &[&str]) -> (Running, String) {
    use std::io::BufRead;
    let mut child = Running(
        std::process::Command::new(program)
            .arg("serve")
            .args(args)
            .args(["--port", "0"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("the server starts"),
    );
    let mut lines = std::io::BufReader::new(child.stderr.take().expect("stderr is piped")).lines();
    let addr = loop {
        let line = lines.next().expect("the server starts listening").expect("stderr is text");
        if let Some(addr) = line.strip_prefix("weir: listening on http://") {
            break addr.to_string();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    (child, addr)
}

/// `POST path` with a JSON body to `addr` over a fresh HTTP/1.1 connection: the status
/// and the body (de-chunked when the server chunked it).
pub fn http_post(addr: &str, path: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("the server accepts connections");
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("the request is sent");
    let mut response = String::new();
    s.read_to_string(&mut response).expect("a response");
    let status = response[9..12].parse().expect("an HTTP status");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    if !head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        return (status, body.to_string());
    }
    let (mut rest, mut plain) = (body, String::new());
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).expect("a chunk size");
        if size == 0 {
            break;
        }
        plain.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
    (status, plain)
}

/// `GET path` over a fresh HTTP/1.1 connection to `addr`: the status and the body.
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("the server accepts connections");
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").expect("the request is sent");
    let mut response = String::new();
    s.read_to_string(&mut response).expect("a response");
    let status = response[9..12].parse().expect("an HTTP status");
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string();
    (status, body)
}
