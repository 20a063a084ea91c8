//! Provider replies as the fuzz targets serve them: a loopback HTTP/1.1
//! server that answers each request with the next reply of a script the
//! fuzz input wrote, so the real provider clients (reqwest or the AWS SDK,
//! request signing, our reply handling) meet arbitrary statuses, headers
//! and bodies exactly as they would from a provider.
//!
//! The server only speaks well-formed HTTP framing (status line,
//! Content-Length, header values without control characters): malformed
//! HTTP is the HTTP library's business, what a provider can say inside
//! well-formed HTTP is ours. When the script runs out every further request
//! gets a 503, so retry and polling loops end.

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, OnceLock};

/// One scripted reply.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Statuses providers answer with (the fuzzer may also pick any other).
const STATUSES: [u16; 14] = [
    200, 200, 200, 201, 202, 204, 400, 401, 403, 404, 409, 412, 429, 503,
];

/// Headers our clients read; values come from the input.
const HEADERS: [&str; 10] = [
    "Retry-After",
    "ETag",
    "opc-next-page",
    "opc-request-id",
    "Location",
    "Azure-AsyncOperation",
    "x-ms-request-id",
    "Content-Type",
    "x-amzn-RequestId",
    "if-match",
];

/// Connections served at once.
const CONNECTION_THREADS: usize = 32;

pub struct Server {
    addr: SocketAddr,
    script: Arc<Mutex<VecDeque<Reply>>>,
    /// The method of every request served since the script was set.
    served: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// The process's server (started on first use).
    pub fn get() -> &'static Server {
        static SERVER: OnceLock<Server> = OnceLock::new();
        SERVER.get_or_init(Server::start)
    }

    fn start() -> Server {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = l.local_addr().unwrap();
        let script = Arc::new(Mutex::new(VecDeque::<Reply>::new()));
        let served = Arc::new(Mutex::new(Vec::new()));
        // A fixed pool of connection threads made now: threads started or
        // ending while an input runs would look like leaks to LeakSanitizer
        // (found so: 8 KiB "leaked" by a connection thread exiting). An
        // idle connection is closed after a second, so connections a
        // dropped client left open do not hold the pool.
        let (tx, rx) = std::sync::mpsc::channel::<TcpStream>();
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..CONNECTION_THREADS {
            let (s, n, rx) = (script.clone(), served.clone(), rx.clone());
            std::thread::spawn(move || loop {
                let Ok(c) = rx.lock().unwrap().recv() else {
                    return;
                };
                let _ = c.set_read_timeout(Some(std::time::Duration::from_secs(1)));
                serve(c, &s, &n);
            });
        }
        std::thread::spawn(move || {
            for c in l.incoming().flatten() {
                if tx.send(c).is_err() {
                    return;
                }
            }
        });
        Server {
            addr,
            script,
            served,
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Replaces the script and forgets the requests served so far.
    pub fn set_script(&self, replies: Vec<Reply>) {
        *self.script.lock().unwrap() = replies.into();
        self.served.lock().unwrap().clear();
    }

    /// The methods of the requests served since the script was set.
    pub fn served(&self) -> Vec<String> {
        self.served.lock().unwrap().clone()
    }
}

fn serve(c: TcpStream, script: &Mutex<VecDeque<Reply>>, served: &Mutex<Vec<String>>) {
    let _ = c.set_nodelay(true);
    let mut r = BufReader::new(c.try_clone().unwrap());
    let mut w = c;
    loop {
        // Request head, then the body by Content-Length.
        let mut len = 0usize;
        let mut line = String::new();
        let mut method = String::new();
        let mut first = true;
        loop {
            line.clear();
            match r.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if first {
                first = false;
                method = line.split(' ').next().unwrap_or("").to_string();
                continue;
            }
            let t = line.trim_end();
            if t.is_empty() {
                break;
            }
            if let Some((k, v)) = t.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; len.min(1 << 20)];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let reply = script.lock().unwrap().pop_front().unwrap_or(Reply {
            status: 503,
            headers: Vec::new(),
            body: Vec::new(),
        });
        served.lock().unwrap().push(method);
        let mut out = format!("HTTP/1.1 {} Fuzz\r\n", reply.status).into_bytes();
        for (k, v) in &reply.headers {
            out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
        }
        out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", reply.body.len()).as_bytes());
        out.extend_from_slice(&reply.body);
        if w.write_all(&out).and_then(|_| w.flush()).is_err() {
            return;
        }
    }
}

/// A header value from the input: visible ASCII only; `{server}` becomes
/// the server's URL so links and operation URLs can point back at it.
fn header_value(u: &mut Unstructured, server: &str) -> Result<String> {
    let n = usize::from(u.arbitrary::<u8>()?);
    let raw = String::from_utf8_lossy(u.bytes(n.min(u.len()))?).into_owned();
    let v: String = raw
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(200)
        .collect();
    Ok(v.replace("{server}", server))
}

/// Reads a script of up to 8 replies from the input. Bodies may contain
/// `{server}`, which becomes the server's URL (pagination and operation
/// links that our clients follow only on their own endpoint).
pub fn read_script(u: &mut Unstructured, server: &str) -> Result<Vec<Reply>> {
    let n = usize::from(u.arbitrary::<u8>()? % 8) + 1;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let pick: u8 = u.arbitrary()?;
        let status = if pick < 240 {
            STATUSES[usize::from(pick) % STATUSES.len()]
        } else {
            100 + u16::from(u.arbitrary::<u8>()?) * 2
        };
        let mut headers = Vec::new();
        for _ in 0..u.arbitrary::<u8>()? % 4 {
            let name = HEADERS[usize::from(u.arbitrary::<u8>()?) % HEADERS.len()];
            headers.push((name.to_string(), header_value(u, server)?));
        }
        let len = read_len(u)? % 8192;
        let len = len.min(u.len());
        let body = u.bytes(len)?;
        let body = String::from_utf8_lossy(body)
            .replace("{server}", server)
            .into_bytes();
        out.push(Reply {
            status,
            headers,
            body,
        });
    }
    Ok(out)
}

/// A big-endian u16 length (the seed writer, `encode_script`, uses the same).
pub fn read_len(u: &mut Unstructured) -> Result<usize> {
    let hi = u.arbitrary::<u8>()?;
    let lo = u.arbitrary::<u8>()?;
    Ok(usize::from(hi) << 8 | usize::from(lo))
}

/// The input bytes `read_script` reads back as `replies` (seed corpora).
pub fn encode_script(replies: &[Reply]) -> Vec<u8> {
    let mut out = vec![(replies.len().clamp(1, 8) - 1) as u8];
    for r in replies.iter().take(8) {
        let pick = STATUSES.iter().position(|&s| s == r.status).unwrap_or(0);
        out.push(pick as u8);
        out.push(r.headers.len().min(3) as u8);
        for (k, v) in r.headers.iter().take(3) {
            out.push(HEADERS.iter().position(|h| h == k).unwrap_or(0) as u8);
            let v = &v.as_bytes()[..v.len().min(255)];
            out.push(v.len() as u8);
            out.extend_from_slice(v);
        }
        let b = &r.body[..r.body.len().min(8191)];
        out.extend_from_slice(&(b.len() as u16).to_be_bytes());
        out.extend_from_slice(b);
    }
    out
}
