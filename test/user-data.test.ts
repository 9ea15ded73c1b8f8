import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readlinkSync } from 'node:fs';
import { appendFile, mkdir, mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import sharp from 'sharp';
import { openDataset } from '../src/data/dataset.js';
import { readImageFolder } from '../src/data/folder.js';
import { type Sample, SkipReport } from '../src/data/sample.js';
import {
  captionsFrom,
  expandShards,
  readTarEntries,
  readWebDataset,
  type TarEntry,
  writeTar,
} from '../src/data/webdataset.js';
import type { RgbImage } from '../src/image/image.js';
import { MuseError } from '../src/util/errors.js';

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'muse-user-data-'));
  dirs.push(d);
  return d;
}

const enc = (s: string) => new TextEncoder().encode(s);

async function collect<T>(gen: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of gen) out.push(x);
  return out;
}

type Rgb = [number, number, number];

async function solidPng(width: number, height: number, [r, g, b]: Rgb): Promise<Uint8Array> {
  return new Uint8Array(
    await sharp({ create: { width, height, channels: 3, background: { r, g, b } } })
      .png()
      .toBuffer(),
  );
}

function pixel(img: RgbImage, x: number, y: number): Rgb {
  const i = (y * img.width + x) * 3;
  return [img.data[i], img.data[i + 1], img.data[i + 2]];
}

function assertNear(actual: Rgb, expected: Rgb, tol: number, what: string): void {
  for (let c = 0; c < 3; c++) {
    assert.ok(Math.abs(actual[c] - expected[c]) <= tol, `${what}: got ${actual}, expected ≈${expected} (±${tol})`);
  }
}

/** Images in the awkward encodings users' data has, each with the RGB it must decode to. */
async function oddImages(): Promise<{ name: string; bytes: Uint8Array; check(img: RgbImage): void }[]> {
  const grey = await sharp({ create: { width: 20, height: 20, channels: 3, background: { r: 100, g: 100, b: 100 } } })
    .toColourspace('b-w')
    .png()
    .toBuffer();
  assert.equal((await sharp(grey).metadata()).channels, 1);

  const deep = await sharp({ create: { width: 20, height: 20, channels: 3, background: { r: 200, g: 50, b: 10 } } })
    .toColourspace('rgb16')
    .png()
    .toBuffer();
  assert.equal((await sharp(deep).metadata()).depth, 'ushort');

  const cmyk = await sharp({ create: { width: 20, height: 20, channels: 3, background: { r: 230, g: 20, b: 20 } } })
    .toColourspace('cmyk')
    .jpeg()
    .toBuffer();
  assert.equal((await sharp(cmyk).metadata()).space, 'cmyk');

  // Fully transparent *black* 32×32 with an opaque blue 16×16 square in the middle.
  const square = await sharp({
    create: { width: 16, height: 16, channels: 4, background: { r: 0, g: 0, b: 255, alpha: 1 } },
  })
    .png()
    .toBuffer();
  const rgba = await sharp({
    create: { width: 32, height: 32, channels: 4, background: { r: 0, g: 0, b: 0, alpha: 0 } },
  })
    .composite([{ input: square, left: 8, top: 8 }])
    .png()
    .toBuffer();
  assert.equal((await sharp(rgba).metadata()).hasAlpha, true);

  const palette = await sharp({ create: { width: 20, height: 20, channels: 3, background: { r: 0, g: 128, b: 255 } } })
    .png({ palette: true })
    .toBuffer();
  assert.ok((await sharp(palette).metadata()).isPalette, 'palette PNG fixture');

  // 96×32: red left third, green middle, blue right third.
  const wideRaw = Buffer.alloc(96 * 32 * 3);
  for (let y = 0; y < 32; y++) {
    for (let x = 0; x < 96; x++) wideRaw[(y * 96 + x) * 3 + Math.floor(x / 32)] = 255;
  }
  const wide = await sharp(wideRaw, { raw: { width: 96, height: 32, channels: 3 } })
    .png()
    .toBuffer();

  const u = (b: Buffer) => new Uint8Array(b);
  return [
    { name: 'grey.png', bytes: u(grey), check: (img) => assertNear(pixel(img, 8, 8), [100, 100, 100], 2, 'grey') },
    { name: 'deep.png', bytes: u(deep), check: (img) => assertNear(pixel(img, 8, 8), [200, 50, 10], 2, '16-bit') },
    { name: 'cmyk.jpg', bytes: u(cmyk), check: (img) => assertNear(pixel(img, 8, 8), [230, 20, 20], 45, 'cmyk') },
    {
      name: 'rgba.png',
      bytes: u(rgba),
      check: (img) => {
        assertNear(pixel(img, 0, 0), [255, 255, 255], 1, 'transparent corner');
        assertNear(pixel(img, img.width - 1, img.height - 1), [255, 255, 255], 1, 'transparent corner');
        assertNear(pixel(img, img.width >> 1, img.height >> 1), [0, 0, 255], 2, 'opaque centre');
      },
    },
    {
      name: 'palette.png',
      bytes: u(palette),
      check: (img) => assertNear(pixel(img, 8, 8), [0, 128, 255], 3, 'palette'),
    },
    {
      name: 'wide.png',
      bytes: u(wide),
      check: (img) => {
        let green = 0;
        for (let y = 0; y < img.height; y++) {
          for (let x = 0; x < img.width; x++) {
            const [r, g, b] = pixel(img, x, y);
            if (g > 200 && r < 60 && b < 60) green++;
          }
        }
        assert.ok(green >= 0.9 * img.width * img.height, `centre crop mostly green: ${green} of ${img.width ** 2}`);
      },
    },
  ];
}

/** Which file descriptors of this process point at `path` (Linux); undefined where unknowable. */
function openHandles(path: string): number | undefined {
  if (!existsSync('/proc/self/fd')) return undefined;
  let n = 0;
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`) === path) n++;
    } catch {}
  }
  return n;
}

// ---------------------------------------------------------------------------------------------
// Tar

test('writeTar output reads back with the same names, bytes and order (pax and GNU long names)', async () => {
  const dir = await tempDir();
  const longDir = `${'deep/'.repeat(25)}x`; // 130 chars of folders: fits a ustar prefix split
  const longBase = `${'n'.repeat(150)}.txt`; // a basename over 100 bytes: needs pax / GNU 'L'
  const entries: TarEntry[] = [
    { name: 'dir/0001.jpg', data: new Uint8Array(randomBytes(1000)) },
    { name: 'dir/0001.txt', data: enc('a cat') },
    { name: 'dir/0001.json', data: enc('{"caption":"a cat"}') },
    { name: 'empty.bin', data: new Uint8Array(0) },
    { name: 'block.bin', data: new Uint8Array(randomBytes(512)) },
    { name: 'block1.bin', data: new Uint8Array(randomBytes(513)) },
    { name: `${longDir}/0002.txt`, data: enc('split prefix') },
    { name: longBase, data: enc('long name') },
    { name: 'ünïcode/日本.txt', data: enc('utf-8 name') },
  ];
  for (const longNames of ['pax', 'gnu'] as const) {
    const path = join(dir, `${longNames}.tar`);
    await writeTar(path, entries, { longNames, mtime: 1_700_000_000 });
    const raw = await readFile(path);
    assert.equal(raw.length % 10240, 0, 'padded to whole tar records');
    // The over-long basename went through a pax 'x' header or a GNU 'L' entry.
    const types = new Set<string>();
    for (let off = 0; off + 512 <= raw.length; off += 512) {
      const h = raw.subarray(off, off + 512);
      if (h.every((b) => b === 0)) break;
      types.add(String.fromCharCode(h[156]));
      const size = Number.parseInt(h.subarray(124, 136).toString('latin1').replace(/\0.*$/, ''), 8);
      off += Math.ceil(size / 512) * 512;
    }
    assert.ok(types.has(longNames === 'pax' ? 'x' : 'L'), `${longNames}: header types ${[...types]}`);
    const back = await collect(readTarEntries(path));
    assert.deepEqual(
      back.map((e) => e.name),
      entries.map((e) => e.name),
    );
    for (const [i, e] of back.entries()) assert.deepEqual(e.data, entries[i].data, e.name);

    // System tar agrees on the contents.
    const list = spawnSync('tar', ['-tf', path], { encoding: 'utf8' });
    assert.equal(list.status, 0, list.stderr);
    assert.deepEqual(
      list.stdout.trim().split('\n'),
      entries.map((e) => e.name).filter((n) => n !== ''),
    );
    const out = join(dir, `x-${longNames}`);
    await mkdir(out);
    const x = spawnSync('tar', ['-xf', path, '-C', out], { encoding: 'utf8' });
    assert.equal(x.status, 0, x.stderr);
    for (const e of entries) assert.deepEqual(new Uint8Array(await readFile(join(out, e.name))), e.data, e.name);
  }
  // No temporary files left beside the output.
  assert.deepEqual(
    readdirSync(dir).filter((f) => f.endsWith('.tmp')),
    [],
  );
});

test('tars written by the system tar command read the same (GNU long names, pax, folders skipped)', async () => {
  const dir = await tempDir();
  const src = join(dir, 'src');
  const longName = `sub/${'l'.repeat(120)}.txt`;
  const files: TarEntry[] = [
    { name: 'sub/0001.png', data: await solidPng(8, 8, [255, 0, 0]) },
    { name: 'sub/0001.txt', data: enc('red square') },
    { name: longName, data: enc('a long member name') },
    { name: 'sub/big.bin', data: new Uint8Array(randomBytes(70_000)) },
  ];
  for (const f of files) {
    await mkdir(join(src, f.name, '..'), { recursive: true });
    await writeFile(join(src, f.name), f.data);
  }
  for (const format of ['gnu', 'pax', 'ustar-folders']) {
    const path = join(dir, `${format}.tar`);
    const args =
      format === 'ustar-folders'
        ? ['-cf', path, '-C', src, 'sub'] // whole folder: includes a folder entry, names sorted by tar
        : ['-cf', path, `--format=${format}`, '-C', src, ...files.map((f) => f.name)];
    if (format === 'ustar-folders') {
      // ustar cannot hold the 124-char basename; leave it out of that archive.
      await rm(join(src, longName));
    }
    const r = spawnSync('tar', args, { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const back = await collect(readTarEntries(path));
    const expected = format === 'ustar-folders' ? files.filter((f) => f.name !== longName) : files;
    const byName = new Map(back.map((e) => [e.name, e.data]));
    assert.equal(back.length, expected.length, `${format}: ${back.map((e) => e.name)}`);
    for (const f of expected) assert.deepEqual(byName.get(f.name), f.data, `${format}: ${f.name}`);
    if (format !== 'ustar-folders') {
      assert.deepEqual(
        back.map((e) => e.name),
        files.map((f) => f.name),
      );
    }
  }
  // And a gzipped tar (.tar.gz) streams through gunzip.
  const gz = join(dir, 'shard.tar.gz');
  assert.equal(spawnSync('tar', ['-czf', gz, '-C', src, 'sub/0001.png', 'sub/0001.txt']).status, 0);
  const samples = await collect(readWebDataset([gz], { size: 8, skip: new SkipReport() }));
  assert.deepEqual(
    samples.map((s) => [s.key, s.captions]),
    [['sub/0001', ['red square']]],
  );
});

test('tar numbers in GNU base-256 and pax size/path records are honoured', async () => {
  const dir = await tempDir();
  const path = join(dir, 'b256.tar');
  const data = new Uint8Array(randomBytes(700));
  await writeTar(path, [{ name: 'a.bin', data }]);
  const raw = new Uint8Array(await readFile(path));
  // Rewrite the size field as base-256 (0x80, then big-endian) and fix the checksum.
  raw.fill(0, 124, 136);
  raw[124] = 0x80;
  raw[134] = 700 >> 8;
  raw[135] = 700 & 0xff;
  raw.fill(0x20, 148, 156);
  const sum = raw.subarray(0, 512).reduce((a, b) => a + b, 0);
  raw.set(enc(`${sum.toString(8).padStart(6, '0')}\0 `), 148);
  await writeFile(path, raw);
  const back = await collect(readTarEntries(path));
  assert.equal(back.length, 1);
  assert.deepEqual(back[0].data, data);

  // A pax header whose path overrides the ustar name.
  const paxTar = join(dir, 'pax.tar');
  const r = spawnSync(
    'tar',
    ['-cf', paxTar, '--format=pax', '--pax-option=path:=renamed/by-pax.txt', '-C', dir, 'b256.tar'],
    {
      encoding: 'utf8',
    },
  );
  if (r.status === 0) {
    const entries = await collect(readTarEntries(paxTar));
    assert.deepEqual(
      entries.map((e) => e.name),
      ['renamed/by-pax.txt'],
    );
  }
});

test('a truncated shard gives one clear MuseError naming the shard and the member', async () => {
  const dir = await tempDir();
  const path = join(dir, 'cut.tar');
  const entries: TarEntry[] = [
    { name: 's/0001.png', data: await solidPng(8, 8, [0, 255, 0]) },
    { name: 's/0001.txt', data: enc('green') },
    { name: 's/0002.png', data: new Uint8Array(randomBytes(5000)) },
    { name: 's/0002.txt', data: enc('noise') },
  ];
  await writeTar(path, entries);
  const raw = await readFile(path);
  // Cut inside the data of s/0002.png.
  const headerOf0002 = raw.indexOf('s/0002.png');
  await truncate(path, headerOf0002 + 512 + 2000);
  await assert.rejects(collect(readTarEntries(path)), (err: Error) => {
    assert.ok(err instanceof MuseError);
    assert.match(err.message, /truncated/);
    assert.ok(err.message.includes(path), err.message);
    assert.ok(err.message.includes('s/0002.png'), err.message);
    return true;
  });
  const skip = new SkipReport();
  await assert.rejects(
    collect(readWebDataset([path], { size: 8, skip })),
    (err: Error) => err instanceof MuseError && err.message.includes(path) && err.message.includes('s/0002.png'),
  );
  assert.equal(skip.total, 0, 'a broken shard is an error, not a skipped sample');

  // Cut inside a header.
  await truncate(path, headerOf0002 + 100);
  await assert.rejects(
    collect(readTarEntries(path)),
    (err: Error) => err instanceof MuseError && /truncated/.test(err.message) && err.message.includes('s/0001.txt'),
  );
  // An empty file.
  await writeFile(path, '');
  await assert.rejects(collect(readTarEntries(path)), /empty file, not a tar shard/);
});

test('a corrupt header checksum is a MuseError; so is a file that is not a tar', async () => {
  const dir = await tempDir();
  const path = join(dir, 'bad.tar');
  await writeTar(path, [
    { name: 'a/1.txt', data: enc('one') },
    { name: 'a/2.txt', data: enc('two') },
  ]);
  const raw = await readFile(path);
  raw[1024 + 3] ^= 0x01; // second member's header name
  await writeFile(path, raw);
  const names: string[] = [];
  await assert.rejects(
    (async () => {
      for await (const e of readTarEntries(path)) names.push(e.name);
    })(),
    (err: Error) =>
      err instanceof MuseError &&
      err.message.includes(path) &&
      /checksum/.test(err.message) &&
      err.message.includes('a/1.txt'),
  );
  assert.deepEqual(names, ['a/1.txt']);

  await writeFile(path, randomBytes(3000));
  await assert.rejects(
    collect(readTarEntries(path)),
    (err: Error) => err instanceof MuseError && /not a tar/.test(err.message),
  );
  await assert.rejects(collect(readTarEntries(join(dir, 'missing.tar'))), /no such tar shard/);
});

test('reading streams: stopping early reads only the start and closes the file', async () => {
  const dir = await tempDir();
  const path = join(dir, 'big.tar');
  const png = await solidPng(16, 16, [10, 20, 30]);
  function* entries(): Generator<TarEntry> {
    for (let i = 0; i < 200; i++) {
      const key = `k/${String(i).padStart(6, '0')}`;
      yield { name: `${key}.png`, data: png };
      yield { name: `${key}.txt`, data: enc(`sample ${i}`) };
      yield { name: `${key}.npy`, data: new Uint8Array(20_000) }; // a member the reader skips over
    }
  }
  await writeTar(path, entries());
  // Garbage after the archive's members: a reader that loaded the whole file up front would choke.
  const raw = await readFile(path);
  const endOfMembers = raw.length - 10240; // inside the last members
  await writeFile(path, Buffer.concat([raw.subarray(0, endOfMembers), randomBytes(4096)]));

  await assert.rejects(collect(readTarEntries(path)), MuseError, 'read to the end, the shard is broken');
  assert.equal(openHandles(path) ?? 0, 0, 'closed after an error too');

  const skip = new SkipReport();
  const gen = readWebDataset([path], { size: 8, skip });
  const got: Sample[] = [];
  for await (const s of gen) {
    got.push(s);
    if (got.length === 3) {
      assert.equal(openHandles(path) ?? 1, 1, 'the shard is open while reading');
      break;
    }
  }
  assert.deepEqual(
    got.map((s) => [s.key, s.captions[0]]),
    [
      ['k/000000', 'sample 0'],
      ['k/000001', 'sample 1'],
      ['k/000002', 'sample 2'],
    ],
  );
  assert.equal(skip.total, 0);
  // The generator's finally has closed the file by the time the loop exits.
  assert.equal(openHandles(path) ?? 0, 0, 'no file handle left open');

  // The same for the raw entry reader, stopping after one member.
  for await (const e of readTarEntries(path)) {
    assert.equal(e.name, 'k/000000.png');
    break;
  }
  assert.equal(openHandles(path) ?? 0, 0, 'no file handle left open');
});

test('expandShards: ranges, padding, lists, several groups, ::', () => {
  assert.deepEqual(expandShards('data/shard-{000000..000003}.tar'), [
    'data/shard-000000.tar',
    'data/shard-000001.tar',
    'data/shard-000002.tar',
    'data/shard-000003.tar',
  ]);
  assert.deepEqual(expandShards('s{8..11}.tar'), ['s8.tar', 's9.tar', 's10.tar', 's11.tar']);
  assert.deepEqual(expandShards('s{08..10}.tar'), ['s08.tar', 's09.tar', 's10.tar']);
  assert.deepEqual(expandShards('{train,val}/{0..1}.tar'), ['train/0.tar', 'train/1.tar', 'val/0.tar', 'val/1.tar']);
  assert.deepEqual(expandShards('a.tar::b-{1..2}.tar'), ['a.tar', 'b-1.tar', 'b-2.tar']);
  assert.deepEqual(expandShards('{a..c}{2..0..2}'), ['a2', 'a0', 'b2', 'b0', 'c2', 'c0']);
  assert.deepEqual(expandShards('plain.tar'), ['plain.tar']);
  assert.deepEqual(expandShards('odd{x}.tar'), ['odd{x}.tar']);
  assert.throws(() => expandShards('{0..99999999}'), MuseError);
});

// ---------------------------------------------------------------------------------------------
// Samples

test('captionsFrom: txt first, then json caption/captions/text, then .caption; json fields become meta', () => {
  assert.deepEqual(captionsFrom({ txt: enc('  a dog \n') }), { ok: true, captions: ['a dog'], meta: {} });
  assert.deepEqual(captionsFrom({ txt: enc('from txt'), json: enc('{"caption":"from json","url":"u"}') }), {
    ok: true,
    captions: ['from txt'],
    meta: { url: 'u' },
  });
  assert.deepEqual(captionsFrom({ json: enc('{"caption":"one","captions":["two"," one "],"text":"three","w":5}') }), {
    ok: true,
    captions: ['one', 'two', 'three'],
    meta: { w: 5 },
  });
  assert.deepEqual(captionsFrom({ json: enc('{"text":["t1","t2"]}') }), { ok: true, captions: ['t1', 't2'], meta: {} });
  assert.deepEqual(captionsFrom({ caption: enc('c') }), { ok: true, captions: ['c'], meta: {} });
  assert.deepEqual(captionsFrom({ txt: enc('  '), caption: enc('fallback') }), {
    ok: true,
    captions: ['fallback'],
    meta: {},
  });
  assert.deepEqual(captionsFrom({}), { ok: false, reason: 'no caption' });
  assert.deepEqual(captionsFrom({ txt: enc(' \n') }), { ok: false, reason: 'empty caption' });
  assert.deepEqual(captionsFrom({ json: enc('{"caption":""}') }), { ok: false, reason: 'empty caption' });
  assert.deepEqual(captionsFrom({ json: enc('{not json') }), { ok: false, reason: 'unreadable caption' });
  assert.deepEqual(captionsFrom({ txt: new Uint8Array([0xff, 0xfe, 0x41]) }), {
    ok: false,
    reason: 'unreadable caption',
  });
  assert.deepEqual(captionsFrom({ txt: enc('\uFEFFbom') }), { ok: true, captions: ['bom'], meta: {} });
});

/** The bad and odd samples both readers are given; key stem → files (extension → bytes). */
async function fixtureSamples(): Promise<Map<string, Record<string, Uint8Array>>> {
  const m = new Map<string, Record<string, Uint8Array>>();
  m.set('a-good', { png: await solidPng(24, 24, [255, 0, 0]), txt: enc('  a red square \n') });
  m.set('b-json', {
    jpg: new Uint8Array(
      await sharp({ create: { width: 24, height: 24, channels: 3, background: '#00ff00' } })
        .jpeg()
        .toBuffer(),
    ),
    json: enc('{"captions":["a green square","green"],"url":"http://x","width":24}'),
  });
  m.set('c-garbage', { png: new Uint8Array(randomBytes(300)), txt: enc('noise') });
  m.set('d-zero', { jpg: new Uint8Array(0), txt: enc('nothing') });
  m.set('e-empty-caption', { png: await solidPng(24, 24, [0, 0, 255]), txt: enc('   \n') });
  m.set('f-no-caption', { png: await solidPng(24, 24, [0, 0, 255]) });
  for (const odd of await oddImages()) {
    const [stem, ext] = odd.name.split('.');
    m.set(`odd-${stem}`, { [ext]: odd.bytes, txt: enc(`odd ${stem}`) });
  }
  return m;
}

async function checkOddSamples(samples: Sample[], keyOf: (stem: string) => string): Promise<void> {
  const byKey = new Map(samples.map((s) => [s.key, s]));
  for (const odd of await oddImages()) {
    const stem = odd.name.split('.')[0];
    const s = byKey.get(keyOf(`odd-${stem}`));
    assert.ok(s, `sample odd-${stem} loaded; have ${[...byKey.keys()]}`);
    assert.deepEqual(s.captions, [`odd ${stem}`]);
    assert.equal(s.image.width, 16);
    assert.equal(s.image.height, 16);
    assert.equal(s.image.data.length, 16 * 16 * 3);
    odd.check(s.image);
  }
}

test('WebDataset: samples grouped by key; bad samples skipped with reasons; odd images load as RGB', async () => {
  const dir = await tempDir();
  const fixtures = await fixtureSamples();
  const entries: TarEntry[] = [];
  for (const [stem, files] of fixtures) {
    for (const [ext, data] of Object.entries(files)) entries.push({ name: `part/${stem}.${ext}`, data });
  }
  entries.push({ name: 'part/g-no-image.txt', data: enc('caption without image') });
  entries.push({ name: 'part/.DS_Store', data: enc('junk') });
  entries.push({ name: 'part/h-upper.PNG', data: await solidPng(24, 24, [9, 9, 9]) });
  entries.push({ name: 'part/h-upper.txt', data: enc('upper-case extension') });
  const path = join(dir, 'shard-000000.tar');
  await writeTar(path, entries);

  const skip = new SkipReport();
  const samples = await collect(readWebDataset([path], { size: 16, skip }));
  assert.deepEqual(
    samples.map((s) => s.key),
    [
      'part/a-good',
      'part/b-json',
      'part/odd-grey',
      'part/odd-deep',
      'part/odd-cmyk',
      'part/odd-rgba',
      'part/odd-palette',
      'part/odd-wide',
      'part/h-upper',
    ],
  );
  const good = samples[0];
  assert.deepEqual(good.captions, ['a red square']);
  assertNear(pixel(good.image, 8, 8), [255, 0, 0], 2, 'good');
  assert.deepEqual(good.meta, { shard: path, source: 'part/a-good.png' });
  assert.deepEqual(samples[1].captions, ['a green square', 'green']);
  assert.deepEqual(samples[1].meta, { url: 'http://x', width: 24, shard: path, source: 'part/b-json.jpg' });
  await checkOddSamples(samples, (stem) => `part/${stem}`);

  assert.deepEqual(skip.toJSON(), {
    'unreadable image': [`${path}:part/c-garbage`],
    'empty image file': [`${path}:part/d-zero`],
    'empty caption': [`${path}:part/e-empty-caption`],
    'no caption': [`${path}:part/f-no-caption`],
    'no image': [`${path}:part/g-no-image`],
  });
  assert.equal(skip.total, 5);
  assert.match(skip.summary(), /5 samples skipped/);

  // Shard patterns and several shards.
  await writeTar(join(dir, 'shard-000001.tar'), [
    { name: 'z.png', data: await solidPng(4, 4, [1, 2, 3]) },
    { name: 'z.txt', data: enc('z') },
  ]);
  const both = await collect(
    readWebDataset([join(dir, 'shard-{000000..000001}.tar')], { size: 16, skip: new SkipReport() }),
  );
  assert.equal(both.length, samples.length + 1);
  assert.equal(both.at(-1)?.key, 'z');
  await assert.rejects(
    collect(readWebDataset([join(dir, 'shard-{000000..000002}.tar')], { size: 16, skip: new SkipReport() })),
    (err: Error) => err instanceof MuseError && err.message.includes('shard-000002.tar'),
  );
});

test('image folder: sorted, recursive, captions from .txt/.json, bad samples skipped with reasons', async () => {
  const dir = await tempDir();
  const fixtures = await fixtureSamples();
  for (const [stem, files] of fixtures) {
    for (const [ext, data] of Object.entries(files)) await writeFile(join(dir, `${stem}.${ext}`), data);
  }
  await mkdir(join(dir, 'sub'));
  await writeFile(
    join(dir, 'sub', 'inner.webp'),
    await sharp(await solidPng(20, 30, [50, 60, 70]))
      .webp()
      .toBuffer(),
  );
  await writeFile(join(dir, 'sub', 'inner.txt'), 'in a subfolder');
  await writeFile(join(dir, 'notes.md'), 'not a sample');
  await writeFile(join(dir, '.hidden.png'), randomBytes(10));

  const skip = new SkipReport();
  const samples = await collect(readImageFolder(dir, { size: 16, skip }));
  assert.deepEqual(
    samples.map((s) => s.key),
    [
      'a-good.png',
      'b-json.jpg',
      'odd-cmyk.jpg',
      'odd-deep.png',
      'odd-grey.png',
      'odd-palette.png',
      'odd-rgba.png',
      'odd-wide.png',
      'sub/inner.webp',
    ],
  );
  assert.deepEqual(samples[0].meta, { source: 'a-good.png' });
  assert.deepEqual(samples[1].captions, ['a green square', 'green']);
  assert.deepEqual(samples[1].meta, { url: 'http://x', width: 24, source: 'b-json.jpg' });
  assert.deepEqual(samples.at(-1)?.captions, ['in a subfolder']);
  await checkOddSamples(samples, (stem) => samples.find((s) => s.key.startsWith(`${stem}.`))?.key ?? stem);
  assert.deepEqual(skip.toJSON(), {
    'unreadable image': ['c-garbage.png'],
    'empty image file': ['d-zero.jpg'],
    'empty caption': ['e-empty-caption.png'],
    'no caption': ['f-no-caption.png'],
  });

  const flat = await collect(readImageFolder(dir, { size: 16, skip: new SkipReport(), recursive: false }));
  assert.ok(!flat.some((s) => s.key.startsWith('sub/')));

  await assert.rejects(collect(readImageFolder(join(dir, 'nope'), { size: 16, skip })), {
    name: 'MuseError',
    message: `no such folder: ${join(dir, 'nope')}`,
  });
  const empty = await tempDir();
  await writeFile(join(empty, 'readme.txt'), 'no images here');
  await assert.rejects(
    collect(readImageFolder(empty, { size: 16, skip })),
    (err: Error) => err instanceof MuseError && err.message.startsWith(`no images in folder: ${empty}`),
  );
});

test('openDataset dispatches folders, tar folders, tar files and patterns; missing paths are MuseErrors', async () => {
  const root = await tempDir();
  const images = join(root, 'images');
  await mkdir(images);
  await writeFile(join(images, 'x.png'), await solidPng(10, 10, [1, 1, 1]));
  await writeFile(join(images, 'x.txt'), 'an image folder');

  const shards = join(root, 'shards');
  await mkdir(shards);
  for (const i of [1, 0]) {
    await writeTar(join(shards, `${String(i).padStart(5, '0')}.tar`), [
      { name: `s${i}.png`, data: await solidPng(10, 10, [2, 2, 2]) },
      { name: `s${i}.txt`, data: enc(`shard ${i}`) },
    ]);
  }
  // img2dataset writes stats beside its shards; they do not make it an image folder.
  await writeFile(join(shards, '00000_stats.json'), '{}');

  const opts = () => ({ size: 8, skip: new SkipReport() });
  const keys = async (p: string) => (await collect(openDataset(p, opts()))).map((s) => s.key);
  assert.deepEqual(await keys(images), ['x.png']);
  assert.deepEqual(await keys(shards), ['s0', 's1']);
  assert.deepEqual(await keys(join(shards, '00001.tar')), ['s1']);
  assert.deepEqual(await keys(join(shards, '{00000..00001}.tar')), ['s0', 's1']);

  const missing = join(root, 'missing');
  await assert.rejects(collect(openDataset(missing, opts())), {
    name: 'MuseError',
    message: `no such dataset: ${missing}`,
  });
  await assert.rejects(
    collect(openDataset(join(root, 'gone-{0..1}.tar'), opts())),
    (err: Error) => err instanceof MuseError && err.message.includes(join(root, 'gone-0.tar')),
  );
  await writeFile(join(root, 'file.csv'), 'a,b');
  await assert.rejects(collect(openDataset(join(root, 'file.csv'), opts())), /not a dataset/);
  await appendFile(join(root, 'emptydir-marker'), '');
  const none = join(root, 'none');
  await mkdir(none);
  await assert.rejects(collect(openDataset(none, opts())), /no images in folder/);
});
