// kiln's dashboard in a real browser: Debian's chromium, headless, driven by playwright-core.
// Run by crates/kiln/tests/dashboard.rs against a real `kiln up`, which checks the exit
// status, the `ok:` lines and the last line (`result: {json}`), and then kiln's own events.
//
//   node tests/browser/dashboard.mjs main URL PROJECT_DIR PORT SCREENSHOT_DIR
//   node tests/browser/dashboard.mjs load URL RESOURCES
//
// URL is the one `kiln dashboard` prints (http://127.0.0.1:PORT/?token=…). `main` edits
// PROJECT_DIR/build.sh and kiln.toml (the project of dashboard.rs) and expects a process
// service `web` listening on PORT, and a target `web` too (a name that is both); `load` expects RESOURCES targets and services, each target built, one
// of them a service `flood` printing thousands of lines a second.
// Exit 0: every check passed; 1: a check failed (`error: …`); 2: the tools are missing.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

const CHROMIUM = '/usr/bin/chromium';
const STEP_MS = 20000; // the longest any one step may wait

function fail(message, code = 1) {
  console.log(`error: ${message}`);
  process.exit(code);
}

let chromium;
try {
  ({ chromium } = await import('playwright-core'));
} catch (e) {
  fail(`playwright-core is not installed in tests/browser (${e.message}); run scripts/install-deps.sh`, 2);
}
if (!fs.existsSync(CHROMIUM)) fail(`${CHROMIUM} is missing; run scripts/install-deps.sh`, 2);

const [scenario, url, ...rest] = process.argv.slice(2);
if (!['main', 'load'].includes(scenario) || !url) fail('usage: dashboard.mjs main|load URL [PROJECT_DIR PORT SCREENSHOT_DIR]');
const base = new URL(url).origin;

const ok = (what) => console.log(`ok: ${what}`);
const row = (k) => `tr[data-resource="${k}"]`;

async function text(page, selector) {
  return (await page.locator(selector).first().textContent({ timeout: STEP_MS })) || '';
}

// Waits for `fn` (run in the page) to return something true; the failure says `what`.
async function until(page, what, fn, arg) {
  try {
    return await (await page.waitForFunction(fn, arg, { timeout: STEP_MS, polling: 50 })).jsonValue();
  } catch (e) {
    const shot = path.join(process.env.KILN_BROWSER_FAILURES || '/tmp', `kiln-dashboard-failure-${process.pid}.png`);
    await page.screenshot({ path: shot, fullPage: true }).catch(() => {});
    fail(`timed out waiting for ${what} (a screenshot: ${shot}): ${e.message.split('\n')[0]}`);
  }
}

const badge = (k, col) => `${row(k)} td.${col} .badge`;
const badgeIs = (page, k, col, want) =>
  until(
    page,
    `${k} ${col} to show ${want}`,
    ([sel, w]) => {
      const b = document.querySelector(sel);
      return b && b.textContent === w ? b.className : false;
    },
    [badge(k, col), want],
  );

const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true });
const result = {};
try {
  if (scenario === 'main') await main(rest);
  else await load(rest);
} finally {
  await browser.close();
}
console.log(`result: ${JSON.stringify(result)}`);

async function signIn(context) {
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(m.text());
  });
  const answer = await page.goto(url);
  if (!answer.ok()) fail(`GET ${url} answered ${answer.status()}`);
  const at = new URL(page.url());
  if (at.search || !/^\/s\/[0-9a-f]{32}\/$/.test(at.pathname)) fail(`the token stays in the address bar: ${page.url()}`);
  const cookies = await context.cookies(page.url());
  // Scoped to the dashboard's path: a page of another server on 127.0.0.1 never gets it.
  if ((await context.cookies(`${base}/`)).length) fail(`the cookie is sent outside the dashboard's path: ${JSON.stringify(await context.cookies(`${base}/`))}`);
  const name = `kiln_token_${new URL(base).port}`;
  const cookie = cookies.find((c) => c.name === name);
  if (!cookie || !cookie.httpOnly || cookie.sameSite !== 'Strict') fail(`no HttpOnly SameSite=Strict ${name} cookie: ${JSON.stringify(cookies)}`);
  if (cookie.path !== at.pathname) fail(`the cookie's path is ${cookie.path}, not ${at.pathname}`);
  ok('the page loads with the token, which leaves the URL for an HttpOnly, SameSite=Strict cookie of its own path');
  await until(page, 'the event stream to be live', () => document.querySelector('#conn').textContent === 'live');
  return { page, errors };
}

async function main([project, port, shots]) {
  if (!project || !port || !shots) fail('main needs PROJECT_DIR PORT SCREENSHOT_DIR');

  // Without the token: the page and the API refuse, and say what to open.
  const stranger = await browser.newContext();
  const bare = await stranger.newPage();
  const refused = await bare.goto(`${base}/`);
  const says = await bare.textContent('body');
  if (refused.status() !== 401 || !says.includes('kiln dashboard')) fail(`GET / without a token: ${refused.status()} ${says}`);
  const wrong = await bare.goto(`${base}/?token=0123456789abcdef`);
  if (wrong.status() !== 401) fail(`GET /?token=wrong answered ${wrong.status()}`);
  const api = await stranger.request.get(`${base}/api/status`);
  if (api.status() !== 401) fail(`GET /api/status without a token answered ${api.status()}`);
  const post = await stranger.request.post(`${base}/api/trigger/app`, { headers: { Origin: base } });
  if (post.status() !== 401) fail(`POST /api/trigger/app without a token answered ${post.status()}`);
  await stranger.close();
  ok('a missing or wrong token is refused (401), the page says to open the URL `kiln dashboard` prints');

  // Before the first status arrives, the rows say `loading…`, not a made-up state.
  {
    const early = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    let release;
    const held = new Promise((r) => (release = r));
    await early.route('**/api/status', async (route) => {
      await held;
      await route.continue();
    });
    const page = await early.newPage();
    await page.goto(url);
    await page.waitForSelector(row('service:web'), { timeout: STEP_MS });
    const shown = await page.evaluate(() => ({
      table: document.querySelector('#resources tbody').innerText,
      summary: document.querySelector('#summary').textContent,
      graph: [...document.querySelectorAll('#graph g[data-node] title')].map((t) => t.textContent).join('; '),
    }));
    if (/not built|pending|0\/0/.test(shown.table) || !shown.table.includes('loading…') || shown.summary !== 'loading…') {
      fail(`before the status came the page showed: ${JSON.stringify(shown)}`);
    }
    if (/not built|pending/.test(shown.graph)) fail(`before the status came the graph showed: ${shown.graph}`);
    release();
    await badgeIs(page, 'target:app', 'build', 'built');
    await early.close();
    ok('before the first status the rows say loading…, then the status fills them');
  }

  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const { page, errors } = await signIn(context);

  await badgeIs(page, 'target:app', 'build', 'built');
  const ready = await badgeIs(page, 'service:web', 'runtime', 'ready');
  if (!ready.includes('s-ok')) fail(`ready is not coloured as ok: ${ready}`);
  if ((await text(page, `${row('service:web')} td.replicas`)) !== '1/1') fail('web does not show 1/1 replicas');
  await page.waitForSelector(`${row('service:web')} td.ports a[href="http://127.0.0.1:${port}/"]`, { timeout: STEP_MS });
  ok(`the table shows app built, web ready 1/1 with a link to http://127.0.0.1:${port}/`);

  await page.waitForSelector('#graph g[data-node="target:app"]', { timeout: STEP_MS });
  await page.waitForSelector('#graph path[data-from="target:app"][data-to="service:web"]', { state: 'attached', timeout: STEP_MS });
  ok('the dependency graph has app → web');

  // The log pane: the service's own line, from /api/logs, and markup shown as text.
  await page.click(`${row('service:web')} button.logs`);
  await page.fill('#log-filter', 'hello from web');
  await until(page, 'the pane to show web\'s line', () =>
    [...document.querySelectorAll('#log-window .line')].some((l) => l.textContent === 'hello from web' && l.dataset.src === 'run[0]'),
  );
  await page.fill('#log-filter', '<script>');
  await until(page, 'the pane to show markup as text', () =>
    [...document.querySelectorAll('#log-window .line')].some((l) => l.textContent === '<script>window.kilnPwned=1</script>'),
  );
  if (await page.evaluate(() => 'kilnPwned' in window)) fail('a service line ran as a script');
  await page.fill('#log-filter', '');
  ok('the log pane shows web\'s line `hello from web` as runtime output, and `<script>` as text');

  // A target and a service both named web: the target's row rebuilds the target (the
  // service is not restarted: dashboard.rs checks kiln's events), and its pane is the
  // target's build log only.
  await badgeIs(page, 'target:web', 'build', 'built');
  await page.click(`${row('target:web')} button.act`);
  await until(page, 'target web to be rebuilt by its trigger', (sel) => {
    const r = document.querySelector(sel);
    return r && r.textContent === 'triggered';
  }, `${row('target:web')} td.reason`);
  await page.click(`${row('target:web')} button.logs`);
  const targetPane = await until(page, 'the pane of target web to show its build output', () => {
    const lines = [...document.querySelectorAll('#log-window .line')];
    return document.querySelector('#log-view').dataset.pane === 'target:web' &&
      lines.some((l) => l.textContent === 'building the web target' && l.dataset.src === 'build')
      ? lines.map((l) => `${l.dataset.src} ${l.textContent}`)
      : false;
  });
  if (targetPane.some((l) => l.startsWith('run'))) fail(`the pane of target web shows the service's lines: ${JSON.stringify(targetPane)}`);
  ok(`target web's trigger rebuilds the target, and its pane is its build log (${targetPane.length} lines, none of service web)`);

  // An edit that fails the build: live in the table, and an alert that can be dismissed.
  fs.writeFileSync(path.join(project, 'build.sh'), 'echo "broken on purpose" >&2\nexit 3\n');
  const failed = await badgeIs(page, 'target:app', 'build', 'failed');
  if (!failed.includes('s-bad')) fail(`failed is not coloured as a failure: ${failed}`);
  const alert = await until(page, 'an alert for app', () => {
    const a = document.querySelector('#alerts [data-alert="target:app"] .text .msg');
    return a && a.textContent;
  });
  if (!alert.includes('target app failed')) fail(`the alert says: ${alert}`);
  // Its first error lines: what the build printed last.
  await until(page, 'the alert to show the build\'s last line', () => {
    const d = document.querySelector('#alerts [data-alert="target:app"] .detail');
    return d && d.textContent.includes('broken on purpose');
  });
  await page.click('#alerts [data-alert="target:app"] button.dismiss');
  await until(page, 'the alert to go', () => !document.querySelector('#alerts [data-alert="target:app"]'));
  ok(`an edit that breaks the build shows app failed live, and an alert (${alert.trim()}) with the build's last line, that is dismissed`);

  // Broken again: a new alert, which goes by itself when the build is fixed.
  fs.writeFileSync(path.join(project, 'build.sh'), 'echo "compiling app"\necho "app.c:3: still broken" >&2\nexit 4\n');
  const again = await until(page, 'an alert for app again, with its last lines', () => {
    const d = document.querySelector('#alerts [data-alert="target:app"] .detail');
    return d && d.textContent.includes('still broken') ? d.textContent : false;
  });
  await page.screenshot({ path: path.join(shots, 'dashboard-failure.png'), clip: { x: 0, y: 0, width: 1280, height: 360 } });

  // The fix: built again, the alert gone, web restarted on the new output, and the
  // update's breakdown.
  fs.writeFileSync(path.join(project, 'build.sh'), 'mkdir -p out\necho "building app v2"\necho v2 > out/app.txt\n');
  await badgeIs(page, 'target:app', 'build', 'built');
  await until(page, 'the alert to clear itself', () => !document.querySelector('#alerts [data-alert="target:app"]'));
  ok(`broken again, the alert shows the build's last lines (${JSON.stringify(again)}), and it goes by itself once app is built`);
  const update = await until(page, 'an update of web in the history', () => {
    const tr = [...document.querySelectorAll('#updates tbody tr')].find((r) => r.children[4].textContent.includes('web'));
    if (!tr) return false;
    const ms = {};
    for (const p of ['detect', 'debounce', 'build', 'deploy', 'ready', 'total']) ms[p] = Number(tr.querySelector(`td.${p}`).dataset.ms);
    const segments = tr.querySelectorAll('.bar span').length;
    return { ms, segments, how: tr.querySelector('td.how').textContent, cause: tr.querySelector('td.cause').textContent };
  });
  if (!(update.ms.total > 0) || update.segments !== 5 || update.cause !== 'build.sh') fail(`the update row: ${JSON.stringify(update)}`);
  // `#`: this page's running number (newest first, so the first row has the highest), the
  // event's seq in its title.
  const numbers = await page.evaluate(() =>
    [...document.querySelectorAll('#updates tbody tr')].map((r) => ({ no: r.children[0].textContent, title: r.children[0].title, seq: r.dataset.seq })),
  );
  const want = numbers.map((_, i) => String(numbers.length - i));
  if (numbers.map((n) => n.no).join() !== want.join() || numbers.some((n) => n.title !== `event ${n.seq}`)) {
    fail(`the history's # column: ${JSON.stringify(numbers)}`);
  }
  ok(`the history's # counts the page's updates (${numbers.map((n) => n.no).join(', ')}), each event's seq in its title`);
  result.update = update;
  ok(`the update history shows the save of build.sh to web ready: ${JSON.stringify(update.ms)} ms (${update.how})`);
  await badgeIs(page, 'service:web', 'runtime', 'ready');
  await page.click(`${row('service:web')} button.logs`);
  await page.screenshot({ path: path.join(shots, 'dashboard.png'), fullPage: true });

  // Trigger: the target is built again, for that reason.
  await page.click(`${row('target:app')} button.act`);
  await until(page, 'app to be rebuilt by the trigger', (sel) => {
    const r = document.querySelector(sel);
    return r && r.textContent === 'triggered';
  }, `${row('target:app')} td.reason`);
  await badgeIs(page, 'target:app', 'build', 'built');
  ok('a click on trigger rebuilds app (reason: triggered)');

  // A dropped connection: while the page is offline, an edit rebuilds app and restarts web
  // (kiln's status says so); back online, the EventSource reconnects with Last-Event-ID
  // and the replay brings what it missed, without a status re-read.
  const token = new URL(url).searchParams.get('token');
  const status = async () => (await fetch(`${base}/api/status`, { headers: { Authorization: `Bearer ${token}` } })).json();
  const updatesBefore = (await status()).updates.length;
  const rowsBefore = await page.locator('#updates tbody tr').count();
  const lagged = await page.evaluate(() => window.kilnDashboard.stats.lagged);
  // Offline, so that its retries fail until the edit is done; then its connections to
  // kiln are cut (an offline browser keeps those it has).
  await context.setOffline(true);
  const apiPort = new URL(url).port;
  try {
    execFileSync('ss', ['-K', 'dst', '127.0.0.1', 'dport', '=', `:${apiPort}`], { stdio: 'ignore' });
  } catch (e) {
    fail(`\`ss -K\` could not cut the page's connections (it needs root and iproute2: run scripts/install-deps.sh): ${e.message}`);
  }
  await until(page, 'the page to see the stream drop', () => document.querySelector('#conn').textContent !== 'live');
  fs.writeFileSync(path.join(project, 'build.sh'), 'mkdir -p out\necho "building app v3"\necho v3 > out/app.txt\n');
  const deadline = Date.now() + STEP_MS;
  while ((await status()).updates.length <= updatesBefore) {
    if (Date.now() > deadline) fail('kiln never finished the update of the edit made while the page was offline');
    await new Promise((r) => setTimeout(r, 50));
  }
  await context.setOffline(false);
  await until(page, 'the stream to be live again', () => document.querySelector('#conn').textContent === 'live');
  // What the cut connection and the offline retries logged is no error of the page.
  const cut = /net::ERR_(CONNECTION_ABORTED|CONNECTION_RESET|INTERNET_DISCONNECTED)/;
  errors.splice(0, errors.length, ...errors.filter((e) => !cut.test(e)));
  await until(page, 'the missed update in the history', (n) => document.querySelectorAll('#updates tbody tr').length > n, rowsBefore);
  if ((await page.evaluate(() => window.kilnDashboard.stats.lagged)) !== lagged) fail('the reconnect was not a replay (stream.lagged)');
  await badgeIs(page, 'service:web', 'runtime', 'ready');
  ok('after the connection dropped, the EventSource resumed with Last-Event-ID and the replay brought the missed update');

  // Restart: web stops and is ready again, as its pane's phase lines tell.
  const count = (what) => page.evaluate((w) => window.kilnDashboard.paneText().filter((t) => t.startsWith(w)).length, what);
  const readies = await count('ready');
  const stops = await count('stopping');
  await page.click(`${row('service:web')} button.act`);
  await until(page, 'web to stop for the restart', (n) => window.kilnDashboard.paneText().filter((t) => t.startsWith('stopping')).length > n, stops);
  await until(page, 'web to be ready again', (n) => window.kilnDashboard.paneText().filter((t) => t.startsWith('ready')).length > n, readies);
  await badgeIs(page, 'service:web', 'runtime', 'ready');
  const stopping = await page.evaluate(() => window.kilnDashboard.paneText().filter((t) => t.startsWith('stopping')).pop());
  result.restart = stopping;
  ok(`a click on restart restarts web (${stopping}) and it is ready again`);
  await page.locator('#logs').screenshot({ path: path.join(shots, 'dashboard-logs.png') });

  // A target added by editing kiln.toml while the page is open: its row ends built. The
  // status the page reads after the reload is taken while the target builds (it sleeps)
  // and handed to the page only once the stream has shown the target built: that older
  // status must not take the row back to `running`.
  let shown;
  const built = new Promise((r) => (shown = r));
  const stale = [];
  await page.route('**/api/status', async (route) => {
    const response = await route.fetch();
    const body = await response.text();
    stale.push((JSON.parse(body).targets.extra || { status: 'absent' }).status);
    await built;
    await route.fulfill({ response, body });
  });
  const applied = await page.evaluate(() => window.kilnDashboard.stats.statusApplied);
  const toml = path.join(project, 'kiln.toml');
  fs.writeFileSync(toml, `${fs.readFileSync(toml, 'utf8')}\n[target.extra]\ncmd = "sleep 2; echo extra"\n`);
  await badgeIs(page, 'target:extra', 'build', 'built');
  shown();
  await until(page, 'the status read after the reload to be applied', (n) => window.kilnDashboard.stats.statusApplied > n, applied);
  const frames = await page.evaluate(() => window.kilnDashboard.stats.frames);
  await until(page, 'the page to draw that status', (n) => window.kilnDashboard.stats.frames > n + 1, frames);
  const after = await text(page, badge('target:extra', 'build'));
  await page.unroute('**/api/status');
  const reapplied = await page.evaluate(() => window.kilnDashboard.stats.reapplied);
  result.stale = stale;
  result.reapplied = reapplied;
  if (after !== 'built') fail(`a status older than the stream (extra: ${stale.join(', ')}) took the row back to ${after}`);
  ok(`a target added by a reload of kiln.toml stays built after an older status (extra ${stale.join(', ')} in it; ${reapplied} events applied again)`);

  if (errors.length) fail(`the page reported errors: ${errors.join('; ')}`);
  ok('no error in the page');
}

async function load([resources]) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const { page, errors } = await signIn(context);
  await badgeIs(page, 'service:flood', 'runtime', 'ready');
  // Every resource in the table and the graph, each target built.
  const want = Number(resources);
  await until(page, `${want} rows, every target built`, (n) => {
    const rows = document.querySelectorAll('#resources tbody tr');
    const built = document.querySelectorAll('#resources tbody td.build .badge.s-ok').length;
    return rows.length === n && built === n - 1;
  }, want);
  result.rows = await page.locator('#resources tbody tr').count();
  result.nodes = await page.locator('#graph g[data-node]').count();
  await page.click(`${row('service:flood')} button.logs`);
  const cap = await page.evaluate(() => window.kilnDashboard.cap);
  await until(page, `the flood pane to hold its cap (${cap} lines)`, (c) => window.kilnDashboard.paneLines() >= c, cap);

  // For 3 s of flood: how late a 50 ms timer fires at worst, and how many lines came in.
  const measured = await page.evaluate(
    () =>
      new Promise((resolve) => {
        const s = window.kilnDashboard.stats;
        const lines0 = s.lines;
        const frames0 = s.frames;
        const t0 = performance.now();
        let last = t0;
        let lag = 0;
        const tick = setInterval(() => {
          const now = performance.now();
          lag = Math.max(lag, now - last - 50);
          last = now;
          if (now - t0 >= 3000) {
            clearInterval(tick);
            const secs = (now - t0) / 1000;
            resolve({ lines_per_s: Math.round((s.lines - lines0) / secs), fps: Math.round((s.frames - frames0) / secs), max_lag_ms: Math.round(lag) });
          }
        }, 50);
      }),
  );
  Object.assign(result, measured);

  // A click still answers within a bound: from the mouse press to the page's handler
  // having run (`input_ms`: how long the input waited behind the flood), and to what it
  // changed being there (`click_ms`, with the round trips to the browser).
  const clickAt = async (selector, done, arg) => {
    await page.evaluate((sel) => {
      window.kilnClick = null;
      document.querySelector(sel).addEventListener('click', (e) => (window.kilnClick = performance.now() - e.timeStamp), { once: true });
    }, selector);
    const box = await page.locator(selector).boundingBox();
    const t = Date.now();
    await page.mouse.click(box.x + box.width / 2, box.y + box.height / 2);
    await until(page, `the click on ${selector} to take effect`, done, arg);
    return { wall: Date.now() - t, input: Math.round(await page.evaluate(() => window.kilnClick)) };
  };
  const wrap = await clickAt('#log-wrap', () => document.querySelector('#log-view').classList.contains('wrap'));
  result.click_ms = wrap.wall;
  result.input_ms = wrap.input;
  // And the restart button, which kiln answers.
  const act = `${row('service:flood')} button.act`;
  const restart = await clickAt(act, (sel) => document.querySelector(sel).classList.contains('done'), act);
  result.restart_click_ms = restart.wall;
  result.restart_input_ms = restart.input;

  result.pane_lines = await page.evaluate(() => window.kilnDashboard.paneLines());
  result.dom_lines = await page.evaluate(() => document.querySelectorAll('#log-window .line').length);
  result.cap = cap;
  result.lagged = await page.evaluate(() => window.kilnDashboard.stats.lagged);
  if (result.pane_lines > cap || result.dom_lines > cap) fail(`the pane holds more than its cap: ${JSON.stringify(result)}`);
  ok(`under a flood (${result.lines_per_s} lines/s reached the page) a click answers in ${result.click_ms} ms; the pane holds ${result.pane_lines} lines (cap ${cap}), ${result.dom_lines} in the DOM`);
  if (errors.length) fail(`the page reported errors: ${errors.join('; ')}`);
}
