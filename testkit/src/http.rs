//! A minimal HTTP/1.1 client for tests of the dashboard's and the binhost's endpoints over a real
//! socket: `GET` or `HEAD` with extra headers, one request per connection (`Connection: close`),
//! bodies by length, by chunks or to the end.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Why a `GET` got no usable response.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("GET {path} from {addr}: no answer within {timeout:?}")]
    TimedOut {
        addr: SocketAddr,
        path: String,
        timeout: Duration,
    },
    /// Connecting, writing the request or reading the response failed.
    #[error("GET {path} from {addr}: {step}: {source}")]
    Io {
        addr: SocketAddr,
        path: String,
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("GET {path} from {addr}: {source}")]
    Malformed {
        addr: SocketAddr,
        path: String,
        #[source]
        source: MalformedResponse,
    },
    /// [`Response::json`] of a body that is not JSON.
    #[error("body of status {status} is not JSON: {source}: {body}")]
    NotJson {
        status: u16,
        body: String,
        #[source]
        source: serde_json::Error,
    },
}

/// What is wrong with the bytes of a response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MalformedResponse {
    #[error("no end of headers")]
    NoEndOfHeaders,
    #[error("headers are not UTF-8")]
    HeadersNotUtf8,
    #[error("bad status line {0:?}")]
    BadStatusLine(String),
    #[error("body shorter than its length")]
    ShortBody,
    #[error("bad chunk size {0:?}")]
    BadChunkSize(String),
    #[error("truncated chunk")]
    TruncatedChunk,
}

/// One response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Header names lowercased, in order.
    pub headers: Vec<(String, String)>,
    /// The body as text (invalid UTF-8 replaced); `bytes` holds it as sent.
    pub body: String,
    pub bytes: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> Result<serde_json::Value, HttpError> {
        serde_json::from_str(&self.body).map_err(|source| HttpError::NotJson {
            status: self.status,
            body: self.body.clone(),
            source,
        })
    }
}

/// `GET path` from `addr`, within `timeout`.
pub async fn get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<Response, HttpError> {
    request(addr, "GET", path, &[], timeout).await
}

/// `METHOD path` (`GET` or `HEAD`) from `addr` with extra `headers`, within `timeout`.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> Result<Response, HttpError> {
    tokio::time::timeout(timeout, request_inner(addr, method, path, headers))
        .await
        .map_err(|_| HttpError::TimedOut {
            addr,
            path: path.to_owned(),
            timeout,
        })?
}

async fn request_inner(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Response, HttpError> {
    let fail = |step: &'static str| {
        move |source| HttpError::Io {
            addr,
            path: path.to_owned(),
            step,
            source,
        }
    };
    let mut stream = TcpStream::connect(addr).await.map_err(fail("connect"))?;
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(fail("write"))?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.map_err(fail("read"))?;
    let parsed = if method == "HEAD" {
        parse_head(&raw)
    } else {
        parse(&raw)
    };
    parsed.map_err(|source| HttpError::Malformed {
        addr,
        path: path.to_owned(),
        source,
    })
}

/// A response to `HEAD`: its headers promise a body that is not sent.
fn parse_head(raw: &[u8]) -> Result<Response, MalformedResponse> {
    let (status, headers, _) = parse_headers(raw)?;
    Ok(Response {
        status,
        headers,
        body: String::new(),
        bytes: Vec::new(),
    })
}

type Head<'a> = (u16, Vec<(String, String)>, &'a [u8]);

/// The status, the headers (names lowercased) and what follows them.
fn parse_headers(raw: &[u8]) -> Result<Head<'_>, MalformedResponse> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or(MalformedResponse::NoEndOfHeaders)?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| MalformedResponse::HeadersNotUtf8)?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| MalformedResponse::BadStatusLine(status_line.to_owned()))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok((status, headers, &raw[split + 4..]))
}

/// Parses a whole response as read until the server closed the connection.
pub fn parse(raw: &[u8]) -> Result<Response, MalformedResponse> {
    let (status, headers, rest) = parse_headers(raw)?;
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(len) = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        rest.get(..len)
            .ok_or(MalformedResponse::ShortBody)?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Response {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        bytes: body,
    })
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, MalformedResponse> {
    let mut body = Vec::new();
    loop {
        let end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or(MalformedResponse::TruncatedChunk)?;
        let size_text = String::from_utf8_lossy(&data[..end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| MalformedResponse::BadChunkSize(size_text.clone().into_owned()))?;
        data = &data[end + 2..];
        if size == 0 {
            return Ok(body);
        }
        body.extend_from_slice(data.get(..size).ok_or(MalformedResponse::TruncatedChunk)?);
        data = data
            .get(size + 2..)
            .ok_or(MalformedResponse::TruncatedChunk)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_length_and_chunked_bodies() {
        let plain = parse(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nX-A: b\r\n\r\nhi").expect("ok");
        assert_eq!((plain.status, plain.body.as_str()), (200, "hi"));
        assert_eq!(plain.header("x-a"), Some("b"));
        let chunked = parse(
            b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .expect("ok");
        assert_eq!((chunked.status, chunked.body.as_str()), (503, "abcde"));
        assert!(parse(b"garbage").is_err());
        assert_eq!(
            parse(b"garbage").expect_err("no headers"),
            MalformedResponse::NoEndOfHeaders
        );
        assert_eq!(
            parse(b"HTTP/1.1\r\n\r\n").expect_err("no status"),
            MalformedResponse::BadStatusLine("HTTP/1.1".into())
        );
        assert_eq!(
            parse(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nhi").expect_err("short"),
            MalformedResponse::ShortBody
        );
        assert_eq!(
            parse(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n")
                .expect_err("bad chunk"),
            MalformedResponse::BadChunkSize("zz".into())
        );
        assert_eq!(
            parse(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n9\r\nabc")
                .expect_err("truncated"),
            MalformedResponse::TruncatedChunk
        );
        let text = parse(b"HTTP/1.1 200 OK\r\n\r\nnot json").expect("ok");
        assert!(matches!(
            text.json(),
            Err(HttpError::NotJson { status: 200, .. })
        ));
    }
}
