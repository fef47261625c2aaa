//! `GET /api/repos/{repo}/snapshots/{id}/rdb`: the snapshot's RDB, restored and streamed
//! as it is read (memory: a few blocks in flight, never the whole file).

use std::io::Write;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::engine::restore::{write_file, RestoreOptions};

use super::api::{find, the_rdb, with_blobs};
use super::error::{blocking, ApiError};
use super::Site;

/// Bytes gathered before a block goes to the client.
const BLOCK: usize = 256 * 1024;
/// Blocks in flight between the restore and the connection.
const IN_FLIGHT: usize = 4;

/// Hands what the restore writes to the response body, block by block; fails once the
/// client has gone, which stops the restore.
struct ToBody {
    tx: mpsc::Sender<std::io::Result<Bytes>>,
    buf: Vec<u8>,
}

impl ToBody {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let block = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(BLOCK)));
        self.tx.blocking_send(Ok(block)).map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client closed the download"))
    }
}

impl Write for ToBody {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= BLOCK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// The receiving end as an HTTP body; an error aborts the connection, so a client never
/// takes a truncated file for a whole one (the length was announced).
pub(super) struct FromRestore(pub(super) mpsc::Receiver<std::io::Result<Bytes>>);

impl http_body::Body for FromRestore {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        self.0.poll_recv(cx).map(|o| o.map(|r| r.map(http_body::Frame::data)))
    }
}

/// A file name safe in a Content-Disposition header.
fn safe_name(name: &str) -> String {
    let base = name.rsplit('/').next().unwrap_or(name);
    let clean: String = base.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect();
    if clean.is_empty() { "dump.rdb".into() } else { clean }
}

pub async fn rdb(State(site): State<Arc<Site>>, Path((name, spec)): Path<(String, String)>) -> Result<Response, ApiError> {
    let r = site.repo(&name)?;
    let r2 = r.clone();
    let (id, snap) = blocking(move || find(&r2.repo, &spec)).await?;
    let file = the_rdb(&id, &snap)?.clone();
    let (tx, rx) = mpsc::channel(IN_FLIGHT);
    let (size, fname) = (file.size, format!("{}-{}", id.short(), safe_name(&file.name)));
    tokio::task::spawn_blocking(move || {
        let mut out = ToBody { tx: tx.clone(), buf: Vec::with_capacity(BLOCK) };
        let opts = RestoreOptions { threads: 2, ..RestoreOptions::default() };
        let done = with_blobs(&r, |blobs| Ok(write_file(blobs, &file, &mut out, &opts)?)).and_then(|()| out.flush().map_err(|e| ApiError::internal(e.to_string())));
        if let Err(e) = done {
            let _ = tx.blocking_send(Err(std::io::Error::other(e.message)));
        }
    });
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, size.to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{fname}\"")),
        ],
        Body::new(FromRestore(rx)),
    )
        .into_response())
}
