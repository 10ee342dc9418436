import { test, expect, Server, ADMIN_PASSWORD, open, login } from './support';

// An operator makes an admin token in the console, a script uses it on the admin API, the
// Audit page shows and filters who did what (and exports it), a revoked token stops working,
// and the API reference page renders from the product's own assets.
test('admin tokens, the audit log and its filter, the API reference', async ({ page }) => {
  const server = new Server();
  const base = await server.start();
  try {
    await login(page, base, 'admin', ADMIN_PASSWORD);
    await open(page, `${base}/admin-tokens`);
    await expect(page.locator('#admin-token-form')).toBeVisible();
    await page.getByLabel('Token name').fill('e2e-bot');
    await page.getByLabel('Access').selectOption('write');
    await page.getByRole('button', { name: 'Create token' }).click();
    const secret = (await page.locator('#new-admin-token .secret').textContent())!;
    expect(secret).toMatch(/^maas-admin-[0-9a-f]{48}$/);
    await expect(page.locator('#admin-token-table tr[data-name="e2e-bot"] td[data-col="status"]')).toHaveText('active');
    // A bad name is refused next to the field.
    await page.getByLabel('Token name').fill('bad name!');
    await page.getByRole('button', { name: 'Create token' }).click();
    await expect(page.locator('.field-error[data-field="name"]')).toBeVisible();

    // A script, with the token.
    const api = (method: string, path: string, body?: unknown) => fetch(`${base}/api/v1${path}`, {
      method,
      headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    for (const name of ['from-script-1', 'from-script-2']) {
      expect((await api('POST', '/workspaces', { name })).status).toBe(201);
    }
    expect((await api('POST', '/clusters', { name: 'east', entry_address: 'https://gw.example.com' })).status).toBe(201);

    // Everything is in the log; the filter narrows it.
    await open(page, `${base}/audit`);
    await expect(page.locator('#audit-table tbody tr')).toHaveCount(5); // operator, token, 2 workspaces, cluster
    await page.getByLabel('Actor').selectOption('token:e2e-bot');
    await page.getByLabel('Entity').selectOption('workspace');
    await page.getByRole('button', { name: 'Show' }).click();
    await expect(page).toHaveURL(/actor=token%3Ae2e-bot|actor=token:e2e-bot/);
    await expect(page.locator('#audit-table tbody tr')).toHaveCount(2);
    await expect(page.locator('#audit-table tbody tr').first()).toContainText('from-script-2');
    await expect(page.locator('#audit-count')).toContainText('2 change(s)');
    // The CSV of the filtered view: a header and the two rows, no secret.
    const href = await page.locator('#audit-export').getAttribute('href');
    const csv = await (await page.request.get(`${base}${href}`)).text();
    const lines = csv.trim().split('\n');
    expect(lines).toHaveLength(3);
    expect(lines.slice(1).every((l) => l.includes('token:e2e-bot') && l.includes(',workspace,'))).toBe(true);
    expect(csv).not.toContain(secret);
    // A filter nothing matches says so.
    await open(page, `${base}/audit?entity=api_key`);
    await expect(page.locator('#audit-table-empty')).toHaveText('No change matches this filter.');

    // Revoked: the token stops working at once.
    await open(page, `${base}/admin-tokens`);
    await page.locator('#admin-token-table tr[data-name="e2e-bot"] button', { hasText: 'Revoke' }).click();
    await page.getByRole('alertdialog').getByRole('button', { name: 'Revoke' }).click();
    await expect(page.locator('#admin-token-table tr[data-name="e2e-bot"] td[data-col="status"]')).toHaveText('revoked');
    expect((await api('GET', '/workspaces')).status).toBe(401);

    // The reference page: Swagger UI from /pkg/api-docs, listing the operations.
    const res = await page.goto(`${base}/api/docs`);
    expect(res!.status()).toBe(200);
    await expect(page.locator('.swagger-ui .opblock-summary-path').first()).toBeVisible({ timeout: 20_000 });
    await expect(page.locator('.swagger-ui')).toContainText('/marketplace-models/{id}/publish');
  } finally {
    await server.stop();
  }
});
