import fc from "fast-check";
import t from "tap";
import { pickLeastOutstanding, regionOrder } from "../../../gateway/core/upstream/balancer.ts";
import { classifyUpstreamError, isRetryable } from "../../../gateway/core/upstream/dispatcher.ts";
import { Endpoint } from "../../../gateway/core/upstream/endpoint.ts";
import {
  ejectionDuration,
  FRESH_OUTLIER_STATE,
  maxEjectable,
  recordFailure,
  recordSuccess,
} from "../../../gateway/core/upstream/outlier.ts";
import { RetryBudget } from "../../../gateway/core/upstream/retry-budget.ts";

const policy = { consecutiveFailures: 3, baseEjection: 1000, maxEjection: 8000 };

t.test("outlier: N consecutive failures eject, with exponential back-off capped at max", async (t) => {
  let s = FRESH_OUTLIER_STATE;
  let r = recordFailure(policy, s, 0, true);
  t.notOk(r.ejected);
  r = recordFailure(policy, r.state, 0, true);
  t.notOk(r.ejected);
  r = recordFailure(policy, r.state, 0, true);
  t.ok(r.ejected);
  t.equal(r.state.ejectedUntil, 1000);
  s = r.state;
  for (let i = 0; i < 3; i++) s = recordFailure(policy, s, 1000, true).state;
  t.equal(s.ejections, 2);
  t.equal(s.ejectedUntil, 1000 + 2000, "second ejection doubles");
  t.equal(ejectionDuration(policy, 10), 8000, "capped");
});

t.test("outlier: a success resets the failure streak; a clean run forgets past ejections", async (t) => {
  let s = recordFailure(policy, FRESH_OUTLIER_STATE, 0, true).state;
  s = recordFailure(policy, s, 0, true).state;
  s = recordSuccess(policy, s);
  t.equal(s.consecutiveFailures, 0);
  s = { ...s, ejections: 2 };
  for (let i = 0; i < 3; i++) s = recordSuccess(policy, s);
  t.equal(s.ejections, 0);
});

t.test(
  "outlier: no ejection when the region may not lose another endpoint, or while already ejected",
  async (t) => {
    let s = FRESH_OUTLIER_STATE;
    for (let i = 0; i < 5; i++) {
      const r = recordFailure(policy, s, 0, false);
      t.notOk(r.ejected);
      s = r.state;
    }
    t.equal(maxEjectable(1, 50), 0);
    t.equal(maxEjectable(1, 100), 1);
    t.equal(maxEjectable(2, 50), 1);
    t.equal(maxEjectable(3, 10), 1, "at least one of several");
    t.equal(maxEjectable(10, 50), 5);
  },
);

t.test("outlier properties: ejection length is always within [base, max]", async () => {
  fc.assert(
    fc.property(fc.array(fc.boolean(), { maxLength: 60 }), (outcomes) => {
      let s = FRESH_OUTLIER_STATE;
      let now = 0;
      for (const ok of outcomes) {
        now += 100;
        if (ok) s = recordSuccess(policy, s);
        else {
          const r = recordFailure(policy, s, now, true);
          if (r.ejected) {
            const len = r.state.ejectedUntil - now;
            if (len < policy.baseEjection || len > policy.maxEjection) return false;
          }
          s = r.state;
        }
      }
      return true;
    }),
  );
});

t.test("retry budget: ratio of requests plus a floor per second", async (t) => {
  let now = 0;
  const b = new RetryBudget(0.2, 0, () => now);
  // Starts with its cap (ratio·100 = 20 tokens) and then earns 0.2 per request.
  let granted = 0;
  for (let i = 0; i < 100; i++) if (b.tryWithdraw()) granted++;
  t.equal(granted, 20);
  for (let i = 0; i < 10; i++) b.deposit();
  t.ok(b.tryWithdraw(), "10 requests earn 2 retries");
  t.ok(b.tryWithdraw());
  t.notOk(b.tryWithdraw());
  const floor = new RetryBudget(0, 5, () => now);
  while (floor.tryWithdraw()) {}
  now += 1000;
  let n = 0;
  while (floor.tryWithdraw()) n++;
  t.equal(n, 5, "the floor refills minPerSecond per second");
});

t.test("balancer: weighted least outstanding, skipping unavailable and tried endpoints", async (t) => {
  const a = new Endpoint("s", "r", "http://127.0.0.1:1", 1, 1, 1000);
  const b = new Endpoint("s", "r", "http://127.0.0.1:2", 3, 1, 1000);
  a.outstanding = 1;
  b.outstanding = 2;
  t.equal(pickLeastOutstanding([a, b], 0, 0, undefined), b, "(2+1)/3 < (1+1)/1");
  b.healthy = false;
  t.equal(pickLeastOutstanding([a, b], 0, 0, undefined), a);
  t.equal(pickLeastOutstanding([a, b], 0, 0, new Set([a])), undefined);
  b.healthy = true;
  b.outlier = { ...b.outlier, ejectedUntil: 100 };
  t.equal(pickLeastOutstanding([a, b], 50, 0, undefined), a, "ejected until 100");
  t.equal(pickLeastOutstanding([a, b], 100, 0, undefined), b, "back after the ejection");
  const c = new Endpoint("s", "r", "http://127.0.0.1:3", 1, 1, 1000);
  const d = new Endpoint("s", "r", "http://127.0.0.1:4", 1, 1, 1000);
  const seen = new Set([
    pickLeastOutstanding([c, d], 0, 0, undefined),
    pickLeastOutstanding([c, d], 0, 1, undefined),
  ]);
  t.equal(seen.size, 2, "ties rotate");
});

t.test("region order: preferred, configured fallback, then the rest; strict keeps one", async (t) => {
  t.same(regionOrder("eu", false, ["us", "ap"], ["us", "eu", "ap", "sa"]), ["eu", "us", "ap", "sa"]);
  t.same(regionOrder("eu", true, ["us"], ["us", "eu"]), ["eu"]);
});

t.test("retry rules: idempotent, replayable, and only before any response byte", async (t) => {
  t.ok(isRetryable("connect", "GET", true));
  t.ok(isRetryable("reset", "PUT", true));
  t.ok(isRetryable("connect_timeout", "DELETE", true));
  t.notOk(isRetryable("connect", "POST", true), "POST is not idempotent");
  t.notOk(isRetryable("connect", "PATCH", true));
  t.notOk(isRetryable("connect", "PUT", false), "a streamed body cannot be replayed");
  t.notOk(isRetryable("response_header_timeout", "GET", true), "the upstream may be working on it");
  t.notOk(isRetryable("other", "GET", true));
  t.equal(classifyUpstreamError(Object.assign(new Error("x"), { code: "ECONNREFUSED" })), "connect");
  t.equal(classifyUpstreamError(Object.assign(new Error("x"), { code: "UND_ERR_SOCKET" })), "reset");
  for (const code of [
    "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
    "SELF_SIGNED_CERT_IN_CHAIN",
    "CERT_HAS_EXPIRED",
    "ERR_TLS_CERT_ALTNAME_INVALID",
    "ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED",
  ]) {
    t.equal(classifyUpstreamError(Object.assign(new Error("x"), { code })), "tls", code);
  }
  t.notOk(
    isRetryable("tls", "GET", true),
    "a TLS failure is not retried: the next attempt fails the same way",
  );
  t.equal(
    classifyUpstreamError(Object.assign(new Error("x"), { code: "UND_ERR_HEADERS_TIMEOUT" })),
    "response_header_timeout",
  );
  t.equal(
    classifyUpstreamError(Object.assign(new Error("x"), { code: "UND_ERR_CONNECT_TIMEOUT" })),
    "connect_timeout",
  );
});
