// What tests/browser/run.mjs and lab.mjs share: Debian's headless Chromium
// launched by playwright-core with the flags the tests need, uncaught page
// errors collected, an overall deadline, and exactly one JSON line printed
// on stdout at the end (exit code 0 when the result says ok).
//
// Playwright gives Chromium a fresh temporary --user-data-dir on every launch.
import { chromium } from 'playwright-core';

export const WAIT = 20000; // any single wait

const ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync',
  // Real host addresses instead of .local names.
  '--disable-features=WebRtcHideLocalIpsWithMdns', '--autoplay-policy=no-user-gesture-required',
];

// Runs `scenario(browser, pageErrors)` and prints its result, or an error
// when it throws or `deadlineMs` passes first.
export async function runScenario(name, deadlineMs, scenario) {
  let browser;
  const pageErrors = [];
  async function finish(result, code) {
    clearTimeout(deadline);
    result.pageErrors = pageErrors;
    process.stdout.write(`${JSON.stringify(result)}\n`);
    try { await browser?.close(); } catch { /* already gone */ }
    process.exit(code);
  }
  const deadline = setTimeout(
    () => finish({ ok: false, error: `${name}: overall timeout (${deadlineMs / 1000} s)` }, 1), deadlineMs);
  try {
    browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', timeout: WAIT, args: ARGS });
    const result = await scenario(browser, pageErrors);
    await finish(result, result.ok ? 0 : 1);
  } catch (e) {
    await finish({ ok: false, error: String(e?.stack ?? e) }, 1);
  }
}
