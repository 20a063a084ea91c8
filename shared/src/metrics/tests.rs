//! The metrics server against well-formed, malformed, silent and oversized
//! clients, and the text the family helpers encode.

use super::*;
use std::io::{Read, Write};
use std::net::TcpStream;

fn server(render: Render) -> SocketAddr {
    spawn("127.0.0.1:0".parse().unwrap(), render).unwrap()
}

fn fixed() -> Render {
    Arc::new(|| {
        let mut f = Families::default();
        f.counter1("cer_test_things", "Things seen.", 7);
        f.render()
    })
}

/// Sends `req`, returns the whole answer (the server closes after one).
fn exchange(addr: SocketAddr, req: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(req).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn heads_parse() {
    assert_eq!(
        parse_head(b"GET /metrics HTTP/1.1\r\nHost: x"),
        Ok(Request::Metrics { head: false })
    );
    assert_eq!(
        parse_head(b"GET /metrics?x=1 HTTP/1.0"),
        Ok(Request::Metrics { head: false })
    );
    assert_eq!(
        parse_head(b"HEAD /metrics HTTP/1.1"),
        Ok(Request::Metrics { head: true })
    );
    assert_eq!(
        parse_head(b"POST /metrics HTTP/1.1"),
        Ok(Request::MethodNotAllowed)
    );
    assert_eq!(parse_head(b"GET / HTTP/1.1"), Ok(Request::NotFound));
    assert_eq!(parse_head(b"hello"), Err(BadRequest::RequestLine));
    assert_eq!(
        parse_head(b"GET /metrics HTTP/2"),
        Err(BadRequest::RequestLine)
    );
    assert_eq!(
        parse_head(b"GET metrics HTTP/1.1"),
        Err(BadRequest::RequestLine)
    );
    assert_eq!(
        parse_head(b"GET  /metrics HTTP/1.1"),
        Err(BadRequest::RequestLine)
    );
    assert_eq!(
        parse_head(b"GET /metrics HTTP/1.1\r\nno colon"),
        Err(BadRequest::Header(1))
    );
    assert_eq!(parse_head(&[0xff, 0xfe]), Err(BadRequest::NotText));
}

#[test]
fn config_names_a_bad_address() {
    let ok = MetricsSection {
        listen: Some("127.0.0.1:9461".into()),
    };
    assert_eq!(ok.addr().unwrap(), Some("127.0.0.1:9461".parse().unwrap()));
    assert_eq!(MetricsSection::default().addr().unwrap(), None);
    let bad = MetricsSection {
        listen: Some("localhost".into()),
    };
    assert!(bad
        .addr()
        .unwrap_err()
        .contains("\"localhost\" is not an IP address and port"));
}

#[test]
fn serves_metrics_and_refuses_the_rest() {
    let addr = server(fixed());
    let ok = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
    assert!(
        ok.contains("Content-Type: text/plain; version=0.0.4"),
        "{ok}"
    );
    assert!(
        ok.contains("# TYPE cer_test_things_total counter\n"),
        "{ok}"
    );
    assert!(ok.contains("\ncer_test_things_total 7\n"), "{ok}");
    let head = exchange(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n");
    assert!(
        head.starts_with("HTTP/1.1 200 OK\r\n") && head.ends_with("\r\n\r\n"),
        "{head}"
    );
    let garbage = exchange(addr, b"\x16\x03\x01 hello there\r\n\r\n");
    assert!(
        garbage.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{garbage}"
    );
    let nf = exchange(addr, b"GET /nope HTTP/1.1\r\n\r\n");
    assert!(nf.starts_with("HTTP/1.1 404 "), "{nf}");
    let post = exchange(addr, b"POST /metrics HTTP/1.1\r\n\r\n");
    assert!(post.starts_with("HTTP/1.1 405 "), "{post}");
    let mut big = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', MAX_HEAD + 10));
    let big = exchange(addr, &big);
    assert!(big.starts_with("HTTP/1.1 431 "), "{big}");
}

#[test]
fn silent_and_slow_clients_do_not_block_a_scrape() {
    let addr = server(fixed());
    // Connected, nothing sent; and one that sends half a request line.
    let silent: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.write_all(b"GET /met").unwrap();
    let t = Instant::now();
    let ok = exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n");
    assert!(ok.starts_with("HTTP/1.1 200 OK"), "{ok}");
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "scrape took {:?}",
        t.elapsed()
    );
    // The slow one is dropped at the request deadline without an answer.
    slow.set_read_timeout(Some(REQUEST_TIMEOUT * 2)).unwrap();
    let mut rest = Vec::new();
    let t = Instant::now();
    slow.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    assert!(t.elapsed() <= REQUEST_TIMEOUT + Duration::from_secs(1));
    drop(silent);
}

#[test]
fn too_many_clients_get_503_not_a_hang() {
    let addr = server(fixed());
    let _held: Vec<TcpStream> = (0..MAX_CLIENTS)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let busy = exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n");
    assert!(busy.starts_with("HTTP/1.1 503 "), "{busy}");
}

#[test]
fn a_failed_render_is_503() {
    let addr = server(Arc::new(|| Err("manager stopped".into())));
    let r = exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 503 "), "{r}");
    assert!(r.ends_with("metrics unavailable: manager stopped\n"), "{r}");
}

#[test]
fn families_encode_labels_gauges_and_histograms() {
    let mut f = Families::default();
    f.counter(
        "cer_x_drops",
        "Drops.",
        vec![(vec![("reason", "no_route".into())], 3)],
    );
    f.gauge1("cer_x_up", "Up.", 1.0);
    f.histogram(
        "cer_x_seconds",
        "Latency.",
        vec![(
            vec![("provider", "aws".into())],
            Histogram {
                buckets: vec![(0.1, 1), (1.0, 2)],
                sum: 1.5,
                count: 4,
            },
        )],
    );
    let names: Vec<String> = f.0.iter().map(Family::exported_name).collect();
    assert_eq!(names, ["cer_x_drops_total", "cer_x_up", "cer_x_seconds"]);
    let t = f.render().unwrap();
    assert!(
        t.contains("cer_x_drops_total{reason=\"no_route\"} 3\n"),
        "{t}"
    );
    assert!(t.contains("\ncer_x_up 1"), "{t}");
    assert!(
        t.contains("cer_x_seconds_bucket{provider=\"aws\",le=\"0.1\"} 1\n"),
        "{t}"
    );
    assert!(
        t.contains("cer_x_seconds_bucket{provider=\"aws\",le=\"1\"} 3\n"),
        "{t}"
    );
    assert!(
        t.contains("cer_x_seconds_bucket{provider=\"aws\",le=\"+Inf\"} 4\n"),
        "{t}"
    );
    assert!(
        t.contains("cer_x_seconds_count{provider=\"aws\"} 4\n"),
        "{t}"
    );
}
