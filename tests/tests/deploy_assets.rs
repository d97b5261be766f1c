//! The deployment assets are consistent: the compose file and the Kubernetes manifests parse,
//! use only images `deploy/docker/build-local.sh` builds, mount only files, volumes, config
//! maps and secret keys that exist, probe /healthz and /readyz on the port the config listens
//! on, carry configs the real binaries accept (`--check-config`), and keep the shipped
//! durability and TLS settings; the systemd units stop within 30 s and are hardened.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use opsfleet_tests::bins;
use opsfleet_tests::secure::{generate_secrets, repo_root};
use serde_yaml_ng::Value;

fn deploy() -> PathBuf {
    repo_root().join("deploy")
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// `${VAR:-default}` → `default` (what compose uses when VAR is unset).
fn expand_default(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return out;
        };
        let inner = &after[..end];
        out.push_str(inner.split_once(":-").map_or("", |(_, d)| d));
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

fn str_of<'a>(v: &'a Value, what: &str) -> Result<&'a str> {
    v.as_str()
        .with_context(|| format!("{what} is not a string: {v:?}"))
}

/// The images build-local.sh produces with its default tag.
fn local_images() -> Result<BTreeSet<String>> {
    let script = read(&deploy().join("docker/build-local.sh"))?;
    ensure!(
        script.contains("\ntag=local\n"),
        "build-local.sh's default tag is not `local`"
    );
    let mut images = BTreeSet::new();
    for name in ["opsfleet", "opsfleet-nats"] {
        ensure!(
            script.contains(&format!("-t \"{name}:$tag\"")),
            "build-local.sh does not build {name}"
        );
        images.insert(format!("{name}:local"));
    }
    Ok(images)
}

/// Runs the binary's `--check-config` on `text` written to a temp file.
fn check_config(bin: &str, text: &str, what: &str) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text)?;
    let out = std::process::Command::new(bins::bin(bin)?)
        .args(["--config"])
        .arg(&path)
        .arg("--check-config")
        .output()?;
    ensure!(
        out.status.success(),
        "{what}: {bin} --check-config refuses it:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

fn check_config_for(entrypoint: &str, text: &str, what: &str) -> Result<()> {
    if entrypoint.ends_with("ops-agent") {
        check_config(bins::AGENT, text, what)
    } else if entrypoint.ends_with("ops-coordinator") {
        check_config(bins::COORDINATOR, text, what)
    } else {
        bail!("{what}: unknown entrypoint {entrypoint}")
    }
}

/// The port of `[http] listen` in a TOML config.
fn http_port(toml_text: &str, what: &str) -> Result<u16> {
    let v: toml::Value =
        toml::from_str(toml_text).with_context(|| format!("{what} is not TOML"))?;
    let listen = v
        .get("http")
        .and_then(|h| h.get("listen"))
        .and_then(|l| l.as_str())
        .with_context(|| format!("{what} has no [http] listen (probes need it)"))?;
    let addr: std::net::SocketAddr = listen.parse()?;
    Ok(addr.port())
}

#[test]
fn nats_configs_keep_durability_and_tls() -> Result<()> {
    for file in ["nats/cluster.conf", "nats/single.conf"] {
        let text = read(&deploy().join(file))?;
        for want in [
            "sync_interval: always",
            "verify: true",
            "include \"auth.conf\"",
        ] {
            ensure!(text.contains(want), "{file} lacks {want:?}");
        }
    }
    let auth = read(&deploy().join("nats/auth.conf"))?;
    ensure!(
        auth.contains("include \"secrets/nkeys.conf\""),
        "auth.conf does not include the keys"
    );
    ensure!(
        !auth.contains("password"),
        "auth.conf must not hold passwords"
    );
    Ok(())
}

#[test]
fn compose_file_references_what_exists() -> Result<()> {
    let dir = deploy();
    let mut doc: Value = serde_yaml_ng::from_str(&read(&dir.join("compose.yaml"))?)?;
    // Services extend the x-nats / x-opsfleet templates with `<<:` merge keys.
    doc.apply_merge().context("compose merge keys")?;
    let images = local_images()?;
    let services = doc["services"].as_mapping().context("no services")?;
    let names: BTreeSet<&str> = services.keys().filter_map(Value::as_str).collect();
    let want: BTreeSet<&str> = [
        "nats-1",
        "nats-2",
        "nats-3",
        "coordinator-blue",
        "coordinator-green",
        "agent-web-01",
        "agent-web-02",
        "agent-db-01",
    ]
    .into();
    ensure!(names == want, "compose services: {names:?}");
    let declared: BTreeSet<&str> = doc["volumes"]
        .as_mapping()
        .context("no named volumes")?
        .keys()
        .filter_map(Value::as_str)
        .collect();
    let secrets_default = read(&repo_root().join("scripts/dev-certs.sh"))?;
    ensure!(
        secrets_default.contains("out=\"deploy/secrets\""),
        "dev-certs.sh default changed"
    );
    let fresh = tempfile::tempdir()?;
    generate_secrets(fresh.path())?;
    let mut used = BTreeSet::new();
    for (name, svc) in services {
        let name = str_of(name, "service name")?;
        let image = expand_default(str_of(&svc["image"], "image")?);
        ensure!(
            images.contains(&image),
            "{name}: image {image} is not built locally"
        );
        ensure!(
            svc["stop_grace_period"].as_str() == Some("30s"),
            "{name}: stop grace"
        );
        let mut config = None;
        for mount in svc["volumes"].as_sequence().context("no volumes")? {
            let spec = expand_default(str_of(mount, "volume")?);
            let (source, target) = spec.split_once(':').context("volume without target")?;
            let target = target.trim_end_matches(":ro");
            if source.starts_with("./") {
                let path = dir.join(source);
                if let Some(file) = source.strip_prefix("./secrets/") {
                    // scripts/dev-certs.sh output: the file exists there, and a service gets
                    // only what it needs: no CA key, no seed but its own.
                    ensure!(
                        fresh.path().join(file).exists(),
                        "{name}: mounts {file}, which dev-certs.sh does not make"
                    );
                    ensure!(
                        !file.ends_with("ca-key.pem"),
                        "{name}: mounts a CA key ({file})"
                    );
                    if let Some(seed) = file.strip_prefix("nkeys/") {
                        let own = name.rsplit_once('-').map_or(name, |(_, n)| n);
                        let own = if name.starts_with("agent-") {
                            name.trim_start_matches("agent-")
                        } else {
                            own
                        };
                        ensure!(
                            seed == format!("{own}.nk"),
                            "{name}: mounts another identity's seed ({file})"
                        );
                    }
                    continue;
                }
                ensure!(
                    source != "./secrets",
                    "{name}: mounts the whole secrets directory"
                );
                ensure!(path.exists(), "{name}: {} does not exist", path.display());
                if target.ends_with(".toml") {
                    config = Some(read(&path)?);
                }
            } else {
                ensure!(
                    declared.contains(source),
                    "{name}: volume {source} not declared"
                );
                used.insert(source.to_owned());
            }
        }
        if let Some(entry) = svc["entrypoint"].as_sequence() {
            let bin = str_of(&entry[0], "entrypoint")?;
            let text = config.with_context(|| format!("{name}: no config file mounted"))?;
            check_config_for(bin, &text, name)?;
        }
    }
    let declared: BTreeSet<String> = declared.into_iter().map(str::to_owned).collect();
    ensure!(
        used == declared,
        "declared but unused volumes: {:?}",
        declared.difference(&used)
    );
    Ok(())
}

/// Config maps and secrets the startup runbook creates from repository files:
/// `kubectl ... create configmap|secret generic NAME --from-file=KEY=PATH ...`, as
/// name -> [(key, path)]. Paths under `deploy/secrets/` (generated, not in git) are looked up
/// in `secrets`, a fresh `scripts/dev-certs.sh` output.
fn created_by_runbook(secrets: &Path) -> Result<BTreeMap<String, Vec<(String, PathBuf)>>> {
    let runbook = read(&repo_root().join("docs/runbooks/startup-checklist.md"))?;
    let mut out = BTreeMap::new();
    for line in runbook.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some(i) = words.iter().position(|w| *w == "create") else {
            continue;
        };
        let name = match words.get(i + 1) {
            Some(&"configmap") => words.get(i + 2),
            Some(&"secret") => words.get(i + 3),
            _ => continue,
        };
        let Some(name) = name else { continue };
        let mut files = Vec::new();
        for spec in words.iter().filter_map(|w| w.strip_prefix("--from-file=")) {
            let (key, path) = spec.split_once('=').with_context(|| {
                format!("{name}: give every --from-file an explicit key: {spec}")
            })?;
            let path = match path.strip_prefix("deploy/secrets/") {
                Some(rest) => secrets.join(rest),
                None => repo_root().join(path),
            };
            files.push((key.to_owned(), path));
        }
        out.insert((*name).to_owned(), files);
    }
    Ok(out)
}

#[test]
fn k8s_manifests_reference_what_exists() -> Result<()> {
    let dir = deploy().join("k8s");
    let images = local_images()?;
    let kustomization: Value = serde_yaml_ng::from_str(&read(&dir.join("kustomization.yaml"))?)?;
    let mut docs = Vec::new();
    for file in kustomization["resources"]
        .as_sequence()
        .context("no resources")?
    {
        let file = str_of(file, "resource")?;
        let text = read(&dir.join(file))?;
        for d in serde_yaml_ng::Deserializer::from_str(&text) {
            let v = Value::deserialize(d).with_context(|| format!("{file} does not parse"))?;
            if !v.is_null() {
                docs.push((file.to_owned(), v));
            }
        }
    }
    let kind_names = |kind: &str| -> BTreeSet<String> {
        docs.iter()
            .filter(|(_, d)| d["kind"].as_str() == Some(kind))
            .filter_map(|(_, d)| d["metadata"]["name"].as_str().map(str::to_owned))
            .collect()
    };
    let config_maps: BTreeMap<String, Value> = docs
        .iter()
        .filter(|(_, d)| d["kind"].as_str() == Some("ConfigMap"))
        .filter_map(|(_, d)| {
            Some((
                d["metadata"]["name"].as_str()?.to_owned(),
                d["data"].clone(),
            ))
        })
        .collect();
    let claims = kind_names("PersistentVolumeClaim");
    let tmp = tempfile::tempdir()?;
    generate_secrets(tmp.path())?;
    let runbook = created_by_runbook(tmp.path())?;
    for (name, files) in &runbook {
        ensure!(!files.is_empty(), "runbook creates {name} from no file");
        for (_, f) in files {
            ensure!(
                f.exists(),
                "runbook creates {name} from missing {}",
                f.display()
            );
        }
    }
    let secret_keys: BTreeSet<&str> = runbook
        .get("opsfleet-secrets")
        .context("the runbook does not create opsfleet-secrets")?
        .iter()
        .map(|(k, _)| k.as_str())
        .collect();
    ensure!(
        !secret_keys.iter().any(|k| k.ends_with("ca-key.pem")
            || ["alice.nk", "bob.nk", "carol.nk", "vera.nk"].contains(k)
            || ["web-01.nk", "web-02.nk", "db-01.nk"].contains(k)),
        "opsfleet-secrets must not hold a CA key, operator seeds or agent seeds"
    );

    let mut workloads = 0;
    for (file, d) in &docs {
        let kind = d["kind"].as_str().unwrap_or_default();
        if !matches!(kind, "Deployment" | "StatefulSet" | "DaemonSet") {
            continue;
        }
        workloads += 1;
        let name = format!(
            "{file}: {kind} {}",
            d["metadata"]["name"].as_str().unwrap_or("?")
        );
        let pod = &d["spec"]["template"]["spec"];
        // NATS stops in lame duck mode (10 s grace + 30 s, see k8s_manifests.rs); the others
        // within 30 s like everywhere else.
        let grace = if kind == "StatefulSet" { 60 } else { 30 };
        ensure!(
            pod["terminationGracePeriodSeconds"].as_u64() == Some(grace),
            "{name}: grace period"
        );
        let mut volumes: BTreeMap<String, Value> = BTreeMap::new();
        for v in pod["volumes"].as_sequence().context("no volumes")? {
            volumes.insert(str_of(&v["name"], "volume name")?.to_owned(), v.clone());
        }
        for t in d["spec"]["volumeClaimTemplates"]
            .as_sequence()
            .into_iter()
            .flatten()
        {
            volumes.insert(
                str_of(&t["metadata"]["name"], "claim template")?.to_owned(),
                t.clone(),
            );
        }
        for (vname, v) in &volumes {
            if let Some(cm) = v["configMap"]["name"].as_str() {
                ensure!(
                    config_maps.contains_key(cm) || runbook.contains_key(cm),
                    "{name}: config map {cm} is neither defined nor created by the runbook"
                );
            }
            if let Some(secret) = v["secret"]["secretName"].as_str() {
                ensure!(
                    runbook.contains_key(secret),
                    "{name}: secret {secret} is never created"
                );
                let seeds: Vec<&str> = v["secret"]["items"]
                    .as_sequence()
                    .into_iter()
                    .flatten()
                    .filter_map(|i| i["key"].as_str())
                    .filter(|k| k.ends_with(".nk"))
                    .collect();
                ensure!(
                    seeds.len() <= 1,
                    "{name}: a pod may see one nkey seed (its own), not {seeds:?}"
                );
                for item in v["secret"]["items"].as_sequence().into_iter().flatten() {
                    let key = str_of(&item["key"], "secret key")?;
                    ensure!(
                        secret_keys.contains(key),
                        "{name}: secret key {key} is not in the secret"
                    );
                }
            }
            if let Some(claim) = v["persistentVolumeClaim"]["claimName"].as_str() {
                ensure!(claims.contains(claim), "{name}: claim {claim} not defined");
            }
            let _ = vname;
        }
        for c in pod["containers"].as_sequence().context("no containers")? {
            let image = str_of(&c["image"], "image")?;
            ensure!(
                images.contains(image),
                "{name}: image {image} is not built locally"
            );
            let mut mounted = BTreeSet::new();
            let mut config_text = None;
            for m in c["volumeMounts"].as_sequence().context("no mounts")? {
                let vname = str_of(&m["name"], "mount")?;
                let vol = volumes
                    .get(vname)
                    .with_context(|| format!("{name}: mount of undeclared volume {vname}"))?;
                mounted.insert(vname.to_owned());
                if let (Some(sub), Some(cm)) =
                    (m["subPath"].as_str(), vol["configMap"]["name"].as_str())
                {
                    if let Some(data) = config_maps.get(cm) {
                        let text = data[sub]
                            .as_str()
                            .with_context(|| format!("{name}: {cm} has no key {sub}"))?;
                        if sub.ends_with(".toml") {
                            config_text = Some(text.to_owned());
                        }
                    }
                }
            }
            ensure!(
                mounted == volumes.keys().cloned().collect::<BTreeSet<_>>(),
                "{name}: declared volumes not mounted"
            );
            let ports: BTreeMap<String, u64> = c["ports"]
                .as_sequence()
                .into_iter()
                .flatten()
                .filter_map(|p| {
                    Some((p["name"].as_str()?.to_owned(), p["containerPort"].as_u64()?))
                })
                .collect();
            let live = &c["livenessProbe"]["httpGet"];
            let ready = &c["readinessProbe"]["httpGet"];
            // NATS is probed on its client port (its monitoring is loopback-only).
            let probe_port = |p: &str| {
                let probe = &c[p];
                if probe["httpGet"].is_mapping() {
                    &probe["httpGet"]["port"]
                } else {
                    &probe["tcpSocket"]["port"]
                }
            };
            for probe in [probe_port("livenessProbe"), probe_port("readinessProbe")] {
                let port = str_of(probe, "probe port")?;
                ensure!(
                    ports.contains_key(port),
                    "{name}: probe on undeclared port {port}"
                );
            }
            let cmd = c["command"].as_sequence();
            if let Some(cmd) = cmd {
                ensure!(
                    live["path"].as_str() == Some("/healthz")
                        && ready["path"].as_str() == Some("/readyz"),
                    "{name}: probes must be /healthz and /readyz"
                );
                let bin = str_of(&cmd[0], "command")?;
                let texts: Vec<String> = match config_text {
                    Some(t) => vec![t],
                    // The DaemonSet reads <node>.toml from the whole map.
                    None => {
                        let cm = volumes
                            .values()
                            .find_map(|v| {
                                v["configMap"]["name"]
                                    .as_str()
                                    .filter(|n| config_maps.contains_key(*n))
                            })
                            .with_context(|| format!("{name}: no config map"))?;
                        config_maps[cm]
                            .as_mapping()
                            .context("config map data")?
                            .values()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    }
                };
                ensure!(!texts.is_empty(), "{name}: no configs");
                for t in &texts {
                    check_config_for(bin, t, &name)?;
                    let port = u64::from(http_port(t, &name)?);
                    ensure!(
                        ports.get("http") == Some(&port),
                        "{name}: http port differs from the config's"
                    );
                }
            } else {
                ensure!(
                    str_of(probe_port("livenessProbe"), "nats probe")? == "client"
                        && str_of(probe_port("readinessProbe"), "nats probe")? == "client",
                    "{name}: nats is probed on its client port (monitoring is loopback-only)"
                );
            }
        }
        if kind == "DaemonSet" {
            let host_paths: BTreeSet<&str> = volumes
                .values()
                .filter_map(|v| v["hostPath"]["path"].as_str())
                .collect();
            for p in ["/var/lib/opsfleet", "/var/log", "/var/backups/opsfleet"] {
                ensure!(host_paths.contains(p), "{name}: no host mount of {p}");
            }
        }
    }
    ensure!(
        workloads == 4,
        "expected nats, two coordinators and the agents, found {workloads}"
    );
    Ok(())
}

#[test]
fn systemd_example_configs_are_valid() -> Result<()> {
    let dir = deploy().join("systemd");
    check_config(
        bins::AGENT,
        &read(&dir.join("agent.toml"))?,
        "systemd/agent.toml",
    )?;
    let coordinator = read(&dir.join("coordinator.toml"))?;
    check_config(bins::COORDINATOR, &coordinator, "systemd/coordinator.toml")?;
    // The coordinator runs as its own static user and reads its secrets where
    // scripts/install-host.sh puts them (group-readable by that user only).
    let unit = read(&dir.join("ops-coordinator.service"))?;
    let install = read(&repo_root().join("scripts/install-host.sh"))?;
    ensure!(
        unit.contains("\nUser=opsfleet\n") && !unit.contains("DynamicUser=yes"),
        "ops-coordinator.service does not run as the static user opsfleet"
    );
    for path in [
        "/etc/opsfleet/secrets/nkeys/coordinator.nk",
        "/etc/opsfleet/secrets/tls/coordinator-key.pem",
    ] {
        ensure!(
            coordinator.contains(path),
            "coordinator.toml does not read {path}"
        );
        ensure!(
            install.contains(&format!("{path} 0640 root:opsfleet")),
            "install-host.sh does not install {path} as root:opsfleet 0640"
        );
    }
    Ok(())
}

#[test]
fn systemd_units_are_hardened_and_stop_within_30s() -> Result<()> {
    for unit in [
        "ops-agent.service",
        "ops-coordinator.service",
        "nats-server.service",
    ] {
        let text = read(&deploy().join("systemd").join(unit))?;
        for want in [
            "TimeoutStopSec=30s",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "[Install]",
        ] {
            ensure!(
                text.lines()
                    .any(|l| l.trim() == want || l.starts_with(want)),
                "{unit} lacks {want}"
            );
        }
    }
    Ok(())
}

use serde::Deserialize as _;
