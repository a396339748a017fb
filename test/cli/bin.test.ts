// The installed `keap-sync` command (package.json "bin": bin/keap-sync) runs on the project's own Node
// 24 from any shell, even when the first `node` on PATH is an older one that cannot run TypeScript.
import { execFile } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, test } from 'vitest';
import { ROOT, removeTempDirs, tempDir } from './support.ts';

afterAll(removeTempDirs);

const run = promisify(execFile);
const LAUNCHER = join(ROOT, 'bin', 'keap-sync');

/**
 * A folder whose `node` claims to be Node 20 and only records that it was called: the command must
 * never use it. The rest of PATH is the system's (sh, dirname, readlink).
 */
function pathWithOldNode(): { path: string; calledMarker: string } {
  const dir = tempDir();
  const calledMarker = join(dir, 'old-node-was-called');
  const fake = join(dir, 'node');
  writeFileSync(
    fake,
    `#!/bin/sh\ntouch '${calledMarker}'\n[ "$1" = "-v" ] && echo v20.20.2 && exit 0\nexit 1\n`,
  );
  chmodSync(fake, 0o755);
  return { path: `${dir}:/usr/bin:/bin`, calledMarker };
}

describe('the keap-sync bin', () => {
  test('package.json names the launcher as the bin', () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { bin: unknown };
    expect(pkg.bin).toEqual({ 'keap-sync': 'bin/keap-sync' });
  });

  test('answers --help on the project Node when PATH finds an old node first', async () => {
    const { path, calledMarker } = pathWithOldNode();

    const r = await run(LAUNCHER, ['--help'], { cwd: tempDir(), env: { PATH: path, HOME: tempDir() } });

    expect(r.stdout).toMatch(/Usage: keap-sync/);
    expect(r.stderr).toBe('');
    expect(existsSync(calledMarker)).toBe(false);
  });

  test('works through a chain of relative symlinks, as npm links bins', async () => {
    const { path, calledMarker } = pathWithOldNode();
    const links = tempDir();
    mkdirSync(join(links, 'node_modules', '.bin'), { recursive: true });
    symlinkSync(LAUNCHER, join(links, 'node_modules', '.bin', 'real'));
    symlinkSync('real', join(links, 'node_modules', '.bin', 'keap-sync'));

    const r = await run(join(links, 'node_modules', '.bin', 'keap-sync'), ['--help'], {
      cwd: links,
      env: { PATH: path, HOME: links },
    });

    expect(r.stdout).toMatch(/Usage: keap-sync/);
    expect(existsSync(calledMarker)).toBe(false);
  });
});
