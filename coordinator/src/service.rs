//! The running coordinator: opens the store, connects, ensures the topology, then runs ingest
//! and the API until cancelled.

use opsfleet_report::ErrorChain;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

use opsfleet_proto::pb;

use async_nats::jetstream::{self, kv};
use opsfleet_bus::{BusError, ConnectMode, Topology};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::CoordinatorConfig;
use crate::dispatch::Dispatcher;
use crate::election::ReleaseHandle;
use crate::emit::Emitter;
use crate::ingest;
use crate::state::{LoadError, Shared};
use crate::store::{SledStore, StoreError};
use crate::{api, election, store::EventStore};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot create data dir {path}")]
    DataDir {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(transparent)]
    Api(#[from] api::SubscribeError),
    #[error("cannot set up notifications")]
    Notify(#[from] crate::notify::NotifyError),
    #[error("cannot listen on {listen}")]
    Http {
        listen: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot set up TLS for the HTTP endpoint")]
    HttpTls(#[source] opsfleet_httpserve::HttpsError),
    #[error(transparent)]
    Console(#[from] crate::console::ConsoleError),
    #[error("cannot set up the HTTP endpoint's /metrics")]
    MetricsToken(#[source] crate::metrics::TokenError),
    #[error(
        "JetStream did not answer the topology requests within {waited:?} ({attempts} attempts)"
    )]
    TopologyTimeout {
        waited: Duration,
        attempts: u32,
        #[source]
        source: BusError,
    },
}

/// Creates or verifies the topology, waiting while JetStream is not ready: a fresh or
/// restarting cluster has no meta leader until a quorum of its nodes is up, and an R3 stream
/// needs three peers. Retries transient errors with capped, jittered exponential backoff
/// (backon) for `[topology] start_timeout`, logging each wait; fails at once on anything else
/// (a stream of another shape, a refused credential). `None` when cancelled meanwhile. Until
/// this returns, the HTTP endpoint is not up, so `/readyz` does not answer ready.
async fn wait_for_topology(
    js: &async_nats::jetstream::Context,
    cfg: &opsfleet_bus::TopologyConfig,
    cancel: &CancellationToken,
) -> Result<Option<opsfleet_bus::Topology>, RunError> {
    use backon::BackoffBuilder;
    let started = tokio::time::Instant::now();
    let mut delays = backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(10))
        .with_jitter()
        .without_max_times()
        .build();
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let error = match opsfleet_bus::ensure_topology(js, cfg).await {
            Ok(topology) => {
                if attempts > 1 {
                    info!(attempts, waited = ?started.elapsed(), "JetStream answered; topology ready");
                }
                return Ok(Some(topology));
            }
            Err(e) if e.is_transient() => e,
            Err(e) => return Err(e.into()),
        };
        let waited = started.elapsed();
        if waited >= cfg.start_timeout {
            return Err(RunError::TopologyTimeout {
                waited,
                attempts,
                source: error,
            });
        }
        let delay = delays.next().unwrap_or(Duration::from_secs(10));
        let cause = std::error::Error::source(&error).map(ToString::to_string);
        warn!(
            attempts,
            error = %ErrorChain(&error),
            cause = cause.as_deref().unwrap_or(""),
            retry_in = ?delay,
            waited = ?waited,
            "waiting for JetStream: no meta leader or too few peers yet (are a majority of the NATS nodes up?)"
        );
        tokio::select! {
            _ = cancel.cancelled() => return Ok(None),
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// Runs the coordinator until `cancel` fires; returns after the in-flight batch is persisted.
pub async fn run(cfg: CoordinatorConfig, cancel: CancellationToken) -> Result<(), RunError> {
    let store = open_store(&cfg)?;

    let client = opsfleet_bus::connect(
        &cfg.nats,
        &format!("ops-coordinator {}", cfg.name),
        ConnectMode::FailFast,
    )
    .await?;
    let js = opsfleet_bus::jetstream(client.clone(), &cfg.nats);
    let Some(topology) = wait_for_topology(&js, &cfg.topology, &cancel).await? else {
        return Ok(());
    };
    let leader = lease_bucket(&cfg).await?;

    let Started {
        shared,
        emitter,
        release,
        election_task,
        leadership_events,
    } = start_election(&cfg, leader, &js, store, &cancel)?;
    let console = start_console(&cfg, &shared, &client, &js)?;
    let http_task = start_http(cfg.http.as_ref(), &shared, &topology, console, &cancel).await?;
    let notifier = Arc::new(crate::notify::Notifier::from_config(&cfg.notify)?);
    let alerts_task = start_alerts(&cfg, &shared, &emitter, &topology, &notifier, &cancel);
    let (dispatcher, sweeper) = start_dispatch(&cfg, &shared, emitter.clone(), &js, &cancel);
    let rollouts_task = tokio::spawn(
        crate::rollout::driver::Driver::new(
            Arc::clone(&shared),
            emitter.clone(),
            dispatcher.clone(),
            topology.events.clone(),
        )
        .run(cancel.clone()),
    );
    let (groups_driver, groups) = crate::groups::driver::Driver::new(
        Arc::clone(&shared),
        emitter.clone(),
        dispatcher.clone(),
        topology.events.clone(),
        &cfg.groups,
    );
    let groups_task = tokio::spawn(groups_driver.run(cancel.clone()));
    let (drills_driver, drills) = crate::drills::driver::Driver::new(
        Arc::clone(&shared),
        dispatcher.clone(),
        topology.events.clone(),
        &cfg.drills,
        notifier,
        groups.clone(),
        client.clone(),
    );
    let drills_task = tokio::spawn(drills_driver.run(cancel.clone()));

    let api_task = tokio::spawn(api::serve(
        client.clone(),
        Arc::clone(&shared),
        topology.events.clone(),
        release,
        api::Actors {
            dispatcher,
            groups,
            drills,
        },
        cfg.api.clone(),
        cancel.clone(),
    ));
    ingest::run(
        Arc::clone(&shared),
        js,
        topology.events.clone(),
        cfg.ingest.clone(),
        cancel.clone(),
    )
    .await;
    cancel.cancel();
    Tasks {
        election: election_task,
        leadership_events,
        sweeper,
        alerts: alerts_task,
        rollouts: rollouts_task,
        groups: groups_task,
        drills: drills_task,
        http: http_task,
        api: api_task,
    }
    .join()
    .await?;
    // Make sure the last acknowledged batch is on disk before the process ends.
    shared.store.flush()?;
    let _ = client.flush().await;
    info!(coordinator = %cfg.name, applied = shared.applied(), "stopped");
    Ok(())
}

/// What `start_election` leaves running: the shared state the other tasks read, and the
/// election with its leadership events.
struct Started {
    shared: Arc<Shared>,
    emitter: Emitter,
    release: ReleaseHandle,
    election_task: JoinHandle<()>,
    leadership_events: JoinHandle<()>,
}

/// The lease bucket on a NATS connection of its own: renewals must not wait behind the events
/// the coordinator publishes on its main connection (the client's outbound buffer, the
/// server's per-connection processing, the context's PubAck budget). With everything on one
/// connection, a single coordinator under the load of 10,000 hosts coming up let its lease
/// lapse and did not win it back for minutes (docs/benchmarks.md "Command fast path").
async fn lease_bucket(cfg: &CoordinatorConfig) -> Result<kv::Store, RunError> {
    let client = opsfleet_bus::connect(
        &cfg.nats,
        &format!("ops-coordinator {} lease", cfg.name),
        ConnectMode::FailFast,
    )
    .await?;
    let js = opsfleet_bus::jetstream(client, &cfg.nats);
    js.get_key_value(opsfleet_proto::subjects::LEADER_BUCKET)
        .await
        .map_err(|e| {
            RunError::Bus(BusError::Bucket {
                bucket: opsfleet_proto::subjects::LEADER_BUCKET,
                source: e.into(),
            })
        })
}

/// Loads the shared state from `store` and starts the election driver on the lease bucket
/// `leader`, with a task that records every change of role in the log.
fn start_election(
    cfg: &CoordinatorConfig,
    leader: kv::Store,
    js: &jetstream::Context,
    store: Arc<dyn EventStore>,
    cancel: &CancellationToken,
) -> Result<Started, RunError> {
    let (driver, leadership, release) = election::Driver::new(
        leader,
        &cfg.name,
        &cfg.color,
        election::LeaseTiming::new(cfg.topology.lease_ttl, cfg.topology.takeover_after),
    );
    let (changes_tx, changes_rx) = tokio::sync::mpsc::unbounded_channel();
    let driver = driver.report_changes(changes_tx);
    let emitter = Emitter::new(js.clone(), Arc::clone(&store), &cfg.name);
    let leadership_events = tokio::spawn(publish_role_changes(
        emitter.clone(),
        cfg.name.clone(),
        cfg.color.clone(),
        changes_rx,
    ));
    let shared = Shared::load(&cfg.name, &cfg.color, store, leadership)?;
    info!(
        coordinator = %cfg.name,
        applied = shared.applied(),
        hosts = shared.fleet().len(),
        "store opened"
    );
    let election_task = tokio::spawn(driver.run(cancel.clone()));
    Ok(Started {
        shared,
        emitter,
        release,
        election_task,
        leadership_events,
    })
}

/// The alert engine with its notifier, as a task.
fn start_alerts(
    cfg: &CoordinatorConfig,
    shared: &Arc<Shared>,
    emitter: &Emitter,
    topology: &Topology,
    notifier: &Arc<crate::notify::Notifier>,
    cancel: &CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(
        crate::alerts::engine::Engine::new(
            Arc::clone(shared),
            emitter.clone(),
            topology.events.clone(),
            &cfg.alerts,
            Arc::clone(notifier),
        )
        .with_drills(&cfg.drills)
        .run(cancel.clone()),
    )
}

/// The data directory, created if missing, and the sled store in it.
fn open_store(cfg: &CoordinatorConfig) -> Result<Arc<dyn EventStore>, RunError> {
    std::fs::create_dir_all(&cfg.data_dir).map_err(|source| RunError::DataDir {
        path: cfg.data_dir.clone(),
        source,
    })?;
    Ok(Arc::new(SledStore::open(&SledStore::path_in(
        &cfg.data_dir,
    ))?))
}

/// The dispatcher, and its sweep marking commands nobody picked up as expired.
fn start_dispatch(
    cfg: &CoordinatorConfig,
    shared: &Arc<Shared>,
    emitter: Emitter,
    js: &async_nats::jetstream::Context,
    cancel: &CancellationToken,
) -> (Dispatcher, JoinHandle<()>) {
    let dispatcher = Dispatcher::new(
        Arc::clone(shared),
        emitter,
        js.clone(),
        cfg.api.max_deadline,
    );
    if cfg.api.allow_unidentified {
        tracing::warn!(
            "[api] allow_unidentified = true: plain ops.api.command/failover accepted, their issuer recorded as unverified"
        );
    }
    let sweeper = tokio::spawn(
        dispatcher
            .clone()
            .sweep_expired(Duration::from_secs(1), cancel.clone()),
    );
    (dispatcher, sweeper)
}

/// The console's routes, when `[console]` is set (its users file read now).
fn start_console(
    cfg: &CoordinatorConfig,
    shared: &Arc<Shared>,
    client: &async_nats::Client,
    js: &async_nats::jetstream::Context,
) -> Result<Option<axum::Router>, RunError> {
    let (Some(console), Some(http)) = (&cfg.console, &cfg.http) else {
        return Ok(None);
    };
    let tls = http.tls_cert.is_some() && http.tls_key.is_some();
    let state =
        crate::console::Console::new(console, tls, Arc::clone(shared), client.clone(), js.clone())?;
    info!(tls, "console enabled at /console");
    Ok(Some(crate::console::router(state)))
}

/// The HTTPS endpoint, when `[http]` is set, and the stream reader of its `/metrics`.
async fn start_http(
    http: Option<&crate::http::HttpConfig>,
    shared: &Arc<Shared>,
    topology: &Topology,
    console: Option<axum::Router>,
    cancel: &CancellationToken,
) -> Result<Option<JoinHandle<()>>, RunError> {
    let Some(http) = http else {
        return Ok(None);
    };
    let tls = crate::http::tls_acceptor(http).map_err(RunError::HttpTls)?;
    let metrics = http.metrics_access().map_err(RunError::MetricsToken)?;
    let (addr, task) = crate::http::serve_tls(
        http.listen,
        tls,
        Arc::clone(shared),
        metrics,
        console,
        cancel.clone(),
    )
    .await
    .map_err(|source| RunError::Http {
        listen: http.listen,
        source,
    })?;
    info!(%addr, "HTTP endpoint listening");
    // `/metrics` reads the streams' positions from memory; this task keeps them current.
    let (events, dlq) = (topology.events.clone(), topology.dlq.clone());
    tokio::spawn(crate::metrics::streams::watch(
        Arc::clone(shared),
        events,
        dlq,
        cancel.clone(),
    ));
    Ok(Some(task))
}

/// The coordinator's background tasks, joined in order once `cancel` fired.
struct Tasks {
    election: JoinHandle<()>,
    leadership_events: JoinHandle<()>,
    sweeper: JoinHandle<()>,
    alerts: JoinHandle<()>,
    rollouts: JoinHandle<()>,
    groups: JoinHandle<()>,
    drills: JoinHandle<()>,
    http: Option<JoinHandle<()>>,
    api: JoinHandle<Result<(), api::SubscribeError>>,
}

impl Tasks {
    async fn join(self) -> Result<(), RunError> {
        // The election task releases the lease on cancel, so a standby takes over at once.
        if let Err(e) = self.election.await {
            tracing::error!(error = %ErrorChain(&e), "election task panicked");
        }
        // The driver is gone, so the channel closes once its last change is published.
        if tokio::time::timeout(Duration::from_secs(5), self.leadership_events)
            .await
            .is_err()
        {
            tracing::warn!("gave up publishing the last leadership event");
        }
        let _ = self.sweeper.await;
        let _ = self.alerts.await;
        let _ = self.rollouts.await;
        let _ = self.groups.await;
        let _ = self.drills.await;
        if let Some(task) = self.http {
            let _ = task.await;
        }
        match self.api.await {
            Ok(result) => result?,
            Err(e) => tracing::error!(error = %ErrorChain(&e), "API task panicked"),
        }
        Ok(())
    }
}

/// Publishes every role change of this coordinator as a `leadership` event, in order.
async fn publish_role_changes(
    emitter: Emitter,
    name: String,
    color: String,
    mut changes: tokio::sync::mpsc::UnboundedReceiver<election::RoleChange>,
) {
    while let Some(change) = changes.recv().await {
        let role = if change.active {
            pb::LeaderRole::Active
        } else {
            pb::LeaderRole::Standby
        };
        let body = pb::event::Body::Leadership(pb::LeadershipChanged {
            coordinator: name.clone(),
            color: color.clone(),
            role: role as i32,
            epoch: change.epoch,
            reason: change.reason.to_owned(),
            requested_by: change
                .requested_by
                .as_ref()
                .map(|r| r.name.clone())
                .unwrap_or_default(),
            requested_role: change.requested_by.map(|r| r.role).unwrap_or_default(),
        });
        if let Err(e) = emitter.emit(body, Duration::from_secs(30)).await {
            tracing::error!(error = %ErrorChain(&e), epoch = change.epoch, "leadership event lost");
        }
    }
}
