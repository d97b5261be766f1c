//! Kubernetes and image build assets beyond their cross-references (those are in
//! `deploy_assets.rs`): every manifest passes `kubernetes-validate --strict` (PyPI, installed
//! into .tools/venv by the test), the workloads survive a node drain (resources, disruption
//! budgets, topology spread, startup probe, lame-duck stop, network policies), the NATS
//! servers' JetStream limits fit their volume, the Dockerfile's toolchain is the workspace's
//! real minimum Rust, and `.dockerignore` keeps build output and secrets out of the context.
//! `lame_duck.rs` runs the Kubernetes NATS config on three real servers and stops one the
//! way the StatefulSet does.

#[path = "k8s_manifests/lame_duck.rs"]
mod lame_duck;
#[path = "k8s_manifests/support.rs"]
mod support;

use anyhow::{ensure, Context, Result};
use opsfleet_tests::secure::repo_root;
use serde_yaml_ng::Value;
use support::{
    k8s_dir, kubernetes_validate, kustomize_resources, named, nats_size, nats_value, quantity,
    read, rendered_docs, seconds, validate, version,
};

/// The workspace's `rust-version` is the highest `rust-version` of any package built for Linux
/// (from `cargo metadata`, so a dependency bump that raises it fails here), and the Dockerfile
/// builds with exactly that toolchain.
#[test]
fn rust_version_is_the_locked_minimum_and_the_dockerfile_uses_it() -> Result<()> {
    let root = repo_root();
    let out = std::process::Command::new(std::env::var("CARGO").unwrap_or("cargo".into()))
        .current_dir(&root)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--locked",
            "--offline",
            "--filter-platform",
            "x86_64-unknown-linux-gnu",
        ])
        .output()
        .context("cannot run cargo metadata")?;
    ensure!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let resolved: std::collections::BTreeSet<&str> = meta["resolve"]["nodes"]
        .as_array()
        .context("no resolve graph")?
        .iter()
        .filter_map(|n| n["id"].as_str())
        .collect();
    let workspace: std::collections::BTreeSet<&str> = meta["workspace_members"]
        .as_array()
        .context("no workspace members")?
        .iter()
        .filter_map(|m| m.as_str())
        .collect();
    let mut highest = ((0, 0, 0), String::new());
    for p in meta["packages"].as_array().context("no packages")? {
        let id = p["id"].as_str().unwrap_or_default();
        if !resolved.contains(id) || workspace.contains(id) {
            continue;
        }
        if let Some(rv) = p["rust_version"].as_str() {
            let v = version(rv).with_context(|| format!("{id}: rust_version {rv}"))?;
            if v > highest.0 {
                highest = (v, format!("{} {}", p["name"], p["version"]));
            }
        }
    }
    let (want, by) = highest;
    let cargo_toml: toml::Value = toml::from_str(&read(&root.join("Cargo.toml"))?)?;
    let declared = cargo_toml["workspace"]["package"]["rust-version"]
        .as_str()
        .context("no workspace rust-version")?;
    ensure!(
        version(declared) == Some(want),
        "Cargo.toml rust-version {declared}, but {by} needs {want:?}"
    );
    let dockerfile = read(&root.join("deploy/docker/Dockerfile"))?;
    let from = format!("FROM rust:{declared}-");
    ensure!(
        dockerfile.lines().any(|l| l.starts_with(&from)),
        "deploy/docker/Dockerfile does not build with rust:{declared}"
    );
    Ok(())
}

#[test]
fn dockerignore_keeps_build_output_and_secrets_out() -> Result<()> {
    let text = read(&repo_root().join(".dockerignore"))?;
    let entries: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_end_matches('/'))
        .collect();
    for want in ["target", "deploy/secrets", ".cluster", ".tools", ".git"] {
        ensure!(entries.contains(&want), ".dockerignore lacks {want}");
    }
    Ok(())
}

/// `kubernetes-validate --strict` on every manifest file and on the kustomize output, against
/// the newest schema the tool knows and an older 1.30 cluster; a manifest with a misspelt
/// field fails (the check is strict, not a no-op).
#[test]
fn every_manifest_passes_kubernetes_validate_strict() -> Result<()> {
    let Some(tool) = kubernetes_validate()? else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let (text, docs) = rendered_docs()?;
    let rendered = dir.path().join("rendered.yaml");
    std::fs::write(&rendered, &text)?;
    let mut files = kustomize_resources()?;
    files.push(rendered);
    for version in [None, Some("1.30.0")] {
        let out = validate(&tool, version, &files)?;
        ensure!(
            out.status.success(),
            "kubernetes-validate --strict {version:?} refuses the manifests:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    ensure!(docs.len() >= 16, "only {} documents rendered", docs.len());
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        text.replace(
            "terminationGracePeriodSeconds:",
            "terminationGracePeriodSecond:",
        ),
    )?;
    let out = validate(&tool, None, &[bad])?;
    ensure!(
        !out.status.success(),
        "kubernetes-validate --strict accepted a misspelt field"
    );
    Ok(())
}

/// What a node drain and a slow start need: resources on every container, a disruption budget
/// per quorum, spread over nodes, a startup probe and a lame-duck stop that fits the grace
/// period, and network policies that let exactly the opsfleet pods in.
#[test]
fn workloads_survive_a_node_drain() -> Result<()> {
    let (_, docs) = rendered_docs()?;
    let workloads: Vec<&Value> = docs
        .iter()
        .filter(|d| {
            matches!(
                d["kind"].as_str(),
                Some("Deployment" | "StatefulSet" | "DaemonSet")
            )
        })
        .collect();
    ensure!(workloads.len() == 4, "workloads: {}", workloads.len());
    for w in &workloads {
        let name = w["metadata"]["name"].as_str().unwrap_or("?");
        let pod = &w["spec"]["template"];
        ensure!(
            pod["metadata"]["labels"]["app.kubernetes.io/part-of"].as_str() == Some("opsfleet"),
            "{name}: pods lack app.kubernetes.io/part-of=opsfleet (the NATS client port's policy)"
        );
        for c in pod["spec"]["containers"]
            .as_sequence()
            .context("containers")?
        {
            let r = &c["resources"];
            for (section, key) in [
                ("requests", "cpu"),
                ("requests", "memory"),
                ("limits", "cpu"),
                ("limits", "memory"),
            ] {
                quantity(&r[section][key])
                    .with_context(|| format!("{name}: resources.{section}.{key}"))?;
            }
            ensure!(
                quantity(&r["limits"]["memory"])? >= quantity(&r["requests"]["memory"])?,
                "{name}: memory limit below request"
            );
        }
        if w["kind"].as_str() != Some("DaemonSet") {
            let app = pod["metadata"]["labels"]["app"]
                .as_str()
                .context("app label")?;
            let spread = pod["spec"]["topologySpreadConstraints"]
                .as_sequence()
                .with_context(|| format!("{name}: no topologySpreadConstraints"))?;
            ensure!(
                spread.iter().any(|t| {
                    t["topologyKey"].as_str() == Some("kubernetes.io/hostname")
                        && t["whenUnsatisfiable"].as_str() == Some("DoNotSchedule")
                        && t["maxSkew"].as_u64() == Some(1)
                        && t["labelSelector"]["matchLabels"]["app"].as_str() == Some(app)
                }),
                "{name}: no hard spread over nodes for app={app}"
            );
        }
    }
    for (pdb, app, min) in [("nats", "nats", 2), ("coordinators", "coordinator", 1)] {
        let d = named(&docs, "PodDisruptionBudget", pdb)?;
        ensure!(
            d["spec"]["minAvailable"].as_u64() == Some(min),
            "PDB {pdb}: minAvailable"
        );
        ensure!(
            d["spec"]["selector"]["matchLabels"]["app"].as_str() == Some(app),
            "PDB {pdb}: selector"
        );
    }
    ensure!(
        named(&docs, "StatefulSet", "nats")?["spec"]["replicas"].as_u64() == Some(3),
        "3 NATS replicas"
    );

    // NATS: startup probe, lame duck within the grace period.
    let nats = named(&docs, "StatefulSet", "nats")?;
    let pod = &nats["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    let startup = &c["startupProbe"];
    let budget = startup["periodSeconds"].as_u64().unwrap_or(10)
        * startup["failureThreshold"].as_u64().unwrap_or(3);
    ensure!(
        budget >= 300 && startup["tcpSocket"]["port"].as_str() == Some("client"),
        "NATS startup probe allows {budget}s on the client port; JetStream recovery needs minutes"
    );
    let pre_stop: Vec<&str> = c["lifecycle"]["preStop"]["exec"]["command"]
        .as_sequence()
        .context("NATS has no preStop exec")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    ensure!(
        pre_stop == ["/usr/local/bin/nats-server", "--signal", "ldm=1"],
        "NATS preStop: {pre_stop:?}"
    );
    for image_file in [
        "deploy/docker/Dockerfile.nats",
        "deploy/docker/build-local.sh",
    ] {
        ensure!(
            read(&repo_root().join(image_file))?.contains("/usr/local/bin/nats-server"),
            "{image_file}: nats-server is not at /usr/local/bin/nats-server (the preStop path)"
        );
    }
    let conf = named(&docs, "ConfigMap", "nats-config")?["data"]["nats.conf"]
        .as_str()
        .context("nats.conf")?;
    let ldm = seconds(nats_value(conf, "lame_duck_duration").context("lame_duck_duration")?)?
        + seconds(nats_value(conf, "lame_duck_grace_period").context("lame_duck_grace_period")?)?;
    let grace = pod["terminationGracePeriodSeconds"]
        .as_u64()
        .context("grace")?;
    ensure!(
        ldm + 10 <= grace,
        "lame duck takes {ldm}s, the pod gets {grace}s"
    );

    // Network policies.
    let policy = named(&docs, "NetworkPolicy", "nats")?;
    let rules = policy["spec"]["ingress"].as_sequence().context("ingress")?;
    let from_for = |port: u64| -> Vec<&Value> {
        rules
            .iter()
            .filter(|r| {
                r["ports"]
                    .as_sequence()
                    .into_iter()
                    .flatten()
                    .any(|p| p["port"].as_u64() == Some(port))
            })
            .flat_map(|r| r["from"].as_sequence().into_iter().flatten())
            .collect()
    };
    let client = from_for(4222);
    ensure!(
        client.len() == 1
            && client[0]["podSelector"]["matchLabels"]["app.kubernetes.io/part-of"].as_str()
                == Some("opsfleet")
            && client[0]["namespaceSelector"].is_null(),
        "NATS client port: only opsfleet pods of the namespace, found {client:?}"
    );
    let routes = from_for(6222);
    ensure!(
        routes.len() == 1
            && routes[0]["podSelector"]["matchLabels"]["app"].as_str() == Some("nats"),
        "NATS route port: only NATS pods, found {routes:?}"
    );
    ensure!(
        rules.len() == 2,
        "NATS policy opens more than the two ports"
    );
    for (policy, app, port) in [
        ("coordinators", "coordinator", 9465),
        ("agents", "ops-agent", 9464),
    ] {
        let p = named(&docs, "NetworkPolicy", policy)?;
        ensure!(
            p["spec"]["podSelector"]["matchLabels"]["app"].as_str() == Some(app),
            "policy {policy}: selector"
        );
        let ports: Vec<u64> = p["spec"]["ingress"]
            .as_sequence()
            .into_iter()
            .flatten()
            .flat_map(|r| r["ports"].as_sequence().into_iter().flatten())
            .filter_map(|p| p["port"].as_u64())
            .collect();
        ensure!(ports == [port], "policy {policy}: ports {ports:?}");
    }

    // Registry users re-point images through kustomize.
    let k: Value = serde_yaml_ng::from_str(&read(&k8s_dir().join("kustomization.yaml"))?)?;
    let images: Vec<&str> = k["images"]
        .as_sequence()
        .context("kustomization has no images:")?
        .iter()
        .filter_map(|i| i["name"].as_str())
        .collect();
    ensure!(
        images == ["opsfleet", "opsfleet-nats"],
        "kustomize images: {images:?}"
    );
    Ok(())
}

/// Every shipped NATS config bounds JetStream: file store within the 10Gi volume with
/// headroom, at least the events stream's reservation (1 GiB) plus room for the others, and a
/// small memory store.
#[test]
fn jetstream_limits_fit_the_volume() -> Result<()> {
    let (_, docs) = rendered_docs()?;
    let k8s = named(&docs, "ConfigMap", "nats-config")?["data"]["nats.conf"]
        .as_str()
        .context("nats.conf")?
        .to_owned();
    let volume = quantity(
        &named(&docs, "StatefulSet", "nats")?["spec"]["volumeClaimTemplates"][0]["spec"]
            ["resources"]["requests"]["storage"],
    )? as u64;
    let events_max_bytes = 1u64 << 30;
    for (what, conf) in [
        ("deploy/k8s nats.conf", k8s),
        (
            "deploy/nats/cluster.conf",
            read(&repo_root().join("deploy/nats/cluster.conf"))?,
        ),
        (
            "deploy/nats/single.conf",
            read(&repo_root().join("deploy/nats/single.conf"))?,
        ),
    ] {
        let file = nats_size(
            nats_value(&conf, "max_file_store")
                .with_context(|| format!("{what}: no max_file_store"))?,
        )?;
        let memory = nats_size(
            nats_value(&conf, "max_memory_store")
                .with_context(|| format!("{what}: no max_memory_store"))?,
        )?;
        ensure!(
            file * 100 <= volume * 85,
            "{what}: max_file_store {file} leaves under 15% of the {volume}-byte volume"
        );
        ensure!(
            file >= 4 * events_max_bytes,
            "{what}: max_file_store {file} is tight for OPS_EVENTS' {events_max_bytes} reservation"
        );
        ensure!(memory <= 512 << 20, "{what}: max_memory_store {memory}");
    }
    Ok(())
}
