import { test, expect, Server, ADMIN_PASSWORD, open, login, mockUpstream } from './support';
import type { Page } from '@playwright/test';

/** Presses Tab (or Shift+Tab) until the focused element matches `selector`; bounded. */
async function tabTo(page: Page, selector: string, back = false) {
  for (let i = 0; i < 120; i++) {
    if (await page.evaluate((s) => document.activeElement?.matches(s) ?? false, selector)) return;
    await page.keyboard.press(back ? 'Shift+Tab' : 'Tab');
  }
  throw new Error(`keyboard focus never reached ${selector}`);
}

async function typeInto(page: Page, selector: string, text: string, back = false) {
  await tabTo(page, selector, back);
  await page.keyboard.press('Control+A');
  await page.keyboard.type(text);
}

// The whole create-model journey without a mouse: selects, the policy radios, endpoint rows
// added and removed, the weight slider and its number box, a rule, and Save.
test('keyboard only: create a weighted model with a rule', async ({ page }) => {
  const mock = await mockUpstream();
  const server = new Server();
  const base = await server.start(0, { MAAS_DEMO_UPSTREAM: mock.url });
  try {
    await login(page, base, 'admin', ADMIN_PASSWORD);
    // A second published marketplace model to build on (the demo's is taken on its cluster).
    const form = (path: string, data: Record<string, string>) => page.request.post(`${base}/api/${path}`, { form: data, headers: { accept: 'application/json' } });
    expect((await form('marketplace/create', { name: 'kb-model', provider: 'Keys', description: '', tags: '' })).ok()).toBe(true);
    // Its id, from the marketplace list (the server functions answer in postcard, not JSON).
    await open(page, `${base}/marketplace/manage`);
    const id = (await page.locator('tr[data-name="kb-model"]').getAttribute('id'))!.replace('marketplace-', '');
    expect((await form('marketplace/publish', { id: String(id), published: 'true' })).ok()).toBe(true);

    await open(page, `${base}/models/new`);
    await page.locator('body').focus();
    await tabTo(page, '#marketplace-select');
    // demo-agent, demo-chat, demo-embed, demo-image, demo-rerank, demo-tts, demo-whisper, kb-model
    for (let i = 0; i < 8; i++) await page.keyboard.press('ArrowDown');
    await expect(page.locator('#marketplace-select')).toHaveValue(String(id));
    await tabTo(page, '#cluster-select');
    await page.keyboard.press('ArrowDown');
    // The policy radios: arrows move the choice to Weighted.
    await tabTo(page, 'input[name="policy"]');
    await page.keyboard.press('ArrowRight');
    await page.keyboard.press('ArrowRight');
    await expect(page.locator('input[name="policy"][value="weighted"]')).toBeChecked();

    // Endpoint 1, then add two more rows and remove the last one again, all by keyboard.
    const rows = page.locator('.endpoint-row');
    await typeInto(page, '.endpoint-row:nth-child(1) .ep-model-id', 'kb-a');
    await typeInto(page, '.endpoint-row:nth-child(1) .ep-url', `${mock.url}`);
    await tabTo(page, '.endpoint-row:nth-child(1) .ep-weight');
    await page.keyboard.press('End'); // the slider at 100
    await page.keyboard.press('ArrowLeft'); // 99
    await expect(page.locator('#weight-total')).toHaveText('Total weight: 99 / 100');
    await typeInto(page, '.endpoint-row:nth-child(1) .ep-weight-value', '70');
    await tabTo(page, '#add-endpoint');
    await page.keyboard.press('Enter');
    await page.keyboard.press('Enter');
    await expect(rows).toHaveCount(3);
    await tabTo(page, '.endpoint-row:nth-child(3) .remove-endpoint', true);
    await page.keyboard.press('Enter');
    await expect(rows).toHaveCount(2);
    await typeInto(page, '.endpoint-row:nth-child(2) .ep-model-id', 'kb-b', true);
    await typeInto(page, '.endpoint-row:nth-child(2) .ep-url', `${mock.url}`);
    await typeInto(page, '.endpoint-row:nth-child(2) .ep-weight-value', '30');
    await expect(page.locator('#weight-total')).toHaveText('Total weight: 100 / 100');

    // A rule for the demo workspace, 60 a minute (the defaults), by keyboard.
    await tabTo(page, '#add-rule');
    await page.keyboard.press('Enter');
    await tabTo(page, '.rule-row .rule-target', true);
    await page.keyboard.press('ArrowDown'); // whole workspace
    await tabTo(page, '.rule-row .rule-workspace');
    await page.keyboard.press('ArrowDown');
    await tabTo(page, '#save-model');
    await page.keyboard.press('Enter');
    await expect(page).toHaveURL(/\/models$/);
    const row = page.locator('#model-table tr[data-name="kb-model"]');
    await expect(row).toContainText('kb-a, kb-b');
  } finally {
    await server.stop();
    mock.proc.kill();
  }
});
