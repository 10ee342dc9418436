// Debug helper: log in, open a page, print console errors and whether it hydrated.
import { chromium } from 'playwright';
const [base, pw, path] = process.argv.slice(2);
const b = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox','--disable-gpu','--disable-background-networking'] });
const p = await b.newPage();
p.on('console', m => console.log('console:', m.type(), m.text().slice(0, 1500)));
p.on('pageerror', e => console.log('pageerror:', e.message.slice(0, 500)));
await p.goto(base + '/login'); await p.waitForSelector('body[data-hydrated]');
await p.getByLabel('Username').fill('admin'); await p.getByLabel('Password').fill(pw);
await p.getByRole('button', { name: 'Log in' }).click(); await p.waitForTimeout(1500);
await p.goto(base + path); await p.waitForTimeout(2500);
console.log('hydrated attr:', await p.evaluate(() => document.body.getAttribute('data-hydrated')));
await b.close();
