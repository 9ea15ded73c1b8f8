// `muse pull` against a local server that mimics the Hugging Face Hub's URLs (never the internet):
// the standard cache layout, nothing fetched twice, resume after a broken connection, sha256 checks,
// hostile file names, --model ORG/NAME resolving from the cache, stalled downloads cut and resumed,
// and two pulls of one model at once (a lock per file).
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  writeFileSync,
} from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { modelFolder } from '../src/cli/decoding-options.js';
import { hubCacheRoot, repoCacheFolder, resolveCachedRepo, resolveModelArgument } from '../src/hub/hub-cache.js';
import { pullRepo, selectFiles } from '../src/hub/pull.js';
import { runMuse } from './helpers/run-cli.js';

const FIXTURE = 'test/fixtures/amused/tiny-amused-256';
const COMMIT = 'a'.repeat(40);
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const gitSha1 = (b: Buffer) =>
  createHash('sha1')
    .update(Buffer.concat([Buffer.from(`blob ${b.length}\0`), b]))
    .digest('hex');

interface FakeFile {
  content: Buffer;
  lfs: boolean;
  /** Served instead of `content` (the etag still names `content`): a corrupted download. */
  served?: Buffer;
}

interface FakeRepo {
  commit: string;
  files: Map<string, FakeFile>;
  /** Extra sibling names the listing claims (hostile ones). */
  extraSiblings?: string[];
}

const repos = new Map<string, FakeRepo>();
const log: { method: string; url: string; range?: string }[] = [];
/** Paths whose next GET breaks the connection half-way (once each). */
const breakOnce = new Set<string>();
/** Paths whose next GET sends half and then nothing, keeping the connection open (once each). */
const stallOnce = new Set<string>();
/** Paths served slowly (in 8 pieces, 30 ms apart), so that two pulls overlap. */
const slow = new Set<string>();
let server: Server;
let endpoint: string;
let cache: string;

function fixtureRepo(): FakeRepo {
  const files = new Map<string, FakeFile>();
  const add = (name: string) =>
    files.set(name, { content: readFileSync(join(FIXTURE, name)), lfs: name.endsWith('.safetensors') });
  for (const name of [
    'model_index.json',
    'scheduler/scheduler_config.json',
    'text_encoder/config.json',
    'text_encoder/model.safetensors',
    'tokenizer/special_tokens_map.json',
    'tokenizer/tokenizer_config.json',
    'tokenizer/vocab.json.gz',
    'tokenizer/merges.txt.gz',
    'transformer/config.json',
    'transformer/diffusion_pytorch_model.safetensors',
    'vqvae/config.json',
    'vqvae/diffusion_pytorch_model.safetensors',
  ])
    add(name);
  files.set('README.md', { content: Buffer.from('# tiny\n'), lfs: false });
  return { commit: COMMIT, files };
}

function handle(req: IncomingMessage, res: ServerResponse): void {
  const url = new URL(req.url ?? '/', 'http://x');
  const path = decodeURIComponent(url.pathname);
  log.push({ method: req.method ?? '', url: path, range: req.headers.range });
  const api = /^\/api\/models\/([^/]+\/[^/]+)\/revision\/(.+)$/.exec(path);
  if (api) {
    const repo = repos.get(api[1]);
    if (!repo) return void res.writeHead(404).end('{"error":"Repository not found"}');
    const siblings = [...repo.files.keys(), ...(repo.extraSiblings ?? [])].map((rfilename) => ({ rfilename }));
    res.writeHead(200, { 'content-type': 'application/json' });
    return void res.end(JSON.stringify({ id: api[1], sha: repo.commit, siblings }));
  }
  const cdn = /^\/cdn\/([^/]+\/[^/]+)\/(.+)$/.exec(path);
  const resolve = /^\/([^/]+\/[^/]+)\/resolve\/([0-9a-f]{40})\/(.+)$/.exec(path);
  const repoName = cdn?.[1] ?? resolve?.[1];
  const name = cdn?.[2] ?? resolve?.[3];
  const repo = repoName ? repos.get(repoName) : undefined;
  const file = repo && name ? repo.files.get(name) : undefined;
  if (!repo || !name || !file || (resolve && resolve[2] !== repo.commit)) return void res.writeHead(404).end();
  if (resolve && file.lfs) {
    // The hub answers an LFS file with a redirect to its CDN, the sha256 and size in x-linked-*.
    res.writeHead(302, {
      location: `/cdn/${repoName}/${name}`,
      'x-repo-commit': repo.commit,
      'x-linked-etag': `"${sha256(file.content)}"`,
      'x-linked-size': String(file.content.length),
    });
    return void res.end();
  }
  const body = file.served ?? file.content;
  const headers: Record<string, string> = {
    'x-repo-commit': repo.commit,
    etag: `"${file.lfs ? sha256(file.content) : gitSha1(file.content)}"`,
    'accept-ranges': 'bytes',
  };
  if (req.method === 'HEAD')
    return void res.writeHead(200, { ...headers, 'content-length': String(body.length) }).end();
  const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
  const start = m ? Number(m[1]) : 0;
  const part = body.subarray(start);
  res.writeHead(m ? 206 : 200, {
    ...headers,
    'content-length': String(part.length),
    ...(m ? { 'content-range': `bytes ${start}-${body.length - 1}/${body.length}` } : {}),
  });
  if (stallOnce.delete(`${repoName}/${name}`)) {
    res.write(part.subarray(0, Math.floor(part.length / 2)));
    return; // never ends: the client's stall timeout must cut it
  }
  if (slow.has(`${repoName}/${name}`)) {
    const piece = Math.ceil(part.length / 8);
    let at = 0;
    const next = () => {
      if (at >= part.length) return void res.end();
      res.write(part.subarray(at, at + piece));
      at += piece;
      setTimeout(next, 30);
    };
    next();
    return;
  }
  if (breakOnce.delete(`${repoName}/${name}`)) {
    res.write(part.subarray(0, Math.floor(part.length / 2)), () => res.socket?.destroy());
    return;
  }
  res.end(part);
}

before(async () => {
  server = createServer(handle);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  cache = mkdtempSync(join(tmpdir(), 'muse-hub-'));
  process.env.HF_HUB_CACHE = cache;
  process.env.HF_ENDPOINT = endpoint;
});

after(() => {
  server.closeAllConnections();
  server.close();
});

test('the cache root follows HF_HUB_CACHE, HF_HOME and ~/.cache', () => {
  assert.equal(hubCacheRoot({ HF_HUB_CACHE: '/c' }), '/c');
  assert.equal(hubCacheRoot({ HF_HOME: '/h' }), '/h/hub');
  assert.match(hubCacheRoot({}), /\.cache\/huggingface\/hub$/);
  assert.equal(repoCacheFolder('amused/amused-256', '/c'), '/c/models--amused--amused-256');
});

test('the files an aMUSEd pipeline needs, one weight variant', () => {
  const names = [
    'a.json',
    'b/merges.txt',
    'README.md',
    'm.bin',
    'm.safetensors',
    'm.fp16.safetensors',
    'n.safetensors',
  ];
  assert.deepEqual(selectFiles(names), ['a.json', 'b/merges.txt', 'm.safetensors', 'n.safetensors']);
  assert.deepEqual(selectFiles(names, 'fp16'), ['a.json', 'b/merges.txt', 'm.fp16.safetensors', 'n.safetensors']);
});

test('pull writes the standard layout, a second pull downloads nothing, --model ORG/NAME resolves', async () => {
  repos.set('tiny/amused', fixtureRepo());
  assert.equal(resolveCachedRepo('tiny/amused'), undefined);
  assert.throws(
    () => resolveModelArgument('tiny/amused'),
    /tiny\/amused is not downloaded: run muse pull tiny\/amused/,
  );
  log.length = 0;
  const first = await pullRepo('tiny/amused');
  const folder = join(cache, 'models--tiny--amused');
  assert.equal(first.snapshot, join(folder, 'snapshots', COMMIT));
  assert.equal(readFileSync(join(folder, 'refs', 'main'), 'utf8'), COMMIT);
  const repo = repos.get('tiny/amused') as FakeRepo;
  // Only *.json/*.txt/*.safetensors: not README.md, not the .gz tokenizer files.
  assert.deepEqual(first.files.sort(), [...repo.files.keys()].filter((n) => /\.(json|safetensors)$/.test(n)).sort());
  for (const name of first.files) {
    const link = join(first.snapshot, name);
    assert.ok(lstatSync(link).isSymbolicLink(), name);
    const file = repo.files.get(name) as FakeFile;
    const etag = file.lfs ? sha256(file.content) : gitSha1(file.content);
    assert.equal(
      readlinkSync(link),
      join(
        ...name
          .split('/')
          .slice(1)
          .map(() => '..'),
        '..',
        '..',
        'blobs',
        etag,
      ),
      name,
    );
    assert.deepEqual(readFileSync(link), file.content, name);
  }
  assert.ok(!readdirSync(join(folder, 'blobs')).some((b) => b.endsWith('.incomplete')));
  assert.ok(
    log.some((r) => r.url.startsWith('/cdn/')),
    'LFS files follow the redirect',
  );

  log.length = 0;
  const second = await pullRepo('tiny/amused');
  assert.deepEqual(second.downloaded, []);
  assert.deepEqual(
    log.map((r) => r.url),
    [`/api/models/tiny/amused/revision/main`],
  );

  assert.equal(resolveCachedRepo('tiny/amused'), first.snapshot);
  assert.equal(resolveModelArgument('tiny/amused'), first.snapshot);
  assert.equal(modelFolder({ model: 'tiny/amused' }), first.snapshot);
  assert.equal(resolveModelArgument(FIXTURE), FIXTURE, 'an existing folder wins');
  assert.equal(resolveCachedRepo('tiny/amused', COMMIT), first.snapshot);
});

test('a download cut off half-way resumes with a Range request and ends verified', async () => {
  const repo = fixtureRepo();
  repo.commit = 'b'.repeat(40);
  repos.set('tiny/resume', repo);
  const name = 'transformer/diffusion_pytorch_model.safetensors';
  breakOnce.add(`tiny/resume/${name}`);
  log.length = 0;
  const r = await pullRepo('tiny/resume');
  assert.equal(breakOnce.size, 0, 'the server broke the download');
  const content = (repo.files.get(name) as FakeFile).content;
  const half = Math.floor(content.length / 2);
  // The resume starts where the first attempt's bytes on disk end: at most the half the server sent
  // (bytes still queued in the response stream when the connection broke are dropped with it, so the
  // exact point depends on timing), and after at least some of them.
  const resumedAt = log
    .filter((l) => l.url === `/cdn/tiny/resume/${name}` && l.range)
    .map((l) => Number(/^bytes=(\d+)-$/.exec(l.range as string)?.[1]));
  assert.equal(resumedAt.length, 1, JSON.stringify(log));
  assert.ok(resumedAt[0] > 0 && resumedAt[0] <= half, `resumed at byte ${resumedAt[0]} of a half of ${half}`);
  assert.deepEqual(readFileSync(join(r.snapshot, name)), content);
  assert.deepEqual(readFileSync(join(r.snapshot, 'model_index.json')), readFileSync(join(FIXTURE, 'model_index.json')));
});

test('a partial file left by an interrupted run is resumed by the next pull', async () => {
  const repo = fixtureRepo();
  repo.commit = 'c'.repeat(40);
  repos.set('tiny/later', repo);
  const name = 'vqvae/diffusion_pytorch_model.safetensors';
  const content = (repo.files.get(name) as FakeFile).content;
  const blobs = join(cache, 'models--tiny--later', 'blobs');
  const { mkdirSync } = await import('node:fs');
  mkdirSync(blobs, { recursive: true });
  writeFileSync(join(blobs, `${sha256(content)}.incomplete`), content.subarray(0, 100));
  log.length = 0;
  const r = await pullRepo('tiny/later');
  assert.ok(log.some((l) => l.url === `/cdn/tiny/later/${name}` && l.range === 'bytes=100-'));
  assert.deepEqual(readFileSync(join(r.snapshot, name)), content);
});

test('a file whose content is not its sha256 etag is refused and not left in the cache', async () => {
  const repo = fixtureRepo();
  repo.commit = 'd'.repeat(40);
  const name = 'text_encoder/model.safetensors';
  const file = repo.files.get(name) as FakeFile;
  file.served = Buffer.from(file.content);
  file.served[file.served.length - 1] ^= 0xff;
  repos.set('tiny/corrupt', repo);
  await assert.rejects(pullRepo('tiny/corrupt'), /model\.safetensors: the content's sha256 .* refused/);
  const folder = join(cache, 'models--tiny--corrupt');
  assert.ok(!readdirSync(join(folder, 'blobs')).includes(sha256(file.content)));
  assert.ok(!readdirSync(join(folder, 'blobs')).some((b) => b.endsWith('.incomplete')));
  assert.ok(!existsSync(join(folder, 'snapshots', repo.commit, name)));
  assert.ok(!existsSync(join(folder, 'refs', 'main')));
  assert.equal(resolveCachedRepo('tiny/corrupt'), undefined);
});

test('file names and repo ids that leave the cache are refused', async () => {
  for (const evil of ['../../evil', '../../evil.json', '/etc/evil.json', 'a/../../evil.json', 'a\\..\\evil.json']) {
    const repo = fixtureRepo();
    repo.commit = 'e'.repeat(40);
    repo.extraSiblings = [evil];
    repos.set('tiny/evil', repo);
    await assert.rejects(pullRepo('tiny/evil'), /refused/, evil);
  }
  assert.ok(!existsSync(join(cache, 'evil')) && !existsSync(join(cache, 'evil.json')));
  assert.ok(!existsSync(join(cache, 'models--tiny--evil')), 'nothing written for a refused listing');
  for (const id of ['../x', 'a/..', '/abs/x', 'a/b/c', 'a--b/c', 'a', '.a/b'])
    await assert.rejects(pullRepo(id), /not a Hub model id/, id);
  await assert.rejects(pullRepo('tiny/amused', { revision: '../../x' }), /`revision`/);
});

test('muse pull on the command line: one line for a missing repo, the snapshot path on success', async () => {
  const missing = await runMuse('pull', 'nobody/nothing');
  assert.equal(missing.code, 1);
  assert.equal(missing.err.trim().split('\n').length, 1, missing.err);
  assert.match(missing.err, /not found on the hub/);
  const ok = await runMuse('pull', 'tiny/amused');
  assert.equal(ok.code, 0, ok.err);
  assert.equal(ok.out.trim(), resolveCachedRepo('tiny/amused'));
  assert.match(ok.err, /already in the cache/);
  const gen = await runMuse('generate', 'x', '--model', 'not/pulled', '-o', join(cache, 'x.png'));
  assert.equal(gen.code, 1);
  assert.match(gen.err, /not\/pulled is not downloaded: run muse pull not\/pulled/);
});

test('a download that stalls is cut after the stall timeout and resumed; with no tries left, one line', async () => {
  const repo = fixtureRepo();
  repo.commit = 'e'.repeat(40);
  repos.set('tiny/stall', repo);
  const name = 'vqvae/diffusion_pytorch_model.safetensors';
  stallOnce.add(`tiny/stall/${name}`);
  log.length = 0;
  const t0 = performance.now();
  const r = await pullRepo('tiny/stall', { stallSeconds: 0.5 });
  assert.equal(stallOnce.size, 0, 'the server stalled the download');
  assert.ok(performance.now() - t0 < 20_000);
  const ranges = log.filter((l) => l.url === `/cdn/tiny/stall/${name}` && l.range);
  assert.equal(ranges.length, 1, 'resumed once with a Range request');
  assert.deepEqual(readFileSync(join(r.snapshot, name)), (repo.files.get(name) as FakeFile).content);

  const other = fixtureRepo();
  other.commit = 'f'.repeat(40);
  // A distinct blob (another etag), so nothing is found in the cache.
  other.files.set(name, {
    content: Buffer.concat([other.files.get(name)?.content as Buffer, Buffer.from('x')]),
    lfs: true,
  });
  repos.set('tiny/stall2', other);
  stallOnce.add(`tiny/stall2/${name}`);
  await assert.rejects(pullRepo('tiny/stall2', { stallSeconds: 0.3, attempts: 1 }), (err: Error) =>
    /tiny\/stall2\/vqvae\/diffusion_pytorch_model\.safetensors: the download broke off 1 times \(no data for 0\.3 s\); run muse pull again to resume/.test(
      err.message,
    ),
  );
});

test('two pulls of the same model at once: each file fetched once, both complete and verified', async () => {
  const repo = fixtureRepo();
  repo.commit = '1'.repeat(40);
  repos.set('tiny/twice', repo);
  for (const name of repo.files.keys()) slow.add(`tiny/twice/${name}`);
  log.length = 0;
  const waits: string[] = [];
  const [a, b] = await Promise.all([
    pullRepo('tiny/twice', { onWait: (f) => waits.push(f) }),
    pullRepo('tiny/twice', { onWait: (f) => waits.push(f) }),
  ]);
  slow.clear();
  assert.ok(waits.length > 0, 'one pull waited for the other');
  assert.equal(a.snapshot, b.snapshot);
  assert.equal(a.downloaded.length + b.downloaded.length, a.files.length, 'every file fetched by exactly one pull');
  for (const name of a.files) {
    // An LFS file's GET is redirected to the CDN: count the requests that send the bytes.
    const lfs = (repo.files.get(name) as FakeFile).lfs;
    const gets = log.filter(
      (l) =>
        l.method === 'GET' && l.url.startsWith(lfs ? '/cdn/tiny/twice/' : '/tiny/twice/') && l.url.endsWith(`/${name}`),
    );
    assert.equal(gets.length, 1, `${name}: ${gets.length} downloads`);
    assert.deepEqual(readFileSync(join(a.snapshot, name)), (repo.files.get(name) as FakeFile).content, name);
  }
  const locks = join(cache, '.locks', 'models--tiny--twice');
  assert.deepEqual(readdirSync(locks), [], 'no lock left behind');
  const blobs = readdirSync(join(cache, 'models--tiny--twice', 'blobs'));
  assert.ok(!blobs.some((f) => f.endsWith('.incomplete')));
});

test('a lock left by a pull that was killed is taken over', async () => {
  const repo = fixtureRepo();
  repo.commit = '2'.repeat(40);
  repos.set('tiny/stale', repo);
  const name = 'model_index.json';
  const etag = gitSha1((repo.files.get(name) as FakeFile).content);
  const locks = join(cache, '.locks', 'models--tiny--stale');
  mkdirSync(locks, { recursive: true });
  // A process id that is not running (the largest pid Linux allows is 2^22).
  writeFileSync(join(locks, `${etag}.lock`), '4194304');
  const r = await pullRepo('tiny/stale');
  assert.ok(r.downloaded.includes(name));
  assert.ok(!existsSync(join(locks, `${etag}.lock`)));
});

test('muse serve --model ORG/NAME resolves from the cache like generate: one line when not pulled; served as NAME', async () => {
  const r = await runMuse('serve', '--model', 'tiny/absent', '--port', '0');
  assert.notEqual(r.code, 0);
  assert.match(r.err, /tiny\/absent is not downloaded: run muse pull tiny\/absent/);
  assert.equal(r.err.trim().split('\n').length, 1, r.err);
  // A pulled model's folder is its snapshot (a commit hash): serve names it after the repo.
  const { loadModels } = await import('../src/server/models.js');
  const { shutdownBackend } = await import('../src/tensor/backend.js');
  const [served] = await loadModels([FIXTURE], ['amused']);
  assert.equal(served.name, 'amused');
  assert.ok(served.pipeline, 'loaded in-process');
  served.pipeline.dispose();
  shutdownBackend();
});
