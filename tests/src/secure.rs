//! A nats-server started from the shipped single-node config (`deploy/nats/single.conf` with
//! `auth.conf`) and secrets from `scripts/dev-certs.sh`. Only the listen port, the `/etc/nats/`
//! prefix, the monitor port and the store path are rendered; users, permissions, TLS and
//! JetStream settings are the shipped ones. Plus the connection settings of each identity.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use opsfleet_bus::{ConnectMode, NatsConfig, TlsConfig};

use crate::agent::quote;
use crate::nats::NatsServer;

/// Which client certificate an identity presents (mutual TLS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Agent,
    Coordinator,
    Operator,
}

impl Role {
    fn cert_name(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Coordinator => "coordinator",
            Role::Operator => "operator",
        }
    }
}

/// The repository root (the workspace this crate lives in).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from(".."), Path::to_path_buf)
}

/// Runs `scripts/dev-certs.sh <out>`: CA, certificates and nkeys of the default identities
/// (hosts web-01 web-02 db-01, coordinators blue green, operators alice bob carol).
pub fn generate_secrets(out: &Path) -> Result<()> {
    let script = repo_root().join("scripts/dev-certs.sh");
    let status = std::process::Command::new("bash")
        .arg(&script)
        .arg(out)
        .status()
        .with_context(|| format!("cannot run {}", script.display()))?;
    if !status.success() {
        bail!("{} {} failed: {status}", script.display(), out.display());
    }
    Ok(())
}

/// A server on the shipped permission config, and where its secrets are.
#[derive(Debug)]
pub struct SecureNats {
    pub server: NatsServer,
    /// The rendered `/etc/nats` (single.conf, auth.conf, secrets/).
    pub etc: PathBuf,
    pub secrets: PathBuf,
}

impl SecureNats {
    /// Copies `deploy/nats/{single.conf,auth.conf}` to `<dir>/etc/nats`, generates secrets into
    /// `<dir>/etc/nats/secrets`, renders ports and paths and starts the server.
    pub async fn start(dir: &Path) -> Result<SecureNats> {
        let shipped = repo_root().join("deploy/nats");
        let etc = dir.join("etc/nats");
        std::fs::create_dir_all(&etc)
            .with_context(|| format!("cannot create {}", etc.display()))?;
        let secrets = etc.join("secrets");
        generate_secrets(&secrets)?;
        let auth = shipped.join("auth.conf");
        std::fs::copy(&auth, etc.join("auth.conf"))
            .with_context(|| format!("cannot copy {}", auth.display()))?;
        let single = shipped.join("single.conf");
        let text = std::fs::read_to_string(&single)
            .with_context(|| format!("cannot read {}", single.display()))?;
        let rendered = render_single(&text, &etc, &dir.join("data"))?;
        let config = etc.join("single.conf");
        std::fs::write(&config, rendered)
            .with_context(|| format!("cannot write {}", config.display()))?;
        let server = NatsServer::start_with_config(dir, &config).await?;
        Ok(SecureNats {
            server,
            etc,
            secrets,
        })
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The `[nats]` settings of `identity` (its nkey, its own inbox, the CA and its role's
    /// client certificate).
    pub fn nats_config(&self, identity: &str, role: Role) -> NatsConfig {
        NatsConfig {
            urls: vec![self.url()],
            nkey: Some(self.nkey_path(identity)),
            inbox_prefix: Some(format!("_INBOX.{identity}")),
            tls: Some(self.tls(Some(role))),
            request_timeout: Duration::from_secs(10),
            ..Default::default()
        }
    }

    /// TLS settings: the CA, plus the role's client certificate if given.
    pub fn tls(&self, role: Option<Role>) -> TlsConfig {
        let tls = self.secrets.join("tls");
        TlsConfig {
            ca: Some(tls.join("ca.pem")),
            cert: role.map(|r| tls.join(format!("{}.pem", r.cert_name()))),
            key: role.map(|r| tls.join(format!("{}-key.pem", r.cert_name()))),
        }
    }

    pub fn nkey_path(&self, identity: &str) -> PathBuf {
        self.secrets.join("nkeys").join(format!("{identity}.nk"))
    }

    /// The same settings as TOML keys of an agent's or coordinator's `[nats]` table.
    pub fn nats_toml(&self, identity: &str, role: Role) -> String {
        identity_toml(&self.secrets, identity, role)
    }

    /// opsctl flags of operator `user` using `nkey_of`'s key (the same user, unless a test
    /// tries to act as someone else).
    pub fn opsctl_args(&self, user: &str, nkey_of: &str) -> Vec<String> {
        operator_args(&self.secrets, user, nkey_of)
    }

    /// Connects as `identity` through the project's own connect function.
    pub async fn connect(&self, identity: &str, role: Role) -> Result<async_nats::Client> {
        let cfg = self.nats_config(identity, role);
        opsfleet_bus::connect(&cfg, &format!("test {identity}"), ConnectMode::FailFast)
            .await
            .with_context(|| format!("cannot connect as {identity}"))
    }
}

/// Renders the shipped single-node config for a test: free loopback ports, paths under `etc`
/// and `data`. Fails if the shipped file no longer has what is rendered.
pub fn render_single(text: &str, etc: &Path, data: &Path) -> Result<String> {
    let replacements = [
        ("listen: 0.0.0.0:4222", "listen: 127.0.0.1:-1".to_owned()),
        ("http: 127.0.0.1:8222", "http: 127.0.0.1:-1".to_owned()),
        ("\"/etc/nats/", format!("\"{}/", etc.display())),
        (
            "store_dir: \"/data\"",
            format!("store_dir: \"{}\"", data.display()),
        ),
    ];
    let mut out = text.to_owned();
    for (from, to) in replacements {
        if !out.contains(from) {
            bail!(
                "deploy/nats/single.conf no longer contains {from:?}; update tests/src/secure.rs"
            );
        }
        out = out.replace(from, &to);
    }
    Ok(out)
}

/// Nodes of the shipped cluster config (`deploy/nats/cluster.conf`) on loopback: the same TLS
/// (client CA for clients, server CA and route certificates for routes), route password,
/// users and JetStream settings; only names, ports and paths are rendered.
#[derive(Debug)]
pub struct SecureClusterNodes {
    pub nodes: Vec<NatsServer>,
    /// (data dir, config) of the nodes not started yet (`start_first`).
    waiting: Vec<(PathBuf, PathBuf)>,
    /// The route port of each node, in the order of `nodes`.
    pub route_ports: Vec<u16>,
    pub etc: PathBuf,
    pub secrets: PathBuf,
    /// The route password from `secrets/route.conf`.
    pub route_password: String,
}

/// `[nats]` TOML keys of `identity` with the secrets of `scripts/dev-certs.sh` in `secrets`.
fn identity_toml(secrets: &Path, identity: &str, role: Role) -> String {
    let path = |p: PathBuf| quote(&p.display().to_string());
    let tls = secrets.join("tls");
    format!(
        "nkey = {}\ninbox_prefix = {}\ntls = {{ ca = {}, cert = {}, key = {} }}\n",
        path(secrets.join("nkeys").join(format!("{identity}.nk"))),
        quote(&format!("_INBOX.{identity}")),
        path(tls.join("ca.pem")),
        path(tls.join(format!("{}.pem", role.cert_name()))),
        path(tls.join(format!("{}-key.pem", role.cert_name()))),
    )
}

/// Route credentials for `n` nodes on loopback: the password of `secrets/route.conf` and `n`
/// free route ports, written as `<etc>/route-test.conf` (`ROUTE_PASSWORD`, `ROUTES`), which a
/// rendered cluster config includes instead of `secrets/route.conf`.
pub fn loopback_routes(etc: &Path, secrets: &Path, n: usize) -> Result<(String, Vec<u16>)> {
    let route_conf = std::fs::read_to_string(secrets.join("route.conf"))
        .context("dev-certs.sh wrote no route.conf")?;
    let password = route_conf
        .lines()
        .find_map(|l| l.strip_prefix("ROUTE_PASSWORD = "))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .context("route.conf has no ROUTE_PASSWORD")?;
    let ports = (0..n).map(|_| free_port()).collect::<Result<Vec<u16>>>()?;
    let routes = ports
        .iter()
        .map(|p| format!("\"nats-route://route:{password}@127.0.0.1:{p}\""))
        .collect::<Vec<_>>()
        .join(", ");
    std::fs::write(
        etc.join("route-test.conf"),
        format!("ROUTE_PASSWORD = \"{password}\"\nROUTES = [ {routes} ]\n"),
    )?;
    Ok((password, ports))
}

/// opsctl flags of operator `user` with `nkey_of`'s seed and the operator certificate, from the
/// secrets of `scripts/dev-certs.sh` in `secrets`.
pub fn operator_args(secrets: &Path, user: &str, nkey_of: &str) -> Vec<String> {
    let path = |p: PathBuf| p.display().to_string();
    let tls = secrets.join("tls");
    vec![
        "--nkey".into(),
        path(secrets.join("nkeys").join(format!("{nkey_of}.nk"))),
        "--operator".into(),
        user.into(),
        "--tls-ca".into(),
        path(tls.join("ca.pem")),
        "--tls-cert".into(),
        path(tls.join("operator.pem")),
        "--tls-key".into(),
        path(tls.join("operator-key.pem")),
    ]
}

/// A free loopback TCP port (bound and released; fine for a test's own servers).
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("cannot bind 127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

impl SecureClusterNodes {
    /// Renders `cluster.conf` once per name into `<dir>/etc/nats/<name>.conf` with routes to
    /// every other node and starts them all.
    pub async fn start(dir: &Path, names: &[&str]) -> Result<SecureClusterNodes> {
        Self::start_first(dir, names, names.len()).await
    }

    /// Starts the nodes held back by `start_first`, in order.
    pub async fn start_waiting(&mut self) -> Result<()> {
        for (node_dir, config) in std::mem::take(&mut self.waiting) {
            self.nodes
                .push(NatsServer::start_with_config(&node_dir, &config).await?);
        }
        Ok(())
    }

    /// The `[nats]` TOML keys of `identity` (nkey, inbox prefix, TLS with the role's client
    /// certificate) on these nodes.
    pub fn nats_toml(&self, identity: &str, role: Role) -> String {
        identity_toml(&self.secrets, identity, role)
    }

    /// Like `start`, but starts only the first `n` nodes; `start_waiting` starts the rest.
    pub async fn start_first(dir: &Path, names: &[&str], n: usize) -> Result<SecureClusterNodes> {
        let shipped = repo_root().join("deploy/nats");
        let etc = dir.join("etc/nats");
        std::fs::create_dir_all(&etc)
            .with_context(|| format!("cannot create {}", etc.display()))?;
        let secrets = etc.join("secrets");
        generate_secrets(&secrets)?;
        std::fs::copy(shipped.join("auth.conf"), etc.join("auth.conf"))
            .context("cannot copy auth.conf")?;
        let (route_password, route_ports) = loopback_routes(&etc, &secrets, names.len())?;
        let text = std::fs::read_to_string(shipped.join("cluster.conf"))
            .context("cannot read cluster.conf")?;
        let (mut nodes, mut waiting) = (Vec::new(), Vec::new());
        for (name, port) in names.iter().zip(&route_ports) {
            let node_dir = dir.join(name);
            std::fs::create_dir_all(&node_dir)?;
            let replacements = [
                ("server_name: $SERVER_NAME", format!("server_name: {name}")),
                ("listen: 0.0.0.0:4222", "listen: 127.0.0.1:-1".to_owned()),
                ("http: 127.0.0.1:8222", "http: 127.0.0.1:-1".to_owned()),
                ("listen: 0.0.0.0:6222", format!("listen: 127.0.0.1:{port}")),
                // The same password, the routes on this test's loopback ports.
                (
                    "include \"secrets/route.conf\"",
                    "include \"route-test.conf\"".to_owned(),
                ),
                ("\"/etc/nats/", format!("\"{}/", etc.display())),
                (
                    "store_dir: \"/data\"",
                    format!("store_dir: \"{}\"", node_dir.join("data").display()),
                ),
            ];
            let mut out = text.clone();
            for (from, to) in replacements {
                if !out.contains(from) {
                    bail!("deploy/nats/cluster.conf no longer contains {from:?}; update tests/src/secure.rs");
                }
                out = out.replace(from, &to);
            }
            let config = etc.join(format!("{name}.conf"));
            std::fs::write(&config, out)?;
            if nodes.len() < n {
                nodes.push(NatsServer::start_with_config(&node_dir, &config).await?);
            } else {
                waiting.push((node_dir, config));
            }
        }
        Ok(SecureClusterNodes {
            nodes,
            waiting,
            route_ports,
            etc,
            secrets,
            route_password,
        })
    }
}
