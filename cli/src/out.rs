//! opsctl's one way to standard output: every verb writes through `write_out`, which turns a
//! reader that went away (EPIPE: `opsctl events | head`, `opsctl status -o json | true`) into
//! `OutputError::Closed`, which `opsctl` maps to a quiet exit 0 instead of a panic or an error.

use std::io::{ErrorKind, Write};

/// Why writing to standard output failed.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The reader closed the pipe: nobody wants the rest, so opsctl stops quietly.
    #[error("standard output was closed by its reader")]
    Closed,
    #[error("cannot write to standard output")]
    Write(#[source] std::io::Error),
}

/// Writes `text` to standard output and flushes it (a following reader sees each line as it
/// comes).
pub fn write_out(text: &str) -> Result<(), OutputError> {
    let mut out = std::io::stdout().lock();
    write_to(&mut out, text)
}

/// Writes `text` to `out` and flushes, mapping a broken pipe to `OutputError::Closed`.
pub fn write_to(out: &mut impl Write, text: &str) -> Result<(), OutputError> {
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| match e.kind() {
            ErrorKind::BrokenPipe => OutputError::Closed,
            _ => OutputError::Write(e),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Closed;
    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_pipe_is_told_apart_from_other_write_errors() {
        assert!(matches!(
            write_to(&mut Closed, "x"),
            Err(OutputError::Closed)
        ));
        let mut buf = Vec::new();
        assert!(write_to(&mut buf, "line\n").is_ok());
        assert_eq!(buf, b"line\n");
    }
}
