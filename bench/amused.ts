// `npm run bench amused`: the full-size aMUSEd models (amused-256, amused-512) with random weights of
// the real shapes, built at run time from the published configs (../shared/fixtures/amused/full-configs,
// else MUSE_AMUSED_CONFIGS) into scratch/amused-full/ (F16, the variant file names; ~1.6 GB each,
// reused on later runs, never committed). Each model is measured in a child process of its own:
// load time, seconds per image (12 guided steps, t = 9, batch 1) and peak resident memory.
//   node --import tsx bench/amused.ts [256|512 ...]          build if needed, measure, print rows
//   node --import tsx bench/amused.ts --measure DIR [steps]  (the child) one generation, JSON out
//   node --import tsx bench/amused.ts --profile DIR          one guided U-ViT pass by kernel, JSON out
import { execFileSync } from 'node:child_process';
import {
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { clipTextWeightShapes, parseClipTextConfig } from '../src/amused/clip-text.js';
import { parseUVitConfig, uvitTensorSpecs } from '../src/amused/uvit.js';
import { parseVqConfig, vqTensorShapes } from '../src/amused/vqgan.js';
import { float32ToFloat16Bits } from '../src/tensor/safetensors.js';
import { packageRoot } from '../src/util/package-root.js';

const ROOT = packageRoot();
const CONFIGS = process.env.MUSE_AMUSED_CONFIGS ?? join(ROOT, '..', 'shared', 'fixtures', 'amused', 'full-configs');
const TINY = join(ROOT, 'test', 'fixtures', 'amused', 'tiny-amused-256');
const SCRATCH = join(ROOT, 'scratch', 'amused-full');

export interface AmusedBenchRow {
  name: string;
  seconds: number;
  bytes?: number;
}

/** A table of 65,536 F16 patterns of N(0, std) quantiles, indexed by random 16-bit numbers. */
function normalTable(std: number): Uint16Array {
  const t = new Uint16Array(65536);
  for (let i = 0; i < 65536; i++) {
    // Inverse of the logistic approximation of the normal CDF: cheap and symmetric.
    const p = (i + 0.5) / 65536;
    t[i] = float32ToFloat16Bits(std * 0.5513 * Math.log(p / (1 - p)));
  }
  return t;
}

/** Writes an F16 safetensors file of random weights (norm scales 1), tensor by tensor. */
function writeRandomWeights(file: string, specs: [string, number[]][], seed: number): number {
  const table = normalTable(0.02);
  const one = float32ToFloat16Bits(1);
  let offset = 0;
  const header: Record<string, unknown> = { __metadata__: { format: 'pt', note: 'random weights (muse-ts bench)' } };
  for (const [name, shape] of specs) {
    const bytes = 2 * shape.reduce((a, b) => a * b, 1);
    header[name] = { dtype: 'F16', shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const fd = openSync(`${file}.tmp`, 'w');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  writeSync(fd, len);
  writeSync(fd, Buffer.from(json));
  let x = seed >>> 0 || 1;
  for (const [name, shape] of specs) {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Uint16Array(n);
    if (/norm/.test(name) && /(weight|gamma)$/.test(name)) data.fill(one);
    else
      for (let i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >>> 17;
        x ^= x << 5;
        data[i] = table[(x >>> 0) & 0xffff];
      }
    writeSync(fd, new Uint8Array(data.buffer));
  }
  closeSync(fd);
  execFileSync('mv', [`${file}.tmp`, file]);
  return offset / 2;
}

function readJson(file: string): Record<string, unknown> {
  return JSON.parse(readFileSync(file, 'utf8'));
}

/** Builds scratch/amused-full/amused-SIZE (once): the published configs, the CLIP tokenizer, random F16 weights. */
export function buildFullModel(size: 256 | 512): { folder: string; params: Record<string, number> } {
  const folder = join(SCRATCH, `amused-${size}`);
  const done = join(folder, 'params.json');
  if (existsSync(done)) return { folder, params: readJson(done) as Record<string, number> };
  const own = join(CONFIGS, `amused-${size}`);
  // amused-256 shares the 512's text encoder, tokenizer, VQ-GAN and scheduler (full-configs/SOURCES.md).
  const shared = join(CONFIGS, 'amused-512');
  const config = (component: string, file = 'config.json') => {
    const mine = join(own, component, file);
    return readJson(existsSync(mine) ? mine : join(shared, component, file));
  };
  for (const sub of ['transformer', 'text_encoder', 'vqvae', 'scheduler', 'tokenizer'])
    mkdirSync(join(folder, sub), { recursive: true });
  writeFileSync(join(folder, 'model_index.json'), JSON.stringify(readJson(join(own, 'model_index.json')), null, 2));
  writeFileSync(
    join(folder, 'scheduler', 'scheduler_config.json'),
    JSON.stringify(config('scheduler', 'scheduler_config.json')),
  );
  for (const f of ['merges.txt.gz', 'vocab.json.gz', 'special_tokens_map.json', 'tokenizer_config.json'])
    copyFileSync(join(TINY, 'tokenizer', f), join(folder, 'tokenizer', f));
  const params: Record<string, number> = {};
  const uvit = config('transformer');
  writeFileSync(join(folder, 'transformer', 'config.json'), JSON.stringify(uvit));
  params.transformer = writeRandomWeights(
    join(folder, 'transformer', 'diffusion_pytorch_model.fp16.safetensors'),
    uvitTensorSpecs(parseUVitConfig(uvit, 'transformer')).map((s) => [s.name, s.shape]),
    1,
  );
  const text = config('text_encoder');
  writeFileSync(join(folder, 'text_encoder', 'config.json'), JSON.stringify(text));
  params.text_encoder = writeRandomWeights(
    join(folder, 'text_encoder', 'model.fp16.safetensors'),
    [...clipTextWeightShapes(parseClipTextConfig(text, 'text_encoder'))],
    2,
  );
  const vq = config('vqvae');
  writeFileSync(join(folder, 'vqvae', 'config.json'), JSON.stringify(vq));
  params.vqvae = writeRandomWeights(
    join(folder, 'vqvae', 'diffusion_pytorch_model.fp16.safetensors'),
    vqTensorShapes(parseVqConfig(vq, 'vqvae')),
    3,
  );
  writeFileSync(done, JSON.stringify(params));
  return { folder, params };
}

/** The child: load, one warm-up-free generation, figures as JSON on the last line of stdout. */
async function measure(folder: string, steps: number): Promise<void> {
  const { AmusedPipeline } = await import('../src/amused/pipeline.js');
  const { initBackend } = await import('../src/tensor/backend.js');
  const tf = await import('@tensorflow/tfjs-core');
  const info = await initBackend();
  const t0 = performance.now();
  const p = await AmusedPipeline.load(folder);
  const load = (performance.now() - t0) / 1000;
  const afterLoad = process.memoryUsage().rss;
  const stepTimes: number[] = [];
  let last = performance.now();
  const t1 = performance.now();
  const r = await p.generate('a photo of a corgi on a beach', {
    steps,
    guidance: 9,
    seed: 0,
    onStep: () => {
      const now = performance.now();
      stepTimes.push((now - last) / 1000);
      last = now;
    },
  });
  const generate = (performance.now() - t1) / 1000;
  const decode = (performance.now() - last) / 1000;
  const heap = (tf.backend() as unknown as { wasm?: { HEAPU8?: Uint8Array } }).wasm?.HEAPU8?.length;
  console.log(
    JSON.stringify({
      backend: `${info.backend}${info.kernels.native ? '+native' : ''}`,
      size: r.images[0].width,
      residency: p.transformer.residency,
      load,
      generate,
      steps: stepTimes,
      decode,
      rssAfterLoad: afterLoad,
      maxRss: process.resourceUsage().maxRSS * 1024,
      wasmHeap: heap,
    }),
  );
  p.dispose();
  process.exit(0);
}

/**
 * Where a U-ViT forward pass spends its time (`--profile DIR`): one guided batch (2 rows) through the
 * transformer alone, kernel milliseconds summed by kernel (tf.profile), and — apart — what widening and
 * uploading every weight once costs (what each pass paid before products read the 16-bit host copies).
 */
async function profile(folder: string): Promise<void> {
  const { UVit } = await import('../src/amused/uvit.js');
  const { initBackend } = await import('../src/tensor/backend.js');
  const tf = await import('@tensorflow/tfjs-core');
  await initBackend();
  const m = await UVit.load(join(folder, 'transformer'));
  const c = m.config;
  const side = c.sampleSize;
  const inputs = () => ({
    inputIds: tf.fill([2, side, side], c.vocabSize - 1, 'int32'),
    encoderHiddenStates: tf.randomNormal([2, 77, c.encoderHiddenSize]),
    pooledTextEmb: tf.randomNormal([2, c.condEmbedDim]),
    microConds: tf.tensor2d([side * 16, side * 16, 0, 0, 6, side * 16, side * 16, 0, 0, 6], [2, 5]),
  });
  const weights = (
    m as unknown as { weights: { get(n: string): import('@tensorflow/tfjs-core').Tensor; host?: Map<string, unknown> } }
  ).weights;
  const names = [...(weights.host?.keys() ?? [])];
  let t0 = performance.now();
  for (const n of names) weights.get(n).dispose();
  const upload = (performance.now() - t0) / 1000;
  t0 = performance.now();
  const info = await tf.profile(() => tf.tidy(() => m.forward(inputs())).dispose());
  const forward = (performance.now() - t0) / 1000;
  const byKernel = new Map<string, number>();
  for (const k of info.kernels) byKernel.set(k.name, (byKernel.get(k.name) ?? 0) + (k.kernelTimeMs as number));
  const top = [...byKernel].sort((a, b) => b[1] - a[1]).slice(0, 12);
  console.log(
    JSON.stringify({
      residency: m.residency,
      upload,
      forward,
      kernelsMs: Object.fromEntries(top.map(([k, v]) => [k, Math.round(v)])),
    }),
  );
  process.exit(0);
}

/** Builds (if needed) and measures each size in its own process. */
export function amusedBench(sizes: (256 | 512)[] = [256, 512], steps = 12): AmusedBenchRow[] {
  const rows: AmusedBenchRow[] = [];
  for (const size of sizes) {
    const t0 = performance.now();
    const { folder, params } = buildFullModel(size);
    const built = (performance.now() - t0) / 1000;
    const total = Object.values(params).reduce((a, b) => a + b, 0);
    console.error(
      `amused-${size}: ${(total / 1e6).toFixed(0)}M parameters (${JSON.stringify(params)}), built in ${built.toFixed(0)} s`,
    );
    const out = execFileSync(
      process.execPath,
      ['--import', 'tsx', join(ROOT, 'bench', 'amused.ts'), '--measure', folder, String(steps)],
      {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'inherit'],
        maxBuffer: 1 << 24,
      },
    );
    const m = JSON.parse(out.trim().split('\n').pop() as string);
    console.error(`amused-${size}: ${JSON.stringify(m)}`);
    rows.push(
      { name: `amused-${size} load (${m.backend}, ${m.residency})`, seconds: m.load },
      { name: `amused-${size} ${steps} guided steps + decode (s/image)`, seconds: m.generate },
      { name: `amused-${size} VQ-GAN decode`, seconds: m.decode },
      { name: `amused-${size} peak resident memory`, seconds: 0, bytes: m.maxRss },
    );
  }
  return rows;
}

if (process.argv[1]?.endsWith('amused.ts')) {
  const args = process.argv.slice(2);
  if (args[0] === '--measure') await measure(args[1], Number(args[2] ?? 12));
  else if (args[0] === '--profile') await profile(args[1]);
  else {
    const sizes = args.filter((a) => a === '256' || a === '512').map(Number) as (256 | 512)[];
    for (const row of amusedBench(sizes.length ? sizes : undefined))
      console.log(
        `${row.name.padEnd(52)} ${row.bytes !== undefined ? `${(row.bytes / 2 ** 30).toFixed(2)} GiB` : `${row.seconds.toFixed(1)} s`}`,
      );
  }
}
