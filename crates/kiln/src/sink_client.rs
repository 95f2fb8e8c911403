//! The events sink's HTTP side: one HTTP/1.1 connection to the sink, kept alive from one POST
//! to the next and made again when it breaks (hyper's client connection over a tokio
//! socket: both are dependencies already, and a pool would only ever hold one connection).
//!
//! Every POST, connecting included, has [`REQUEST_TIMEOUT`]; an answer's body is read (so
//! the connection can carry the next request) up to [`BODY_LIMIT`], past which the
//! connection is dropped instead. A reused connection the sink had closed meanwhile is not
//! a failure: the request goes once more, on a new connection, within the same attempt.

use std::future::poll_fn;
use std::pin::Pin;
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, header};
use hyper_util::rt::TokioIo;
use kiln_config::SinkUrl;

use crate::sink_retry::Outcome;

/// How long one POST may take, from connecting to the end of the answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes of an answer's body read; a longer one closes the connection.
const BODY_LIMIT: usize = 64 * 1024;
/// Bytes of an answer's body kept for a message.
const BODY_SHOWN: usize = 200;

pub struct SinkClient {
    url: SinkUrl,
    sender: Option<SendRequest<String>>,
}

impl SinkClient {
    pub fn new(url: SinkUrl) -> SinkClient {
        SinkClient { url, sender: None }
    }

    /// POSTs one structured CloudEvent.
    pub async fn post(&mut self, body: &str) -> Outcome {
        let secs = REQUEST_TIMEOUT.as_secs();
        match tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(body)).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(why)) => {
                self.sender = None;
                Outcome::NoAnswer(why)
            }
            Err(_) => {
                self.sender = None;
                Outcome::NoAnswer(format!("no answer within {secs} s"))
            }
        }
    }

    async fn exchange(&mut self, body: &str) -> Result<Outcome, String> {
        let reused = self.sender.as_ref().is_some_and(|s| !s.is_closed());
        match self.send(body).await {
            Err(_) if reused => {
                // The sink closed the idle connection (or its keep-alive ended): a new one.
                self.sender = None;
                self.send(body).await
            }
            other => other,
        }
    }

    async fn send(&mut self, body: &str) -> Result<Outcome, String> {
        let sender = match &mut self.sender {
            Some(s) if !s.is_closed() => s,
            _ => self.sender.insert(self.connect().await?),
        };
        sender.ready().await.map_err(|e| format!("the connection to {} broke: {e}", self.url.authority))?;
        let request = Request::post(&self.url.path)
            .header(header::HOST, &self.url.authority)
            .header(header::CONTENT_TYPE, "application/cloudevents+json")
            .header(header::CONTENT_LENGTH, body.len())
            .header(header::USER_AGENT, concat!("kiln/", env!("CARGO_PKG_VERSION")))
            .body(body.to_string())
            .map_err(|e| format!("cannot make the request: {e}"))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("the request to {} failed: {e}", self.url.authority))?;
        let status = response.status().as_u16();
        let retry_after = response.headers().get(header::RETRY_AFTER).and_then(|v| v.to_str().ok()).map(str::to_string);
        let closes = response
            .headers()
            .get(header::CONNECTION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let (text, whole) = read_body(response.into_body()).await;
        if closes || !whole {
            self.sender = None;
        }
        Ok(Outcome::Answered { status, retry_after, body: text })
    }

    async fn connect(&self) -> Result<SendRequest<String>, String> {
        let (host, port) = (self.url.host.as_str(), self.url.port);
        let stream = tokio::net::TcpStream::connect((host, port))
            .await
            .map_err(|e| format!("cannot connect to {}: {e}", self.url.authority))?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("cannot talk HTTP to {}: {e}", self.url.authority))?;
        // Ends when the sender is dropped or the sink closes the connection.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }
}

/// The start of the body as text, and whether it was read to its end (within the limit).
async fn read_body(mut body: Incoming) -> (String, bool) {
    let mut kept = Vec::new();
    let mut total = 0usize;
    loop {
        match poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
            None => break,
            Some(Err(_)) => return (String::from_utf8_lossy(&kept).into_owned(), false),
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    total += data.len();
                    let room = BODY_SHOWN.saturating_sub(kept.len());
                    kept.extend_from_slice(&data[..data.len().min(room)]);
                    if total > BODY_LIMIT {
                        return (String::from_utf8_lossy(&kept).into_owned(), false);
                    }
                }
            }
        }
    }
    (String::from_utf8_lossy(&kept).into_owned(), true)
}
