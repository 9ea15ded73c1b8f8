// A synthetic, compositional image–text dataset of coloured shapes on white with exact ground truth,
// for training and evaluating a small text-to-image model on GenEval-style categories: single
// object, two objects, counting, colours, position and colour attribution (binding).
//
// Scenes are described in canvas fractions (0..1, origin top left, y down), so the same scene
// renders at 32, 64 or 128 px. Objects never overlap: their bounding boxes are at least GAP apart,
// and every object stays MARGIN inside the canvas. At 32 px the smallest object is ~9 px across.
//
// Held-out compositions (never in any training object / training position caption) are fixed and
// listed in HELDOUT_PAIRS and HELDOUT_RELATIONS. All randomness comes from the seeded Rng, so the
// same options give the same samples.

import { type RgbImage, renderSvg } from '../image/image.js';
import { Rng } from '../tensor/random.js';
import { MuseError } from '../util/errors.js';
import type { Sample } from './sample.js';

export const SHAPES = ['circle', 'square', 'triangle', 'cross'] as const;
export type Shape = (typeof SHAPES)[number];

/** Plural words for captions. */
export const SHAPE_PLURALS: Record<Shape, string> = {
  circle: 'circles',
  square: 'squares',
  triangle: 'triangles',
  cross: 'crosses',
};

export const COLORS = ['red', 'orange', 'yellow', 'green', 'cyan', 'blue', 'purple', 'black'] as const;
export type Color = (typeof COLORS)[number];

/**
 * Fill colours (sRGB). Chosen so that both the colours and their antialiasing lines toward white
 * (white − rgb) are far apart, since the scorer classifies pixels by the line they lie on: every
 * pair is ≥ 100 apart in RGB (closest: orange–yellow) and ≥ 19° apart as lines (orange–red,
 * green–black); every colour is ≥ 257 from white.
 */
export const PALETTE: Record<Color, readonly [number, number, number]> = {
  red: [225, 25, 25],
  orange: [255, 125, 0],
  yellow: [250, 225, 0],
  green: [20, 160, 40],
  cyan: [0, 200, 225],
  blue: [25, 60, 235],
  purple: [140, 35, 190],
  black: [20, 20, 20],
};

/**
 * Side of an object's bounding box (canvas fraction): small ≈ 9 px, large ≈ 12 px at 32 px. Two
 * large objects fit side by side (2 × 0.38 + GAP ≤ 1 − 2 × MARGIN), four small ones in a 2 × 2 grid.
 */
export const SIZES = { small: 0.28, large: 0.38 } as const;
export type SizeClass = keyof typeof SIZES;
/** Smallest allowed distance between two objects' bounding boxes (canvas fraction; 2.6 px at 32). */
export const GAP = 0.08;
/** Smallest distance from an object's bounding box to the canvas edge. */
export const MARGIN = 0.04;
/** Width of a cross's arms as a fraction of its side. */
export const CROSS_ARM = 0.36;

export const CATEGORIES = ['single', 'two', 'counting', 'colors', 'position', 'attribute'] as const;
export type ShapeCategory = (typeof CATEGORIES)[number];

export const RELATIONS = ['left of', 'right of', 'above', 'below'] as const;
export type Relation = (typeof RELATIONS)[number];

export interface ObjectSpec {
  shape: Shape;
  color: Color;
}

/** One object of a scene; x, y is the centre of its bounding box, size its side (canvas fractions). */
export interface SceneObject extends ObjectSpec {
  x: number;
  y: number;
  size: number;
  scale: SizeClass;
}

/** The structured claim a caption makes; the scorer checks this, never the text. */
export type ShapeSpec =
  | { kind: 'single' | 'colors'; object: ObjectSpec }
  | { kind: 'two' | 'attribute'; objects: [ObjectSpec, ObjectSpec] }
  | { kind: 'counting'; object: ObjectSpec; count: number }
  | { kind: 'position'; a: ObjectSpec; relation: Relation; b: ObjectSpec };

export type ShapeSplit = 'train' | 'heldout';

export interface ShapeSample {
  key: string;
  split: ShapeSplit;
  category: ShapeCategory;
  scene: SceneObject[];
  spec: ShapeSpec;
  captions: string[];
}

/** Colour–shape pairs that no training object ever has (one per shape, each colour at most once). */
export const HELDOUT_PAIRS: readonly ObjectSpec[] = [
  { color: 'yellow', shape: 'circle' },
  { color: 'purple', shape: 'square' },
  { color: 'blue', shape: 'triangle' },
  { color: 'orange', shape: 'cross' },
];

/**
 * (shape, relation, shape) claims never made by a training position caption, nor their converses
 * ("circle above square" also holds out "square below circle"), whatever the colours.
 */
export const HELDOUT_RELATIONS: readonly { a: Shape; relation: Relation; b: Shape }[] = [
  { a: 'circle', relation: 'above', b: 'square' },
  { a: 'triangle', relation: 'above', b: 'cross' },
  { a: 'square', relation: 'left of', b: 'triangle' },
  { a: 'cross', relation: 'left of', b: 'circle' },
];

const CONVERSE: Record<Relation, Relation> = {
  'left of': 'right of',
  'right of': 'left of',
  above: 'below',
  below: 'above',
};

export function isHeldoutPair(o: ObjectSpec): boolean {
  return HELDOUT_PAIRS.some((p) => p.shape === o.shape && p.color === o.color);
}

/** Whether "a relation b" (or its converse) is a held-out position claim. */
export function isHeldoutRelation(a: Shape, relation: Relation, b: Shape): boolean {
  return HELDOUT_RELATIONS.some(
    (h) =>
      (h.a === a && h.relation === relation && h.b === b) ||
      (h.a === b && h.relation === CONVERSE[relation] && h.b === a),
  );
}

// ---------------------------------------------------------------------------------------------
// Geometry

/** Centre of mass of an object (canvas fractions): a triangle's (apex up) lies s/6 below its box centre. */
export function massCentre(o: SceneObject): { x: number; y: number } {
  return { x: o.x, y: o.shape === 'triangle' ? o.y + o.size / 6 : o.y };
}

/**
 * The relation rule shared by generation and scoring, on centres of mass in canvas fractions:
 * "a left of b" holds when b is at least RELATION_MIN_OFFSET further right than a and the
 * horizontal offset exceeds the vertical one (likewise for the other relations). Generation asks
 * for a clear margin on top (RELATION_GEN_OFFSET and a secondary offset at most half the primary).
 */
export const RELATION_MIN_OFFSET = 0.15;
export const RELATION_GEN_OFFSET = 0.25;

function offsets(a: { x: number; y: number }, b: { x: number; y: number }, relation: Relation): [number, number] {
  const dx = b.x - a.x;
  const dy = b.y - a.y;
  switch (relation) {
    case 'left of':
      return [dx, Math.abs(dy)];
    case 'right of':
      return [-dx, Math.abs(dy)];
    case 'above':
      return [dy, Math.abs(dx)];
    case 'below':
      return [-dy, Math.abs(dx)];
  }
}

/** Whether "a <relation> b" holds between two centres of mass (the rule described above). */
export function relationHolds(a: { x: number; y: number }, b: { x: number; y: number }, relation: Relation): boolean {
  const [primary, secondary] = offsets(a, b, relation);
  return primary >= RELATION_MIN_OFFSET && secondary < primary;
}

function relationHoldsClearly(a: { x: number; y: number }, b: { x: number; y: number }, relation: Relation): boolean {
  const [primary, secondary] = offsets(a, b, relation);
  return primary >= RELATION_GEN_OFFSET && secondary <= 0.5 * primary;
}

function separated(a: SceneObject, b: SceneObject): boolean {
  const half = (a.size + b.size) / 2;
  return Math.max(Math.abs(a.x - b.x), Math.abs(a.y - b.y)) - half >= GAP;
}

const round4 = (v: number) => Math.round(v * 1e4) / 1e4;

function placeOne(rng: Rng, o: ObjectSpec, scale: SizeClass): SceneObject {
  const size = SIZES[scale];
  const lo = MARGIN + size / 2;
  const span = 1 - 2 * lo;
  return { ...o, x: round4(lo + rng.uniform() * span), y: round4(lo + rng.uniform() * span), size, scale };
}

/**
 * Places objects at random without overlap. When a layout does not fit after many tries, the
 * largest object is made small and placement starts again (always possible for up to 4 objects).
 */
function place(
  rng: Rng,
  objects: ObjectSpec[],
  scales: SizeClass[],
  accept: (scene: SceneObject[]) => boolean = () => true,
): SceneObject[] {
  scales = [...scales];
  for (;;) {
    for (let attempt = 0; attempt < 100; attempt++) {
      const scene: SceneObject[] = [];
      for (let i = 0; i < objects.length; i++) {
        let placed: SceneObject | undefined;
        for (let t = 0; t < 40 && !placed; t++) {
          const cand = placeOne(rng, objects[i], scales[i]);
          if (scene.every((s) => separated(s, cand))) placed = cand;
        }
        if (!placed) break;
        scene.push(placed);
      }
      if (scene.length === objects.length && accept(scene)) return scene;
    }
    const large = scales.indexOf('large');
    if (large < 0) throw new Error('shapes: could not place objects (internal error)');
    scales[large] = 'small';
  }
}

/** An object as the claim checker sees it: colour, shape and centre of mass (canvas fractions). */
export interface LocatedObject {
  shape: Shape | 'unknown';
  color: Color;
  x: number;
  y: number;
}

/** The scene's objects located by their centres of mass. */
export function locate(scene: readonly SceneObject[]): LocatedObject[] {
  return scene.map((o) => ({ shape: o.shape, color: o.color, ...massCentre(o) }));
}

const describe = (s: ObjectSpec) => `${s.color} ${s.shape}`;

/**
 * Checks a claim against located objects (ground truth via `locate`, or what the scorer found):
 * named objects present, counts exact, the relation by `relationHolds` between some pair of the
 * named objects. Other objects in the image are allowed. Returns undefined when the claim holds,
 * otherwise why not.
 */
export function specFailure(objects: readonly LocatedObject[], spec: ShapeSpec): string | undefined {
  const matching = (s: ObjectSpec) => objects.filter((o) => o.shape === s.shape && o.color === s.color);
  const missing = (specs: ObjectSpec[]) => {
    const m = specs.filter((s) => matching(s).length === 0);
    return m.length ? `no ${m.map(describe).join(' and no ')}` : undefined;
  };
  switch (spec.kind) {
    case 'single':
    case 'colors':
      return missing([spec.object]);
    case 'two':
    case 'attribute':
      return missing(spec.objects);
    case 'counting': {
      const n = matching(spec.object).length;
      return n === spec.count ? undefined : `${n} × ${describe(spec.object)}, expected ${spec.count}`;
    }
    case 'position': {
      const m = missing([spec.a, spec.b]);
      if (m) return m;
      const bs = matching(spec.b);
      const holds = matching(spec.a).some((a) => bs.some((b) => a !== b && relationHolds(a, b, spec.relation)));
      return holds ? undefined : `the ${describe(spec.a)} is not ${spec.relation} the ${describe(spec.b)}`;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Captions

const COUNT_WORDS: Record<number, string> = { 2: 'two', 3: 'three', 4: 'four' };
export const MAX_COUNT = 4;
export const MIN_COUNT = 2;

const article = (word: string) => (/^[aeiou]/.test(word) ? 'an' : 'a');
const phrase = (o: ObjectSpec) => `${o.color} ${o.shape}`;
const withArticle = (o: ObjectSpec) => `${article(o.color)} ${phrase(o)}`;

/** Relation phrasings; every template of a spec uses one of each column. */
const RELATION_WORDS: Record<Relation, [string, string, string]> = {
  'left of': ['to the left of', 'left of', 'on the left side of'],
  'right of': ['to the right of', 'right of', 'on the right side of'],
  above: ['above', 'over', 'higher than'],
  below: ['below', 'under', 'beneath'],
};

/** Every phrasing of a spec, in a fixed order (the first is the canonical prompt). */
export function captionsFor(spec: ShapeSpec): string[] {
  let out: string[];
  switch (spec.kind) {
    case 'single': {
      const o = spec.object;
      out = [
        withArticle(o),
        `one ${phrase(o)}`,
        `a single ${phrase(o)}`,
        `${phrase(o)} on a white background`,
        `a picture of ${withArticle(o)}`,
      ];
      break;
    }
    case 'colors': {
      const { shape, color } = spec.object;
      out = [
        `a ${shape} colored ${color}`,
        `${article(color)} ${color}-colored ${shape}`,
        `a ${shape} that is ${color}`,
        `a ${shape} in ${color}`,
        `the ${shape} is ${color}`,
      ];
      break;
    }
    case 'two': {
      const [a, b] = spec.objects;
      out = [
        `${withArticle(a)} and ${withArticle(b)}`,
        `one ${phrase(a)} and one ${phrase(b)}`,
        `a picture of ${withArticle(a)} and ${withArticle(b)}`,
        `${withArticle(a)} and ${withArticle(b)} on a white background`,
      ];
      break;
    }
    case 'attribute': {
      const [a, b] = spec.objects;
      out = [
        `${withArticle(a)} with ${withArticle(b)}`,
        `${withArticle(a)} next to ${withArticle(b)}`,
        `a ${a.shape} that is ${a.color} and a ${b.shape} that is ${b.color}`,
        `${withArticle(a)} together with ${withArticle(b)}`,
        `one ${phrase(a)}, one ${phrase(b)}`,
      ];
      break;
    }
    case 'counting': {
      const { shape, color } = spec.object;
      const word = COUNT_WORDS[spec.count];
      if (!word) throw new MuseError(`shapes: captions count ${MIN_COUNT} to ${MAX_COUNT} objects, got ${spec.count}`);
      const many = `${color} ${SHAPE_PLURALS[shape]}`;
      out = [
        `${word} ${many}`,
        `${spec.count} ${many}`,
        `exactly ${word} ${many}`,
        `${word} ${many} on a white background`,
        `a picture of ${word} ${many}`,
      ];
      break;
    }
    case 'position': {
      const [r0, r1, r2] = RELATION_WORDS[spec.relation];
      const a = withArticle(spec.a);
      const b = withArticle(spec.b);
      out = [`${a} ${r0} ${b}`, `${a} ${r1} ${b}`, `${a} is ${r0} ${b}`, `${a} ${r2} ${b}`];
      break;
    }
  }
  return [...new Set(out)];
}

function specKey(spec: ShapeSpec): string {
  return JSON.stringify(spec);
}

let captionTable: Map<string, ShapeSpec> | undefined;

/** Every spec the templates can express (all colours, shapes, counts and relations). */
function allSpecs(): ShapeSpec[] {
  const objects: ObjectSpec[] = [];
  for (const color of COLORS) for (const shape of SHAPES) objects.push({ shape, color });
  const specs: ShapeSpec[] = [];
  for (const object of objects) {
    specs.push({ kind: 'single', object }, { kind: 'colors', object });
    for (let count = MIN_COUNT; count <= MAX_COUNT; count++) specs.push({ kind: 'counting', object, count });
  }
  for (const a of objects) {
    for (const b of objects) {
      if (a.shape === b.shape) continue;
      specs.push({ kind: 'two', objects: [a, b] });
      if (a.color !== b.color) specs.push({ kind: 'attribute', objects: [a, b] });
      for (const relation of RELATIONS) specs.push({ kind: 'position', a, relation, b });
    }
  }
  return specs;
}

/** Lower case, single spaces, no surrounding spaces or final full stop. */
export function normaliseCaption(text: string): string {
  return text
    .toLowerCase()
    .replace(/\s+/g, ' ')
    .trim()
    .replace(/\s*\.$/, '');
}

function table(): Map<string, ShapeSpec> {
  if (captionTable) return captionTable;
  const t = new Map<string, ShapeSpec>();
  for (const spec of allSpecs()) {
    for (const caption of captionsFor(spec)) {
      const prev = t.get(caption);
      if (prev && specKey(prev) !== specKey(spec)) {
        throw new Error(`shapes: caption "${caption}" is ambiguous (${specKey(prev)} / ${specKey(spec)})`);
      }
      t.set(caption, spec);
    }
  }
  captionTable = t;
  return t;
}

/**
 * The spec of a caption written by any template here (case, spacing and a final full stop do not
 * matter). Throws MuseError for text the templates cannot produce.
 */
export function parseCaption(text: string): ShapeSpec {
  const spec = table().get(normaliseCaption(text));
  if (!spec) throw new MuseError(`not a shapes caption: "${text}"`);
  return structuredClone(spec);
}

// ---------------------------------------------------------------------------------------------
// Generation

export interface GenerateShapesOptions {
  count: number;
  seed: number;
  split: ShapeSplit;
  /** Categories to draw from, in turn (default: all six). */
  categories?: readonly ShapeCategory[];
}

const pick = <T>(rng: Rng, items: readonly T[]): T => items[rng.int(items.length)];

const ALL_OBJECTS: ObjectSpec[] = COLORS.flatMap((color) => SHAPES.map((shape) => ({ shape, color })));
const TRAIN_OBJECTS = ALL_OBJECTS.filter((o) => !isHeldoutPair(o));

function scaleFor(rng: Rng, objects: number): SizeClass {
  const pLarge = objects <= 2 ? 0.5 : objects === 3 ? 0.3 : 0.15;
  return rng.uniform() < pLarge ? 'large' : 'small';
}

const scalesFor = (rng: Rng, n: number) => Array.from({ length: n }, () => scaleFor(rng, n));

/** A training object, or a held-out pair for the sample's one novel object. */
function objectFor(rng: Rng, heldout: boolean): ObjectSpec {
  return { ...pick(rng, heldout ? HELDOUT_PAIRS : TRAIN_OBJECTS) };
}

function twoObjects(rng: Rng, split: ShapeSplit, distinctColors: boolean): [ObjectSpec, ObjectSpec] {
  for (;;) {
    let a = objectFor(rng, split === 'heldout');
    let b = objectFor(rng, false);
    if (a.shape === b.shape || (distinctColors && a.color === b.color)) continue;
    if (rng.uniform() < 0.5) [a, b] = [b, a];
    return [a, b];
  }
}

function generateOne(rng: Rng, category: ShapeCategory, split: ShapeSplit): { scene: SceneObject[]; spec: ShapeSpec } {
  switch (category) {
    case 'single':
    case 'colors': {
      const object = objectFor(rng, split === 'heldout');
      return { spec: { kind: category, object }, scene: place(rng, [object], scalesFor(rng, 1)) };
    }
    case 'two':
    case 'attribute': {
      const objects = twoObjects(rng, split, category === 'attribute');
      return { spec: { kind: category, objects }, scene: place(rng, objects, scalesFor(rng, 2)) };
    }
    case 'counting': {
      const object = objectFor(rng, split === 'heldout');
      const count = MIN_COUNT + rng.int(MAX_COUNT - MIN_COUNT + 1);
      const objects = Array.from({ length: count }, () => ({ ...object }));
      return { spec: { kind: 'counting', object, count }, scene: place(rng, objects, scalesFor(rng, count)) };
    }
    case 'position': {
      let a: ObjectSpec;
      let b: ObjectSpec;
      let relation: Relation;
      if (split === 'heldout') {
        const h = pick(rng, HELDOUT_RELATIONS);
        const flip = rng.uniform() < 0.5;
        relation = flip ? CONVERSE[h.relation] : h.relation;
        const [sa, sb] = flip ? [h.b, h.a] : [h.a, h.b];
        a = {
          ...pick(
            rng,
            TRAIN_OBJECTS.filter((o) => o.shape === sa),
          ),
        };
        b = {
          ...pick(
            rng,
            TRAIN_OBJECTS.filter((o) => o.shape === sb),
          ),
        };
      } else {
        do {
          [a, b] = twoObjects(rng, 'train', false);
          relation = pick(rng, RELATIONS);
        } while (isHeldoutRelation(a.shape, relation, b.shape));
      }
      const scene = place(rng, [a, b], scalesFor(rng, 2), ([sa, sb]) =>
        relationHoldsClearly(massCentre(sa), massCentre(sb), relation),
      );
      return { spec: { kind: 'position', a, relation, b }, scene };
    }
  }
}

/**
 * `count` samples of one split, categories taken in turn. The same options always give the same
 * samples. Train samples never contain a held-out colour–shape pair nor make a held-out position
 * claim; every held-out sample's claim involves exactly one of them (a held-out pair, or for
 * position a held-out relation between training-pair objects).
 */
export function generateShapes(options: GenerateShapesOptions): ShapeSample[] {
  const { count, seed, split } = options;
  const categories = options.categories ?? CATEGORIES;
  if (!Number.isInteger(count) || count < 0)
    throw new MuseError(`shapes: count must be a whole number ≥ 0, got ${count}`);
  if (!Number.isFinite(seed)) throw new MuseError(`shapes: seed must be a number, got ${seed}`);
  if (split !== 'train' && split !== 'heldout')
    throw new MuseError(`shapes: split must be "train" or "heldout", got "${split}"`);
  if (categories.length === 0) throw new MuseError('shapes: categories is empty');
  for (const c of categories) {
    if (!CATEGORIES.includes(c))
      throw new MuseError(`shapes: unknown category "${c}": choose from ${CATEGORIES.join(', ')}`);
  }
  // Splits draw from different streams, so a train and a held-out set with one seed are unrelated.
  const rng = new Rng(seed * 2 + (split === 'heldout' ? 1 : 0));
  const out: ShapeSample[] = [];
  for (let i = 0; i < count; i++) {
    const category = categories[i % categories.length];
    const { scene, spec } = generateOne(rng, category, split);
    out.push({
      key: `shapes-${split}-${seed}-${String(i).padStart(6, '0')}`,
      split,
      category,
      scene,
      spec,
      captions: captionsFor(spec),
    });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Rendering

const hex = (c: readonly [number, number, number]) => `#${c.map((v) => v.toString(16).padStart(2, '0')).join('')}`;
const f = (v: number) => String(round4(v));

function objectSvg(o: SceneObject): string {
  const fill = hex(PALETTE[o.color]);
  const h = o.size / 2;
  switch (o.shape) {
    case 'circle':
      return `<circle cx="${f(o.x)}" cy="${f(o.y)}" r="${f(h)}" fill="${fill}"/>`;
    case 'square':
      return `<rect x="${f(o.x - h)}" y="${f(o.y - h)}" width="${f(o.size)}" height="${f(o.size)}" fill="${fill}"/>`;
    case 'triangle':
      return `<polygon points="${f(o.x)},${f(o.y - h)} ${f(o.x + h)},${f(o.y + h)} ${f(o.x - h)},${f(o.y + h)}" fill="${fill}"/>`;
    case 'cross': {
      const a = (o.size * CROSS_ARM) / 2;
      const { x, y } = o;
      const pts = [
        [x - a, y - h],
        [x + a, y - h],
        [x + a, y - a],
        [x + h, y - a],
        [x + h, y + a],
        [x + a, y + a],
        [x + a, y + h],
        [x - a, y + h],
        [x - a, y + a],
        [x - h, y + a],
        [x - h, y - a],
        [x - a, y - a],
      ];
      return `<polygon points="${pts.map(([px, py]) => `${f(px)},${f(py)}`).join(' ')}" fill="${fill}"/>`;
    }
  }
}

/** The scene as an SVG document (viewBox 0 0 1 1, nominal 32×32, white background). */
export function shapesSvg(scene: readonly SceneObject[]): string {
  return (
    '<svg xmlns="http://www.w3.org/2000/svg" width="32" height="32" viewBox="0 0 1 1">' +
    '<rect width="1" height="1" fill="#ffffff"/>' +
    scene.map(objectSvg).join('') +
    '</svg>'
  );
}

/** Renders a sample's scene to size×size RGB (any size ≥ 16; 32, 64 and 128 are the usual ones). */
export async function renderShapes(
  sample: { scene: readonly SceneObject[]; key?: string },
  size: number,
): Promise<RgbImage> {
  if (!Number.isInteger(size) || size < 16 || size > 4096)
    throw new MuseError(`shapes: size must be an integer from 16 to 4096, got ${size}`);
  return renderSvg(shapesSvg(sample.scene), size, sample.key ?? 'shapes');
}

/** A rendered Sample: meta holds { category, split, spec, scene }. */
export async function shapeToSample(s: ShapeSample, size: number): Promise<Sample> {
  return {
    key: s.key,
    image: await renderShapes(s, size),
    captions: [...s.captions],
    meta: { dataset: 'shapes', category: s.category, split: s.split, spec: s.spec, scene: s.scene },
  };
}

/** Generates and renders samples one at a time. */
export async function* shapeSamples(options: GenerateShapesOptions & { size?: number }): AsyncGenerator<Sample> {
  const size = options.size ?? 32;
  for (const s of generateShapes(options)) yield await shapeToSample(s, size);
}
