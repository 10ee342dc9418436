import { test, expect, Server, ADMIN_PASSWORD, open } from './support';

// Issue 10 in a real browser: the login form shows the throttle's wait, a hostile `next` lands
// on this origin, and a page of another origin (another port of the same host) cannot make the
// logged-in browser change anything.
test('login throttle, same-origin redirect, and a cross-origin page refused', async ({ page, context }) => {
  const server = new Server();
  const base = await server.start();
  // A page of another origin on the same host: another loopback port, served by Node.
  const http = await import('node:http');
  const evil = http.createServer((_, res) => {
    res.setHeader('content-type', 'text/html');
    res.end(`<form id="f" method="post" action="${base}/api/workspaces/create">
      <input name="name" value="planted-by-evil"></form>
      <script>document.getElementById('f').submit()</script>`);
  });
  await new Promise<void>((r) => evil.listen(0, '127.0.0.1', () => r()));
  const evilUrl = `http://127.0.0.1:${(evil.address() as any).port}/`;
  try {
    // Five wrong passwords, then the form says how long to wait.
    await open(page, `${base}/login?next=/%5C%5Cevil.example`);
    for (let i = 0; i < 5; i++) {
      await page.getByLabel('Username').fill('admin');
      await page.getByLabel('Password').fill('wrong-password');
      await page.getByRole('button', { name: 'Log in' }).click();
      await expect(page.locator('.field-error[data-field="password"]')).toHaveText('wrong username or password');
    }
    await page.getByLabel('Password').fill(ADMIN_PASSWORD);
    await page.getByRole('button', { name: 'Log in' }).click();
    await expect(page.locator('.error-box')).toContainText(/too many failed logins; try again in \d+ s/);
    // After the wait the real password works, and the hostile `next` lands on this origin.
    await page.waitForTimeout(1200);
    await page.getByRole('button', { name: 'Log in' }).click();
    await expect(page.locator('.who')).toContainText('admin');
    expect(new URL(page.url()).origin).toBe(new URL(base).origin);

    // The operator, logged in, visits the other origin's page: its form post is refused.
    const [res] = await Promise.all([
      page.waitForResponse((r) => r.url().startsWith(`${base}/api/workspaces/create`)),
      page.goto(evilUrl),
    ]);
    expect(res.status()).toBe(403);
    await open(page, `${base}/workspaces`);
    await expect(page.locator('main')).not.toContainText('planted-by-evil');
  } finally {
    evil.close();
    await server.stop();
  }
});
