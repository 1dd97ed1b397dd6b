/**
 * The Grafana dashboards, as data. `node deploy/tools/grafana-dashboards.ts` writes deploy/grafana/*.json;
 * `npm run check:deploy` fails when the committed JSON differs from this source or when a query names a
 * metric that neither the programs' /metrics nor the code registers.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

interface PanelSpec {
  title: string;
  /** PromQL, one per series; legend in the second element. */
  queries: [expr: string, legend: string][];
  unit?: string;
  type?: "timeseries" | "stat";
  description?: string;
}

interface DashboardSpec {
  file: string;
  uid: string;
  title: string;
  description: string;
  /** Rows of panels; each row is a titled group. */
  rows: { title: string; panels: PanelSpec[] }[];
}

// biome-ignore lint/suspicious/noTemplateCurlyInString: Grafana's variable syntax, not a JS template.
const DS = { type: "prometheus", uid: "${datasource}" };
const rate = (m: string, by = "", w = "$__rate_interval") =>
  by ? `sum by (${by}) (rate(${m}[${w}]))` : `sum(rate(${m}[${w}]))`;
const p = (q: number, m: string, by = "") =>
  `histogram_quantile(${q}, sum by (le${by ? `, ${by}` : ""}) (rate(${m}_bucket[$__rate_interval])))`;

export const DASHBOARDS: DashboardSpec[] = [
  {
    file: "gateway.json",
    uid: "edgeway-gateway",
    title: "edgeway / Gateway",
    description: "Traffic, errors, latency and upstream health of the edge gateway.",
    rows: [
      {
        title: "Traffic and SLO",
        panels: [
          {
            title: "Requests by route",
            queries: [[rate("edgeway_http_requests_total", "route"), "{{route}}"]],
            unit: "reqps",
          },
          {
            title: "Responses by status class",
            queries: [[rate("edgeway_http_requests_total", "status_class"), "{{status_class}}"]],
            unit: "reqps",
          },
          {
            title: "5xx ratio (SLO 99.9%)",
            queries: [
              ["edgeway:http_error_ratio:rate5m", "5m"],
              ["edgeway:http_error_ratio:rate1h", "1h"],
            ],
            unit: "percentunit",
          },
          {
            title: "Latency p50 / p95 / p99",
            queries: [
              [p(0.5, "edgeway_http_request_duration_seconds"), "p50"],
              [p(0.95, "edgeway_http_request_duration_seconds"), "p95"],
              [p(0.99, "edgeway_http_request_duration_seconds"), "p99"],
            ],
            unit: "s",
          },
          {
            title: "p99 latency by route",
            queries: [[p(0.99, "edgeway_http_request_duration_seconds", "route"), "{{route}}"]],
            unit: "s",
          },
          {
            title: "Connections and in-flight requests",
            queries: [
              ["sum(edgeway_active_connections)", "connections"],
              ["sum(edgeway_inflight_requests)", "in flight"],
            ],
          },
          {
            title: "Config reloads",
            queries: [[`sum by (result) (increase(edgeway_config_reloads_total[$__range]))`, "{{result}}"]],
            type: "stat",
          },
        ],
      },
      {
        title: "Upstreams",
        panels: [
          {
            title: "Upstream p99 by service and region",
            queries: [
              [
                p(0.99, "edgeway_upstream_request_duration_seconds", "service, region"),
                "{{service}} {{region}}",
              ],
            ],
            unit: "s",
          },
          {
            title: "Upstream responses by status class",
            queries: [
              [
                rate("edgeway_upstream_responses_total", "service, status_class"),
                "{{service}} {{status_class}}",
              ],
            ],
            unit: "ops",
          },
          {
            title: "Connect errors",
            queries: [
              [
                rate("edgeway_upstream_connect_errors_total", "service, endpoint"),
                "{{service}} {{endpoint}}",
              ],
            ],
            unit: "ops",
          },
          {
            title: "Timeouts by kind",
            queries: [[rate("edgeway_upstream_timeouts_total", "service, kind"), "{{service}} {{kind}}"]],
            unit: "ops",
          },
          {
            title: "Retries and refused retries",
            queries: [
              [rate("edgeway_upstream_retries_total", "service"), "retries {{service}}"],
              [
                rate("edgeway_upstream_retry_budget_exhausted_total", "service"),
                "budget exhausted {{service}}",
              ],
            ],
            unit: "ops",
          },
          {
            title: "Healthy endpoints",
            queries: [["sum by (service, region) (edgeway_endpoint_healthy)", "{{service}} {{region}}"]],
          },
          {
            title: "Ejections",
            queries: [
              [
                "sum by (service, endpoint) (increase(edgeway_endpoint_ejections_total[$__rate_interval]))",
                "{{service}} {{endpoint}}",
              ],
            ],
          },
        ],
      },
    ],
  },
  {
    file: "images.json",
    uid: "edgeway-images",
    title: "edgeway / Images",
    description: "Image negotiation and transforms.",
    rows: [
      {
        title: "Transforms",
        panels: [
          {
            title: "Transforms by output format",
            queries: [[rate("edgeway_image_transforms_total", "format"), "{{format}}"]],
            unit: "ops",
          },
          {
            title: "Transform duration p50 / p95",
            queries: [
              [p(0.5, "edgeway_image_transform_duration_seconds"), "p50"],
              [p(0.95, "edgeway_image_transform_duration_seconds"), "p95"],
            ],
            unit: "s",
          },
          {
            title: "Bytes in and out",
            queries: [[rate("edgeway_image_bytes_total", "kind"), "{{kind}}"]],
            unit: "Bps",
          },
          {
            title: "Image cache results",
            queries: [[rate("edgeway_image_cache_requests_total", "result"), "{{result}}"]],
            unit: "ops",
          },
          {
            title: "Queue depth",
            queries: [["sum(edgeway_image_queue_depth)", "queued"]],
          },
          {
            title: "Queue rejections",
            queries: [[rate("edgeway_image_queue_rejections_total"), "rejected"]],
            unit: "ops",
          },
          {
            title: "Failures by code",
            queries: [[rate("edgeway_image_failures_total", "code"), "{{code}}"]],
            unit: "ops",
          },
        ],
      },
    ],
  },
  {
    file: "cache.json",
    uid: "edgeway-cache",
    title: "edgeway / Analytics cache",
    description: "Response cache results and its Redis.",
    rows: [
      {
        title: "Cache",
        panels: [
          {
            title: "Lookups by result",
            queries: [[rate("edgeway_cache_requests_total", "result"), "{{result}}"]],
            unit: "ops",
          },
          {
            title: "Hit ratio by route",
            queries: [
              [
                `${rate('edgeway_cache_requests_total{result="hit"}', "route")} / ${rate("edgeway_cache_requests_total", "route")}`,
                "{{route}}",
              ],
            ],
            unit: "percentunit",
          },
          {
            title: "Stored bytes by tier",
            queries: [["sum by (tier) (edgeway_cache_stored_bytes)", "{{tier}}"]],
            unit: "bytes",
          },
          {
            title: "Redis errors by operation",
            queries: [[rate("edgeway_cache_redis_errors_total", "op"), "{{op}}"]],
            unit: "ops",
          },
          {
            title: "Redis p99 by operation",
            queries: [[p(0.99, "edgeway_cache_redis_duration_seconds", "op"), "{{op}}"]],
            unit: "s",
          },
        ],
      },
    ],
  },
  {
    file: "auth.json",
    uid: "edgeway-auth",
    title: "edgeway / Token guard",
    description: "Requests the token guard rejected, and why.",
    rows: [
      {
        title: "Rejections",
        panels: [
          {
            title: "Rejections by reason",
            queries: [[rate("edgeway_auth_rejections_total", "reason"), "{{reason}}"]],
            unit: "ops",
          },
          {
            title: "Rejections by route",
            queries: [[rate("edgeway_auth_rejections_total", "route"), "{{route}}"]],
            unit: "ops",
          },
          {
            title: "Accepted tokens by kind",
            queries: [[rate("edgeway_auth_accepted_total", "kind"), "{{kind}}"]],
            unit: "ops",
          },
          {
            title: "Rejected share of requests",
            queries: [
              [
                `${rate("edgeway_auth_rejections_total")} / ${rate("edgeway_http_requests_total")}`,
                "rejected",
              ],
            ],
            unit: "percentunit",
          },
        ],
      },
    ],
  },
  {
    file: "agent-host.json",
    uid: "edgeway-agent-host",
    title: "edgeway / Agent and host",
    description: "The per-node agent's jobs and the host it runs on.",
    rows: [
      {
        title: "Jobs",
        panels: [
          {
            title: "Time since last success by job",
            queries: [
              ["time() - edgeway_agent_job_last_success_timestamp_seconds", "{{instance}} {{exported_job}}"],
            ],
            unit: "s",
          },
          {
            title: "Job duration p95",
            queries: [[p(0.95, "edgeway_agent_job_duration_seconds", "exported_job"), "{{exported_job}}"]],
            unit: "s",
          },
          {
            title: "Job runs by result",
            queries: [
              [
                "sum by (exported_job, result) (increase(edgeway_agent_job_runs_total[$__rate_interval]))",
                "{{exported_job}} {{result}}",
              ],
            ],
          },
        ],
      },
      {
        title: "Host",
        panels: [
          {
            title: "CPU busy",
            queries: [
              [
                'sum by (instance) (rate(edgeway_host_cpu_seconds_total{mode!="idle"}[$__rate_interval])) / count by (instance) (edgeway_host_cpu_seconds_total{mode="idle"})',
                "{{instance}}",
              ],
            ],
            unit: "percentunit",
          },
          {
            title: "Memory available",
            queries: [
              ["edgeway_host_memory_MemAvailable_bytes / edgeway_host_memory_MemTotal_bytes", "{{instance}}"],
            ],
            unit: "percentunit",
          },
          {
            title: "Load (1m)",
            queries: [["edgeway_host_load1", "{{instance}}"]],
          },
        ],
      },
    ],
  },
  {
    file: "postgresql.json",
    uid: "edgeway-postgresql",
    title: "edgeway / PostgreSQL",
    description: "The node's PostgreSQL as the agent sees it.",
    rows: [
      {
        title: "PostgreSQL",
        panels: [
          { title: "Up", queries: [["edgeway_pg_up", "{{instance}}"]], type: "stat" },
          {
            title: "Primary (1) or standby (0)",
            queries: [["1 - edgeway_pg_in_recovery", "{{instance}}"]],
            type: "stat",
          },
          {
            title: "Replication lag (time)",
            queries: [["edgeway_pg_replication_lag_seconds", "{{instance}}"]],
            unit: "s",
          },
          {
            title: "Replication lag (bytes)",
            queries: [["edgeway_pg_replication_lag_bytes", "{{instance}}"]],
            unit: "bytes",
          },
        ],
      },
    ],
  },
  {
    file: "backups-dr.json",
    uid: "edgeway-backups-dr",
    title: "edgeway / Backups and DR",
    description: "Backup freshness against the RPO, restore drills, regional failover and etcd.",
    rows: [
      {
        title: "Backups",
        panels: [
          {
            title: "Base backup age (RPO 26h)",
            queries: [["time() - edgeway_backup_last_success_timestamp_seconds", "{{set}}"]],
            unit: "s",
          },
          {
            title: "WAL archive age (RPO 5m)",
            queries: [["edgeway_backup_wal_last_archived_age_seconds", "{{instance}}"]],
            unit: "s",
          },
          {
            title: "Last drill failed",
            queries: [["max(edgeway_backup_drill_failed)", "failed"]],
            type: "stat",
          },
          {
            title: "Last drill RTO",
            queries: [["edgeway_backup_drill_last_rto_seconds", "{{instance}}"]],
            unit: "s",
          },
          {
            title: "Backup storage unreachable",
            queries: [["max(edgeway_backup_storage_unreachable)", "unreachable"]],
            type: "stat",
          },
        ],
      },
      {
        title: "Failover",
        panels: [
          {
            title: "Failovers",
            queries: [
              [
                "sum by (from, to, kind) (increase(edgeway_failover_total[$__range]))",
                "{{kind}} {{from}} → {{to}}",
              ],
            ],
            type: "stat",
          },
          { title: "Epoch", queries: [["max(edgeway_failover_epoch)", "epoch"]], type: "stat" },
          { title: "Leaders", queries: [["sum(edgeway_failover_is_leader)", "leaders"]], type: "stat" },
          {
            title: "Region health",
            queries: [["min by (region) (edgeway_failover_region_healthy)", "{{region}}"]],
          },
          {
            title: "Healthy etcd members",
            queries: [["min(edgeway_etcd_members_healthy)", "members"]],
            type: "stat",
          },
        ],
      },
    ],
  },
];

/** Grafana's dashboard JSON (schemaVersion 39) for one spec: a Prometheus datasource variable and rows. */
export function dashboardJson(spec: DashboardSpec): Record<string, unknown> {
  const panels: Record<string, unknown>[] = [];
  let id = 1;
  let y = 0;
  for (const row of spec.rows) {
    panels.push({
      id: id++,
      type: "row",
      title: row.title,
      collapsed: false,
      gridPos: { h: 1, w: 24, x: 0, y },
      panels: [],
    });
    y += 1;
    row.panels.forEach((panel, k) => {
      const w = 8;
      const x = (k % 3) * w;
      if (k > 0 && k % 3 === 0) y += 8;
      panels.push({
        id: id++,
        type: panel.type ?? "timeseries",
        title: panel.title,
        ...(panel.description ? { description: panel.description } : {}),
        datasource: DS,
        gridPos: { h: 8, w, x, y },
        fieldConfig: { defaults: { unit: panel.unit ?? "short" }, overrides: [] },
        options:
          panel.type === "stat"
            ? { reduceOptions: { calcs: ["lastNotNull"] } }
            : { legend: { displayMode: "list" } },
        targets: panel.queries.map(([expr, legendFormat], q) => ({
          datasource: DS,
          expr,
          legendFormat,
          refId: String.fromCharCode(65 + q),
        })),
      });
    });
    y += 8;
  }
  return {
    uid: spec.uid,
    title: spec.title,
    description: spec.description,
    tags: ["edgeway"],
    editable: true,
    schemaVersion: 39,
    time: { from: "now-6h", to: "now" },
    refresh: "30s",
    templating: {
      list: [
        { name: "datasource", label: "Prometheus", type: "datasource", query: "prometheus", current: {} },
      ],
    },
    panels,
  };
}

export function dashboardText(spec: DashboardSpec): string {
  return `${JSON.stringify(dashboardJson(spec), null, 2)}\n`;
}

export const GRAFANA_DIR = fileURLToPath(new URL("../grafana/", import.meta.url));

if (import.meta.main) {
  for (const spec of DASHBOARDS) writeFileSync(join(GRAFANA_DIR, spec.file), dashboardText(spec));
  process.stdout.write(`wrote ${DASHBOARDS.length} dashboards to ${GRAFANA_DIR}\n`);
}
