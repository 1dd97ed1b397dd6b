import { Counter, type Registry } from "prom-client";

/** The token guard's metrics; created once per process (FilterSetup.shared). */
export class AuthMetrics {
  readonly rejections: Counter<"route" | "reason">;
  readonly accepted: Counter<"route" | "kind">;
  constructor(registry: Registry) {
    this.rejections = new Counter({
      name: "edgeway_auth_rejections_total",
      help: "Tokens rejected by the token guard, by route and bounded reason.",
      labelNames: ["route", "reason"],
      registers: [registry],
    });
    this.accepted = new Counter({
      name: "edgeway_auth_accepted_total",
      help: "Tokens accepted by the token guard, by route and kind (refresh, access).",
      labelNames: ["route", "kind"],
      registers: [registry],
    });
  }
}
