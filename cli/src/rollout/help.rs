//! The `after_help` texts of `opsctl rollout ...` and `opsctl rollouts`: what the verbs do
//! beyond their flags, and examples.

/// Examples under `opsctl rollout start --help`.
pub const START_HELP: &str = "\
The hosts are those with the service among --host, --label and --all; drained hosts (in
maintenance) and lost hosts are skipped and listed. Wave 0 is the canary (--canary hosts); the
later waves take the cumulative --waves percentages of the rest. Each host of a wave gets a
deploy command (at most --max-unavailable at a time); a wave passes its gates once every host
runs the version with --ready-samples ready probe results and the wave then ran --soak healthy.
A failed gate rolls every updated host back to the version it ran before, by itself.

opsctl prints the rollout's id and plan, then a line per change until it ends (exit 0 when
completed, 1 when it rolled back, was aborted or failed, with the reason) or waits for
`opsctl rollout promote` (--manual). Ctrl-C stops following, not the rollout. Needs the
admin role; each host's own config must allow it (`remote = [\"deploy\"]` in the service's entry).

Examples:
  opsctl rollout start web --version 2.4.1 --label role=web
  opsctl rollout start web --version 2.4.1 --all --canary 2 --waves 50%,100% --soak 5m
  opsctl rollout start web --version 2.4.1 --host 'web-*' \\
      --artifact https://releases.example.com/web-2.4.1.tar.gz --sha256 <64 hex>
  opsctl rollout start web --version 2.4.1 --all --manual --two-person --before nightly-db
  opsctl rollout start web --version 2.4.1 --all --strategy blue-green --green web-green \\
      --keep-old 30m
  opsctl rollout start web --version 2.4.1 --all --no-wait -o json | jq -r .rollout.id";

/// Examples under `opsctl rollout status --help`.
pub const STATUS_HELP: &str = "\
Examples:
  opsctl rollout status                      the newest rollout
  opsctl rollout status --service web        the newest rollout of web
  opsctl rollout status 0193a4c2             by id prefix (`opsctl rollouts` lists them)
  opsctl rollout status -o json | jq '.hosts[] | select(.state != \"updated\")'

A host's PREVIOUS is where a rollback takes it; DEPLOYS counts the deploy commands of this
rollout it completed (1 after an update, even across a coordinator failover).";

/// Examples under `opsctl rollout pause|resume|promote|abort|undo --help`.
pub const CONTROL_HELP: &str = "\
Without an id, the newest rollout (of --service, when given) is meant. Roles: pause, resume and
abort need operator; promote and undo need admin. abort and undo follow the rollback until it
ends (--no-wait returns at once); exit 0 when it ended as asked (aborted, undone), 1 otherwise.

Examples:
  opsctl rollout pause --service web
  opsctl rollout resume 0193a4c2
  opsctl rollout promote 0193a4c2            next wave of a --manual rollout
  opsctl rollout abort --service web         stop and roll the updated hosts back
  opsctl rollout undo 0193a4c2 --no-wait     put the previous version back, even when completed";

/// Examples under `opsctl rollouts --help`.
pub const ROLLOUTS_HELP: &str = "\
Examples:
  opsctl rollouts                            the 20 newest rollouts
  opsctl rollouts --service web --limit 5
  opsctl rollouts -o json | jq -r '.rollouts[] | select(.phase == \"rolled_back\") | .id'

WAVE is the wave being updated or gated (wave 0 is the canary) of all waves; HOSTS counts the
hosts that run the new version of all hosts in the plan.";
