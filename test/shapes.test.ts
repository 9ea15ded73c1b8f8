import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Sample } from '../src/data/sample.js';
import {
  CATEGORIES,
  COLORS,
  captionsFor,
  GAP,
  generateShapes,
  HELDOUT_PAIRS,
  HELDOUT_RELATIONS,
  isHeldoutPair,
  isHeldoutRelation,
  locate,
  MARGIN,
  MAX_COUNT,
  MIN_COUNT,
  massCentre,
  type ObjectSpec,
  parseCaption,
  RELATIONS,
  type Relation,
  relationHolds,
  renderShapes,
  SHAPES,
  type ShapeSample,
  type ShapeSpec,
  shapeSamples,
  specFailure,
} from '../src/data/shapes.js';
import { scoreMany, scoreShapes } from '../src/eval/shapes-score.js';
import type { RgbImage } from '../src/image/image.js';
import { Rng } from '../src/tensor/random.js';
import { MuseError } from '../src/util/errors.js';

const TRAIN = generateShapes({ count: 2000, seed: 11, split: 'train' });
const HELDOUT = generateShapes({ count: 600, seed: 11, split: 'heldout' });

const specObjects = (spec: ShapeSpec): ObjectSpec[] => {
  switch (spec.kind) {
    case 'single':
    case 'colors':
    case 'counting':
      return [spec.object];
    case 'two':
    case 'attribute':
      return spec.objects;
    case 'position':
      return [spec.a, spec.b];
  }
};

test('captions cover every category, with several phrasings each', () => {
  const samples = generateShapes({ count: 60, seed: 1, split: 'train' });
  assert.deepEqual(new Set(samples.map((s) => s.category)), new Set(CATEGORIES));
  for (const s of samples) {
    assert.equal(s.spec.kind, s.category);
    assert.ok(s.captions.length >= 4, `${s.key}: ${s.captions.length} captions`);
    assert.equal(new Set(s.captions).size, s.captions.length);
  }
  const red = { shape: 'circle', color: 'red' } as const;
  const blue = { shape: 'square', color: 'blue' } as const;
  assert.equal(captionsFor({ kind: 'single', object: red })[0], 'a red circle');
  assert.equal(captionsFor({ kind: 'single', object: { shape: 'square', color: 'orange' } })[0], 'an orange square');
  assert.equal(captionsFor({ kind: 'two', objects: [red, blue] })[0], 'a red circle and a blue square');
  assert.equal(
    captionsFor({ kind: 'counting', object: { shape: 'triangle', color: 'green' }, count: 3 })[0],
    'three green triangles',
  );
  assert.equal(
    captionsFor({ kind: 'position', a: blue, relation: 'left of', b: { shape: 'triangle', color: 'yellow' } })[0],
    'a blue square to the left of a yellow triangle',
  );
  // Restricting categories restricts them.
  const only = generateShapes({ count: 20, seed: 1, split: 'train', categories: ['counting', 'position'] });
  assert.deepEqual(new Set(only.map((s) => s.category)), new Set(['counting', 'position']));
  assert.throws(
    () => generateShapes({ count: 5, seed: 1, split: 'train', categories: ['nope' as 'single'] }),
    MuseError,
  );
  assert.throws(() => generateShapes({ count: 5, seed: 1, split: 'test' as 'train' }), MuseError);
});

test('same seed gives the same samples; another seed or split gives others', () => {
  const a = generateShapes({ count: 200, seed: 7, split: 'train' });
  const b = generateShapes({ count: 200, seed: 7, split: 'train' });
  const c = generateShapes({ count: 200, seed: 8, split: 'train' });
  const h = generateShapes({ count: 200, seed: 7, split: 'heldout' });
  assert.deepEqual(a, b);
  assert.notDeepEqual(
    a.map((s) => s.scene),
    c.map((s) => s.scene),
  );
  assert.notDeepEqual(
    a.map((s) => s.captions),
    c.map((s) => s.captions),
  );
  assert.notDeepEqual(
    a.map((s) => s.scene),
    h.map((s) => s.scene),
  );
  assert.equal(new Set([...a, ...h].map((s) => s.key)).size, 400);
});

test('held-out colour–shape pairs never appear in training and do appear in the held-out split', () => {
  assert.equal(HELDOUT_PAIRS.length, 4);
  let objects = 0;
  for (const s of TRAIN) {
    for (const o of [...s.scene, ...specObjects(s.spec)]) {
      objects++;
      assert.ok(!isHeldoutPair(o), `${s.key} has a held-out ${o.color} ${o.shape}`);
    }
    if (s.spec.kind === 'position') {
      assert.ok(!isHeldoutRelation(s.spec.a.shape, s.spec.relation, s.spec.b.shape), `${s.key}: ${s.captions[0]}`);
    }
  }
  assert.ok(objects > 5000);
  // Every held-out sample claims exactly one held-out composition.
  const pairsSeen = new Set<string>();
  const relationsSeen = new Set<string>();
  for (const s of HELDOUT) {
    const novel = specObjects(s.spec).filter(isHeldoutPair);
    if (s.spec.kind === 'position') {
      assert.equal(novel.length, 0);
      const { a, relation, b } = s.spec;
      assert.ok(isHeldoutRelation(a.shape, relation, b.shape), `${s.key}: ${s.captions[0]}`);
      const h = HELDOUT_RELATIONS.find(
        (r) => (r.a === a.shape && r.b === b.shape) || (r.a === b.shape && r.b === a.shape),
      )!;
      relationsSeen.add(`${h.a} ${h.relation} ${h.b}`);
    } else {
      assert.equal(novel.length, 1, `${s.key}: ${s.captions[0]}`);
      pairsSeen.add(`${novel[0].color} ${novel[0].shape}`);
      // The novel object is really in the scene.
      assert.ok(s.scene.some((o) => o.shape === novel[0].shape && o.color === novel[0].color));
    }
  }
  assert.equal(pairsSeen.size, HELDOUT_PAIRS.length);
  assert.equal(relationsSeen.size, HELDOUT_RELATIONS.length);
  // Every colour and every shape still occurs in training, and every training pair occurs.
  const trainPairs = new Set(TRAIN.flatMap((s) => s.scene.map((o) => `${o.color} ${o.shape}`)));
  assert.equal(trainPairs.size, COLORS.length * SHAPES.length - HELDOUT_PAIRS.length);
});

test('scenes fit the canvas without overlap; ground truth satisfies every claim and relation', () => {
  for (const s of [...TRAIN, ...HELDOUT]) {
    assert.ok(s.scene.length >= 1 && s.scene.length <= 4);
    for (const [i, o] of s.scene.entries()) {
      const h = o.size / 2;
      assert.ok(o.x - h >= MARGIN - 1e-9 && o.x + h <= 1 - MARGIN + 1e-9, `${s.key}: x ${o.x}`);
      assert.ok(o.y - h >= MARGIN - 1e-9 && o.y + h <= 1 - MARGIN + 1e-9, `${s.key}: y ${o.y}`);
      for (const p of s.scene.slice(i + 1)) {
        const sep = Math.max(Math.abs(o.x - p.x), Math.abs(o.y - p.y)) - (o.size + p.size) / 2;
        assert.ok(sep >= GAP - 1e-9, `${s.key}: objects ${sep.toFixed(3)} apart`);
      }
    }
    assert.equal(specFailure(locate(s.scene), s.spec), undefined, `${s.key}: ${s.captions[0]}`);
    if (s.spec.kind === 'counting') assert.equal(s.scene.length, s.spec.count);
    if (s.spec.kind === 'position') {
      const { a, relation, b } = s.spec;
      const [oa, ob] = s.scene;
      assert.deepEqual([oa.shape, oa.color, ob.shape, ob.color], [a.shape, a.color, b.shape, b.color]);
      const ca = massCentre(oa);
      const cb = massCentre(ob);
      assert.ok(relationHolds(ca, cb, relation));
      // Clearly: at least 0.25 apart on the relation's axis and at most half that on the other.
      const [primary, secondary] =
        relation === 'left of' || relation === 'right of'
          ? [Math.abs(cb.x - ca.x), Math.abs(cb.y - ca.y)]
          : [Math.abs(cb.y - ca.y), Math.abs(cb.x - ca.x)];
      assert.ok(primary >= 0.25 && secondary <= primary / 2, `${s.key}: ${primary} ${secondary}`);
      for (const other of RELATIONS.filter((r) => r !== relation)) assert.ok(!relationHolds(ca, cb, other));
    }
  }
});

test('parseCaption inverts every template of every expressible claim', () => {
  const objects = COLORS.flatMap((color) => SHAPES.map((shape) => ({ shape, color })));
  const specs: ShapeSpec[] = [];
  for (const object of objects) {
    specs.push({ kind: 'single', object }, { kind: 'colors', object });
    for (let count = MIN_COUNT; count <= MAX_COUNT; count++) specs.push({ kind: 'counting', object, count });
    for (const b of objects) {
      if (b.shape === object.shape) continue;
      specs.push({ kind: 'two', objects: [object, b] });
      if (b.color !== object.color) specs.push({ kind: 'attribute', objects: [object, b] });
      for (const relation of RELATIONS) specs.push({ kind: 'position', a: object, relation, b });
    }
  }
  let n = 0;
  for (const spec of specs) {
    for (const caption of captionsFor(spec)) {
      assert.deepEqual(parseCaption(caption), spec, caption);
      n++;
    }
  }
  assert.ok(n > 15000, `${n} captions`);
  for (const s of [...TRAIN.slice(0, 300), ...HELDOUT.slice(0, 100)]) {
    for (const caption of s.captions) assert.deepEqual(parseCaption(caption), s.spec, caption);
  }
  assert.deepEqual(parseCaption('  A Red   Circle. '), { kind: 'single', object: { shape: 'circle', color: 'red' } });
  assert.throws(() => parseCaption('a photo of a cat'), MuseError);
  assert.throws(() => parseCaption('a pink circle'), MuseError);
});

test('renders at 32, 64 and 128 px; samples carry their ground truth', async () => {
  const s = TRAIN[4];
  for (const size of [32, 64, 128]) {
    const img = await renderShapes(s, size);
    assert.equal(img.width, size);
    assert.equal(img.height, size);
    assert.deepEqual([...img.data.subarray(0, 3)], [255, 255, 255]);
  }
  await assert.rejects(renderShapes(s, 4), MuseError);
  const got: Sample[] = [];
  for await (const sample of shapeSamples({ count: 3, seed: 11, split: 'train', size: 32 })) got.push(sample);
  assert.equal(got.length, 3);
  assert.equal(got[0].key, TRAIN[0].key);
  assert.deepEqual(got[0].captions, TRAIN[0].captions);
  assert.deepEqual(got[0].meta?.spec, TRAIN[0].spec);
  assert.deepEqual(got[0].meta?.scene, TRAIN[0].scene);
  assert.equal(got[0].meta?.category, TRAIN[0].category);
  assert.equal(got[0].image.width, 32);
});

/** Scores every sample's own claim at `size`; returns the images for reuse. */
async function agreement(samples: ShapeSample[], size: number, t: { diagnostic(msg: string): void }) {
  const images: RgbImage[] = [];
  for (const s of samples) images.push(await renderShapes(s, size));
  const failures: string[] = [];
  for (const [i, s] of samples.entries()) {
    const r = scoreShapes(images[i], s.spec);
    if (!r.ok) failures.push(`${s.key} "${s.captions[0]}": ${r.reason}`);
  }
  const report = scoreMany(samples.map((s, i) => ({ image: images[i], spec: s.spec })));
  const accuracy = report.overall.accuracy;
  const per = CATEGORIES.map((c) => `${c} ${report.byCategory[c].correct}/${report.byCategory[c].total}`).join(', ');
  t.diagnostic(`ground truth at ${size} px: ${(100 * accuracy).toFixed(2)}% of ${samples.length} ok (${per})`);
  for (const f of failures) t.diagnostic(`  failed: ${f}`);
  assert.equal(report.overall.total - report.overall.correct, failures.length);
  assert.ok(accuracy >= 0.99, `only ${(100 * accuracy).toFixed(2)}% at ${size} px:\n${failures.join('\n')}`);
  return images;
}

const other = <T>(rng: Rng, items: readonly T[], not: T): T => {
  for (;;) {
    const v = items[rng.int(items.length)];
    if (v !== not) return v;
  }
};

const CONVERSE: Record<Relation, Relation> = {
  'left of': 'right of',
  'right of': 'left of',
  above: 'below',
  below: 'above',
};

/** A claim the ground truth makes false, and what was changed. */
function wrongSpec(s: ShapeSample, rng: Rng): { spec: ShapeSpec; change: string } {
  const truth = locate(s.scene);
  const mutateObject = (o: ObjectSpec): [ObjectSpec, string] =>
    rng.uniform() < 0.5
      ? [{ ...o, color: other(rng, COLORS, o.color) }, 'colour']
      : [{ ...o, shape: other(rng, SHAPES, o.shape) }, 'shape'];
  for (;;) {
    const spec = structuredClone(s.spec);
    let change: string;
    switch (spec.kind) {
      case 'single':
      case 'colors':
        [spec.object, change] = mutateObject(spec.object);
        break;
      case 'two':
      case 'attribute': {
        if (spec.kind === 'attribute' && rng.uniform() < 0.3) {
          const [a, b] = spec.objects;
          spec.objects = [
            { ...a, color: b.color },
            { ...b, color: a.color },
          ];
          change = 'swapped colours';
        } else {
          const i = rng.int(2);
          [spec.objects[i], change] = mutateObject(spec.objects[i]);
        }
        break;
      }
      case 'counting':
        if (rng.uniform() < 0.6) {
          spec.count += rng.uniform() < 0.5 ? -1 : 1;
          change = 'count ± 1';
        } else [spec.object, change] = mutateObject(spec.object);
        break;
      case 'position': {
        const u = rng.uniform();
        if (u < 0.5) {
          spec.relation = CONVERSE[spec.relation];
          change = 'flipped relation';
        } else if (u < 0.75) {
          spec.relation = other(
            rng,
            RELATIONS.filter((r) => r !== CONVERSE[spec.relation]),
            spec.relation,
          );
          change = 'other-axis relation';
        } else {
          [spec.a, spec.b] = [spec.b, spec.a];
          change = 'swapped objects';
        }
        break;
      }
    }
    if (specFailure(truth, spec) !== undefined) return { spec, change };
  }
}

test('the pixel scorer agrees with the ground truth and rejects wrong claims', async (t) => {
  const t0 = performance.now();
  const at32 = [...TRAIN.slice(0, 800), ...HELDOUT.slice(0, 200)];
  const images = await agreement(at32, 32, t);
  await agreement([...TRAIN.slice(1000, 1250), ...HELDOUT.slice(300, 350)], 64, t);
  await agreement([...TRAIN.slice(1500, 1550)], 128, t);

  // Wrong claims about the 32 px images: every category, every kind of change.
  const rng = new Rng(99);
  const byChange = new Map<string, [number, number]>();
  const accepted: string[] = [];
  const n = 300;
  for (let i = 0; i < n; i++) {
    const j = (i * 7) % at32.length; // every category, train and held-out
    const s = at32[j];
    const { spec, change } = wrongSpec(s, rng);
    const r = scoreShapes(images[j], spec);
    const c = byChange.get(change) ?? [0, 0];
    if (!r.ok) c[0]++;
    else accepted.push(`${s.key} "${s.captions[0]}" accepted wrong ${JSON.stringify(spec)}`);
    c[1]++;
    byChange.set(change, c);
  }
  const rejected = n - accepted.length;
  t.diagnostic(
    `wrong claims at 32 px: ${rejected}/${n} rejected (${[...byChange].map(([k, [a, b]]) => `${k} ${a}/${b}`).join(', ')})`,
  );
  for (const a of accepted) t.diagnostic(`  ${a}`);
  assert.ok(rejected / n >= 0.99, accepted.join('\n'));
  t.diagnostic(`renders and scoring: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
});

test('scoreMany aggregates per category; blank and unreadable images', () => {
  const blank = { width: 32, height: 32, data: new Uint8Array(32 * 32 * 3).fill(255) };
  const spec = TRAIN[0].spec;
  const r = scoreShapes(blank, spec);
  assert.equal(r.ok, false);
  assert.deepEqual(r.found, []);
  assert.match(r.reason ?? '', /found: nothing/);
  const report = scoreMany([{ image: blank, spec }]);
  assert.equal(report.overall.total, 1);
  assert.equal(report.overall.correct, 0);
  assert.equal(report.byCategory[spec.kind].total, 1);
  assert.ok(Number.isNaN(report.byCategory[spec.kind === 'single' ? 'two' : 'single'].accuracy));
  assert.throws(() => scoreShapes({ width: 4, height: 4, data: new Uint8Array(5) }, spec), MuseError);
});
