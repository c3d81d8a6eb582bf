// sd_notify(3): READY, STATUS, WATCHDOG, STOPPING, EXTEND_TIMEOUT_USEC.
// Outside systemd (no NOTIFY_SOCKET) every call is a no-op. The native module
// is loaded once, by initNotify(), and only when there is a socket.

import fs from 'node:fs';

/** The systemd unit this process runs in (from its cgroup), or null outside one. */
export function systemdUnit(): string | null {
  try {
    const cg = fs.readFileSync('/proc/self/cgroup', 'utf8');
    return /\/([^/\n]+\.service)(?:\/|\n|$)/.exec(cg)?.[1] ?? null;
  } catch {
    return null;
  }
}

interface SdNotify {
  sendState(state: string): void;
  watchdogInterval(): number;
}

let mod: SdNotify | null = null;
let loaded = false;

/** Load sd-notify when NOTIFY_SOCKET is set; returns whether messages go anywhere. */
export async function initNotify(env: NodeJS.ProcessEnv = process.env): Promise<boolean> {
  if (loaded) return mod !== null;
  loaded = true;
  if (!env.NOTIFY_SOCKET) return false;
  try {
    const m = (await import('sd-notify')) as unknown as { default?: SdNotify } & SdNotify;
    mod = m.default ?? m;
  } catch {
    mod = null;
  }
  return mod !== null;
}

export function notifyEnabled(): boolean {
  return mod !== null;
}

/** Send raw assignments ("STATUS=...", "READY=1"); newlines separate several. */
export function notify(state: string): void {
  mod?.sendState(state);
}

export function ready(status?: string): void {
  notify(status ? `READY=1\nSTATUS=${status}` : 'READY=1');
}

export function status(text: string): void {
  notify(`STATUS=${text.replace(/\n/g, ' ')}`);
}

export function watchdog(): void {
  notify('WATCHDOG=1');
}

export function stopping(text?: string): void {
  notify(text ? `STOPPING=1\nSTATUS=${text}` : 'STOPPING=1');
}

/** Ask systemd for more time in the current start or stop (EXTEND_TIMEOUT_USEC, from now). */
export function extendTimeout(ms: number): void {
  notify(`EXTEND_TIMEOUT_USEC=${Math.max(0, Math.round(ms * 1000))}`);
}

/** The watchdog interval systemd expects pings within, in ms; 0 when there is none. */
export function watchdogIntervalMs(): number {
  return mod ? mod.watchdogInterval() : 0;
}
