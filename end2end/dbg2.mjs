import { chromium } from 'playwright';
const [base, user, pw, path, n] = process.argv.slice(2);
const b = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox','--disable-gpu','--disable-background-networking'] });
const p = await b.newPage();
let errs = [];
p.on('console', m => { if (m.type() === 'error') errs.push(m.text().slice(0, 3000)); });
p.on('pageerror', e => errs.push('pageerror: ' + e.message.slice(0, 300)));
await p.goto(base + '/login'); await p.waitForSelector('body[data-hydrated]');
await p.getByLabel('Username').fill(user); await p.getByLabel('Password').fill(pw);
await p.getByRole('button', { name: 'Log in' }).click(); await p.waitForTimeout(1500);
for (let i = 0; i < Number(n); i++) {
  errs = [];
  await p.goto(base + path);
  try { await p.waitForSelector('body[data-hydrated]', { timeout: 5000 }); }
  catch { console.log(`run ${i}: NOT hydrated`, errs.join('\n---\n')); const html = await p.content(); require_fs(html); break; }
}
function require_fs(html) { import('node:fs').then(fs => fs.writeFileSync('/tmp/fail.html', html)); }
await new Promise(r => setTimeout(r, 300));
await b.close();
