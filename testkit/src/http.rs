//! A minimal HTTP/1.1 `GET` for tests of the dashboard's endpoints over a real socket: one
//! request per connection (`Connection: close`), bodies by length, by chunks or to the end.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Header names lowercased, in order.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> Result<serde_json::Value, String> {
        serde_json::from_str(&self.body).map_err(|e| {
            format!(
                "body of status {} is not JSON: {e}: {}",
                self.status, self.body
            )
        })
    }
}

/// `GET path` from `addr`, within `timeout`. `Err` says what went wrong.
pub async fn get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<Response, String> {
    tokio::time::timeout(timeout, get_inner(addr, path))
        .await
        .map_err(|_| format!("GET {path} from {addr}: no answer within {timeout:?}"))?
}

async fn get_inner(addr: SocketAddr, path: &str) -> Result<Response, String> {
    let fail = |what: &str, e: std::io::Error| format!("GET {path} from {addr}: {what}: {e}");
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| fail("connect", e))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| fail("write", e))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .await
        .map_err(|e| fail("read", e))?;
    parse(&raw).map_err(|reason| format!("GET {path} from {addr}: {reason}"))
}

/// Parses a whole response as read until the server closed the connection.
pub fn parse(raw: &[u8]) -> Result<Response, String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers")?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| "headers are not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or("no status line")?;
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let rest = &raw[split + 4..];
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
            .ok_or("body shorter than its length")?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Response {
        status,
        headers,
        body: String::from_utf8(body).map_err(|_| "body is not UTF-8")?,
    })
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated chunk size")?;
        let size_text = std::str::from_utf8(&data[..end]).map_err(|_| "bad chunk size")?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        data = &data[end + 2..];
        if size == 0 {
            return Ok(body);
        }
        body.extend_from_slice(data.get(..size).ok_or("truncated chunk")?);
        data = data.get(size + 2..).ok_or("truncated chunk end")?;
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
    }
}
