//! The JSON log line, written by hand.
//!
//! `LOG_FORMAT=json` used tracing-subscriber's JSON formatter, which collects an event's fields
//! in a `BTreeMap` of `serde_json::Value`s, serializes the map through serde into a byte buffer,
//! checks that buffer as UTF-8 and copies it into the line: callgrind put that at about 60 % of
//! the gateway's instructions per relayed request (BENCHMARKS.md, issue 18). [`JsonLine`] writes
//! the same object — `timestamp`, `level`, the event's fields flattened (`message` among them),
//! `target` — straight into the line, escaping only what JSON requires. No library formats a
//! `tracing` event as JSON without the intermediate map, hence this module.
//!
//! An event inside a span is handed to tracing-subscriber's own JSON formatter, which adds the
//! `span` and `spans` members (the gateway's access log is not emitted inside a span, so its
//! lines take the fast path). Field order follows the event's declaration; a field named like one
//! of the line's own members (`timestamp`, `level`, `target`) is written as well, as the
//! flattened formatter does.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{Format, Json, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Formats events as one JSON object per line, by hand (see the module docs).
pub(crate) struct JsonLine {
    /// For events inside a span: the library's formatter, configured as before.
    in_span: Format<Json, SystemTime>,
}

impl JsonLine {
    pub(crate) fn new() -> Self {
        JsonLine {
            in_span: tracing_subscriber::fmt::format()
                .json()
                .flatten_event(true)
                .with_target(true),
        }
    }
}

impl<S, N> FormatEvent<S, N> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        if event.is_contextual() && ctx.lookup_current().is_some() || event.parent().is_some() {
            return self.in_span.format_event(ctx, writer, event);
        }
        let meta = event.metadata();
        writer.write_str("{\"timestamp\":\"")?;
        SystemTime.format_time(&mut writer)?;
        writer.write_str("\",\"level\":\"")?;
        writer.write_str(meta.level().as_str())?;
        writer.write_char('"')?;
        let mut fields = Fields {
            out: &mut writer,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        writer.write_str(",\"target\":")?;
        write_string(&mut writer, meta.target())?;
        writer.write_str("}\n")
    }
}

/// Writes each field as `,"name":value`.
struct Fields<'a, 'w> {
    out: &'a mut Writer<'w>,
    result: fmt::Result,
}

impl Fields<'_, '_> {
    fn member(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_ok() {
            self.result = (|| {
                self.out.write_char(',')?;
                write_string(self.out, field.name())?;
                self.out.write_char(':')?;
                value(self.out)
            })();
        }
    }
}

impl Visit for Fields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.member(field, |w| write_string(w, value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.member(field, |w| write!(w, "{value}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.member(field, |w| write!(w, "{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.member(field, |w| w.write_str(if value { "true" } else { "false" }));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // JSON has no NaN or infinity; serde_json writes them as null too.
        self.member(field, |w| {
            if value.is_finite() {
                write!(w, "{value:?}")
            } else {
                w.write_str("null")
            }
        });
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.member(field, |w| {
            write_escaped_with(w, |out| write!(out, "{value}"))
        });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.member(field, |w| {
            write_escaped_with(w, |out| write!(out, "{value:?}"))
        });
    }
}

/// `s` as a JSON string: quoted, with `"`, `\` and control characters escaped.
fn write_string(w: &mut impl fmt::Write, s: &str) -> fmt::Result {
    w.write_char('"')?;
    Escaper(&mut *w).write_str(s)?;
    w.write_char('"')
}

/// What `write` formats, as a JSON string, escaped on the way (no intermediate `String`).
fn write_escaped_with(
    w: &mut Writer<'_>,
    write: impl FnOnce(&mut Escaper<&mut Writer<'_>>) -> fmt::Result,
) -> fmt::Result {
    w.write_char('"')?;
    write(&mut Escaper(&mut *w))?;
    w.write_char('"')
}

/// A writer that escapes what passes through it for a JSON string's inside.
struct Escaper<W>(W);

impl<W: fmt::Write> fmt::Write for Escaper<W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut start = 0;
        for (i, b) in s.bytes().enumerate() {
            let escape = match b {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0x00..=0x1f => "",
                _ => continue,
            };
            self.0.write_str(&s[start..i])?;
            if escape.is_empty() {
                write!(self.0, "\\u{b:04x}")?;
            } else {
                self.0.write_str(escape)?;
            }
            start = i + 1;
        }
        self.0.write_str(&s[start..])
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use serde_json::Value;
    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    /// Captures what a subscriber writes.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Capture {
        type Writer = Capture;
        fn make_writer(&'a self) -> Capture {
            self.clone()
        }
    }

    fn emit(fast: bool, f: impl FnOnce()) -> Vec<Value> {
        let capture = Capture::default();
        let builder = tracing_subscriber::fmt()
            .with_writer(capture.clone())
            .with_target(true)
            .json()
            .flatten_event(true);
        if fast {
            tracing::subscriber::with_default(builder.event_format(JsonLine::new()).finish(), f);
        } else {
            tracing::subscriber::with_default(builder.finish(), f);
        }
        let text = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    fn without_timestamp(mut v: Value) -> Value {
        let ts = v.as_object_mut().unwrap().remove("timestamp").unwrap();
        assert!(ts.as_str().unwrap().ends_with('Z'), "{ts}");
        v
    }

    /// Every kind of field, with characters JSON must escape: the hand-written line parses to
    /// the same object as tracing-subscriber's JSON line, timestamp aside.
    #[test]
    fn the_line_is_the_library_s_json_object() {
        let events = || {
            let method = http::Method::POST;
            tracing::info!(
                target: "access",
                method = %method,
                path = "/v1/chat/\"completions\"\\\n\t\u{1}é",
                status = 200u16,
                delta = -3i64,
                stream = true,
                latency_ms = 1.25f64,
                whole = 2.0f64,
                nan = f64::NAN,
                debug = ?Some("x"),
                "request"
            );
            tracing::warn!(error = %io::Error::other("bad \"thing\""), "failed: {}", 7);
            let span = tracing::info_span!("outer", id = 1);
            let _in = span.enter();
            tracing::info!(inside = 1, "in a span");
        };
        let fast = emit(true, events);
        let slow = emit(false, events);
        assert_eq!(fast.len(), 3);
        for (f, s) in fast.into_iter().zip(slow) {
            assert_eq!(without_timestamp(f), without_timestamp(s));
        }
    }
}
