//! A local HTTP server in the Hugging Face hub's URL layout, for download tests without network:
//! `GET /{org}/{name}/resolve/{revision}/{file}` serves `{root}/{file}` for the repositories it
//! knows, with the headers `hf-hub` reads (`etag`, `x-repo-commit`, `content-range`) and byte
//! ranges. Everything else is a 404.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

pub struct HubServer {
    pub endpoint: String,
    /// Number of file bodies served (range requests of more than the first byte).
    pub downloads: Arc<AtomicUsize>,
}

pub const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

impl HubServer {
    /// Serves the files of each `(repo_id, root)` at any revision.
    pub fn start(repos: &[(&str, PathBuf)]) -> HubServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a local port");
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let downloads = Arc::new(AtomicUsize::new(0));
        let count = downloads.clone();
        let repos: Vec<(String, PathBuf)> = repos
            .iter()
            .map(|(id, root)| (format!("/{id}/resolve/"), root.clone()))
            .collect();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let repos = repos.clone();
                let count = count.clone();
                std::thread::spawn(move || {
                    let _ = serve(stream, &repos, &count);
                });
            }
        });
        HubServer {
            endpoint,
            downloads,
        }
    }
}

fn serve(
    mut stream: TcpStream,
    repos: &[(String, PathBuf)],
    count: &AtomicUsize,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    let mut range: Option<(usize, Option<usize>)> = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("range:") {
            let v = v.trim().trim_start_matches("bytes=");
            if let Some((a, b)) = v.split_once('-') {
                range = Some((a.parse().unwrap_or(0), b.trim().parse().ok()));
            }
        }
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
    let file = repos.iter().find_map(|(prefix, root)| {
        let rest = path.strip_prefix(prefix.as_str())?;
        let (_revision, file) = rest.split_once('/')?;
        Some(root.join(file))
    });
    let body = match file.filter(|f| f.is_file()) {
        Some(f) => std::fs::read(f)?,
        None => {
            let msg = b"Entry not found";
            write!(
                stream,
                "HTTP/1.1 404 Not Found\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                msg.len()
            )?;
            stream.write_all(msg)?;
            return Ok(());
        }
    };
    let etag = format!("{:016x}{:08x}", fnv(&body), body.len());
    let (start, end) = match range {
        Some((a, b)) => (
            a.min(body.len()),
            b.map(|b| b + 1).unwrap_or(body.len()).min(body.len()),
        ),
        None => (0, body.len()),
    };
    if end > start + 1 {
        count.fetch_add(1, Ordering::SeqCst);
    }
    let part = &body[start..end.max(start)];
    write!(
        stream,
        "HTTP/1.1 206 Partial Content\r\ncontent-length: {}\r\ncontent-range: bytes {}-{}/{}\r\n\
         etag: \"{etag}\"\r\nx-repo-commit: {COMMIT}\r\nconnection: close\r\n\r\n",
        part.len(),
        start,
        end.saturating_sub(1),
        body.len()
    )?;
    stream.write_all(part)?;
    stream.flush()
}

fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf29ce484222325, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x100000001b3)
    })
}
