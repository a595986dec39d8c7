//! The input side of the stdio transport. tower-lsp-server stops reading for good after one
//! message it cannot decode, which would end the session on a single malformed message. This
//! reframes stdin first: a body that is not a JSON object becomes a `quill/parseError` request
//! with a null id, which the server answers with JSON-RPC's parse error (-32700); a header block
//! without a valid `Content-Length` is skipped.

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader, DuplexStream};

/// The method a malformed message is turned into.
pub const PARSE_ERROR_METHOD: &str = "quill/parseError";

/// Largest message accepted (bigger ones are refused like malformed ones).
const MAX_MESSAGE: usize = 64 << 20;

/// Returns a reader of well-formed frames fed from `input` by a background task.
pub fn sanitize<R: AsyncRead + Unpin + Send + 'static>(input: R) -> DuplexStream {
    let (mut tx, rx) = tokio::io::duplex(1 << 16);
    tokio::spawn(async move {
        let mut reader = BufReader::new(input);
        loop {
            match read_frame(&mut reader).await {
                Frame::End => break,
                Frame::Skip(why) => tracing::warn!("dropping a message with a bad header: {why}"),
                Frame::Body(body) => {
                    let body = match serde_json::from_slice::<Value>(&body) {
                        Ok(Value::Object(_)) => body,
                        Ok(_) => parse_error("the message is not a JSON object"),
                        Err(e) => parse_error(&format!("the message is not valid JSON: {e}")),
                    };
                    let header = format!("Content-Length: {}\r\n\r\n", body.len());
                    if tx.write_all(header.as_bytes()).await.is_err()
                        || tx.write_all(&body).await.is_err()
                    {
                        break;
                    }
                }
            }
        }
        let _ = tx.shutdown().await;
    });
    rx
}

fn parse_error(message: &str) -> Vec<u8> {
    tracing::warn!("{message}");
    json!({"jsonrpc": "2.0", "id": null, "method": PARSE_ERROR_METHOD, "params": {"message": message}})
        .to_string()
        .into_bytes()
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
