// Redis connections for the job queue, from a redis:// URL. Two kinds:
// - a command connection (producer side: enqueue, results, cancel flags, status) that fails fast while
//   Redis is down (no offline queue, one retry), so an HTTP request is answered 503 at once instead of
//   hanging; it reconnects by itself with a capped back-off;
// - the options for BullMQ's blocking connections (workers, queue events), which wait for Redis as
//   long as it takes (maxRetriesPerRequest null, as BullMQ requires).
import type { ConnectionOptions } from 'bullmq';
import { Redis, type RedisOptions } from 'ioredis';
import { MuseError } from '../util/errors.js';

/** Host, port, db and credentials of a redis:// or rediss:// URL; a MuseError for anything else. */
export function redisOptions(url: string): RedisOptions {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new MuseError(`\`url\` ${JSON.stringify(url)}: not a URL; give redis://HOST:PORT`);
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:')
    throw new MuseError(`\`url\` ${url}: give a redis:// (or rediss://) URL, got ${u.protocol}`);
  if (!u.hostname) throw new MuseError(`\`url\` ${url}: no host`);
  const port = u.port ? Number(u.port) : 6379;
  const db = u.pathname && u.pathname !== '/' ? Number(u.pathname.slice(1)) : 0;
  if (!Number.isInteger(db) || db < 0) throw new MuseError(`\`url\` ${url}: the path must be a database number`);
  return {
    host: u.hostname.replace(/^\[|\]$/g, ''),
    port,
    db,
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    ...(u.protocol === 'rediss:' ? { tls: {} } : {}),
    // Reconnect for ever, at most a second apart: the server and the workers recover when Redis returns.
    retryStrategy: (times: number) => Math.min(100 * times, 1000),
  };
}

/** Options for BullMQ's own (blocking) connections: workers and queue event readers. */
export function blockingOptions(url: string): ConnectionOptions {
  return { ...redisOptions(url), maxRetriesPerRequest: null, enableOfflineQueue: true } as ConnectionOptions;
}

/** A command connection that fails fast while Redis is unreachable (see the file comment). */
export function commandConnection(url: string, name = 'muse'): Redis {
  const redis = new Redis({
    ...redisOptions(url),
    connectionName: name,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: 2000,
    lazyConnect: false,
  });
  // Errors while Redis is away are expected (the state is reported through `ready`); without a
  // listener ioredis prints each reconnect failure.
  redis.on('error', () => {});
  return redis;
}

/** Whether a command connection is up now. */
export function isReady(redis: Redis): boolean {
  return redis.status === 'ready';
}

/** Waits until the connection is ready (or the time is up: a MuseError naming the URL). */
export async function waitReady(redis: Redis, url: string, timeoutMs = 10_000): Promise<void> {
  if (redis.status === 'ready') return;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      redis.off('ready', ok);
      reject(new MuseError(`cannot reach Redis at ${url} (waited ${timeoutMs / 1000} s); is redis-server running?`));
    }, timeoutMs);
    const ok = () => {
      clearTimeout(timer);
      resolve();
    };
    redis.once('ready', ok);
  });
}
