import { test, expect, Server, ADMIN_PASSWORD, open, login, logout } from './support';

test('a user creates and revokes keys in their own workspace; operator pages stay closed', async ({ page }) => {
  const server = new Server();
  const base = await server.start();
  page.on('dialog', (d) => d.accept());
  try {
    await login(page, base, 'admin', ADMIN_PASSWORD);
    await open(page, `${base}/workspaces`);
    await page.locator('#workspace-form').getByLabel('Name').fill('bobs-team');
    await page.locator('#workspace-form').getByRole('button').click();
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
    await expect(row).toContainText('revoked');

    // Operator pages are closed to users.
    await open(page, `${base}/models`);
    await expect(page.locator('.error-box')).toHaveText('This page is for operators.');
  } finally {
    await server.stop();
  }
});
