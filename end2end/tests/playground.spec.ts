import { test, expect, Server, open, login, mockUpstream } from './support';

// A user tries a model in the browser: the answer streams in chunk by chunk through the real
// gateway (the first chunk on screen while the mock is still sending), with time to first
// token, total time and usage; Stop cancels the call (the mock counts the cancel); the code
// snippet carries the settings; a pasted key of the user's own is used instead of a console
// key; the short-lived key is revoked when the playground goes away.
test('playground: streamed answer, figures, stop, snippet, key revoked after', async ({ page }) => {
  const mock = await mockUpstream();
  const server = new Server();
  // Six chunks, 400 ms apart: slow enough to see the first one arrive before the last.
  const base = await server.start(0, { MAAS_DEMO_UPSTREAM: `${mock.url}/chunks/6/chunk-delay/400/v1` });
  try {
    await expect.poll(() => server.stdout).toMatch(/demo user `demo`, password `\w+`/);
    const demoPassword = server.stdout.match(/demo user `demo`, password `(\w+)`/)![1];
    await login(page, base, 'demo', demoPassword);
    await open(page, `${base}/marketplace`);
    // Models of other kinds show their own API's snippets, and no chat playground.
    const rerank = page.locator('article.offering[data-name="demo-rerank"]');
    await expect(rerank.locator('.kind')).toHaveText('Rerank model');
    await expect(rerank.locator('pre code')).toContainText('/v1/rerank');
    await expect(rerank.getByRole('button', { name: 'Try it in the playground' })).toHaveCount(0);
    await expect(page.locator('article.offering[data-name="demo-whisper"]')).toContainText('client.audio.transcriptions.create');
    await expect(page.locator('article.offering[data-name="demo-tts"]')).toContainText('client.audio.speech');
    await expect(page.locator('article.offering[data-name="demo-image"]')).toContainText('client.images.generate');
    const offering = page.locator('article.offering[data-name="demo-chat"]');
    await offering.getByRole('button', { name: 'Try it in the playground' }).click();
    const pg = offering.locator('section.playground');
    await expect(pg).toBeVisible();
    await pg.locator('.pg-temperature').fill('0.3');
    await pg.locator('.pg-system').fill('You are terse.');

    // Bad settings are refused before any call.
    await pg.locator('.pg-max-tokens').fill('lots');
    await pg.getByRole('button', { name: 'Run' }).click();
    await expect(pg.locator('.error-box')).toContainText('max tokens');
    await pg.locator('.pg-max-tokens').fill('64');

    await pg.getByRole('button', { name: 'Run' }).click();
    const out = pg.locator('.pg-output');
    // The first chunk is on screen while the rest is still coming.
    await expect(out).toContainText('chunk 0');
    await expect(out).not.toContainText('chunk 5');
    await expect(pg.locator('.pg-figures')).toContainText('Streaming');
    // Then the whole answer, with the figures.
    await expect(out).toHaveText('chunk 0 chunk 1 chunk 2 chunk 3 chunk 4 chunk 5', { timeout: 15_000 });
    const figures = pg.locator('.pg-figures');
    await expect(figures).toContainText('Done.');
    await expect(figures).toContainText(/First token after \d+ ms\./);
    await expect(figures).toContainText(/Total \d+ ms\./);
    await expect(figures).toContainText(/Tokens: \d+ in, \d+ out, \d+ total\./);
    // The same call as code, with these settings (and no key in it).
    const snippet = await pg.locator('.pg-snippet').textContent();
    expect(snippet).toContain('"temperature":0.3');
    expect(snippet).toContain('"max_tokens":64');
    expect(snippet).toContain('You are terse.');
    expect(snippet).toContain('Bearer $MAAS_API_KEY');

    // Stop mid-way: the answer stops growing, the mock sees the cancel.
    const stats = async () => (await (await fetch(`${mock.url}/_mock/stats`)).json()).cancelled as number;
    const before = await stats();
    await pg.getByRole('button', { name: 'Run' }).click();
    await expect(out).toContainText('chunk 0');
    await pg.getByRole('button', { name: 'Stop' }).click();
    await expect(figures).toContainText('Stopped.');
    await expect.poll(stats, { timeout: 10_000 }).toBeGreaterThan(before);
    const stopped = await out.textContent();
    await page.waitForTimeout(1000);
    expect(await out.textContent()).toBe(stopped);
    expect(stopped).not.toContain('chunk 5');

    // With a key of the caller's own, pasted, the call goes with it: a wrong one is refused by
    // the gateway (its message shown), the demo key answers, and the console issues no key.
    const demoKey = server.stdout.match(/demo API key: (sk-maas-[0-9a-f]+)/)![1];
    await pg.locator('.pg-own-key').fill('sk-maas-0000000000000000');
    await expect(pg.locator('.pg-workspace')).toBeDisabled();
    await pg.getByRole('button', { name: 'Run' }).click();
    await expect(pg.locator('.error-box')).toContainText('401');
    await pg.locator('.pg-own-key').fill(demoKey);
    await pg.getByRole('button', { name: 'Run' }).click();
    await expect(out).toHaveText('chunk 0 chunk 1 chunk 2 chunk 3 chunk 4 chunk 5', { timeout: 15_000 });
    await expect(figures).toContainText('Done.');

    // Leaving the page revokes the playground's key (it would expire within minutes anyway).
    await page.getByRole('link', { name: 'API keys' }).click();
    await expect(page).toHaveURL(/\/keys$/);
    await expect(async () => {
      await open(page, `${base}/keys`);
      // One key for the whole playground (none for the runs with the pasted key), revoked.
      await expect(page.locator('#key-table tr[data-name="playground"]')).toHaveCount(1, { timeout: 1000 });
      await expect(page.locator('#key-table tr[data-name="playground"]')).toContainText('revoked', { timeout: 1000 });
    }).toPass({ timeout: 10_000 });

    // A page left by a full navigation (closed, reloaded) is never unmounted: its key is ended
    // by the beacon the page sends as it goes.
    await open(page, `${base}/marketplace`);
    await offering.getByRole('button', { name: 'Try it in the playground' }).click();
    await pg.getByRole('button', { name: 'Run' }).click();
    await expect(figures).toContainText('Done.', { timeout: 15_000 });
    await expect(async () => {
      await open(page, `${base}/keys`);
      const rows = page.locator('#key-table tr[data-name="playground"]');
      await expect(rows).toHaveCount(2, { timeout: 1000 });
      await expect(rows.filter({ hasText: 'active' })).toHaveCount(0, { timeout: 1000 });
    }).toPass({ timeout: 10_000 });
  } finally {
    await server.stop();
    mock.proc.kill();
  }
});
