import AxeBuilder from '@axe-core/playwright';
import { test, expect, Server, ADMIN_PASSWORD, open, login, logout, mockUpstream } from './support';

// An automated accessibility audit (axe-core) of every page, logged out, as an operator and
// as a user: no serious or critical violation. And at a phone's width (390 px) nothing
// overflows the page sideways.
async function audit(page: import('@playwright/test').Page, where: string) {
  const r = await new AxeBuilder({ page }).analyze();
  const bad = r.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  const summary = bad.map((v) => `${where}: ${v.id} (${v.impact}) ${v.help}: ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(' | ')}`);
  expect.soft(summary, `accessibility violations on ${where}`).toEqual([]);
}

async function noSidewaysOverflow(page: import('@playwright/test').Page, where: string) {
  const [scroll, inner] = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
  expect.soft(scroll, `${where} overflows a ${inner} px window (${scroll} px wide)`).toBeLessThanOrEqual(inner);
}

const operatorPages = ['/models', '/models/new', '/usage', '/marketplace/manage', '/clusters', '/workspaces', '/keys', '/audit', '/admin-tokens', '/marketplace'];

for (const width of [1280, 390]) {
  test(`accessibility and layout at ${width} px`, async ({ page }) => {
    await page.setViewportSize({ width, height: 900 });
    const mock = await mockUpstream();
    const server = new Server();
    const base = await server.start(0, { MAAS_DEMO_UPSTREAM: mock.url });
    try {
      await expect.poll(() => server.stdout).toMatch(/demo user `demo`, password `\w+`/);
      const demoPassword = server.stdout.match(/demo user `demo`, password `(\w+)`/)![1];
      await open(page, `${base}/login`);
      await audit(page, 'login');
      await noSidewaysOverflow(page, 'login');
      await login(page, base, 'admin', ADMIN_PASSWORD);
      for (const p of [...operatorPages, `/models/1/edit`]) {
        await open(page, `${base}${p}`);
        await audit(page, `operator ${p}`);
        await noSidewaysOverflow(page, `operator ${p}`);
      }
      await logout(page);
      await login(page, base, 'demo', demoPassword);
      for (const p of ['/marketplace', '/keys']) {
        await open(page, `${base}${p}`);
        await audit(page, `user ${p}`);
        await noSidewaysOverflow(page, `user ${p}`);
      }
    } finally {
      await server.stop();
      mock.proc.kill();
    }
  });
}
