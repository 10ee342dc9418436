import { test, expect, Server, ADMIN_PASSWORD, open, login, mockUpstream } from './support';

// Issue 28 in the console: a model's fallback models, retry policy and health checks are set in
// its form (refused next to the field when out of bounds or when they would make a cycle), and
// its edit page shows each endpoint's health as the prober judged it.
test('fleet: fallbacks, retries and health checks in the model form; endpoint health on the edit page', async ({ page }) => {
  const mock = await mockUpstream();
  const server = new Server();
  const base = await server.start(0, { MAAS_DEMO_UPSTREAM: mock.url });
  try {
    await login(page, base, 'admin', ADMIN_PASSWORD);
    await open(page, `${base}/models`);
    await page.locator('tr[data-name="demo-chat"]').getByRole('link', { name: 'Edit' }).click();
    await page.waitForSelector('#model-form');
    const form = page.locator('#model-form');
    // Falls back to demo-agent (a chat model on the same cluster; other kinds are listed too).
    await form.locator('#fallbacks select.fallback').first().selectOption({ label: 'demo-agent' });
    await form.locator('#retry input.retry-budget').fill('50');
    await form.locator('#retry input[data-on="5xx"]').uncheck();
    await form.locator('#health-on').check();
    await form.locator('#health-probe').selectOption('models');
    await form.locator('input.health-interval').fill('1');
    // A timeout longer than the interval is refused next to its field, by the server.
    await form.locator('input.health-timeout').fill('5');
    await page.locator('#save-model').click();
    await expect(form.locator('.field-error[data-field="health_check.timeout_secs"]')).toHaveText('1 second up to the interval (at most 60)');
    await form.locator('input.health-timeout').fill('1');
    await page.locator('#save-model').click();
    await expect(page).toHaveURL(/\/models$/);

    // demo-agent falling back to demo-chat would make a cycle: refused, with the reason.
    await page.locator('tr[data-name="demo-agent"]').getByRole('link', { name: 'Edit' }).click();
    await page.waitForSelector('#model-form');
    await page.locator('#fallbacks select.fallback').first().selectOption({ label: 'demo-chat' });
    await page.locator('#save-model').click();
    await expect(page.locator('.field-error[data-field="fallbacks"]')).toHaveText('these fallbacks lead back to this model (a cycle)');

    // demo-chat again: what was saved is shown, and its endpoint is probed healthy.
    await open(page, `${base}/models`);
    await page.locator('tr[data-name="demo-chat"]').getByRole('link', { name: 'Edit' }).click();
    await page.waitForSelector('#model-form');
    await expect(page.locator('#fallbacks select.fallback').first()).toHaveValue(/\d+/);
    await expect(page.locator('#retry input.retry-budget')).toHaveValue('50');
    await expect(page.locator('#retry input[data-on="5xx"]')).not.toBeChecked();
    await expect(page.locator('#health-on')).toBeChecked();
    await expect(page.locator('input.health-interval')).toHaveValue('1');
    await expect(async () => {
      await page.reload();
      await expect(page.locator('#endpoint-health td.health').first()).toHaveText('healthy', { timeout: 1000 });
    }).toPass({ timeout: 20_000 });
  } finally {
    await server.stop();
    mock.proc.kill();
  }
});
