//! A network namespace joined to this machine by a veth pair, so that a test can cut one agent
//! off from NATS by taking its link down (and bring it back) while everything else keeps
//! running. Needs root and iproute2; [`NetNs::create`] says why when it cannot, so the caller
//! can fall back to SIGSTOP/SIGCONT.

use std::process::Command;

use anyhow::{bail, Context, Result};

/// One namespace `ofc<id>` with a veth pair: `ofc<id>h` (this side, `host_ip`) and `ofc<id>n`
/// (inside, `ns_ip`), on a /30 of 10.231.0.0/16. Deleted on drop.
#[derive(Debug)]
pub struct NetNs {
    pub name: String,
    /// Address of this machine's end; a server listening on it is reachable from both sides.
    pub host_ip: String,
    pub ns_ip: String,
    host_if: String,
    ns_if: String,
}

/// Runs `ip <args>`; fails with its stderr.
fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .with_context(|| format!("cannot run `ip {}`", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "`ip {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// A /30 inside 10.231.0.0/16 derived from `id`: (network's .1, network's .2).
pub fn subnet_for(id: u32) -> (String, String) {
    let block = id % (256 * 64);
    let third = block / 64;
    let fourth = (block % 64) * 4;
    (
        format!("10.231.{third}.{}", fourth + 1),
        format!("10.231.{third}.{}", fourth + 2),
    )
}

impl NetNs {
    /// Creates the namespace and its link, up. The error explains why it is not possible here
    /// (`ip` missing, or `ip netns add` refused: not root, no netns support).
    pub fn create() -> Result<NetNs> {
        let id = std::process::id();
        let (host_ip, ns_ip) = subnet_for(id);
        let ns = NetNs {
            name: format!("ofc{id}"),
            host_ip,
            ns_ip,
            host_if: format!("ofc{id}h"),
            ns_if: format!("ofc{id}n"),
        };
        // From here on, drop cleans up whatever part was created.
        ip(&["netns", "add", &ns.name])?;
        ip(&[
            "link",
            "add",
            &ns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &ns.ns_if,
        ])?;
        ip(&["link", "set", &ns.ns_if, "netns", &ns.name])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/30", ns.host_ip),
            "dev",
            &ns.host_if,
        ])?;
        ip(&["link", "set", &ns.host_if, "up"])?;
        ns.exec_ip(&["addr", "add", &format!("{}/30", ns.ns_ip), "dev", &ns.ns_if])?;
        ns.exec_ip(&["link", "set", "lo", "up"])?;
        ns.link_up()?;
        Ok(ns)
    }

    fn exec_ip(&self, args: &[&str]) -> Result<()> {
        let mut all = vec!["netns", "exec", &self.name, "ip"];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// Takes the namespace's end of the link down: nothing inside reaches this machine.
    pub fn link_down(&self) -> Result<()> {
        self.exec_ip(&["link", "set", &self.ns_if, "down"])
    }

    /// Brings the namespace's end of the link back up.
    pub fn link_up(&self) -> Result<()> {
        self.exec_ip(&["link", "set", &self.ns_if, "up"])
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Deleting the namespace deletes the veth pair with it; the explicit delete covers a
        // pair whose inner end never moved into the namespace.
        let _ = ip(&["netns", "del", &self.name]);
        let _ = ip(&["link", "del", &self.host_if]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_are_distinct_slash_30s() {
        assert_eq!(
            subnet_for(0),
            ("10.231.0.1".to_owned(), "10.231.0.2".to_owned())
        );
        assert_eq!(
            subnet_for(1),
            ("10.231.0.5".to_owned(), "10.231.0.6".to_owned())
        );
        assert_eq!(
            subnet_for(64),
            ("10.231.1.1".to_owned(), "10.231.1.2".to_owned())
        );
        let (h, n) = subnet_for(256 * 64 - 1);
        assert_eq!(
            (h.as_str(), n.as_str()),
            ("10.231.255.253", "10.231.255.254")
        );
    }
}
