import { test, expect, Server, ADMIN_PASSWORD, open, login, logout, slide } from './support';

// The whole operator → user journey of issue 2, in a real browser against the built server,
// with a server restart in the middle. Validation errors are checked where they would appear.
test('operator builds a weighted model with rules; a user sees it only while enabled', async ({ page }) => {
  const server = new Server();
  const base = await server.start();
  page.on('dialog', (d) => d.accept());
  try {
    await login(page, base, 'admin', ADMIN_PASSWORD);
    await expect(page).toHaveURL(/\/models$/);

    // Marketplace: a validation error next to the field, then a real entry, published.
    await open(page, `${base}/marketplace/manage`);
    const mform = page.locator('#marketplace-form');
    await mform.getByLabel('Name').fill('bad name!');
    await mform.getByRole('button', { name: 'Create' }).click();
    await expect(mform.locator('.field-error[data-field="name"]')).toHaveText('use letters, digits and - _ . : / only');
    await expect(mform.locator('.field-error[data-field="provider"]')).toHaveText('required');
    await mform.getByLabel('Name').fill('deepseek-chat');
    await mform.getByLabel('Provider').fill('DeepSeek');
    await mform.getByLabel('Tags (comma-separated)').fill('chat, 64k');
    await mform.getByRole('button', { name: 'Create' }).click();
    const mrow = page.locator('#marketplace-table tr[data-name="deepseek-chat"]');
    await expect(mrow).toContainText('no');
    await mrow.getByRole('button', { name: 'Publish' }).click();
    await expect(mrow.getByRole('button', { name: 'Unpublish' })).toBeVisible();

    // Cluster: the entry address must be http(s).
    await open(page, `${base}/clusters`);
    const cform = page.locator('#cluster-form');
    await cform.getByLabel('Name').fill('local');
    await cform.getByLabel('Entry address').fill('ftp://127.0.0.1');
    await cform.getByRole('button', { name: 'Create' }).click();
    await expect(cform.locator('.field-error[data-field="entry_address"]')).toHaveText('must start with http:// or https://');
    await cform.getByLabel('Entry address').fill(base);
    await cform.getByRole('button', { name: 'Create' }).click();
    await expect(page.locator('#cluster-table')).toContainText(`${base}/v1`);

    // Workspace, a user, membership.
    await open(page, `${base}/workspaces`);
    await page.locator('#workspace-form').getByLabel('Name').fill('team-a');
    await page.locator('#workspace-form').getByRole('button').click();
    await expect(page.locator('#workspace-table tr[data-name="team-a"]')).toBeVisible();
    const uform = page.locator('#user-form');
    await uform.getByLabel('Username').fill('alice');
    await uform.getByLabel('Password').fill('short');
    await uform.getByRole('button').click();
    await expect(uform.locator('.field-error[data-field="password"]')).toHaveText('at least 8 characters');
    await uform.getByLabel('Password').fill('alice-pass-1');
    await uform.getByRole('button').click();
    await expect(page.locator('#user-table')).toContainText('alice');
    const member = page.locator('#member-form');
    await member.locator('select[name="workspace_id"]').selectOption({ label: 'team-a' });
    await member.locator('input[name="username"]').fill('alice');
    await member.getByRole('button', { name: 'Add member' }).click();
    await expect(page.locator('#workspace-table tr[data-name="team-a"]')).toContainText('alice');

    // An API key for the key rule.
    await open(page, `${base}/keys`);
    await page.locator('#key-form input[name="name"]').fill('ci-bot');
    await page.locator('#key-form').getByRole('button').click();
    await expect(page.locator('#new-secret .secret')).toHaveText(/^sk-maas-[0-9a-f]{48}$/);

    // The create form: three weighted endpoints, two rules.
    await open(page, `${base}/models/new`);
    await page.locator('#marketplace-select').selectOption({ label: 'deepseek-chat' });
    await page.locator('#cluster-select').selectOption({ label: 'local' });
    await expect(page.locator('#access-preview')).toHaveText(`${base}/v1  ·  model = "deepseek-chat"`);
    await page.getByLabel('Weighted').check();
    await page.locator('#add-endpoint').click();
    await page.locator('#add-endpoint').click();
    const rows = page.locator('.endpoint-row');
    await expect(rows).toHaveCount(3);
    const eps = [['ds-a', 'https://a.example.com'], ['ds-b', 'ftp://b.example.com'], ['ds-c', 'http://127.0.0.1:9']];
    for (let i = 0; i < 3; i++) {
      await rows.nth(i).locator('.ep-model-id').fill(eps[i][0]);
      await rows.nth(i).locator('.ep-url').fill(eps[i][1]);
    }
    await rows.nth(0).locator('.ep-key').fill('sk-upstream-secret');
    // What each endpoint speaks: chat completions by default; the first speaks Messages too.
    await expect(rows.nth(0).locator('.ep-api-chat')).toBeChecked();
    await expect(rows.nth(0).locator('.ep-api-messages')).not.toBeChecked();
    await rows.nth(0).locator('.ep-api-messages').check();
    await slide(page, '.ep-weight', 0, 50);
    await slide(page, '.ep-weight', 1, 30);
    await slide(page, '.ep-weight', 2, 10);
    await expect(page.locator('#weight-total')).toHaveText('Total weight: 90 / 100');
    await expect(page.locator('#save-model')).toBeDisabled();
    await expect(page.locator('#save-why')).toHaveText('The weights total 90: they must total exactly 100 to save.');
    // The number box beside a slider sets the exact value.
    await page.locator('.ep-weight-value').nth(2).fill('20');
    await expect(page.locator('#weight-total')).toHaveText('Total weight: 100 / 100');
    await expect(page.locator('#save-why')).toHaveCount(0);
    await slide(page, '.ep-weight', 2, 20);
    await expect(page.locator('#weight-total')).toHaveText('Total weight: 100 / 100');
    await expect(page.locator('#save-model')).toBeEnabled();

    await page.locator('#add-rule').click();
    await page.locator('#add-rule').click();
    const rules = page.locator('.rule-row');
    await rules.nth(0).locator('.rule-workspace').selectOption({ label: 'team-a' });
    await rules.nth(0).locator('.rule-key').selectOption({ index: 1 });
    await rules.nth(0).locator('.rule-limit').fill('100');
    await rules.nth(0).locator('.rule-duration').fill('60');
    await rules.nth(1).locator('.rule-target').selectOption('workspace');
    await rules.nth(1).locator('.rule-workspace').selectOption({ label: 'team-a' });
    await expect(rules.nth(1).locator('.rule-key')).toHaveCount(0);
    await rules.nth(1).locator('.rule-limit').fill('0');
    await rules.nth(1).locator('.rule-duration').fill('3600');

    await page.locator('#save-model').click();
    await expect(page.locator('.field-error[data-field="endpoints.1.url"]')).toHaveText('must start with http:// or https://');
    await expect(page.locator('.field-error[data-field="rules.1.limit"]')).toHaveText('must be at least 1');
    await rows.nth(1).locator('.ep-url').fill('https://b.example.com');
    await rules.nth(1).locator('.rule-limit').fill('1000');
    await expect(page.locator('.field-error')).toHaveCount(0);
    await page.locator('#save-model').click();
    await expect(page).toHaveURL(/\/models$/);

    const row = page.locator('#model-table tr[data-name="deepseek-chat"]');
    await expect(row).toContainText('ds-a, ds-b, ds-c');
    await expect(row).toContainText(`${base}/v1`);
    // The embedded gateway applied the change before the save returned.
    await expect(row.locator('td.gateway')).toHaveText('Synced 1/1');
    await expect(row.locator('td.status')).toHaveText('Disabled');
    await row.locator('.enable-toggle').check();
    await expect(row.locator('td.status')).toHaveText('Serving');

    // A second model on the same pair is refused by the server, next to the cluster field.
    await open(page, `${base}/models/new`);
    await page.locator('#marketplace-select').selectOption({ label: 'deepseek-chat' });
    await page.locator('#cluster-select').selectOption({ label: 'local' });
    await page.locator('.endpoint-row .ep-model-id').fill('x');
    await page.locator('.endpoint-row .ep-url').fill('https://x.example.com');
    await page.locator('#save-model').click();
    await expect(page.locator('.field-error[data-field="cluster"]')).toHaveText('this marketplace model already has a MaaS model on this cluster');

    // Restart in the middle: everything is still there.
    await server.restart();
    await open(page, `${base}/models`);
    await expect(row.locator('.enable-toggle')).toBeChecked();
    await expect(row).toContainText('ds-a, ds-b, ds-c');

    // The edit form shows the saved key as set, never its value.
    await row.getByRole('link', { name: 'Edit' }).click();
    await expect(page.locator('.endpoint-row')).toHaveCount(3);
    await expect(page.locator('.endpoint-row').nth(0).locator('.key-state')).toHaveText('set (leave blank to keep)');
    await expect(page.locator('.endpoint-row').nth(0).locator('.ep-api-messages')).toBeChecked();
    await expect(page.locator('.endpoint-row').nth(1).locator('.ep-api-messages')).not.toBeChecked();
    expect(await page.content()).not.toContain('sk-upstream-secret');
    await expect(page.locator('.rule-row')).toHaveCount(2);
    // Edit: drop the third endpoint and the second rule, rebalance to 50/50, keep the key.
    await page.locator('.endpoint-row').nth(2).getByRole('button', { name: 'Remove' }).click();
    await expect(page.locator('#weight-total')).toHaveText('Total weight: 80 / 100');
    await expect(page.locator('#save-model')).toBeDisabled();
    await slide(page, '.ep-weight', 1, 50);
    await page.locator('.rule-row').nth(1).getByRole('button', { name: 'Remove' }).click();
    await page.locator('#save-model').click();
    await expect(page).toHaveURL(/\/models$/);
    await expect(row).toContainText('ds-a, ds-b');
    await expect(row).not.toContainText('ds-c');
    await row.getByRole('link', { name: 'Edit' }).click();
    await expect(page.locator('.rule-row')).toHaveCount(1);
    await expect(page.locator('.ep-weight-value').nth(0)).toHaveValue('50');
    await expect(page.locator('.ep-weight-value').nth(1)).toHaveValue('50');
    await expect(page.locator('.endpoint-row').nth(0).locator('.key-state')).toHaveText('set (leave blank to keep)');
    await expect(page.locator('.endpoint-row').nth(0).locator('.ep-api-messages')).toBeChecked();
    await expect(page.locator('.endpoint-row').nth(1).locator('.ep-api-messages')).not.toBeChecked();
    await logout(page);

    // The user sees the model with its access path and snippets.
    await login(page, base, 'alice', 'alice-pass-1');
    await expect(page).toHaveURL(/\/marketplace$/);
    const card = page.locator('article.offering[data-name="deepseek-chat"]');
    await expect(card.locator('.access-path')).toHaveText(`${base}/v1`);
    await expect(card).toContainText('curl');
    await expect(card).toContainText('Python');
    await expect(card).toContainText('JavaScript');
    // Served over Messages (translated or native): Anthropic's SDK and Claude Code too.
    await expect(card).toContainText('Anthropic (Python)');
    await expect(card).toContainText('Claude Code');
    await logout(page);

    // Disabled, it is gone from the user view.
    await login(page, base, 'admin', ADMIN_PASSWORD);
    await row.locator('.enable-toggle').uncheck();
    await expect(row.locator('td.status')).toHaveText('Disabled');
    await logout(page);
    await login(page, base, 'alice', 'alice-pass-1');
    await expect(page.locator('p.empty')).toHaveText('No models are available yet.');
    await expect(page.locator('article.offering')).toHaveCount(0);
    await logout(page);

    // Delete, after confirming in the page's own dialog (Cancel first: nothing happens).
    await login(page, base, 'admin', ADMIN_PASSWORD);
    await row.getByRole('button', { name: 'Delete' }).click();
    const dialog = page.getByRole('alertdialog');
    await expect(dialog).toContainText('The gateway stops serving it');
    await dialog.getByRole('button', { name: 'Cancel' }).click();
    await expect(dialog).toHaveCount(0);
    await expect(row).toBeVisible();
    await row.getByRole('button', { name: 'Delete' }).click();
    await page.getByRole('alertdialog').getByRole('button', { name: 'Delete' }).click();
    await expect(page.locator('#model-table-empty')).toContainText('No MaaS models yet.');
  } finally {
    await server.stop();
  }
});
