//! Negative tests of who may say what in the event stream (coordinator-only and lifecycle bodies).
