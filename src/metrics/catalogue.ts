/**
 * Every metric pipe2me exposes, by Prometheus's naming rules: one `pipe2me_` prefix, base units in the
 * name (`_seconds`, `_bytes`, `_timestamp_seconds`), counters ending in `_total`. Labels are bounded:
 * families, outcomes, daemons, steps, reason classes, the API's route patterns, token labels (which the
 * operator names); a pod's name only in the opt-in per-pod series (`metrics.per_pod`). The counters and
 * histograms kept in the store (written by whichever process did the work) are listed in STORE_METRICS;
 * a row of any other name is never exposed.
 */

export interface MetricSpec {
  type: 'counter' | 'gauge' | 'histogram';
  help: string;
  labels: readonly string[];
  /** Histograms: bucket bounds (seconds). */
  buckets?: readonly number[];
  /** Label sets exposed as 0 before anything happened, so that rate() and absent() behave from the start. */
  initial?: readonly Record<string, string>[];
}

export const DURATION_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120] as const;
export const API_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] as const;

/** Kept in the store: every process adds to these, the API exposes them. */
export const STORE_METRICS: Record<string, MetricSpec> = {
  pipe2me_probe_runs_total: { type: 'counter', help: 'Probe runs (pipe2me-ctl probe, the timer, the API\'s prompt probes).', labels: [], initial: [{}] },
  pipe2me_probe_duration_seconds: { type: 'histogram', help: 'How long a probe run took.', labels: [], buckets: DURATION_BUCKETS },
  pipe2me_probe_results_total: {
    type: 'counter', help: 'Per-pod probe results by address family and outcome (ok: every port answered as the pod; failed: one did not; skipped: nothing to test, with the reason in the route).',
    labels: ['family', 'outcome'], initial: ['ipv4', 'ipv6'].flatMap((family) => ['ok', 'failed', 'skipped'].map((outcome) => ({ family, outcome }))),
  },
  pipe2me_route_changes_total: { type: 'counter', help: 'Route changes the probe made, by family and the new route.', labels: ['family', 'route'], initial: ['ipv4', 'ipv6'].flatMap((family) => ['direct', 'server'].map((route) => ({ family, route }))) },
  pipe2me_apply_runs_total: { type: 'counter', help: 'Apply runs by outcome.', labels: ['outcome'], initial: [{ outcome: 'ok' }, { outcome: 'failed' }] },
  pipe2me_apply_step_duration_seconds: { type: 'histogram', help: 'How long each step of an apply took (plan, check, swap, reload).', labels: ['step'], buckets: DURATION_BUCKETS },
  pipe2me_apply_failures_total: { type: 'counter', help: 'Apply runs that failed, by the daemon whose check or reload failed (none: a failure before any daemon).', labels: ['daemon'] },
  pipe2me_reloads_total: { type: 'counter', help: 'Daemon reloads apply made, by daemon.', labels: ['daemon'] },
  pipe2me_tunnel_logins_total: { type: 'counter', help: 'Tunnel logins by result: accepted (the key lookup gave sshd the pod\'s line) or refused (unknown key, or the pod already at its connection limit).', labels: ['result'], initial: [{ result: 'accepted' }, { result: 'refused' }] },
};

/** Computed at each scrape from the store, the session records and the firewall's counters. */
export const SCRAPE_METRICS: Record<string, MetricSpec> = {
  pipe2me_build_info: { type: 'gauge', help: 'Always 1; the labels say which pipe2me and Node.js run.', labels: ['version', 'node'] },
  pipe2me_subdomains: { type: 'gauge', help: 'Subdomains by status.', labels: ['status'] },
  pipe2me_pods_online: { type: 'gauge', help: 'Active pods with a live tunnel session.', labels: [] },
  pipe2me_pods: { type: 'gauge', help: 'Active pods with ports (what the routes are counted over).', labels: [] },
  pipe2me_pods_by_route: { type: 'gauge', help: 'Active pods by address family and route (direct: DNS at the router or the pod itself; server: through the tunnel).', labels: ['family', 'route'] },
  pipe2me_pods_by_reason: { type: 'gauge', help: 'Active pods by address family and the class of the reason for their route.', labels: ['family', 'reason'] },
  pipe2me_ports_allocated: { type: 'gauge', help: 'Public ports held by active subdomains.', labels: [] },
  pipe2me_ports_range_size: { type: 'gauge', help: 'Public ports in the configured range.', labels: [] },
  pipe2me_certificate_expiry_soonest_timestamp_seconds: { type: 'gauge', help: 'When the soonest-expiring valid certificate expires, by issuer and kind (pod, server).', labels: ['issuer', 'kind'] },
  pipe2me_acme_orders: { type: 'gauge', help: 'ACME orders by state (queued, working, valid, failed, cancelled).', labels: ['state'] },
  pipe2me_token_subdomains: { type: 'gauge', help: 'Live subdomains made with the tokens of each label (tokens sharing a label are summed).', labels: ['token'] },
  pipe2me_token_subdomains_limit: { type: 'gauge', help: 'The subdomain quota of the tokens of each label (tokens with one, summed).', labels: ['token'] },
  pipe2me_token_ports: { type: 'gauge', help: 'Ports held by the live subdomains of the tokens of each label (summed).', labels: ['token'] },
  pipe2me_token_ports_limit: { type: 'gauge', help: 'The total port quota of the tokens of each label (tokens with one, summed).', labels: ['token'] },
  pipe2me_probe_last_run_timestamp_seconds: { type: 'gauge', help: 'When the last probe run ended.', labels: [] },
  pipe2me_apply_last_run_timestamp_seconds: { type: 'gauge', help: 'When the last apply ended.', labels: [] },
  pipe2me_apply_last_success_timestamp_seconds: { type: 'gauge', help: 'When the last apply that succeeded ended.', labels: [] },
  pipe2me_apply_last_run_failed: { type: 'gauge', help: '1 if the last apply failed, else 0.', labels: [] },
  pipe2me_tunnel_bytes_total: { type: 'counter', help: 'Bytes through every tunnel port on this server, by direction (in: from clients), from the firewall\'s counters.', labels: ['direction'] },
  pipe2me_pod_online: { type: 'gauge', help: 'Per pod (metrics.per_pod): 1 while its tunnel session is live.', labels: ['subdomain'] },
  pipe2me_pod_route_direct: { type: 'gauge', help: 'Per pod (metrics.per_pod): 1 while the family\'s route is direct.', labels: ['subdomain', 'family'] },
  pipe2me_pod_certificate_expiry_timestamp_seconds: { type: 'gauge', help: 'Per pod (metrics.per_pod): when its newest certificate expires.', labels: ['subdomain'] },
  pipe2me_pod_tunnel_bytes_total: { type: 'counter', help: 'Per pod (metrics.per_pod): bytes through its tunnel ports, by direction.', labels: ['subdomain', 'direction'] },
};

/** Kept by the API process itself. */
export const API_METRICS: Record<string, MetricSpec> = {
  pipe2me_api_requests_total: { type: 'counter', help: 'API requests by route pattern, method and status class.', labels: ['route', 'method', 'code'] },
  pipe2me_api_request_duration_seconds: { type: 'histogram', help: 'API request latency by route pattern.', labels: ['route'], buckets: API_BUCKETS },
};
