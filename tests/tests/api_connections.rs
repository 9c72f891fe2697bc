//! The API's connections as a raw HTTP/1.1 client sees them (plain HTTP on loopback, so
//! the bytes can be written by hand): quiet ones end, kept-alive ones keep serving
//! whatever the previous answer was.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A broker alone, its API on plain HTTP (loopback), to talk to with raw TCP.
async fn plain_http_broker(name: &str) -> oriel_broker::Broker {
    let dir = oriel_e2e::temp_dir(name);
    oriel_broker::Broker::start(oriel_broker::BrokerConfig {
        data_dir: dir.join("broker"),
        api_listen: "127.0.0.1:0".parse().unwrap(),
        host_listen: "127.0.0.1:0".parse().unwrap(),
        database: None,
        insecure_http: true,
        restart_grace: Duration::ZERO,
        cluster_key: None,
    })
    .await
    .unwrap()
}

/// Found in review: a client that connects and sends nothing does not hold a
/// connection of the API for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_api_connection_is_closed() {
    let broker = plain_http_broker("idle-api").await;
    let mut idle = TcpStream::connect(broker.api_addr).await.unwrap();
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(Duration::from_secs(60), idle.read(&mut buf))
        .await
        .expect("the broker closes an idle connection");
    assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
    broker.shutdown().await;
}

/// Found by schemathesis in CI: hyper's header timeout also bounds the wait for the
/// next request on a kept-alive connection, and at 10 s it tore down a connection a
/// client reused after a pause (a POST, which clients do not resend). A pause well
/// past that now leaves the connection serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_alive_api_connection_survives_a_pause() {
    let broker = plain_http_broker("keep-alive-api").await;
    let stream = TcpStream::connect(broker.api_addr).await.unwrap();
    let mut conn = BufReader::new(stream);
    let body = br#"{"pool":"office"}"#;
    for pause in [Duration::ZERO, Duration::from_secs(15)] {
        tokio::time::sleep(pause).await;
        let mut request = connect_head(body.len()).into_bytes();
        request.extend_from_slice(body);
        conn.get_mut().write_all(&request).await.unwrap();
        let answer = read_answer(&mut conn).await;
        assert!(
            answer.status.starts_with("HTTP/1.1 401"),
            "after a pause of {pause:?}: {answer:?}"
        );
    }
    broker.shutdown().await;
}

/// Found by schemathesis in CI: a handler that refused a request early (401 here)
/// dropped a body still on its way; hyper then closed the connection after the answer
/// without saying so, and the client's next request on it failed. Every body is now
/// read before the handler runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_comes_after_the_headers_keeps_the_connection() {
    let broker = plain_http_broker("late-body-api").await;
    let stream = TcpStream::connect(broker.api_addr).await.unwrap();
    let mut conn = BufReader::new(stream);
    let body = br#"{"pool":"office"}"#;
    for round in 0..2 {
        let head = connect_head(body.len());
        conn.get_mut().write_all(head.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        conn.get_mut().write_all(body).await.unwrap();
        let answer = read_answer(&mut conn).await;
        assert!(
            answer.status.starts_with("HTTP/1.1 401"),
            "request {round}: {answer:?}"
        );
        assert!(
            !answer.has("connection", "close"),
            "request {round}: {answer:?}"
        );
    }
    // A body announced too large is refused at once, and the answer says the
    // connection ends (its body is not read).
    let head = connect_head(1 << 20);
    conn.get_mut().write_all(head.as_bytes()).await.unwrap();
    let answer = read_answer(&mut conn).await;
    assert!(answer.status.starts_with("HTTP/1.1 413"), "{answer:?}");
    assert!(answer.has("connection", "close"), "{answer:?}");
    broker.shutdown().await;
}

/// The head of a `POST /api/v1/connect` (no token) whose body has `length` bytes.
fn connect_head(length: usize) -> String {
    format!(
        "POST /api/v1/connect HTTP/1.1\r\nHost: broker\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    )
}

/// One HTTP/1.1 answer: the status line, the headers (names in lower case), the body.
#[derive(Debug)]
struct Answer {
    status: String,
    headers: Vec<(String, String)>,
    #[allow(dead_code)] // shown by Debug when an assertion fails
    body: String,
}

impl Answer {
    fn has(&self, name: &str, value: &str) -> bool {
        self.headers
            .iter()
            .any(|(n, v)| n == name && v.eq_ignore_ascii_case(value))
    }
}

/// Reads the status line, the headers, then exactly the body they announce.
async fn read_answer(conn: &mut BufReader<TcpStream>) -> Answer {
    let mut status = String::new();
    conn.read_line(&mut status).await.unwrap();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        conn.read_line(&mut line).await.unwrap();
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = vec![0u8; length];
    conn.read_exact(&mut body).await.unwrap();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}
