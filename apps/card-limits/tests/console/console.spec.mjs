// Drives the console of a running card-limits service in headless
// Chromium: every page under load, a command sent through the form, a
// provenance link followed, the degraded state; screenshots for review.
//
// Run by apps/card-limits/tests/console.rs with:
//   CONSOLE_URL      the service's base URL
//   SCREENSHOT_DIR   where the screenshots go
//   EXPECT_BACKEND   the log the console must report (embedded, kafka)
//   CHROMIUM         the browser (default /usr/bin/chromium)
//   CONSOLE_TOKEN    a token to sign in with (optional)
// The last line printed is a JSON summary; the exit code is 0 only if all passed.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const base = process.env.CONSOLE_URL;
const shots = process.env.SCREENSHOT_DIR;
const backend = process.env.EXPECT_BACKEND;
if (!base || !shots || !backend) {
  console.error("CONSOLE_URL, SCREENSHOT_DIR and EXPECT_BACKEND must be set");
  process.exit(2);
}
mkdirSync(shots, { recursive: true });

const TIMEOUT = 30_000;
const errors = [];
const screenshots = [];
const steps = [];
let counting = true;

function check(condition, what) {
  if (!condition) throw new Error(`check failed: ${what}`);
}

async function step(name, page, body) {
  const started = Date.now();
  await body();
  const file = join(shots, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  screenshots.push(file);
  steps.push({ name, ms: Date.now() - started });
  console.log(`ok ${name} (${Date.now() - started} ms)`);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
let failed = null;
try {
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  if (process.env.CONSOLE_TOKEN) {
    await context.addInitScript((t) => sessionStorage.setItem("kappa-console-token", t), process.env.CONSOLE_TOKEN);
  }
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.on("console", (m) => { if (counting && m.type() === "error") errors.push(`console: ${m.text()} (${m.location().url})`); });
  page.on("pageerror", (e) => { if (counting) errors.push(`page: ${e.message}`); });
  page.on("requestfailed", (r) => { if (counting && r.failure()?.errorText !== "net::ERR_ABORTED") errors.push(`request: ${r.url()} ${r.failure()?.errorText}`); });

  await step("system", page, async () => {
    await page.goto(`${base}/console#/system`);
    await page.locator("#status[data-state=ok]").waitFor();
    // The decision service announced itself in the log: a box reading commands, writing events.
    const box = page.locator('g.box[data-box^="service:decisions/"]');
    await box.waitFor();
    // Shown running within the timeout: under load an announcement can
    // land late, and the page (refreshed every 2 s) says "silent" meanwhile.
    const running = await page.locator('g.box[data-box^="service:decisions/"][data-state=running]')
      .waitFor().then(() => true, () => false);
    check(running, `the decision service is running, saw ${await box.getAttribute("data-state")}`);
    await box.locator('text.lag[data-topic="commands"][data-reader="card-limits"]').waitFor();
    await page.locator('.system g.topic[data-topic="events"]').waitFor();
    const writes = await page.locator('.system path.edge.write[data-to="topic:events"]').count();
    check(writes >= 1, `an arrow from a writer to events, saw ${writes}`);
  });

  await step("topology", page, async () => {
    await page.goto(`${base}/console#/topology`);
    await page.locator("#status[data-state=ok]").waitFor();
    check((await page.locator("#backend").textContent()).includes(backend), `backend badge says ${backend}`);
    const app = page.locator('section.application[data-application="card-limits"]');
    await app.locator("g.topic[data-topic=commands]").waitFor();
    await app.locator("g.topic[data-topic=events]").waitFor();
    check(await app.locator("g.node").count() >= 3, "the processor's nodes are drawn");
    // Under load the source consumes commands: its rate becomes positive.
    await page.waitForFunction(() => [...document.querySelectorAll('section[data-application="card-limits"] text.rate')]
      .some((t) => parseFloat(t.textContent) > 0), null, { timeout: TIMEOUT });
    await app.locator("table.tasks tbody tr td.lag").first().waitFor();
    const rows = await app.locator("table.tasks tbody tr").count();
    check(rows === 4, `4 tasks listed, saw ${rows}`);
  });

  await step("views-from-store", page, async () => {
    await page.locator('section[data-application="card-limits"] g.store.linked[data-store="cards"]').click();
    await page.waitForURL(/#\/views\?view=cards/);
    await page.locator("#view-result .entry").first().waitFor();
    const key = JSON.parse(await page.locator("#view-result .entry td pre").first().textContent());
    await page.fill("#view-key", key);
    await page.click("#view-get");
    await page.locator("#view-result[data-state=found] pre.value").waitFor();
    check(/^reflects /.test(await page.locator("#view-position").textContent()), "the answer shows its position");
    check(JSON.parse(await page.locator("#view-result pre.value").textContent()).period_days > 0, "a card's state is shown");
  });

  await step("commands", page, async () => {
    await page.goto(`${base}/console#/commands`);
    await page.selectOption("#command-action", "set-limit");
    await page.fill("#command-key", "console-card");
    await page.fill("#field-card", "console-card");
    await page.fill("#field-limit", "12345");
    await page.check("#command-sync");
    await page.click("#command-send");
    await page.locator('#command-outcome[data-status="201"]').waitFor();
    await page.locator('#command-outcome .outcome-event[data-action="limit-set"]').waitFor();
    // The live streams carry the load.
    await page.locator("#command-stream .item").first().waitFor();
    await page.locator("#event-stream .item").first().waitFor();
    // Limits are renewed all along the load: limit-set events keep coming.
    await page.fill("#event-stream-action", "limit-set");
    await page.press("#event-stream-action", "Tab");
    await page.locator('#event-stream .item[data-action="limit-set"]').first().waitFor();
    const others = await page.locator('#event-stream .item:not([data-action="limit-set"])').count();
    check(others === 0, `the action filter holds back other events, saw ${others}`);
  });

  await step("provenance", page, async () => {
    const link = page.locator('#command-outcome .outcome-event[data-action="limit-set"] a.provenance');
    await Promise.all([page.waitForURL(/#\/topics\?topic=events/), link.click()]);
    // The page renders after the address changes: wait for the events' browser.
    const event = page.locator('#record-browser:has(h2:text-is("Records of events")) .record.highlighted');
    await event.waitFor();
    check((await event.locator("pre.value").textContent()).includes('"limit-set"'), "the outcome event is highlighted");
    const source = event.locator('a.provenance[data-header="kappa-source"]');
    await Promise.all([page.waitForURL(/#\/topics\?topic=commands/), source.click()]);
    const command = page.locator('#record-browser:has(h2:text-is("Records of commands")) .record.highlighted');
    await command.waitFor();
    const text = await command.locator("pre.value").textContent();
    check(text.includes('"set-limit"') && text.includes("console-card"), "the link leads to the command that caused it");
  });

  await step("topics", page, async () => {
    await page.goto(`${base}/console#/topics`);
    await page.locator('#topics-table tr.topic[data-topic="commands"]').waitFor();
    await page.locator('#topics-table tr.topic[data-topic="events"]').waitFor();
    await page.waitForFunction(() => parseFloat(document.querySelector('#topics-table tr[data-topic="commands"] td.rate')?.textContent) > 0,
      null, { timeout: TIMEOUT });
    check(await page.locator("#groups-table tbody tr").count() >= 4, "consumer positions and lag are listed");
  });

  await step("records", page, async () => {
    await page.click('#topics-table tr[data-topic="commands"] a');
    await page.locator("#records .record").first().waitFor();
    check(await page.locator("#records .record").count() === 50, "the latest page of 50 records");
    const before = await page.locator("#records .record").first().getAttribute("data-offset");
    await page.selectOption("#browse-mode", "offset");
    await page.fill("#browse-at", "0");
    await page.click("#browse-load");
    await page.locator('#records .record[data-offset="0"]').waitFor();
    check(Number(before) > 0, "the latest records are past the first");
  });

  await step("card-limits", page, async () => {
    await page.goto(`${base}/console#/app/cards`);
    await page.locator("#cards-table tr[data-card]").first().waitFor();
    await page.locator("#cards-table tr[data-card] .bar .settled").first().waitFor({ state: "attached" });
    await page.locator("#decisions .decision").first().waitFor();
    await page.locator('#notifications tr.notification[data-status="delivered"]').first().waitFor({ timeout: 60_000 });
    const limit = await page.locator("#cards-table tr[data-card] td.limit").first().textContent();
    check(/^\d+\.\d\d$/.test(limit), `limits shown in currency units, saw ${limit}`);
  });

  counting = false;
  await step("degraded", page, async () => {
    await page.route("**/console/api/**", (r) => r.abort("connectionrefused"));
    await page.route("**/events**", (r) => r.abort("connectionrefused"));
    await page.route("**/views**", (r) => r.abort("connectionrefused"));
    await page.route("**/cards/**", (r) => r.abort("connectionrefused"));
    await page.goto(`${base}/console#/topology`);
    await page.locator("#status[data-state=degraded]").waitFor();
    await page.locator("#banner:not([hidden])").waitFor();
  });
} catch (e) {
  failed = String(e.stack || e);
  console.error(failed);
  // What the page showed when it failed, for the review.
  for (const p of browser.contexts().flatMap((c) => c.pages())) {
    const file = join(shots, "failure.png");
    await p.screenshot({ path: file, fullPage: true }).catch(() => {});
    console.error(`page at failure: ${p.url()} (screenshot ${file})`);
  }
} finally {
  await browser.close();
}
const ok = failed === null && errors.length === 0;
for (const e of errors) console.error(e);
console.log(JSON.stringify({ ok, failed, steps, screenshots, console_errors: errors.length, errors }));
process.exit(ok ? 0 : 1);
