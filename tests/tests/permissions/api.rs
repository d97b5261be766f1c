//! Negative tests of the coordinator's API (reply subjects, roles, unidentified commands, fingerprints).
