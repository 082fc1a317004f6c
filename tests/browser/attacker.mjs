// A hostile web page against the admin API, in headless Chromium, for tests/dashboard.rs.
//
//   node attacker.mjs ADMIN_PORT ATTACKER_URL VICTIM_ADDR
//
// Chromium resolves attacker.test to 127.0.0.1, so a page from another origin
// (ATTACKER_URL, http://attacker.test:PORT/) can target the admin API both by its
// loopback address and under its own name (what DNS rebinding achieves). The page
// tries a form post, no-cors fetches and reads; then a tab opened at
// http://attacker.test:ADMIN_PORT/ (same origin as the admin API after rebinding,
// foreign Host) tries again. The script prints `attacked JSON` with what the browser
// saw, waits for `checked` on stdin (the test found nothing changed and drove
// `switchyard ctl`), drains VICTIM_ADDR from the real dashboard, prints `drained`,
// waits for `verified`, and prints `done`. Failures print `fail: ...` and exit non-zero.

import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const STEP_MS = 8000;
const TOTAL_MS = 40000;
const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const [adminPort, attackerUrl, victim] = process.argv.slice(2);
if (!adminPort || !attackerUrl || !victim) {
  console.error("usage: node attacker.mjs ADMIN_PORT ATTACKER_URL VICTIM_ADDR");
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

async function main() {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-dev-shm-usage",
      "--host-resolver-rules=MAP attacker.test 127.0.0.1",
    ],
    timeout: STEP_MS,
  });
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_MS);

  // 1. The attacker's page on another origin runs its attacks on load.
  const landing = await page.goto(attackerUrl, { waitUntil: "load" });
  if (!landing || landing.status() !== 200) {
    throw new Error(`the attacker page answered ${landing && landing.status()}`);
  }
  await page.waitForFunction(() => window.__results !== undefined, null, { timeout: STEP_MS });
  const fromPage = await page.evaluate(() => window.__results);

  // 2. After rebinding, a tab at attacker.test:ADMIN_PORT is same-origin with the
  //    admin API: it may send JSON and read answers; only the Host gives it away.
  const rebound = `http://attacker.test:${adminPort}`;
  const direct = await page.goto(`${rebound}/status`, { waitUntil: "load" });
  const sameOrigin = await page.evaluate(async (victimAddress) => {
    const out = {};
    const read = await fetch("/status");
    out.read = `${read.status}:${(await read.text()).includes("pools")}`;
    const change = await fetch(`/pools/app/backends/${victimAddress}/disable`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: "{}",
    });
    out.disable = String(change.status);
    const add = await fetch("/pools/app/backends", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ address: "169.254.169.254:80" }),
    });
    out.add = String(add.status);
    return out;
  }, victim);
  const directBody = await page.content();
  say(
    "attacked " +
      JSON.stringify({
        page: fromPage,
        rebound_status: direct ? direct.status() : 0,
        rebound_shows_pools: directBody.includes('"pools"'),
        same_origin: sameOrigin,
      })
  );
  await hear("checked");

  // 3. The real dashboard, on the admin API's own origin, still drives it.
  const dashboard = await context.newPage();
  dashboard.setDefaultTimeout(STEP_MS);
  await dashboard.goto(`http://127.0.0.1:${adminPort}/`, { waitUntil: "load" });
  const row = `tr[data-backend="${victim}"]`;
  await dashboard.waitForSelector(`${row}[data-admin-state="active"]`);
  await dashboard.click(`${row} button[data-action="drain"]`);
  await dashboard.waitForSelector(`${row}:is([data-admin-state="draining"], [data-admin-state="drained"])`);
  say(`drained ${victim}`);
  await hear("verified");

  await browser.close();
  clearTimeout(watchdog);
  say("done");
  process.exit(0);
}

main().catch((error) => fail(error && error.message ? error.message : String(error)));
