// Checks the dashboard's Fleet section in headless Chromium for tests/cluster.rs.
//
//   node fleet.mjs ADMIN_URL INSTANCES DISPUTED_BACKEND
//
// Passes when the section lists INSTANCES instances and highlights the row of
// DISPUTED_BACKEND (`pool/address`) as a disagreement, with the disagreement spelled
// out above the tables. Prints `fleet ok` and exits 0; otherwise prints `fail: ...`
// on stderr and exits non-zero. Bounded in time.

import { chromium } from "playwright-core";

const TOTAL_MS = 20000;
const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const [adminUrl, instances, disputed] = process.argv.slice(2);
if (!adminUrl || !instances || !disputed) {
  console.error("usage: node fleet.mjs ADMIN_URL INSTANCES DISPUTED_BACKEND");
  process.exit(2);
}

let browser = null;
const watchdog = setTimeout(() => fail(`gave up after ${TOTAL_MS} ms`), TOTAL_MS);

function fail(message) {
  console.error(`fail: ${message}`);
  const close = browser ? browser.close().catch(() => {}) : Promise.resolve();
  close.finally(() => process.exit(1));
}

try {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
    timeout: 10000,
  });
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(adminUrl + "/");
  await page.waitForSelector("#fleet-section:not([hidden])", { timeout: 10000 });
  await page.waitForFunction(
    (n) => document.querySelectorAll("#fleet-instances tbody tr").length === n,
    Number(instances),
    { timeout: 10000 },
  );
  await page.waitForFunction(
    (backend) => {
      const row = document.querySelector(`#fleet-backends tbody tr[data-backend="${backend}"]`);
      const said = Array.from(document.querySelectorAll("#fleet-disagreements li"))
        .some((li) => li.textContent.includes(backend));
      return row !== null && row.classList.contains("disagree") && said;
    },
    disputed,
    { timeout: 10000 },
  );
  const columns = await page.$$eval("#fleet-backends thead th", (ths) => ths.length);
  if (columns !== Number(instances) + 1) {
    fail(`expected a column per instance, got ${columns - 1}`);
  } else if (errors.length > 0) {
    fail(`script errors on the page: ${errors.join("; ")}`);
  } else {
    console.log("fleet ok");
    clearTimeout(watchdog);
    await browser.close();
    process.exit(0);
  }
} catch (error) {
  fail(error && error.message ? error.message : String(error));
}
