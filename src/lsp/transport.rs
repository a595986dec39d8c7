//! The input side of the stdio transport. tower-lsp-server stops reading for good after one
//! message it cannot decode, which would end the session on a single malformed message, and
//! drops some valid-looking ones without an answer. This reframes stdin first and lets through
//! only messages that are valid JSON-RPC 2.0:
//!
//! - a body that is not JSON becomes a `quill/parseError` request with a null id, answered with
//!   JSON-RPC's parse error (-32700);
//! - JSON that is not a valid message (not an object, `jsonrpc` not `"2.0"`, an `id` that is not
//!   an integer or a string, a `method` that is not a string, `params` that are neither object
//!   nor array, a response without exactly one of `result` and `error`, `{"jsonrpc":"2.0"}`)
//!   becomes the same request with code -32600 (invalid request), answered with a null id;
//! - a request (it has an id) for a `$/` method, which tower-lsp-server would drop silently, is
//!   answered with method-not-found (-32601) and its own id; only `$/` notifications may be
//!   dropped;
//! - a header block without a valid `Content-Length` is skipped.
//!
//! It also reports when the session must end (an `exit` notification or the end of input), so
//! that the server stops promptly even while a handler waits on the client.

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader, DuplexStream};
use tokio::sync::watch;

/// The method a malformed message is turned into.
pub const PARSE_ERROR_METHOD: &str = "quill/parseError";

/// JSON-RPC's error codes for what this module refuses.
pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;

/// Largest message accepted (bigger ones are refused like malformed ones).
const MAX_MESSAGE: usize = 64 << 20;

/// Why the input side stopped: the session must end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Still reading.
    Running,
    /// An `exit` notification was passed on.
    Exit,
    /// The client closed its end (or the input failed).
    EndOfInput,
}

/// Returns a reader of well-formed, valid frames fed from `input` by a background task, and a
/// receiver that changes from [`Ending::Running`] when the session must end.
pub fn sanitize<R: AsyncRead + Unpin + Send + 'static>(
    input: R,
) -> (DuplexStream, watch::Receiver<Ending>) {
    let (mut tx, rx) = tokio::io::duplex(1 << 16);
    let (ending_tx, ending_rx) = watch::channel(Ending::Running);
    tokio::spawn(async move {
        let mut reader = BufReader::new(input);
        let mut ending = Ending::EndOfInput;
        loop {
            match read_frame(&mut reader).await {
                Frame::End => break,
                Frame::Skip(why) => tracing::warn!("dropping a message with a bad header: {why}"),
                Frame::Body(body) => {
                    let checked = {
                        let _span = tracing::debug_span!(target: "quill::keystroke", "frame_check")
                            .entered();
                        check(&body)
                    };
                    let (body, exit) = match checked {
                        Checked::Pass { exit } => (body, exit),
                        Checked::Refuse(msg) => (msg, false),
                    };
                    let header = format!("Content-Length: {}\r\n\r\n", body.len());
                    if tx.write_all(header.as_bytes()).await.is_err()
                        || tx.write_all(&body).await.is_err()
                    {
                        break;
                    }
                    if exit {
                        ending = Ending::Exit;
                        break;
                    }
                }
            }
        }
        let _ = ending_tx.send(ending);
        // Keep the server's input open after `exit` (it stops on its own); close it at the end
        // of input.
        if ending == Ending::EndOfInput {
            let _ = tx.shutdown().await;
        } else {
            std::future::pending::<()>().await;
        }
    });
    (rx, ending_rx)
}

/// What to do with one message body.
#[derive(Debug, PartialEq)]
enum Checked {
    /// Pass it on unchanged; `exit` when it is the `exit` notification.
    Pass { exit: bool },
    /// Pass this request instead, which the server answers with an error.
    Refuse(Vec<u8>),
}

/// Checks that a body is a valid JSON-RPC 2.0 message that the server will answer properly.
fn check(body: &[u8]) -> Checked {
    let value = match serde_json::from_slice::<Value>(body) {
        Ok(v) => v,
        Err(e) => {
            return refuse(
                PARSE_ERROR,
                Value::Null,
                &format!("the message is not valid JSON: {e}"),
            )
        }
    };
    let invalid = |why: &str| {
        refuse(
            INVALID_REQUEST,
            Value::Null,
            &format!("invalid request: {why}"),
        )
    };
    let Value::Object(map) = &value else {
        return invalid("the message is not a JSON object");
    };
    if map.get("jsonrpc") != Some(&Value::String("2.0".into())) {
        return invalid("\"jsonrpc\" must be \"2.0\"");
    }
    let id = map.get("id");
    // A response may carry a null id (the answer to a request its sender could not read).
    let response = !map.contains_key("method");
    let valid_id =
        |id: &Value| id.is_string() || id.is_i64() || id.is_u64() || (response && id.is_null());
    if let Some(id) = id {
        if !valid_id(id) {
            return invalid("\"id\" must be an integer or a string");
        }
    }
    match map.get("method") {
        Some(Value::String(method)) => {
            if let Some(params) = map.get("params") {
                if !(params.is_object() || params.is_array() || params.is_null()) {
                    return invalid("\"params\" must be an object or an array");
                }
            }
            if let (Some(id), true) = (id, method.starts_with("$/")) {
                return refuse(
                    METHOD_NOT_FOUND,
                    id.clone(),
                    &format!("method not found: {method}"),
                );
            }
            Checked::Pass {
                exit: method == "exit" && id.is_none(),
            }
        }
        Some(_) => invalid("\"method\" must be a string"),
        None => {
            // A response to one of the server's requests.
            if id.is_none() {
                return invalid("the message has neither a method nor an id");
            }
            match (map.contains_key("result"), map.get("error")) {
                (true, None) => Checked::Pass { exit: false },
                (false, Some(Value::Object(e))) if e.get("code").is_some_and(Value::is_i64) => {
                    Checked::Pass { exit: false }
                }
                _ => invalid("a response needs exactly one of \"result\" and \"error\""),
            }
        }
    }
}

/// A request that the server answers with error `code` and `message`, with `id`.
fn refuse(code: i64, id: Value, message: &str) -> Checked {
    tracing::warn!("{message}");
    Checked::Refuse(
        json!({"jsonrpc": "2.0", "id": id, "method": PARSE_ERROR_METHOD,
               "params": {"code": code, "message": message}})
        .to_string()
        .into_bytes(),
    )
}

enum Frame {
    Body(Vec<u8>),
    Skip(String),
    End,
}

async fn read_frame<R: AsyncRead + Unpin>(reader: &mut BufReader<R>) -> Frame {
    let mut length: Option<Result<usize, String>> = None;
    let mut saw_header = false;
    loop {
        let mut line = Vec::new();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return Frame::End,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\r', '\n']);
        if text.is_empty() {
            if !saw_header {
                continue; // stray blank line between messages
            }
            break;
        }
        saw_header = true;
        // Anywhere in the line: the unterminated body of a skipped message may precede it.
        const NAME: &str = "content-length:";
        if let Some(at) = text.to_ascii_lowercase().find(NAME) {
            let value = text[at + NAME.len()..].trim();
            length = Some(
                value
                    .parse::<usize>()
                    .map_err(|e| format!("Content-Length {value:?}: {e}")),
            );
        }
    }
    match length {
        None => Frame::Skip("no Content-Length header".into()),
        Some(Err(e)) => Frame::Skip(e),
        Some(Ok(n)) if n > MAX_MESSAGE => {
            Frame::Skip(format!("a message of {n} bytes is too large"))
        }
        Some(Ok(n)) => {
            let mut body = vec![0; n];
            match reader.read_exact(&mut body).await {
                Ok(_) => Frame::Body(body),
                Err(_) => Frame::End,
            }
        }
    }
}
