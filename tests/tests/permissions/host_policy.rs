//! Negative tests of the host-owned policy and the agent's admin surface.
