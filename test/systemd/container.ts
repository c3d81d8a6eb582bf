// A real systemd for the tests: systemd-nspawn boots a container whose root
// is a directory of the test's own (kept across reboots) with this machine's
// /usr mounted read-only, so node, git and the MTA are the host's. Commands
// run inside with nsenter.

import fs from 'node:fs';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { execa, type Result } from 'execa';
import { sleep } from '../helpers.js';

const PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Why the machine cannot boot a container, or null when it can. */
export async function cannotBoot(): Promise<string | null> {
  if (process.getuid?.() !== 0) return 'booting a container needs root';
  const r = await execa('systemd-nspawn', ['--version'], { reject: false });
  if (r.exitCode !== 0) return 'systemd-nspawn is not installed (apt-get install systemd-container)';
  if (!fs.existsSync('/sys/fs/cgroup/cgroup.controllers') && !fs.existsSync('/sys/fs/cgroup/systemd')) return 'no cgroup file system to boot systemd on';
  return null;
}

function children(pid: number): number[] {
  const out: number[] = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(d));
    } catch {
      /* gone */
    }
  }
  return out;
}

function comm(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
}

export interface BootOptions {
  /** The container's root directory (made if missing, kept across boots). */
  root: string;
  name: string;
  /** --bind= / --bind-ro= arguments. */
  binds: string[];
  log: string;
}

export class Container {
  private nspawn: ChildProcess | null = null;
  private exitPromise: Promise<void> | null = null;
  initPid = 0;

  constructor(readonly opts: BootOptions) {}

  /** A root that boots: os-release, the merged-/usr symlinks, empty directories. */
  private prepareRoot(): void {
    const r = this.opts.root;
    for (const d of ['etc', 'usr', 'var', 'tmp', 'root', 'opt', 'home', 'srv', 'run', 'proc', 'sys', 'dev', 'mnt']) fs.mkdirSync(path.join(r, d), { recursive: true });
    fs.chmodSync(path.join(r, 'tmp'), 0o1777);
    if (!fs.existsSync(path.join(r, 'etc/os-release'))) fs.copyFileSync('/etc/os-release', path.join(r, 'etc/os-release'));
    for (const l of ['bin', 'lib', 'lib64', 'sbin']) {
      // lstat: between boots the link dangles (/usr is only bound while booted).
      const there = ((): boolean => {
        try {
          fs.lstatSync(path.join(r, l));
          return true;
        } catch {
          return false;
        }
      })();
      if (!there && fs.existsSync(`/usr/${l}`)) fs.symlinkSync(`usr/${l}`, path.join(r, l));
    }
  }

  async boot(): Promise<void> {
    this.prepareRoot();
    const log = fs.openSync(this.opts.log, 'a');
    const args = ['--register=no', '--keep-unit', '-D', this.opts.root, '--bind-ro=/usr', ...this.opts.binds, '-M', this.opts.name, '-b', '--', 'systemd.firstboot=off'];
    // A guardian around nspawn: if this test process dies without its finally (killed by a
    // timeout), the container is shut down, and after 20 s killed with all it runs (its
    // init outlives a killed nspawn otherwise). It polls once a second: a watchdog, not a wait.
    const guard = [
      'parent=$1; shift',
      '"$@" & n=$!',
      "trap 'kill -TERM $n 2>/dev/null' TERM INT",
      'kids() { for c in $(pgrep -P "$1"); do kids "$c"; echo "$c"; done; }',
      'while kill -0 $n 2>/dev/null; do',
      '  if ! kill -0 "$parent" 2>/dev/null; then',
      '    kill -TERM $n 2>/dev/null; i=0',
      '    while [ $i -lt 20 ] && kill -0 $n 2>/dev/null; do sleep 1; i=$((i + 1)); done',
      '    kill -KILL $(kids $n) $n 2>/dev/null; break',
      '  fi',
      '  sleep 1',
      'done',
      'wait $n',
    ].join('\n');
    this.nspawn = spawn('sh', ['-c', guard, 'guard', String(process.pid), 'systemd-nspawn', ...args], { detached: true, stdio: ['ignore', log, log] });
    const child = this.nspawn;
    this.exitPromise = new Promise((res) => child.once('exit', () => res()));
    fs.closeSync(log);
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      if (child.exitCode !== null) throw new Error(`systemd-nspawn exited (${child.exitCode}); see ${this.opts.log}`);
      const init = this.findInit(child.pid as number);
      if (init) {
        this.initPid = init;
        const r = await this.exec(['systemctl', 'is-system-running'], { timeoutMs: 10_000 });
        const state = String(r.stdout).trim();
        if (state === 'running' || state === 'degraded') return;
      }
      await sleep(300);
    }
    throw new Error(`the container did not finish booting in 60 s; see ${this.opts.log}`);
  }

  private findInit(nspawnPid: number): number {
    const queue = children(nspawnPid);
    while (queue.length) {
      const p = queue.shift() as number;
      if (comm(p) === 'systemd') return p;
      queue.push(...children(p));
    }
    return 0;
  }

  /** A command in the container, as root, with a clean environment. */
  exec(cmd: string[], opts: { input?: string; timeoutMs?: number; env?: Record<string, string> } = {}): Promise<Result> {
    const env = ['PATH=' + PATH, 'LANG=C.UTF-8', 'HOME=/root', 'NO_COLOR=1', ...Object.entries(opts.env ?? {}).map(([k, v]) => `${k}=${v}`)];
    return execa('nsenter', ['-t', String(this.initPid), '-a', 'env', '-i', ...env, ...cmd], {
      reject: false,
      input: opts.input,
      timeout: opts.timeoutMs ?? 120_000,
      env: {},
      extendEnv: false,
    }) as unknown as Promise<Result>;
  }

  /** A shell script in the container; throws with its output when it fails. */
  async sh(script: string, opts: { allowFail?: boolean; timeoutMs?: number } = {}): Promise<string> {
    const r = await this.exec(['sh', '-c', script], { timeoutMs: opts.timeoutMs });
    if (r.exitCode !== 0 && !opts.allowFail) throw new Error(`in the container: ${script}\nexit ${r.exitCode}\n${r.stdout}\n${r.stderr}`);
    return String(r.stdout);
  }

  /**
   * The README's `make install` (PREFIX=/usr/local) of the tree at root, with a real MTA beside it:
   * Debian's exim, delivering locally to /var/mail, its config from the host (bound read-only), and
   * a user `ops` to mail. The first message goes through as root (exim makes its spool).
   */
  async installWithMta(root: string): Promise<void> {
    await this.sh(
      [
        'grep -q "^mail:" /etc/group || echo "mail:x:8:" >> /etc/group',
        `grep -q "^Debian-exim:" /etc/group || echo "Debian-exim:x:$(stat -c %g /var/lib/exim4/config.autogenerated 2>/dev/null || echo 105):" >> /etc/group`,
        'grep -q "^Debian-exim:" /etc/passwd || useradd --system --no-create-home --gid Debian-exim --home-dir /var/spool/exim4 --shell /usr/sbin/nologin Debian-exim',
        'mkdir -p /var/spool/exim4 /var/log/exim4 /var/mail && chown Debian-exim:Debian-exim /var/spool/exim4 /var/log/exim4 && chmod 750 /var/spool/exim4',
        'chown root:mail /var/mail && chmod 2775 /var/mail',
        'touch /etc/aliases /etc/email-addresses && hostname > /etc/mailname',
        'id ops >/dev/null 2>&1 || useradd --create-home ops',
        `make -s -C ${root} install`,
        "printf 'Subject: mta check\\n\\nhello\\n' | /usr/sbin/sendmail ops",
      ].join(' && '),
      { timeoutMs: 600_000 },
    );
  }

  /** A unit's properties. */
  async show(unit: string, props: string[]): Promise<Record<string, string>> {
    const out = await this.sh(`systemctl show ${props.map((p) => `-p ${p}`).join(' ')} '${unit}'`);
    const o: Record<string, string> = {};
    for (const l of out.split('\n')) {
      const i = l.indexOf('=');
      if (i > 0) o[l.slice(0, i)] = l.slice(i + 1);
    }
    return o;
  }

  async waitFor<T>(what: string, fn: () => Promise<T | null | undefined | false>, timeoutMs: number): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = await fn();
      if (v) return v;
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
      await sleep(200);
    }
  }

  /** Shut the container down from inside (as a reboot would) and wait for nspawn to end. */
  async shutdown(): Promise<void> {
    await this.exec(['systemctl', 'poweroff'], { timeoutMs: 10_000 });
    await Promise.race([this.exitPromise, sleep(60_000)]);
    if (this.nspawn && this.nspawn.exitCode === null) await this.kill();
  }

  /** Power loss: its init and nspawn killed at once, nothing shut down (its directories stay as they were). */
  async powerLoss(): Promise<void> {
    if (!this.nspawn || this.nspawn.exitCode !== null) return;
    try {
      if (this.initPid) process.kill(this.initPid, 'SIGKILL');
    } catch {
      /* gone */
    }
    try {
      process.kill(-(this.nspawn.pid as number), 'SIGKILL');
    } catch {
      /* gone */
    }
    await Promise.race([this.exitPromise, sleep(20_000)]);
  }

  /** Stop the container: SIGTERM to nspawn through its guardian (a clean shutdown), then SIGKILL to its init (the whole PID namespace goes) and to nspawn. */
  async kill(): Promise<void> {
    if (!this.nspawn || this.nspawn.exitCode !== null) return;
    const signal = (pid: number, sig: NodeJS.Signals): void => {
      try {
        process.kill(pid, sig);
      } catch {
        /* gone */
      }
    };
    signal(this.nspawn.pid as number, 'SIGTERM');
    await Promise.race([this.exitPromise, sleep(20_000)]);
    if (this.nspawn.exitCode === null) {
      if (this.initPid) signal(this.initPid, 'SIGKILL');
      // The guardian and nspawn share its process group.
      signal(-(this.nspawn.pid as number), 'SIGKILL');
      await Promise.race([this.exitPromise, sleep(10_000)]);
    }
  }
}
