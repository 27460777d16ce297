/**
 * The API process's own metrics: requests by route pattern (never the raw path: ids would make the label
 * set unbounded), method and status class, a latency histogram, and prom-client's process metrics.
 */
import client from 'prom-client';
import { API_BUCKETS, API_METRICS } from './catalogue.js';

export class ApiMetrics {
  readonly registry = new client.Registry();
  private readonly requests: client.Counter<'route' | 'method' | 'code'>;
  private readonly latency: client.Histogram<'route'>;

  constructor() {
    const r = API_METRICS['pipe2me_api_requests_total']!;
    this.requests = new client.Counter({ name: 'pipe2me_api_requests_total', help: r.help, labelNames: ['route', 'method', 'code'], registers: [this.registry] });
    const l = API_METRICS['pipe2me_api_request_duration_seconds']!;
    this.latency = new client.Histogram({ name: 'pipe2me_api_request_duration_seconds', help: l.help, labelNames: ['route'], buckets: [...API_BUCKETS], registers: [this.registry] });
    client.collectDefaultMetrics({ register: this.registry });
    // prom-client's gauges named like counters (promtool check metrics: 'non-counter metrics should not have
    // "_total" suffix'); each is the sum over the type label of its namesake without _total, which stays.
    for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) this.registry.removeSingleMetric(name);
  }

  /** One request done: its route pattern ('unmatched' when no route took it), method, status, seconds. */
  observe(route: string, method: string, status: number, seconds: number): void {
    const m = ['GET', 'POST', 'PUT', 'DELETE'].includes(method) ? method : 'other';
    this.requests.inc({ route, method: m, code: `${Math.floor(status / 100)}xx` });
    this.latency.observe({ route }, seconds);
  }
}
