import { test, expect, Server, ADMIN_PASSWORD, open, login, logout } from './support';

/// A server with the demo data on a mock upstream: the demo user's password, the demo key, and
/// a chat call with it.
async function demoServer(env: Record<string, string> = {}) {
  const { mockUpstream } = await import('./support');
  const mock = await mockUpstream();
  const server = new Server();
  const base = await server.start(0, { MAAS_DEMO_UPSTREAM: mock.url, ...env });
  await expect.poll(() => server.stdout).toMatch(/demo user `demo`, password `\w+`/);
  const demoPassword = server.stdout.match(/demo user `demo`, password `(\w+)`/)![1];
  const key = server.stdout.match(/demo API key: (sk-maas-[0-9a-f]+)/)![1];
  const call = () => fetch(`${base}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'demo-chat', messages: [{ role: 'user', content: 'hi' }] }),
  });
  const stop = async () => { await server.stop(); mock.proc.kill(); };
  return { base, demoPassword, call, stop };
}

test('a user creates and revokes keys in their own workspace; operator pages stay closed', async ({ page }) => {
  const server = new Server();
  const base = await server.start();
  page.on('dialog', (d) => d.accept());
  try {
    await login(page, base, 'admin', ADMIN_PASSWORD);
    await open(page, `${base}/workspaces`);
    await page.locator('#workspace-form').getByLabel('Name').fill('bobs-team');
    await page.locator('#workspace-form').getByRole('button').click();
    // As a user would: the next one once the first is made (its success clears the form, and
    // would clear a name typed meanwhile).
    await expect(page.locator('#workspace-table tr[data-name="bobs-team"]')).toBeVisible();
    await expect(page.locator('#workspace-form').getByLabel('Name')).toHaveValue('');
    await page.locator('#workspace-form').getByLabel('Name').fill('other-team');
    await page.locator('#workspace-form').getByRole('button').click();
    await expect(page.locator('#workspace-table tr[data-name="other-team"]')).toBeVisible();
    await page.locator('#user-form').getByLabel('Username').fill('bob');
    await page.locator('#user-form').getByLabel('Password').fill('bob-pass-12');
    await page.locator('#user-form').getByRole('button').click();
    await expect(page.locator('#user-table')).toContainText('bob');
    await page.locator('#member-form select[name="workspace_id"]').selectOption({ label: 'bobs-team' });
    await page.locator('#member-form input[name="username"]').fill('bob');
    await page.locator('#member-form').getByRole('button').click();
    await expect(page.locator('#workspace-table tr[data-name="bobs-team"]')).toContainText('bob');
    await logout(page);

    await login(page, base, 'bob', 'bob-pass-12');
    await open(page, `${base}/keys`);
    // Only his own workspace is offered.
    await expect(page.locator('#key-form select option')).toHaveText(['bobs-team']);
    await page.locator('#key-form input[name="name"]').fill('my laptop');
    await page.locator('#key-form').getByRole('button').click();
    await expect(page.locator('.field-error[data-field="name"]')).toHaveText('use letters, digits and - _ . : / only');
    await page.locator('#key-form input[name="name"]').fill('laptop');
    await page.locator('#key-form').getByRole('button').click();
    const secret = await page.locator('#new-secret .secret').textContent();
    expect(secret).toMatch(/^sk-maas-[0-9a-f]{48}$/);
    const row = page.locator('#key-table tr[data-name="laptop"]');
    await expect(row).toContainText('active');
    // Shown once: a reload shows the key's public id, never the secret.
    await open(page, `${base}/keys`);
    await expect(page.locator('#new-secret')).toHaveCount(0);
    expect(await page.content()).not.toContain(secret!);
    await row.getByRole('button', { name: 'Revoke' }).click();
    await page.getByRole('alertdialog').getByRole('button', { name: 'Revoke' }).click();
    await expect(row).toContainText('revoked');

    // Operator pages are closed to users.
    await open(page, `${base}/models`);
    await expect(page.locator('.error-box')).toHaveText('This page is for operators.');
  } finally {
    await server.stop();
  }
});

// The operator limits the demo key to demo-chat until a day; its holder narrows the day, is
// told why a later one is refused, and the gateway keeps serving the key within the scope.
test('key scope: the operator sets a limit, the key holder narrows it and cannot widen it', async ({ page }) => {
  const { base, demoPassword, call: send, stop } = await demoServer();
  const call = () => send().then(async (r) => { await r.text(); return r.status; });
  const day = (d: number) => new Date(Date.now() + d * 86_400_000).toISOString().slice(0, 10);
  try {

    await login(page, base, 'admin', ADMIN_PASSWORD);
    await open(page, `${base}/keys`);
    const row = page.locator('#key-table tr[data-name="demo-key"]');
    await expect(row.locator('[data-col="until"]')).toHaveText('no end');
    await expect(row.locator('[data-col="models"]')).toHaveText('all models');
    await row.getByRole('button', { name: 'Scope…' }).click();
    const form = page.locator('form.scope-form');
    await expect(form.getByRole('heading')).toHaveText("Operator's limit");
    await form.locator('input[name="last_day"]').fill(day(10));
    await form.getByLabel('All models').uncheck();
    await form.getByLabel('demo-chat').check();
    await form.getByRole('button', { name: 'Save scope' }).click();
    await expect(row.locator('[data-col="until"]')).toHaveText(day(10));
    await expect(row.locator('[data-col="models"]')).toHaveText('demo-chat');
    expect(await call()).toBe(200);
    await logout(page);

    await login(page, base, 'demo', demoPassword);
    await open(page, `${base}/keys`);
    await expect(row.locator('[data-col="until"]')).toHaveText(day(10));
    await row.getByRole('button', { name: 'Scope…' }).click();
    await expect(form.getByRole('heading')).toHaveText('Your restriction');
    await expect(form.locator('.hint').first()).toHaveText(`Operator's limit: until ${day(10)}, demo-chat. You can narrow it, not widen it.`);
    await form.locator('input[name="last_day"]').fill(day(20));
    await form.getByRole('button', { name: 'Save scope' }).click();
    await expect(form.locator('.field-error[data-field="last_day"]')).toHaveText(`the operator's limit ends on ${day(10)}: choose that day or earlier`);
    await expect(row.locator('[data-col="until"]')).toHaveText(day(10));
    await form.locator('input[name="last_day"]').fill(day(3));
    await form.getByRole('button', { name: 'Save scope' }).click();
    await expect(row.locator('[data-col="until"]')).toHaveText(day(3));
    expect(await call()).toBe(200);
  } finally {
    await stop();
  }
});

test('quota: the operator gives a key a daily request budget; its holder sees it spent; calls past it get insufficient_quota', async ({ page }) => {
  const { base, demoPassword, call: send, stop } = await demoServer({ MAAS_USAGE_FLUSH: '1s' });
  const call = () => send().then(async (r) => ({ status: r.status, body: await r.json() }));
  try {

    await login(page, base, 'admin', ADMIN_PASSWORD);
    await open(page, `${base}/keys`);
    const row = page.locator('#key-table tr[data-name="demo-key"]');
    await expect(row.locator('[data-col="quota"]')).toHaveText('none');
    await row.getByRole('button', { name: 'Quota…' }).click();
    const form = page.locator('form.quota-form');
    await form.locator('select[name="period"]').selectOption('day');
    await form.locator('input[name="tokens"]').fill('lots');
    await form.getByRole('button', { name: 'Save quota' }).click();
    await expect(form.locator('.field-error[data-field="tokens"]')).toHaveText('must be a whole number');
    await form.locator('input[name="tokens"]').fill('');
    await form.locator('input[name="requests"]').fill('2');
    await form.getByRole('button', { name: 'Save quota' }).click();
    await expect(row.locator('[data-col="quota"]')).toHaveText(/^0 of 2 requests today, resets \d{4}-\d\d-\d\d$/);

    // The gateway applies it at its next reload (a heartbeat): two calls, then the refusal.
    await expect.poll(async () => (await call()).status, { timeout: 15_000 }).toBe(429);
    const refused = await call();
    expect(refused.status).toBe(429);
    expect(refused.body.error.code).toBe('insufficient_quota');
    expect(refused.body.error.message).toContain("this API key's daily quota of 2 requests");
    await logout(page);

    // The holder sees what is spent (once the gateway flushed it), and cannot change it.
    await login(page, base, 'demo', demoPassword);
    await expect.poll(async () => {
      await open(page, `${base}/keys`);
      return row.locator('[data-col="quota"]').textContent();
    }, { timeout: 15_000 }).toMatch(/^2 of 2 requests today/);
    await expect(row.locator('[data-col="quota"]')).toHaveClass(/warn/);
    await expect(row.getByRole('button', { name: 'Quota…' })).toHaveCount(0);
  } finally {
    await stop();
  }
});
