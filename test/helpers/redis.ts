// A real redis-server for the queue tests: on a free loopback port, no persistence, in a temporary
// folder; stop() ends it (and restart() starts a fresh, empty one on the same port). Worker processes
// (`muse worker`) started from the source with tsx, stopped by their pid.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const REDIS_SERVER = '/usr/bin/redis-server';
export const haveRedis = existsSync(REDIS_SERVER);
export const SKIP_REDIS = haveRedis ? false : `${REDIS_SERVER} is not installed (apt-get install redis-server)`;

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** Waits until a child's output matches, or fails with its output after timeoutMs. */
export function waitForOutput(child: ChildProcess, pattern: RegExp, timeoutMs: number, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`${what}: no ${pattern} in ${timeoutMs} ms; output:\n${seen}`));
    }, timeoutMs);
    const onData = (d: Buffer) => {
      seen += d.toString();
      if (pattern.test(seen)) {
        cleanup();
        resolve();
      }
    };
    const onExit = (code: number | null) => {
      cleanup();
      reject(new Error(`${what} exited (${code}) before ${pattern}; output:\n${seen}`));
    };
    const cleanup = () => {
      clearTimeout(timer);
      child.stdout?.off('data', onData);
      child.stderr?.off('data', onData);
      child.off('exit', onExit);
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', onExit);
  });
}

/** Stops a child by pid (SIGTERM, then SIGKILL after graceMs) and waits for it to exit. */
export async function stopChild(child: ChildProcess | undefined, graceMs = 5000): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

export class TestRedis {
  private child?: ChildProcess;
  readonly dir = mkdtempSync(join(tmpdir(), 'muse-redis-'));

  private constructor(readonly port: number) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  static async start(): Promise<TestRedis> {
    const r = new TestRedis(await freePort());
    await r.run();
    return r;
  }

  private async run(): Promise<void> {
    const child = spawn(
      REDIS_SERVER,
      ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', this.dir],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    this.child = child;
    await waitForOutput(child, /Ready to accept connections/, 10_000, 'redis-server');
  }

  async stop(): Promise<void> {
    await stopChild(this.child);
    this.child = undefined;
  }

  /** A fresh, empty Redis on the same port (as after a crash without persistence). */
  async restart(): Promise<void> {
    await this.stop();
    await this.run();
  }

  async close(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export interface TestWorker {
  child: ChildProcess;
  log: () => string;
}

/** `muse worker --queue URL ...args`, ready when it says so. */
export async function startWorker(url: string, args: string[], timeoutMs = 120_000): Promise<TestWorker> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'worker', '--queue', url, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, MUSE_THREADS: '1' },
  });
  let log = '';
  child.stdout?.on('data', (d) => {
    log += d;
  });
  child.stderr?.on('data', (d) => {
    log += d;
  });
  await waitForOutput(child, /ready on/, timeoutMs, 'muse worker');
  return { child, log: () => log };
}
