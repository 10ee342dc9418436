import { spawn, ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test as base, expect, Page } from '@playwright/test';

/**
 * Every test runs under the console's Content-Security-Policy and fails on any violation: the
 * WASM must load and hydrate with the nonce-based policy, and nothing inline may be blocked.
 */
export const test = base.extend<{ cspGuard: void }>({
  cspGuard: [async ({ page }, use) => {
    const violations: string[] = [];
    page.on('console', (m) => { if (/Content Security Policy|CSP violation/i.test(m.text())) violations.push(m.text()); });
    await page.addInitScript(() => document.addEventListener('securitypolicyviolation',
      (e) => console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI}`)));
    await use();
    expect(violations, 'CSP violations').toEqual([]);
  }, { auto: true }],
});
export { expect };

export const ADMIN_PASSWORD = 'admin-pass-123';

/** A `maas serve` process on its own SQLite file; `restart()` keeps the file and the port. */
export class Server {
  proc?: ChildProcess;
  url = '';
  readonly dataDir = mkdtempSync(join(tmpdir(), 'maas-e2e-'));

  /** What the server printed on stdout (first login, demo user and key…). */
  stdout = '';

  async start(port = 0, env: Record<string, string> = {}): Promise<string> {
    const bin = process.env.MAAS_BIN;
    if (!bin) throw new Error('MAAS_BIN must point at the built maas binary');
    const proc = spawn(bin, ['serve'], {
      env: {
        ...process.env,
        MAAS_LISTEN: `127.0.0.1:${port}`,
        DATABASE_URL: `sqlite://${this.dataDir}/maas.db?mode=rwc`,
        MAAS_DATA_DIR: this.dataDir,
        MAAS_ADMIN_PASSWORD: ADMIN_PASSWORD,
        RUST_LOG: 'warn',
        ...env,
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    this.proc = proc;
    this.url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('server did not start in 30 s')), 30_000);
      let out = '';
      proc.stdout!.on('data', (chunk) => {
        out += chunk.toString();
        this.stdout = out;
        const m = out.match(/MaaS console: (http:\/\/\S+)/);
        if (m) { clearTimeout(timer); resolve(m[1]); }
      });
      proc.on('exit', (code) => { clearTimeout(timer); reject(new Error(`server exited with ${code}: ${out}`)); });
    });
    return this.url;
  }

  async stop(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null) return;
    await new Promise<void>((resolve) => { p.once('exit', () => resolve()); p.kill('SIGTERM'); });
  }

  async restart(): Promise<void> {
    const port = Number(new URL(this.url).port);
    await this.stop();
    await this.start(port);
  }
}

/** Navigates and waits for hydration: clicks before it would be lost. */
export async function open(page: Page, url: string) {
  const res = await page.goto(url);
  // Pages only run scripts by their response's nonce.
  expect(res?.headers()['content-security-policy'] ?? '').toContain("'nonce-");
  await page.waitForSelector('body[data-hydrated="true"]');
}

export async function login(page: Page, base: string, user: string, password: string) {
  await open(page, `${base}/login`);
  await page.getByLabel('Username').fill(user);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Log in' }).click();
  await expect(page.locator('.who')).toContainText(user);
  // Signing in lands on a freshly served page: a click before it hydrates would be lost
  // (an unchecked toggle that never reaches the server).
  await page.waitForSelector('body[data-hydrated="true"]');
}

export async function logout(page: Page) {
  await page.getByRole('button', { name: 'Log out' }).click();
  await expect(page).toHaveURL(/\/login/);
}

/** Range inputs cannot be `fill`ed; set the value and fire `input` as a drag would. */
export async function slide(page: Page, selector: string, index: number, value: number) {
  await page.locator(selector).nth(index).evaluate((el: HTMLInputElement, v) => {
    el.value = String(v);
    el.dispatchEvent(new Event('input', { bubbles: true }));
  }, value);
}

/** `maas mock-upstream` on a free port; resolves to its base URL once it listens. */
export async function mockUpstream(): Promise<{ url: string, proc: ChildProcess }> {
  const bin = process.env.MAAS_BIN!;
  const proc = spawn(bin, ['mock-upstream', '--listen', '127.0.0.1:0', '--no-record'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('mock upstream did not start in 10 s')), 10_000);
    let out = '';
    proc.stdout!.on('data', (chunk) => {
      out += chunk.toString();
      const m = out.match(/mock upstream: (http:\/\/\S+)\/v1/);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    });
  });
  return { url, proc };
}
