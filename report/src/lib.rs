//! How opsfleet shows an error: on one line with every cause, `outer: cause: root`, for log
//! fields (`error = %ErrorChain(&e)`) and for reasons sent to operators. Each layer's `Display`
//! describes only that layer (the errors doctrine in docs/ARCHITECTURE.md), so the causes are
//! what a reader needs to act: the sled, io or NATS reason under a store or consumer failure.

use std::error::Error;
use std::fmt;

/// Displays an error and its `source()` chain as `outer: cause: root`. A cause whose text the
/// line already ends with (a foreign error that also prints its source) is not repeated.
#[derive(Clone, Copy)]
pub struct ErrorChain<'a>(pub &'a (dyn Error + 'a));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut line = self.0.to_string();
        let mut next = self.0.source();
        while let Some(cause) = next {
            let text = cause.to_string();
            if !text.is_empty() && !line.ends_with(&text) {
                line.push_str(": ");
                line.push_str(&text);
            }
            next = cause.source();
        }
        f.write_str(&line)
    }
}

impl fmt::Debug for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The one-line text of `e` with its causes (`ErrorChain(e).to_string()`).
pub fn error_chain(e: &dyn Error) -> String {
    ErrorChain(e).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl fmt::Display for Layer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl Error for Layer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.1.as_deref().map(|l| l as &(dyn Error + 'static))
        }
    }

    #[test]
    fn every_cause_on_one_line() {
        let e = Layer(
            "store I/O failed during commit",
            Some(Box::new(Layer(
                "sled flush failed",
                Some(Box::new(Layer(
                    "No space left on device (os error 28)",
                    None,
                ))),
            ))),
        );
        assert_eq!(
            ErrorChain(&e).to_string(),
            "store I/O failed during commit: sled flush failed: No space left on device (os error 28)"
        );
        assert_eq!(error_chain(&Layer("alone", None)), "alone");
    }

    #[test]
    fn a_cause_already_printed_is_not_repeated() {
        let e = Layer(
            "request failed: timed out",
            Some(Box::new(Layer("timed out", None))),
        );
        assert_eq!(error_chain(&e), "request failed: timed out");
    }
}
