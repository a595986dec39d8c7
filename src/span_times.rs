//! Where a keystroke's time goes: the spans of target [`TARGET`] (debug level, so free unless
//! `QUILL_LOG` enables them, e.g. `QUILL_LOG=quill::keystroke=debug`) log their wall time
//! when they close, as a debug event of the same target on stderr:
//! `closed request:doc_copy in 12345 ns`, the span's path from its root and nanoseconds from
//! its creation to its close (an `async` span counts the time it waited). `cargo bench --bench
//! lsp -- --breakdown` reads these lines.

use std::time::Instant;

use tracing::span;
use tracing::Subscriber;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// The target of the spans around the parts of a keystroke.
pub const TARGET: &str = "quill::keystroke";

/// The layer that logs each closed [`TARGET`] span's wall time.
pub struct SpanTimes;

struct Opened(Instant);

impl<S> Layer<S> for SpanTimes
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        if attrs.metadata().target() != TARGET {
            return;
        }
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(Opened(Instant::now()));
        }
    }

    fn on_close(&self, id: span::Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(opened) = span.extensions().get::<Opened>().map(|o| o.0) else {
            return;
        };
        let ns = opened.elapsed().as_nanos();
        let path: Vec<&str> = span.scope().from_root().map(|s| s.name()).collect();
        let path = path.join(":");
        tracing::debug!(target: "quill::keystroke", "closed {path} in {ns} ns");
    }
}

/// Reads a line logged by [`SpanTimes`]: the span's path and its wall time in milliseconds.
pub fn parse_closed(line: &str) -> Option<(&str, f64)> {
    let (_, rest) = line.split_once("closed ")?;
    let (path, rest) = rest.split_once(" in ")?;
    let ns: u64 = rest.strip_suffix(" ns")?.trim().parse().ok()?;
    Some((path, ns as f64 * 1e-6))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_lines_parse() {
        let line = "2026-12-06T02:00:00.000001Z DEBUG request: quill::keystroke: \
                    closed request:doc_copy in 12345 ns";
        assert_eq!(parse_closed(line), Some(("request:doc_copy", 0.012345)));
        assert_eq!(parse_closed("DEBUG quill: model ready"), None);
    }
}
