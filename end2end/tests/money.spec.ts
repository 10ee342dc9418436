import { test, expect, Server, ADMIN_PASSWORD, open, login, logout, mockUpstream } from './support';

// Money through the console: the operator prices a model (a version scheduled for later, the
// current one in force), gives the demo workspace a daily budget in money with an alert; calls
// with the demo key are refused once it is spent; the usage page shows the spend, the
// workspace its alert, and the key's holder what their key spent.
test('money: prices, a workspace budget in money refused once spent, spend on the usage and keys pages', async ({ page }) => {
  const mock = await mockUpstream();
  const server = new Server();
  const base = await server.start(0, { MAAS_DEMO_UPSTREAM: mock.url, MAAS_USAGE_FLUSH: '500ms' });
  try {
    await expect.poll(() => server.stdout).toMatch(/demo user `demo`, password `\w+`/);
    const demoPassword = server.stdout.match(/demo user `demo`, password `(\w+)`/)![1];
    const key = server.stdout.match(/demo API key: (sk-maas-[0-9a-f]+)/)![1];
    const call = () => fetch(`${base}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'demo-chat', messages: [{ role: 'user', content: 'hi' }] }),
    }).then(async (r) => ({ status: r.status, body: await r.json() }));

    await login(page, base, 'admin', ADMIN_PASSWORD);
    // The demo model's prices: the version in force, then a refused and a scheduled new one.
    await open(page, `${base}/models`);
    await page.locator('#model-table tr[data-name="demo-chat"]').getByRole('link', { name: 'Edit' }).click();
    const versions = page.locator('#price-versions tbody tr');
    await expect(versions).toHaveCount(1);
    await expect(versions.first()).toContainText('0.15');
    await expect(versions.first()).toContainText('in force');
    const form = page.locator('form.price-form');
    await form.locator('input[name="input_per_million"]').fill('-1');
    await form.locator('input[name="effective_from"]').fill('2001-01-01 00:00');
    await form.getByRole('button', { name: 'Add price version' }).click();
    await expect(form.locator('.field-error[data-field="input_per_million"]')).toHaveText('never negative');
    await expect(form.locator('.field-error[data-field="effective_from"]')).toContainText('must not be in the past');
    const nextYear = new Date().getUTCFullYear() + 1;
    await form.locator('input[name="input_per_million"]').fill('1');
    await form.locator('input[name="output_per_million"]').fill('2');
    await form.locator('input[name="per_call"]').fill('0.001');
    await form.locator('input[name="effective_from"]').fill(`${nextYear}-01-01 00:00`);
    await form.getByRole('button', { name: 'Add price version' }).click();
    await expect(versions).toHaveCount(2);
    await expect(page.locator(`#price-versions tr:has-text("${nextYear}-01-01 00:00")`)).toContainText('scheduled');

    // A daily budget of 0.00001 USD on the demo workspace, alerting at half of it.
    await open(page, `${base}/workspaces`);
    const ws = page.locator('#workspace-table tr[data-name="demo"]');
    await ws.getByRole('button', { name: 'Quota…' }).click();
    const quota = page.locator('form.quota-form');
    await quota.locator('select[name="period"]').selectOption('day');
    await quota.locator('input[name="spend"]').fill('abc');
    await quota.getByRole('button', { name: 'Save quota' }).click();
    await expect(quota.locator('.field-error[data-field="spend"]')).toHaveText('a decimal number, e.g. 0.15');
    await quota.locator('input[name="spend"]').fill('0.00001');
    await quota.locator('input[name="alerts"]').fill('50');
    await quota.getByRole('button', { name: 'Save quota' }).click();
    await expect(ws.locator('[data-col="quota"]')).toHaveText(/^0\.00 of 0\.00001 USD today, resets \d{4}-\d\d-\d\d$/);

    // Each call costs 5 × 0.15 + 2 × 0.60 per million: 0.00000195. Admitted while the day's
    // spend is below the budget (each settled before the next), then refused.
    let admitted = 0;
    let refused: { status: number, body: any } | undefined;
    for (let i = 0; i < 20 && !refused; i++) {
      const r = await call();
      if (r.status === 200) admitted++;
      else refused = r;
    }
    expect(admitted).toBe(6);
    expect(refused!.status).toBe(429);
    expect(refused!.body.error.code).toBe('insufficient_quota');
    expect(refused!.body.error.message).toContain("your workspace's daily quota of 0.00001 USD in money");

    // The usage page: what the six calls cost, exactly.
    await expect(async () => {
      await open(page, `${base}/usage?range=1h`);
      await expect(page.locator('#usage-totals [data-figure="Spend"] .figure-main')).toHaveText('0.0000117 USD', { timeout: 1000 });
    }).toPass({ timeout: 15_000 });
    // Spend per model, workspace and key, and its chart.
    await expect(page.locator('#usage-models tr[data-label="demo-chat"] [data-col="spend"]')).toHaveText('0.0000117');
    await expect(page.locator('#usage-workspaces tr[data-label="demo"] [data-col="spend"]')).toHaveText('0.0000117');
    await expect(page.locator('#usage-keys tr[data-label="demo-key"] [data-col="spend"]')).toHaveText('0.0000117');
    await expect(page.locator('figure.chart[data-chart="Spend"] svg')).toContainText('USD / min');
    // The workspace: spent, over its budget, its alert raised.
    await expect(async () => {
      await open(page, `${base}/workspaces`);
      await expect(ws.locator('[data-col="quota"]')).toContainText('0.0000117 of 0.00001 USD today', { timeout: 1000 });
      await expect(ws.locator('[data-col="quota"]')).toContainText('alert: 50 % of the money budget', { timeout: 1000 });
    }).toPass({ timeout: 15_000 });
    await expect(ws.locator('[data-col="quota"]')).toHaveClass(/warn/);
    await logout(page);

    // The key's holder sees what their key spent.
    await login(page, base, 'demo', demoPassword);
    await open(page, `${base}/keys`);
    const row = page.locator('#key-table tr[data-name="demo-key"]');
    await expect(row.locator('[data-col="day"]')).toContainText('0.0000117 USD');
  } finally {
    await server.stop();
    mock.proc.kill();
  }
});
