import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test, expect, Server, ADMIN_PASSWORD, open, login, logout, mockUpstream } from './support';

// Traffic through the real gateway (the demo model on `maas mock-upstream`, 5 input + 2 output
// tokens a call), then what an operator and a user see of it.
test('usage: charts, top keys, CSV export for the operator; own keys only for a user', async ({ page }) => {
  const mock = await mockUpstream();
  const server = new Server();
  const base = await server.start(0, { MAAS_DEMO_UPSTREAM: mock.url, MAAS_USAGE_FLUSH: '500ms' });
  try {
    const key = readFileSync(join(server.dataDir, 'demo.key'), 'utf8').trim();
    // Printed right after the URL line.
    await expect.poll(() => server.stdout).toMatch(/demo user `demo`, password `\w+`/);
    const demoPassword = server.stdout.match(/demo user `demo`, password `(\w+)`/)![1];
    const call = (model: string, stream = false) => fetch(`${base}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model, stream, messages: [{ role: 'user', content: 'hi' }] }),
    }).then(async (r) => { await r.text(); return r.status; });
    // 12 answered (10 × 5 + 2 tokens, 2 streams of 5 + 3), 3 for a model that does not exist.
    const statuses: number[] = [];
    for (let i = 0; i < 12; i++) statuses.push(await call('demo-chat', i >= 10));
    for (let i = 0; i < 3; i++) statuses.push(await call('no-such-model'));
    expect(statuses.filter((s) => s === 200)).toHaveLength(12);
    expect(statuses.filter((s) => s === 404)).toHaveLength(3);

    await login(page, base, 'admin', ADMIN_PASSWORD);
    // The management list: the model's last 24 hours (flushed within a second).
    await expect(async () => {
      await open(page, `${base}/models`);
      await expect(page.locator('#model-table tr[data-name="demo-chat"] td.usage-24h')).toContainText('12 calls', { timeout: 1000 });
    }).toPass({ timeout: 15_000 });
    await expect(page.locator('#model-table tr[data-name="demo-chat"] td.usage-24h')).toContainText('86 tokens');

    await page.locator('#model-table tr[data-name="demo-chat"] td.usage-24h a').click();
    await expect(page).toHaveURL(/\/usage\?model=\d+/);
    await expect(page.getByRole('heading', { name: 'Usage' })).toBeVisible();
    // Filtered to the model: the 404s (no served model) are not in it.
    await expect(page.locator('#usage-totals [data-figure="Requests"] .figure-main')).toHaveText('12');
    await open(page, `${base}/usage?range=1h`);
    await expect(page.locator('#usage-totals [data-figure="Requests"] .figure-main')).toHaveText('15');
    await expect(page.locator('#usage-totals [data-figure="Tokens"] .figure-main')).toHaveText('86');
    // The 3 refused calls carry no usage: known (zero tokens), not "unknown".
    await expect(page.locator('#usage-unknown')).toHaveCount(0);
    // Three charts, drawn: axes, a legend and lines.
    const charts = page.locator('figure.chart svg');
    await expect(charts).toHaveCount(4);
    for (const title of ['Requests', 'Tokens', 'Spend', 'Latency']) {
      const svg = page.locator(`figure.chart[data-chart="${title}"] svg`);
      await expect(svg).toHaveAttribute('role', 'img');
      expect(await svg.locator('polyline, path').count()).toBeGreaterThan(0);
      expect(await svg.locator('text').count()).toBeGreaterThan(5);
    }
    await expect(page.locator('figure.chart[data-chart="Requests"] svg')).toContainText('calls / min');
    // Top keys: demo-key with its exact totals.
    const keyRow = page.locator('#usage-keys tr[data-label="demo-key"]');
    await expect(keyRow.locator('[data-col="requests"]')).toHaveText('15');
    await expect(keyRow.locator('[data-col="input"]')).toHaveText('60');
    await expect(keyRow.locator('[data-col="output"]')).toHaveText('26');
    await expect(keyRow.locator('[data-col="total"]')).toContainText('86');
    await expect(page.locator('#usage-workspaces tr[data-label="demo"] [data-col="total"]')).toContainText('86');
    await expect(page.locator('#usage-endpoints tbody tr')).toHaveCount(1);

    // The filter form (a plain GET form: the URL says what is shown).
    await page.getByLabel('Period').selectOption('24h');
    await page.getByRole('button', { name: 'Show' }).click();
    await expect(page).toHaveURL(/range=24h/);
    await expect(page.locator('figure.chart[data-chart="Requests"] svg')).toContainText('calls / 15 min');

    // The billing export: today's line has the exact sums.
    const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download CSV' }).click()]);
    const csv = readFileSync((await download.path())!, 'utf8').trim().split('\n');
    expect(csv[0]).toBe('day,workspace_id,workspace,api_key_id,api_key,model_id,model,requests,input_tokens,output_tokens,total_tokens,requests_usage_unknown,cached_tokens,units,unit,asked_model_id,asked_model,cost,cost_unknown,cache_write_tokens');
    const rows = csv.slice(1).map((l) => l.split(','));
    const served = rows.filter((r) => r[6] === 'demo-chat');
    expect(served).toHaveLength(1);
    expect(served[0].slice(7)).toEqual(['12', '60', '26', '86', '0', '0', '0', '', '', '', '0.0000246', '0', '0']);
    const refused = rows.filter((r) => r[6] === 'no-such-model');
    expect(refused.map((r) => r.slice(7))).toEqual([['3', '0', '0', '0', '0', '0', '0', '', '', '', '0.00', '0', '0']]);
    await logout(page);

    // The demo user: their keys with their usage; the Usage page is not theirs.
    await login(page, base, 'demo', demoPassword);
    await open(page, `${base}/keys`);
    const row = page.locator('#key-table tr[data-name="demo-key"]');
    await expect(row.locator('[data-col="day"]')).toHaveText('15 requests · 86 tokens · 0.0000246 USD');
    await expect(row.locator('[data-col="month"]')).toHaveText('15 requests · 86 tokens · 0.0000246 USD');
    await open(page, `${base}/usage`);
    await expect(page.locator('.error-box')).toHaveText('This page is for operators.');
    const res = await page.request.get(`${base}/usage/export.csv?from=2026-01-01&to=2026-01-02`);
    expect(res.status()).toBe(403);
  } finally {
    await server.stop();
    mock.proc.kill();
  }
});
