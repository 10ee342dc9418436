import { test, expect, Server, ADMIN_PASSWORD, open, login, mockUpstream } from './support';

// Everything that can be created can be edited or deleted, each delete asked in the page and
// refused with the reason where the schema forbids it; forms clear after a success and say so.
test('manage: edit and delete marketplace models, clusters, workspaces, users; rename a key', async ({ page }) => {
  const mock = await mockUpstream();
  const server = new Server();
  const base = await server.start(0, { MAAS_DEMO_UPSTREAM: mock.url });
  try {
    await login(page, base, 'admin', ADMIN_PASSWORD);

    // Marketplace: edit in place.
    await open(page, `${base}/marketplace/manage`);
    const demo = page.locator('#marketplace-table tr[data-name="demo-chat"]');
    await demo.getByRole('button', { name: 'Edit' }).click();
    const edit = page.locator('#marketplace-edit-form');
    await edit.locator('input[name="provider"]').fill('');
    await edit.getByRole('button', { name: 'Save changes' }).click();
    await expect(edit.locator('.field-error[data-field="provider"]')).toBeVisible();
    // The field is marked invalid and described by its message, for a screen reader.
    const provider = edit.locator('input[name="provider"]');
    await expect(provider).toHaveAttribute('aria-invalid', 'true');
    const described = await provider.getAttribute('aria-describedby');
    await expect(page.locator(`[id="${described}"]`)).toContainText('required');
    await edit.locator('input[name="provider"]').fill('Demo Labs');
    await edit.getByRole('button', { name: 'Save changes' }).click();
    await expect(page.locator('#marketplace-edit-form')).toHaveCount(0);
    await expect(demo).toContainText('Demo Labs');
    // Deleting it is refused while the demo's MaaS model is built on it, with the reason.
    await demo.getByRole('button', { name: 'Delete' }).click();
    await expect(page.getByRole('alertdialog')).toContainText('Refused while MaaS models are built on it');
    await page.getByRole('alertdialog').getByRole('button', { name: 'Delete' }).click();
    await expect(page.locator('.error-box')).toContainText('delete them first');
    await expect(demo).toBeVisible();
    // A new one, of a kind: the form clears and says what happened; then it can go.
    await page.locator('#marketplace-form input[name="name"]').fill('scratch-model');
    await page.locator('#marketplace-form input[name="provider"]').fill('Nobody');
    await page.locator('#marketplace-form select[name="kind"]').selectOption('rerank');
    await page.locator('#marketplace-form').getByRole('button', { name: 'Create' }).click();
    await expect(page.locator('.notice')).toContainText('Marketplace model created');
    // The notice links to the new row.
    const link = await page.locator('.notice a').getAttribute('href');
    await expect(page.locator(`#marketplace-table tr${link}`)).toHaveAttribute('data-name', 'scratch-model');
    await expect(page.locator(`#marketplace-table tr${link} td.kind`)).toHaveText('Rerank');
    // Published, a MaaS model built on it shows the fields a rerank model needs: no APIs to
    // speak, no output tokens to reserve.
    const scratchId = link!.replace('#marketplace-', '');
    await page.locator(`#marketplace-table tr${link}`).getByRole('button', { name: 'Publish' }).click();
    await expect(page.locator(`#marketplace-table tr${link}`)).toContainText('Unpublish');
    await open(page, `${base}/models/new`);
    await page.locator('#marketplace-select').selectOption(scratchId);
    await expect(page.locator('#model-kind')).toHaveText('Rerank model');
    await expect(page.locator('.endpoint-row .ep-api-chat')).toBeHidden();
    await expect(page.locator('#reserve-output')).toBeHidden();
    await page.locator('#marketplace-select').selectOption({ label: 'demo-chat' });
    await expect(page.locator('.endpoint-row .ep-api-chat')).toBeVisible();
    await open(page, `${base}/marketplace/manage`);
    await expect(page.locator('#marketplace-form input[name="name"]')).toHaveValue('');
    const scratch = page.locator('#marketplace-table tr[data-name="scratch-model"]');
    await scratch.getByRole('button', { name: 'Delete' }).click();
    await page.getByRole('alertdialog').getByRole('button', { name: 'Delete' }).click();
    await expect(scratch).toHaveCount(0);

    // Clusters: the demo's is in use (refused); a new one is renamed, then deleted.
    await open(page, `${base}/clusters`);
    await page.locator('#cluster-table tr[data-name="local"]').getByRole('button', { name: 'Delete' }).click();
    await page.getByRole('alertdialog').getByRole('button', { name: 'Delete' }).click();
    await expect(page.locator('.error-box')).toContainText('still has 7 MaaS model'); // the demo's, one per kind and demo-agent
    await page.locator('#cluster-form input[name="name"]').fill('spare');
    await page.locator('#cluster-form input[name="entry_address"]').fill('https://spare.example.com');
    await page.locator('#cluster-form').getByRole('button', { name: 'Create' }).click();
    await expect(page.locator('.notice')).toContainText('Cluster created');
    await page.locator('#cluster-table tr[data-name="spare"]').getByRole('button', { name: 'Edit' }).click();
    await page.locator('#cluster-edit-form input[name="name"]').fill('spare-2');
    await page.locator('#cluster-edit-form').getByRole('button', { name: 'Save changes' }).click();
    const spare = page.locator('#cluster-table tr[data-name="spare-2"]');
    await expect(spare).toBeVisible();
    await spare.getByRole('button', { name: 'Delete' }).click();
    await page.getByRole('alertdialog').getByRole('button', { name: 'Delete' }).click();
    await expect(spare).toHaveCount(0);

    // Users and workspaces: a created user's password does not stay in its field.
    await open(page, `${base}/workspaces`);
    await page.locator('#user-form input[name="username"]').fill('erin');
    await page.locator('#user-form input[name="password"]').fill('erin-pass-123');
    await page.locator('#user-form').getByRole('button', { name: 'Create user' }).click();
    await expect(page.locator('.notice').filter({ hasText: 'User created' })).toBeVisible();
    await expect(page.locator('#user-form input[name="password"]')).toHaveValue('');
    await expect(page.locator('#user-form input[name="username"]')).toHaveValue('');
    await page.locator('#member-form select').selectOption({ label: 'demo' });
    await page.locator('#member-form input[name="username"]').fill('erin');
    await page.locator('#member-form').getByRole('button', { name: 'Add member' }).click();
    const ws = page.locator('#workspace-table tr[data-name="demo"]');
    await expect(ws.locator('td[data-col="members"]')).toContainText('erin');
    await ws.getByRole('button', { name: 'Remove erin from demo' }).click();
    await expect(ws.locator('td[data-col="members"]')).not.toContainText('erin');
    await ws.getByRole('button', { name: 'Rename' }).click();
    await page.locator('#workspace-rename-form input[name="name"]').fill('demo-team');
    await page.locator('#workspace-rename-form').getByRole('button', { name: 'Rename' }).click();
    await expect(page.locator('#workspace-table tr[data-name="demo-team"]')).toBeVisible();
    // Your own account cannot be deleted; erin's can.
    await page.locator('#user-table tr[data-name="admin"]').getByRole('button', { name: 'Delete' }).click();
    await page.getByRole('alertdialog').getByRole('button', { name: 'Delete' }).click();
    await expect(page.locator('.error-box')).toContainText('your own account');
    await page.locator('#user-table tr[data-name="erin"]').getByRole('button', { name: 'Delete' }).click();
    await page.getByRole('alertdialog').getByRole('button', { name: 'Delete' }).click();
    await expect(page.locator('#user-table tr[data-name="erin"]')).toHaveCount(0);

    // Keys: rename; a new key's secret has a Copy button.
    await open(page, `${base}/keys`);
    const key = page.locator('#key-table tr[data-name="demo-key"]');
    await key.getByRole('button', { name: 'Rename' }).click();
    await page.locator('#key-rename-form input[name="name"]').fill('demo-key-2');
    await page.locator('#key-rename-form').getByRole('button', { name: 'Rename' }).click();
    await expect(page.locator('#key-table tr[data-name="demo-key-2"]')).toBeVisible();
    await page.locator('#key-form input[name="name"]').fill('copy-me');
    await page.locator('#key-form').getByRole('button').click();
    await expect(page.locator('#new-secret .secret')).toHaveText(/^sk-maas-/);
    await page.context().grantPermissions(['clipboard-read', 'clipboard-write']);
    await page.locator('#new-secret').getByRole('button', { name: 'Copy' }).click();
    await expect(page.locator('#new-secret').getByRole('button', { name: 'Copied' })).toBeVisible();
  } finally {
    await server.stop();
    mock.proc.kill();
  }
});
