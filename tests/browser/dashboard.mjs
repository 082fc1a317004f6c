// Drives the admin dashboard in headless Chromium for tests/dashboard.rs.
//
//   node dashboard.mjs ADMIN_URL TOKEN VICTIM_ADDR OTHER_ADDR
//
// Talks to the Rust test line by line: it prints `listed`, `down`, `drained`, `weight`,
// `timeline ok`, `curves`, `banner ok`, `kept` and `done` as each check passes, and waits
// for `killed` (the test stopped VICTIM_ADDR) and `verified` (the test confirmed a change
// through /status) on stdin. With DASHBOARD_SCREENSHOT set it leaves a full-page
// screenshot there at the end. Any failed check prints `fail: ...` on stderr and exits
// non-zero. Every wait is bounded.

import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const STEP_MS = 8000;
const TOTAL_MS = 60000;
const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const [adminUrl, token, victim, other] = process.argv.slice(2);
if (!adminUrl || !token || !victim || !other) {
  console.error("usage: node dashboard.mjs ADMIN_URL TOKEN VICTIM_ADDR OTHER_ADDR");
  process.exit(2);
}

let browser = null;
const watchdog = setTimeout(() => fail(`gave up after ${TOTAL_MS} ms`), TOTAL_MS);

function fail(message) {
  console.error(`fail: ${message}`);
  const close = browser ? browser.close().catch(() => {}) : Promise.resolve();
  close.finally(() => process.exit(1));
}

function say(line) {
  process.stdout.write(line + "\n");
}

// Lines from the Rust test, consumed in order.
const incoming = [];
const waiting = [];
createInterface({ input: process.stdin }).on("line", (line) => {
  const next = waiting.shift();
  if (next) {
    next(line);
  } else {
    incoming.push(line);
  }
});

function hear(expected) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no \`${expected}\` from the test within ${STEP_MS} ms`)), STEP_MS);
    const take = (line) => {
      clearTimeout(timer);
      if (line.startsWith(expected)) {
        resolve(line);
      } else {
        reject(new Error(`expected \`${expected}\` from the test, got \`${line}\``));
      }
    };
    const queued = incoming.shift();
    if (queued !== undefined) {
      take(queued);
    } else {
      waiting.push(take);
    }
  });
}

const row = (address) => `section[data-pool="app"] tr[data-backend="${address}"]`;

// The names the two backends show. The proxy's /status gives a backend's `name` when
// the config names it; until backend tables take a `name`, the real answer gets one
// added here, so the page's use of it is what is checked.
const NAMES = { [victim]: "alpha", [other]: "bravo" };
async function nameBackends(route) {
  const response = await route.fetch();
  if (!response.ok()) {
    // A refusal (no token yet) passes through as it is.
    await route.fulfill({ response });
    return;
  }
  const status = await response.json();
  for (const pool of status.pools || []) {
    for (const backend of pool.backends || []) {
      if (NAMES[backend.address] && !backend.name) {
        backend.name = NAMES[backend.address];
      }
    }
  }
  await route.fulfill({ response, json: status });
}

// Waits until `selector` matches an element whose `data-points` is at least `least`;
// returns that count.
async function pointsAtLeast(page, selector, least) {
  const handle = await page.waitForFunction(
    ([selector, least]) => {
      const node = document.querySelector(selector);
      const points = node ? Number(node.dataset.points) : 0;
      return points >= least ? points : false;
    },
    [selector, least],
    { timeout: STEP_MS }
  );
  return handle.jsonValue();
}

async function main() {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
    timeout: STEP_MS,
  });
  const page = await browser.newPage();
  page.setDefaultTimeout(STEP_MS);
  const problems = [];
  page.on("pageerror", (error) => problems.push(`uncaught: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() === "error" && /Content Security Policy|Refused to/i.test(message.text())) {
      problems.push(`csp: ${message.text()}`);
    }
  });

  await page.route("**/status", nameBackends);
  const response = await page.goto(adminUrl + "/", { waitUntil: "load" });
  if (!response || response.status() !== 200) {
    throw new Error(`GET / answered ${response && response.status()}`);
  }
  const csp = response.headers()["content-security-policy"] || "";
  if (!csp.includes("default-src 'self'")) {
    throw new Error(`GET / without a strict CSP: ${csp}`);
  }

  // The admin API has a token: the page asks for it, then shows data.
  await page.locator("#token-form").waitFor({ state: "visible" });
  await page.locator("#banner").waitFor({ state: "visible" });
  await page.fill("#token", token);
  await page.click("#token-save");
  await page.waitForSelector(`${row(victim)}[data-health="up"]`);
  await page.waitForSelector(`${row(other)}[data-health="up"]`);
  await page.locator("#banner").waitFor({ state: "hidden" });
  const rows = await page.locator('section[data-pool="app"] tr[data-backend]').count();
  if (rows !== 2) {
    throw new Error(`expected 2 backend rows, saw ${rows}`);
  }
  // A named backend shows its name, with its address beside it.
  await page.waitForFunction(
    (selector) => document.querySelector(selector)?.textContent === "alpha",
    `${row(victim)} .backend-name`,
    { timeout: STEP_MS }
  );
  const address = await page.locator(`${row(victim)} .backend-address`).textContent();
  if (address !== victim) {
    throw new Error(`the address beside the name shows \`${address}\``);
  }
  // Plugin errors are badges, one per kind; the load time is in words.
  const plugin = 'tr[data-plugin="hostile"]';
  await page.waitForSelector(`${plugin} [data-error-kind="trap"]`);
  const trap = await page.locator(`${plugin} [data-error-kind="trap"]`).textContent();
  const invalid = await page.locator(`${plugin} [data-error-kind="invalid"]`).textContent();
  if (trap !== "trap 2" || invalid !== "invalid 1") {
    throw new Error(`error badges show \`${trap}\` and \`${invalid}\``);
  }
  const loaded = page.locator(`${plugin} time`);
  const loadedText = (await loaded.textContent()) || "";
  const loadedAt = Date.parse((await loaded.getAttribute("datetime")) || "");
  if (!/^(just now|\d+ s ago)$/.test(loadedText) || !(Math.abs(Date.now() - loadedAt) < 120000)) {
    throw new Error(`plugin loaded shows \`${loadedText}\` (${loadedAt})`);
  }
  const target = await page.locator('tr[data-route="all"] td').last().textContent();
  if (!target || !target.includes("pool app")) {
    throw new Error(`route target shows \`${target}\``);
  }
  say(`listed ${victim} ${other}`);

  await hear("killed");
  const killedAt = Date.now();
  await page.waitForSelector(`${row(victim)}[data-health="down"]`);
  say(`down ${victim} ${Date.now() - killedAt}ms`);

  await page.click(`${row(victim)} button[data-action="drain"]`);
  await page.waitForSelector(`${row(victim)}:is([data-admin-state="draining"], [data-admin-state="drained"])`);
  const state = await page.getAttribute(row(victim), "data-admin-state");
  const drainButton = page.locator(`${row(victim)} button[data-action="drain"]`);
  if (!(await drainButton.isDisabled())) {
    throw new Error("drain stays clickable on a draining backend");
  }
  say(`drained ${victim} ${state}`);
  await hear("verified");

  await page.fill(`${row(other)} input[data-weight-input]`, "5");
  await page.click(`${row(other)} button[data-action="set-weight"]`);
  await page.waitForFunction(
    (selector) => {
      const cell = document.querySelector(selector);
      return cell !== null && cell.textContent.startsWith("5");
    },
    `${row(other)} [data-field="weight"]`,
    { timeout: STEP_MS }
  );
  say(`weight ${other} 5`);
  await hear("verified");

  // The timeline shows the health check's verdict and the operator's changes, newest
  // first, naming the backend by its name.
  const event = (kind, text) =>
    page.waitForFunction(
      ([kind, text]) =>
        Array.from(document.querySelectorAll(`#events li[data-kind="${kind}"]`)).find((li) =>
          li.textContent.includes(text)
        ) !== undefined,
      [kind, text],
      { timeout: STEP_MS }
    );
  await event("health", "alpha (app)health check: DOWN");
  // Drained at once when nothing was in flight, draining otherwise.
  await event("backend", "alpha (app)drain");
  await event("backend", "bravo (app)weight set to 5 by an operator");
  const down = page.locator('#events li[data-kind="health"].warning', { hasText: "alpha" }).first();
  const when = (await down.locator("time").textContent()) || "";
  if (!/^(just now|\d+ s ago)$/.test(when)) {
    throw new Error(`event time shows \`${when}\``);
  }
  const ids = await page.$$eval("#events li", (items) => items.map((li) => Number(li.dataset.eventId)));
  if (!ids.every((id, i) => i === 0 || id < ids[i - 1])) {
    throw new Error(`events are not newest first: ${ids}`);
  }
  say("timeline ok");

  // Curves fill in from the proxy's history: requests on the backend that serves.
  const curve = `${row(other)} [data-spark="rps"]`;
  const points = await pointsAtLeast(page, curve, 2);
  const drawn = (await page.getAttribute(`${curve} polyline`, "points")) || "";
  if (drawn.split(" ").length !== points) {
    throw new Error(`the rps curve has ${points} points but draws \`${drawn}\``);
  }
  const rps = (await page.locator(`${curve} .spark-value`).textContent()) || "";
  if (!/^\d+(\.\d)?\/s$/.test(rps)) {
    throw new Error(`the rps curve's value shows \`${rps}\``);
  }
  await pointsAtLeast(page, `${row(other)} [data-spark="p99"]`, 1);
  say(`curves ${points} points, now ${rps}`);

  // Rates are numbers once two polls have been seen.
  const rate = await page.locator(`${row(other)} [data-field="rate"]`).textContent();
  if (!/^\d/.test(rate || "")) {
    throw new Error(`request rate shows \`${rate}\``);
  }

  // Polling failures show the banner; recovery hides it.
  await page.route("**/status", (route) => route.abort("connectionrefused"));
  await page.locator("#banner").waitFor({ state: "visible" });
  const banner = (await page.locator("#banner").textContent()) || "";
  if (!banner.includes("Disconnected")) {
    throw new Error(`banner says \`${banner}\``);
  }
  await page.unroute("**/status");
  await page.locator("#banner").waitFor({ state: "hidden" });
  say("banner ok");

  // The token survives a reload of the tab (sessionStorage), and so do the curves and
  // the timeline: the proxy kept them, the new page only asks.
  const before = Number(await page.getAttribute(curve, "data-points"));
  await page.route("**/status", nameBackends);
  await page.reload({ waitUntil: "load" });
  await page.waitForSelector(`${row(other)}[data-health="up"]`);
  if (await page.locator("#token-form").isVisible()) {
    throw new Error("token asked again after a reload");
  }
  const after = await pointsAtLeast(page, curve, before);
  await event("health", "alpha (app)health check: DOWN");
  say(`kept ${after} points (${before} before the reload) and the timeline`);

  if (process.env.DASHBOARD_SCREENSHOT) {
    await page.screenshot({ path: process.env.DASHBOARD_SCREENSHOT, fullPage: true });
  }
  if (problems.length > 0) {
    throw new Error(problems.join("; "));
  }
  await browser.close();
  clearTimeout(watchdog);
  say("done");
  process.exit(0);
}

main().catch((error) => fail(error && error.message ? error.message : String(error)));
