//! [`Connection`]: a minimal HTTP/1.1 client connection — one request at a time on a
//! keep-alive connection, the answer read whole — for the two hot callers that talk to replog
//! nodes only: `replog bench` (`crate::cmd::client`) and the master's replication requests
//! (`crate::master::transport`).
//!
//! Written out rather than through a general client: a request is its parts sent with one
//! vectored write, and an answer's head is found with `memchr` and only the status and three
//! headers read. hyper's client dispatcher cost ~17 k instructions per replication request on
//! the master (callgrind, w=3, one client), about as much as serving the append itself.
//!
//! Invariants: an answer is read whole (by `content-length`, chunks, or until close; 1xx, 204
//! and 304 have no body) within [`MAX_ANSWER_BYTES`], or the exchange fails; `Answer::close`
//! says when the connection must not carry another request (the server closes it, HTTP/1.0,
//! a body until close, or bytes beyond the answer). Errors are strings: callers classify them.

/// The largest answer (head and body) read; replog's answers to these requests are a few
/// hundred bytes.
pub const MAX_ANSWER_BYTES: usize = 1 << 20;

/// The head of an answer, as much as the callers need.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// The connection cannot carry another request: the server closes it after this answer,
    /// or sent more than the answer (out of step).
    pub close: bool,
}

/// How an answer's body ends (RFC 9112 §6.3).
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

/// One keep-alive HTTP/1.1 connection, one request at a time.
pub struct Connection<S = tokio::net::TcpStream> {
    stream: S,
    /// The answer being read; reused, so a request allocates nothing.
    buf: Vec<u8>,
    /// Where the body starts in `buf` once the head is parsed.
    body_at: usize,
    /// Whether the last answer's body is chunked (see [`Connection::body`]).
    chunked: bool,
}

impl Connection {
    /// Connects (no Nagle delay: requests are small and latency matters).
    pub async fn open(addrs: &[std::net::SocketAddr]) -> std::io::Result<Self> {
        let stream = tokio::net::TcpStream::connect(addrs).await?;
        stream.set_nodelay(true)?;
        Ok(Connection::new(stream))
    }
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> Connection<S> {
    pub fn new(stream: S) -> Self {
        Connection {
            stream,
            buf: Vec::with_capacity(4096),
            body_at: 0,
            chunked: false,
        }
    }

    /// Sends the request made of `parts` (head, body, …: one vectored write, one segment
    /// usually) and reads the whole answer.
    pub async fn exchange(&mut self, parts: &[&[u8]]) -> Result<Answer, String> {
        use tokio::io::AsyncWriteExt;

        // At most four parts, in an array: a request allocates nothing.
        let mut slices = [std::io::IoSlice::new(&[]); 4];
        if parts.len() > slices.len() {
            return Err(format!("a request in {} parts (at most 4)", parts.len()));
        }
        // Empty parts are left out: a write of nothing but them would look like a closed peer.
        let mut n = 0;
        for part in parts.iter().filter(|p| !p.is_empty()) {
            slices[n] = std::io::IoSlice::new(part);
            n += 1;
        }
        let mut left: &mut [std::io::IoSlice<'_>] = &mut slices[..n];
        while !left.is_empty() {
            match self.stream.write_vectored(left).await {
                Ok(0) => return Err("cannot send: the connection is closed".into()),
                Ok(n) => std::io::IoSlice::advance_slices(&mut left, n),
                Err(e) => return Err(format!("cannot send: {e}")),
            }
        }
        self.buf.clear();
        self.body_at = 0;
        let (status, framing, mut close) = loop {
            if let Some(head) = self.parse_head()? {
                break head;
            }
            self.fill().await?;
        };
        self.chunked = matches!(framing, Framing::Chunked);
        let end = match framing {
            Framing::Length(n) => {
                let end = self
                    .body_at
                    .checked_add(n)
                    .filter(|&e| e <= MAX_ANSWER_BYTES);
                let end = end.ok_or_else(|| format!("answer body of {n} bytes is too large"))?;
                while self.buf.len() < end {
                    self.fill().await?;
                }
                end
            }
            Framing::Chunked => {
                let mut at = self.body_at;
                loop {
                    match httparse::parse_chunk_size(&self.buf[at..]) {
                        Ok(httparse::Status::Complete((line, size))) => {
                            // The chunk, then its CRLF; the last (empty) chunk is followed by
                            // the CRLF that ends the (empty) trailer section.
                            let need = usize::try_from(size)
                                .ok()
                                .and_then(|s| at.checked_add(line)?.checked_add(s)?.checked_add(2))
                                .filter(|&e| e <= MAX_ANSWER_BYTES)
                                .ok_or("answer body is too large")?;
                            while self.buf.len() < need {
                                self.fill().await?;
                            }
                            at = need;
                            if size == 0 {
                                break;
                            }
                        }
                        Ok(httparse::Status::Partial) => self.fill().await?,
                        Err(_) => return Err("answer has a malformed chunk".into()),
                    }
                }
                at
            }
            Framing::UntilClose => {
                close = true;
                while self.fill_or_eof().await? {}
                self.buf.len()
            }
        };
        // Bytes beyond the answer were never asked for: the connection is out of step.
        close |= self.buf.len() > end;
        self.buf.truncate(end);
        Ok(Answer { status, close })
    }

    /// The last answer's body, its chunks joined when it was chunked.
    pub fn body(&self) -> Vec<u8> {
        let raw = self.buf.get(self.body_at..).unwrap_or_default();
        if !self.chunked {
            return raw.to_vec();
        }
        // `exchange` checked every chunk is complete.
        let mut body = Vec::with_capacity(raw.len());
        let mut at = 0;
        while let Ok(httparse::Status::Complete((line, size))) =
            httparse::parse_chunk_size(&raw[at..])
        {
            let Some(chunk) = usize::try_from(size)
                .ok()
                .and_then(|s| raw.get(at + line..at + line + s))
            else {
                break;
            };
            if chunk.is_empty() {
                break;
            }
            body.extend_from_slice(chunk);
            at += line + chunk.len() + 2;
        }
        body
    }

    /// The status, framing and whether the connection closes after the answer, once the whole
    /// head is in `buf`.
    fn parse_head(&mut self) -> Result<Option<(u16, Framing, bool)>, String> {
        let Some(head) = parse_head(&self.buf)? else {
            return Ok(None);
        };
        self.body_at = head.len;
        Ok(Some((head.status, head.framing, head.close)))
    }

    /// Reads more of the answer; the connection ending here is an error.
    async fn fill(&mut self) -> Result<(), String> {
        if self.fill_or_eof().await? {
            Ok(())
        } else {
            Err("the connection was closed mid-answer".into())
        }
    }

    /// Reads more of the answer; false at the end of the stream.
    async fn fill_or_eof(&mut self) -> Result<bool, String> {
        use tokio::io::AsyncReadExt;

        if self.buf.len() >= MAX_ANSWER_BYTES {
            return Err(format!("answer is over {MAX_ANSWER_BYTES} bytes"));
        }
        if self.buf.capacity() == self.buf.len() {
            self.buf.reserve(4096);
        }
        let n = self
            .stream
            .read_buf(&mut self.buf)
            .await
            .map_err(|e| format!("cannot read the answer: {e}"))?;
        Ok(n > 0)
    }

    /// The start of the last answer's body as it came (chunked or not), for an error message.
    pub fn body_text(&self, max: usize) -> String {
        let body = self.buf.get(self.body_at..).unwrap_or_default();
        String::from_utf8_lossy(&body[..body.len().min(max)]).into_owned()
    }
}

/// The largest answer head the bench accepts.
const MAX_HEAD_BYTES: usize = 64 << 10;

/// What the head of an answer says.
struct Head {
    /// Bytes of the head, its final empty line included.
    len: usize,
    status: u16,
    framing: Framing,
    /// The server closes the connection after this answer.
    close: bool,
}

/// Parses the HTTP/1.x answer head at the start of `buf`: `None` while it is incomplete.
///
/// Written out rather than with a general parser because it runs once per append and only
/// needs the status and three headers: finding lines with `memchr` and comparing three
/// header names costs a fraction of a full parse, and that is most of the bench's own CPU
/// time per request after the system calls.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, String> {
    let mut status = 0;
    let mut close = false;
    let mut length = None;
    let mut chunked = false;
    let mut start = 0;
    // Each complete line, found with `memchr` (a few vector steps), until the empty one.
    for end in memchr::memchr_iter(b'\n', buf) {
        let line = &buf[start..end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let first = start == 0;
        start = end + 1;
        if first {
            (status, close) = parse_status_line(line)?;
        } else if line.is_empty() {
            // Chunked wins over a length (RFC 9112 §6.3); some answers never have a body.
            let framing = if status == 204 || status == 304 || (100..200).contains(&status) {
                Framing::Length(0)
            } else if chunked {
                Framing::Chunked
            } else {
                length.map_or(Framing::UntilClose, Framing::Length)
            };
            return Ok(Some(Head {
                len: start,
                status,
                framing,
                close,
            }));
        } else {
            let colon = memchr::memchr(b':', line).ok_or("answer has a malformed header line")?;
            let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
            if name.eq_ignore_ascii_case(b"content-length") {
                let n = std::str::from_utf8(value)
                    .ok()
                    .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|v| v.parse::<usize>().ok())
                    .ok_or("answer has a bad Content-Length")?;
                length = Some(n);
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                if !value.eq_ignore_ascii_case(b"chunked") {
                    return Err("answer has an unsupported Transfer-Encoding".into());
                }
                chunked = true;
            } else if name.eq_ignore_ascii_case(b"connection") {
                if value.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if value.eq_ignore_ascii_case(b"keep-alive") {
                    close = false;
                }
            }
        }
    }
    if buf.len() > MAX_HEAD_BYTES {
        return Err(format!("answer head is over {MAX_HEAD_BYTES} bytes"));
    }
    Ok(None)
}

/// "HTTP/1.1 201 Created": the status, and whether the version closes by default (1.0).
fn parse_status_line(line: &[u8]) -> Result<(u16, bool), String> {
    let bad = || {
        format!(
            "unreadable answer: {:?}",
            String::from_utf8_lossy(&line[..line.len().min(40)])
        )
    };
    // The version, a space, three digits, then a space or the end.
    let (version, rest) = line.split_at_checked(8).ok_or_else(bad)?;
    let http10 = match version {
        b"HTTP/1.1" => false,
        b"HTTP/1.0" => true,
        _ => return Err(bad()),
    };
    match rest {
        [
            b' ',
            d @ b'1'..=b'5',
            e @ b'0'..=b'9',
            f @ b'0'..=b'9',
            tail @ ..,
        ] if tail.first().is_none_or(|&b| b == b' ') => {
            let status = u16::from(d - b'0') * 100 + u16::from(e - b'0') * 10 + u16::from(f - b'0');
            Ok((status, http10))
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// An answer delivered in `pieces` (each its own write), read by a fresh connection.
    async fn read_answer(pieces: &[&[u8]]) -> (Result<Answer, String>, String) {
        let (client, mut server) = tokio::io::duplex(64);
        let pieces: Vec<Vec<u8>> = pieces.iter().map(|p| p.to_vec()).collect();
        let serve = tokio::spawn(async move {
            let mut req = vec![0u8; 3];
            tokio::io::AsyncReadExt::read_exact(&mut server, &mut req)
                .await
                .unwrap();
            for p in pieces {
                server.write_all(&p).await.unwrap();
                server.flush().await.unwrap();
                tokio::task::yield_now().await;
            }
            // Dropping `server` ends the stream once the client has read what was written.
        });
        let mut c = Connection::new(client);
        let res = c.exchange(&[b"re", b"q"]).await;
        serve.await.unwrap();
        (res, c.body_text(200))
    }

    #[tokio::test]
    async fn reads_a_content_length_answer_split_anywhere() {
        let answer = b"HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: 9\r\n\r\n{\"key\":1}";
        for cut in 1..answer.len() {
            let (res, body) = read_answer(&[&answer[..cut], &answer[cut..]]).await;
            assert_eq!(
                res,
                Ok(Answer {
                    status: 201,
                    close: false
                }),
                "cut at {cut}"
            );
            assert_eq!(body, "{\"key\":1}");
        }
    }

    #[tokio::test]
    async fn reads_chunked_answers_and_keeps_error_bodies() {
        let (res, body) = read_answer(&[
            b"HTTP/1.1 503 Service Unavailable\r\ntransfer-encoding: chunked\r\n\r\n",
            b"5\r\n{\"err\r\n",
            b"3\r\nor\"\r\n0\r\n\r\n",
        ])
        .await;
        assert_eq!(res.map(|a| a.status), Ok(503));
        assert!(body.starts_with("5\r\n{\"err"), "{body}");
    }

    #[tokio::test]
    async fn connection_close_and_bodies_until_close_are_noticed() {
        let (res, _) = read_answer(&[
            b"HTTP/1.1 201 Created\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
        ])
        .await;
        assert_eq!(
            res,
            Ok(Answer {
                status: 201,
                close: true
            })
        );
        let (res, body) = read_answer(&[b"HTTP/1.0 201 Created\r\n\r\nall of it"]).await;
        assert_eq!(
            res,
            Ok(Answer {
                status: 201,
                close: true
            })
        );
        assert_eq!(body, "all of it");
    }

    #[tokio::test]
    async fn garbage_and_cut_answers_are_errors_not_panics() {
        for answer in [
            &b"garbage\r\n\r\n"[..],
            b"HTTP/1.1 201 Created\r\ncontent-length: 10\r\n\r\nshort",
            b"HTTP/1.1 201 Created\r\ncontent-length: nine\r\n\r\n",
            b"HTTP/1.1 201 Created\r\ncontent-length: 99999999999\r\n\r\n",
            b"HTTP/1.1 201 Created\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 201 Created\r\ntransfer-encoding: gzip\r\n\r\n",
            b"HTTP/1.1 201 Cre",
            b"",
        ] {
            let (res, _) = read_answer(&[answer]).await;
            assert!(
                res.is_err(),
                "{:?} gave {res:?}",
                String::from_utf8_lossy(answer)
            );
        }
    }

    #[test]
    fn heads_are_parsed_whatever_the_case_and_reason() {
        let h = |s: &str| parse_head(s.as_bytes());
        let head = h("HTTP/1.1 201\r\nCONTENT-length:  12 \r\nConnection: Keep-Alive\r\n\r\nbody")
            .unwrap()
            .unwrap();
        assert_eq!((head.status, head.close, head.len), (201, false, 62));
        assert!(matches!(head.framing, Framing::Length(12)));
        let head = h("HTTP/1.0 503 Busy\r\nContent-Length: 0\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!((head.status, head.close), (503, true));
        let head = h("HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(matches!(head.framing, Framing::Chunked));
        assert!(
            h("HTTP/1.1 201 Created\r\ncontent-length: 3\r\n")
                .unwrap()
                .is_none()
        );
        for bad in [
            "HTTP/2 201 Created\r\n\r\n",
            "HTTP/1.1 2O1 Created\r\n\r\n",
            "HTTP/1.1 201Created\r\n\r\n",
            "HTTP/1.1 901 What\r\n\r\n",
            "HTTP/1.1 201 Created\r\nno colon here\r\n\r\n",
            "HTTP/1.1 201 Created\r\ncontent-length: -1\r\n\r\n",
            "HTTP/1.1 201 Created\r\ncontent-length: +1\r\n\r\n",
        ] {
            assert!(h(bad).is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn chunked_bodies_are_joined_and_extra_bytes_close_the_connection() {
        let (client, mut server) = tokio::io::duplex(256);
        let answers: [&[u8]; 2] = [
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=1\r\nde\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokEXTRA",
        ];
        // One answer per 3-byte request, on the same connection.
        let serve = tokio::spawn(async move {
            for answer in answers {
                let mut req = vec![0u8; 3];
                tokio::io::AsyncReadExt::read_exact(&mut server, &mut req)
                    .await
                    .unwrap();
                server.write_all(answer).await.unwrap();
            }
        });
        let mut c = Connection::new(client);
        let a = c.exchange(&[b"req"]).await.unwrap();
        assert_eq!((a.status, a.close), (200, false));
        assert_eq!(c.body(), b"abcde");
        let a = c.exchange(&[b"req"]).await.unwrap();
        assert_eq!((a.status, a.close), (200, true), "bytes beyond the answer");
        assert_eq!(c.body(), b"ok");
        serve.await.unwrap();
    }
}
