// Where model files come from, behind one small interface: a folder on disk under Node
// (util/folder-source.ts, with the untrusted-file checks of util/untrusted.ts) or a base URL read with
// fetch (here; browsers, and Node too). Either way a file is named by a relative path inside the
// source, kept inside it, and its size is checked against a limit before its bytes are kept.
import { MuseError } from './errors.js';

export interface ModelSource {
  /** The folder or base URL, for messages. */
  readonly location: string;
  /** How `name` is shown in messages (the full path or URL). */
  where(name: string): string;
  /** The bytes of the file `name` (a relative path inside the source) of at most `maxBytes` bytes. */
  read(name: string, maxBytes: number, what?: string): Promise<Uint8Array>;
}

/** A file inside a source (a component of a model folder). */
export interface SourceFile {
  source: ModelSource;
  name: string;
}

/**
 * Refuses a file name that could leave its source: empty, NUL, absolute ("/x", "C:\x", "http://x"),
 * backslashes, or with a "." or ".." part. `where` starts the message.
 */
export function checkRelativeName(name: string, where: string): void {
  const quoted = JSON.stringify(name);
  if (typeof name !== 'string' || name === '' || name.includes('\0'))
    throw new MuseError(`${where}: ${quoted} is not a file name`);
  const parts = name.split(/[\\/]/);
  if (
    name.startsWith('/') ||
    name.includes('\\') ||
    /^[a-zA-Z][a-zA-Z0-9+.-]*:/.test(name) ||
    parts.includes('..') ||
    parts.includes('.') ||
    parts.includes('')
  )
    throw new MuseError(`${where}: ${quoted} must be a path inside the model folder (no "..", not absolute)`);
}

export interface FetchSourceOptions {
  /** The fetch to use (default: the global one). */
  fetch?: typeof fetch;
  /** Extra request options (credentials, cache, signal, ...). */
  init?: RequestInit;
}

/**
 * Files under a base URL, read with fetch. Names are checked (checkRelativeName) and the URL they make
 * must stay under the base; a declared Content-Length over the limit is refused before the body is read,
 * and a body that grows past it is cut off and refused while streaming.
 */
export class FetchSource implements ModelSource {
  readonly base: URL;
  readonly location: string;

  constructor(
    base: string | URL,
    private readonly options: FetchSourceOptions = {},
  ) {
    const href = typeof base === 'string' ? base : base.href;
    const relativeTo = (globalThis as { location?: { href: string } }).location?.href;
    const url = relativeTo ? new URL(href, relativeTo) : new URL(href);
    if (!url.pathname.endsWith('/')) url.pathname += '/';
    url.search = '';
    url.hash = '';
    this.base = url;
    this.location = url.href;
  }

  where(name: string): string {
    return `${this.location}${name}`;
  }

  /** The source for a folder under this one. */
  folder(name: string): FetchSource {
    checkRelativeName(name, this.location);
    return new FetchSource(this.url(name), this.options);
  }

  private url(name: string): URL {
    checkRelativeName(name, this.location);
    const url = new URL(name.split('/').map(encodeURIComponent).join('/'), this.base);
    if (url.origin !== this.base.origin || !url.pathname.startsWith(this.base.pathname))
      throw new MuseError(`${this.location}: ${JSON.stringify(name)} leads out of the model folder`);
    return url;
  }

  async read(name: string, maxBytes: number, what = 'this file'): Promise<Uint8Array> {
    const url = this.url(name);
    const where = url.href;
    const f = this.options.fetch ?? globalThis.fetch;
    let response: Response;
    try {
      response = await f(url, this.options.init);
    } catch (err) {
      throw new MuseError(`${where}: cannot fetch: ${(err as Error).message}`);
    }
    if (!response.ok) {
      await response.body?.cancel().catch(() => {});
      throw new MuseError(
        response.status === 404 ? `no such file: ${where}` : `${where}: HTTP ${response.status} ${response.statusText}`,
      );
    }
    const declared = Number(response.headers.get('content-length') ?? Number.NaN);
    if (declared > maxBytes) {
      await response.body?.cancel().catch(() => {});
      throw tooLarge(where, declared, maxBytes, what);
    }
    if (!response.body) return new Uint8Array(await response.arrayBuffer());
    const reader = response.body.getReader();
    const chunks: Uint8Array[] = [];
    let total = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.length;
      if (total > maxBytes) {
        await reader.cancel().catch(() => {});
        throw tooLarge(where, total, maxBytes, what, true);
      }
      chunks.push(value);
    }
    if (chunks.length === 1) return chunks[0];
    const out = new Uint8Array(total);
    let at = 0;
    for (const c of chunks) {
      out.set(c, at);
      at += c.length;
    }
    return out;
  }
}

function tooLarge(where: string, size: number, limit: number, what: string, atLeast = false): MuseError {
  return new MuseError(
    `${where}: ${atLeast ? 'over ' : ''}${size.toLocaleString('en-US')} bytes is too large for ${what} (limit ${limit.toLocaleString('en-US')} bytes)`,
  );
}
