// A Switchyard health-check policy in JavaScript.
//
// Each probe asks for `path` (default /healthz) with an `x-probe-pool` header
// naming the pool (the optional `probe-request` export). The backend is
//   down      when it does not answer, answers outside 2xx, or its
//             `x-health` header (configurable: `header`) says "draining";
//   degraded  (weight scaled to `degraded-percent`) when that header says
//             "degraded" or the answer took longer than `slow-ms`;
//   up        otherwise.
//
// [plugin.js-health]
// kind = "health-check"
// path = "plugins/js_health.wasm"
// config = { path = "/healthz", slow-ms = 250, header = "x-health" }

let config = { path: "/healthz", slowMs: 250, header: "x-health", degradedPercent: 50 };

const FIELDS = { "path": "path", "slow-ms": "slowMs", "header": "header", "degraded-percent": "degradedPercent" };

// init(config: string) -> result<_, string>: throwing refuses the load. Errors
// name the field as `config.FIELD: message`, so the proxy reports them at the
// field's line in its config file.
export function init(json) {
  const given = JSON.parse(json);
  const next = { ...config };
  for (const [key, value] of Object.entries(given)) {
    const field = FIELDS[key];
    if (field === undefined) {
      throw `config.${key}: unknown field, expected one of ${Object.keys(FIELDS).join(", ")}`;
    }
    next[field] = value;
  }
  if (typeof next.path !== "string" || !next.path.startsWith("/")) {
    throw "config.path: must be a string starting with `/`";
  }
  if (!Number.isInteger(next.slowMs) || next.slowMs < 0) {
    throw "config.slow-ms: must be a non-negative integer";
  }
  if (!Number.isInteger(next.degradedPercent) || next.degradedPercent < 0 || next.degradedPercent > 100) {
    throw "config.degraded-percent: must be 0..=100";
  }
  next.header = String(next.header).toLowerCase();
  config = next;
}

// wanted-headers() -> list<string>: only these response headers reach evaluate.
export function wantedHeaders() {
  return [config.header];
}

// probe-request(target) -> option<custom-probe>: the request each probe sends.
export function probeRequest(target) {
  return {
    method: "GET",
    path: config.path,
    headers: [{ name: "x-probe-pool", value: target.pool }],
  };
}

// evaluate(probe) -> verdict
export function evaluate(probe) {
  if (probe.error !== undefined) {
    return { tag: "down", val: `no answer (${probe.error})` };
  }
  if (probe.status === undefined || probe.status < 200 || probe.status > 299) {
    return { tag: "down", val: `status ${probe.status}` };
  }
  const state = probe.headers.find((h) => h.name === config.header)?.value;
  if (state === "draining") {
    return { tag: "down", val: `${config.header}: draining` };
  }
  if (state === "degraded" || probe.latencyUs > config.slowMs * 1000) {
    return { tag: "degraded", val: config.degradedPercent };
  }
  return { tag: "up" };
}
