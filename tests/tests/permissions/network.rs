//! Negative tests of the NATS layer itself (routes, monitoring, consumers, role subjects).
