// muse-ts web UI: plain JavaScript against the server's api/ (no build step, nothing downloaded), or
// entirely in the browser with the muse-ts bundle (muse.js, from npm run build:web) and the model files
// under models/: always on a static copy (muse export-web), by choice under muse serve.
'use strict';

const $ = (id) => document.getElementById(id);
const state = {
  models: [],
  job: null,
  source: null,
  editor: null,
  tool: 'brush',
  cursor: { x: 0.5, y: 0.5 },
  // Client-side generation: the models the page can run itself, whether there is no server at all.
  client: { models: [], only: false, lib: null, pipelines: new Map(), cancelled: false, running: false },
};

async function api(path, init) {
  const res = await fetch(path, init);
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.error?.message ?? `${res.status} ${res.statusText}`);
  return body;
}

function setStatus(text, error = false) {
  const s = $('status');
  s.textContent = text;
  s.classList.toggle('error', error);
}

// ---- models and defaults ----
async function loadModels() {
  const client = await fetch('models/index.json')
    .then((r) => (r.ok ? r.json() : { models: [] }))
    .catch(() => ({ models: [] }));
  state.client.models = client.models ?? [];
  try {
    const { models } = await api('api/models');
    state.models = models;
    showModels();
    const health = await api('api/health');
    $('health').textContent = `${health.status} · ${models.length} model${models.length === 1 ? '' : 's'}`;
    if (state.client.models.length) {
      $('in-browser-row').hidden = false;
      $('in-browser-hint').textContent = `(${state.client.models.map((m) => m.name).join(', ')}; downloads the model once)`;
    }
  } catch (err) {
    if (state.client.models.length) {
      // A static copy: no server, everything runs here.
      state.client.only = true;
      state.models = state.client.models;
      showModels();
      $('in-browser-row').hidden = false;
      $('in-browser').checked = true;
      $('in-browser').disabled = true;
      $('in-browser-hint').textContent = '(static page: no server)';
      $('health').textContent = `in-browser · ${state.models.length} model${state.models.length === 1 ? '' : 's'}`;
    } else $('health').textContent = `server unreachable: ${err.message}`;
  }
}

function showModels() {
  const select = $('model');
  select.replaceChildren(...state.models.map((m) => new Option(`${m.name} (${m.kind})`, m.name)));
  select.addEventListener('change', applyModel);
  applyModel();
}

function currentModel() {
  return state.models.find((m) => m.name === $('model').value) ?? state.models[0];
}

function applyModel() {
  const m = currentModel();
  if (!m) return;
  $('size').replaceChildren(...m.sizes.map((s) => new Option(`${s}×${s}`, String(s))));
  $('size').value = String(m.defaultSize);
  $('steps').value = m.defaults.steps;
  $('guidance').value = m.defaults.guidance;
}

// ---- seed ----
for (const id of ['seed-random', 'seed-fixed'])
  $(id).addEventListener('change', () => {
    $('seed').disabled = $('seed-random').checked;
  });

function requestOptions() {
  const options = {
    n: Number($('count').value) || 1,
    size: Number($('size').value) || undefined,
    steps: Number($('steps').value) || undefined,
    guidance: $('guidance').value === '' ? undefined : Number($('guidance').value),
  };
  if ($('negative').value.trim()) options.negative = $('negative').value;
  options.seed = $('seed-fixed').checked ? Number($('seed').value) : Math.floor(Math.random() * 2 ** 31);
  return options;
}

// ---- jobs: submit, follow the SSE stream, cancel ----
function busy(on) {
  $('generate').disabled = on;
  for (const id of ['inpaint', 'outpaint', 'edit', 'upscale']) $(id).disabled = on || !state.editor;
  $('cancel').disabled = !on;
}

function showPreviews(step, total, sources) {
  $('bar').max = total;
  $('bar').value = step;
  setStatus(`Step ${step} of ${total}`);
  if (sources)
    $('previews').replaceChildren(
      ...sources.map((src, i) => {
        const img = new Image();
        img.src = src;
        img.alt = `preview ${i + 1} at step ${step}`;
        return img;
      }),
    );
}

function runsInBrowser(request) {
  return (
    (state.client.only || $('in-browser').checked) && state.client.models.some((m) => m.name === request.model)
  );
}

async function runJob(request) {
  if (runsInBrowser(request)) return runInBrowser(request);
  busy(true);
  setStatus('Submitting…');
  $('bar').value = 0;
  let id;
  try {
    ({ id } = await api('api/jobs', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(request),
    }));
  } catch (err) {
    setStatus(err.message, true);
    busy(false);
    return;
  }
  state.job = id;
  const events = new EventSource(`api/jobs/${id}/events`);
  state.source = events;
  const finish = (text, error) => {
    events.close();
    state.job = null;
    state.source = null;
    setStatus(text, error);
    busy(false);
  };
  events.addEventListener('status', (e) => {
    const d = JSON.parse(e.data);
    if (d.status === 'queued') setStatus('Queued…');
  });
  events.addEventListener('started', () => setStatus('Decoding…'));
  events.addEventListener('progress', (e) => {
    const d = JSON.parse(e.data);
    showPreviews(d.step, d.total, d.previews?.map((b64) => `data:image/png;base64,${b64}`));
  });
  events.addEventListener('result', (e) => {
    const d = JSON.parse(e.data);
    $('bar').value = $('bar').max;
    $('previews').replaceChildren();
    for (const im of d.images) addToGallery(im, request);
    finish(`Done: ${d.images.length} image${d.images.length === 1 ? '' : 's'}.${d.notes?.length ? ` ${d.notes.join(' ')}` : ''}`);
  });
  events.addEventListener('error', (e) => {
    if (e.data) finish(JSON.parse(e.data).message, true);
    else if (events.readyState === EventSource.CLOSED) finish('Lost the connection to the server.', true);
  });
  events.addEventListener('cancelled', () => finish('Cancelled.'));
}

// ---- in the browser: the muse-ts bundle, models fetched from models/NAME/ ----
function b64ToBytes(b64) {
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}

function bytesToB64(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

function imageUrl(lib, image) {
  const c = document.createElement('canvas');
  c.width = image.width;
  c.height = image.height;
  c.getContext('2d').putImageData(lib.toImageData(image), 0, 0);
  return c.toDataURL('image/png');
}

async function browserPipeline(name) {
  state.client.lib ??= await import('./muse.js');
  if (!state.client.pipelines.has(name)) {
    const loading = state.client.lib.MusePipeline.load(`models/${encodeURIComponent(name)}/`);
    state.client.pipelines.set(name, loading);
    loading.catch(() => state.client.pipelines.delete(name));
  }
  return { lib: state.client.lib, pipeline: await state.client.pipelines.get(name) };
}

/** Runs a request like the server's jobs, in this page; resolves with the gallery entries. */
async function generateInBrowser(request, onStep) {
  const { lib, pipeline } = await browserPipeline(request.model);
  const o = request.options;
  const options = {
    n: o.n,
    seed: o.seed,
    steps: o.steps,
    guidance: o.guidance,
    negative: o.negative,
    onStep: (step, total, images) => onStep(lib, step, total, images),
  };
  const image = request.image ? await lib.decodeImage(b64ToBytes(request.image), 'the image') : undefined;
  let out;
  if (request.verb === 'generate') out = await pipeline.generate(request.prompt, { ...options, size: o.size });
  else if (request.verb === 'inpaint') {
    const mask = lib.maskFromImage(await lib.decodeImage(b64ToBytes(request.mask), 'the mask'), 'the mask');
    out = await pipeline.inpaint(image, mask, request.prompt, options);
  } else if (request.verb === 'outpaint')
    out = await pipeline.outpaint(image, { left: o.left, right: o.right, top: o.top, bottom: o.bottom }, request.prompt, options);
  else if (request.verb === 'edit') out = await pipeline.edit(image, request.prompt, { ...options, iterations: o.iterations });
  else if (request.verb === 'upscale') out = await pipeline.upscale(image, request.prompt, options);
  else throw new Error(`${request.verb} does not run in the browser`);
  const images = [];
  for (const [i, im] of out.images.entries())
    images.push({
      b64_json: bytesToB64(await lib.encodePng(im)),
      seed: (o.seed ?? 0) + (request.verb === 'generate' ? i : 0),
      width: im.width,
      height: im.height,
    });
  return { images, notes: out.notes };
}

async function runInBrowser(request) {
  busy(true);
  state.client.cancelled = false;
  state.client.running = true;
  $('bar').value = 0;
  setStatus(state.client.pipelines.has(request.model) ? 'Decoding in this browser…' : 'Loading the model into this browser…');
  try {
    const result = await generateInBrowser(request, async (lib, step, total, images) => {
      if (state.client.cancelled) throw new Error('cancelled');
      showPreviews(step, total, (await images()).map((im) => imageUrl(lib, im)));
      await new Promise((r) => setTimeout(r, 0)); // let the page paint and take a Cancel click
    });
    $('bar').value = $('bar').max;
    $('previews').replaceChildren();
    for (const im of result.images) addToGallery(im, request);
    const n = result.images.length;
    setStatus(`Done in this browser: ${n} image${n === 1 ? '' : 's'}.${result.notes?.length ? ` ${result.notes.join(' ')}` : ''}`);
  } catch (err) {
    setStatus(state.client.cancelled ? 'Cancelled.' : `In the browser: ${err.message}`, !state.client.cancelled);
  } finally {
    state.client.running = false;
    busy(false);
  }
}
window.museGenerateInBrowser = generateInBrowser;

$('cancel').addEventListener('click', async () => {
  if (state.client.running) {
    state.client.cancelled = true;
    setStatus('Cancelling…');
    return;
  }
  if (!state.job) return;
  setStatus('Cancelling…');
  try {
    await api(`api/jobs/${state.job}`, { method: 'DELETE' });
  } catch (err) {
    setStatus(err.message, true);
  }
});

$('gen-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const prompt = $('prompt').value.trim();
  if (!prompt) {
    setStatus('Write a prompt first.', true);
    $('prompt').focus();
    return;
  }
  runJob({ verb: 'generate', model: $('model').value, prompt, options: requestOptions() });
});
$('prompt').addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
    e.preventDefault();
    $('gen-form').requestSubmit();
  }
});

// ---- gallery ----
function addToGallery(im, request) {
  $('gallery-empty').hidden = true;
  const src = `data:image/png;base64,${im.b64_json}`;
  const params = { ...request.options, seed: im.seed };
  const li = document.createElement('li');
  const img = new Image();
  img.src = src;
  img.alt = `${request.verb}: ${request.prompt} (seed ${im.seed})`;
  const p = document.createElement('p');
  p.className = 'params';
  p.innerHTML = '';
  const parts = [
    ['', request.prompt],
    ['verb', request.verb],
    ['model', request.model],
    ['seed', im.seed],
    ['steps', params.steps],
    ['guidance', params.guidance],
    ['size', `${im.width}×${im.height}`],
  ];
  if (params.negative) parts.push(['negative', params.negative]);
  for (const [k, v] of parts) {
    if (v === undefined) continue;
    if (k) {
      const b = document.createElement('b');
      b.textContent = `${k} `;
      p.append(b);
    }
    p.append(`${v}`, document.createElement('br'));
  }
  const buttons = document.createElement('div');
  buttons.className = 'buttons';
  const a = document.createElement('a');
  a.href = src;
  a.download = `muse-${request.verb}-seed${im.seed}.png`;
  a.textContent = 'Download';
  const reuse = document.createElement('button');
  reuse.type = 'button';
  reuse.textContent = 'Reuse seed';
  reuse.addEventListener('click', () => {
    $('prompt').value = request.prompt;
    $('negative').value = params.negative ?? '';
    if (params.steps) $('steps').value = params.steps;
    if (params.guidance !== undefined) $('guidance').value = params.guidance;
    $('seed-fixed').checked = true;
    $('seed').disabled = false;
    $('seed').value = im.seed;
    $('count').value = 1;
    $('seed').focus();
    setStatus(`Seed ${im.seed} set (count 1 remakes this image).`);
  });
  const edit = document.createElement('button');
  edit.type = 'button';
  edit.textContent = 'Edit';
  edit.addEventListener('click', () => {
    loadIntoEditor(im.b64_json);
    $('mask-canvas').focus();
  });
  buttons.append(a, reuse, edit);
  li.append(img, p, buttons);
  $('gallery').prepend(li);
}

// ---- inpainting editor: the image, and a mask painted over it ----
const imageCanvas = $('image-canvas');
const maskCanvas = $('mask-canvas');
const maskCtx = maskCanvas.getContext('2d');

function loadIntoEditor(b64) {
  const img = new Image();
  img.onload = () => {
    // Canvas pixels: a whole multiple of the image's pixels, about 512 across.
    const scale = Math.max(1, Math.floor(512 / Math.max(img.naturalWidth, img.naturalHeight)));
    const w = img.naturalWidth * scale;
    const h = img.naturalHeight * scale;
    for (const c of [imageCanvas, maskCanvas]) {
      c.width = w;
      c.height = h;
    }
    $('editor').style.aspectRatio = `${img.naturalWidth} / ${img.naturalHeight}`;
    const ctx = imageCanvas.getContext('2d');
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(img, 0, 0, w, h);
    clearMask();
    state.editor = { b64, width: img.naturalWidth, height: img.naturalHeight, scale };
    $('editor-empty').hidden = true;
    busy(Boolean(state.job));
  };
  img.onerror = () => setStatus('That file is not an image the browser can read.', true);
  img.src = `data:image/png;base64,${b64}`;
}

$('upload').addEventListener('change', () => {
  const file = $('upload').files[0];
  if (!file) return;
  const reader = new FileReader();
  reader.onload = () => loadIntoEditor(String(reader.result).split(',')[1]);
  reader.readAsDataURL(file);
});

function brushRadius() {
  return (Number($('brush-size').value) * (state.editor?.scale ?? 16)) / 2;
}

function setTool(tool) {
  state.tool = tool;
  $('tool-brush').setAttribute('aria-pressed', String(tool === 'brush'));
  $('tool-eraser').setAttribute('aria-pressed', String(tool === 'eraser'));
}
$('tool-brush').addEventListener('click', () => setTool('brush'));
$('tool-eraser').addEventListener('click', () => setTool('eraser'));
$('brush-size').addEventListener('input', () => {
  $('brush-size-value').textContent = $('brush-size').value;
  showCursor();
});

function clearMask() {
  maskCtx.clearRect(0, 0, maskCanvas.width, maskCanvas.height);
}
$('clear-mask').addEventListener('click', clearMask);

function paint(x0, y0, x1, y1) {
  if (!state.editor) return;
  maskCtx.globalCompositeOperation = state.tool === 'eraser' ? 'destination-out' : 'source-over';
  maskCtx.strokeStyle = maskCtx.fillStyle = '#ff1744';
  maskCtx.lineCap = 'round';
  maskCtx.lineWidth = brushRadius() * 2;
  maskCtx.beginPath();
  maskCtx.moveTo(x0, y0);
  maskCtx.lineTo(x1, y1);
  maskCtx.stroke();
  maskCtx.beginPath();
  maskCtx.arc(x1, y1, brushRadius(), 0, Math.PI * 2);
  maskCtx.fill();
}

function canvasPoint(e) {
  const r = maskCanvas.getBoundingClientRect();
  return [((e.clientX - r.left) / r.width) * maskCanvas.width, ((e.clientY - r.top) / r.height) * maskCanvas.height];
}

let last = null;
maskCanvas.addEventListener('pointerdown', (e) => {
  maskCanvas.setPointerCapture(e.pointerId);
  last = canvasPoint(e);
  paint(...last, ...last);
});
maskCanvas.addEventListener('pointermove', (e) => {
  if (!last) return;
  const p = canvasPoint(e);
  paint(...last, ...p);
  last = p;
});
for (const type of ['pointerup', 'pointercancel']) maskCanvas.addEventListener(type, () => (last = null));

// Keyboard painting: arrows move a brush cursor, Space paints there.
function showCursor() {
  const c = $('cursor');
  if (!state.editor || document.activeElement !== maskCanvas) {
    c.hidden = true;
    return;
  }
  const size = (brushRadius() * 2 * maskCanvas.getBoundingClientRect().width) / maskCanvas.width;
  c.hidden = false;
  c.style.left = `${state.cursor.x * 100}%`;
  c.style.top = `${state.cursor.y * 100}%`;
  c.style.width = c.style.height = `${size}px`;
}
maskCanvas.addEventListener('focus', showCursor);
maskCanvas.addEventListener('blur', showCursor);
maskCanvas.addEventListener('keydown', (e) => {
  const step = (Number($('brush-size').value) / (state.editor?.width ?? 32)) * 0.5;
  const move = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] }[e.key];
  if (move) {
    state.cursor.x = Math.min(1, Math.max(0, state.cursor.x + move[0]));
    state.cursor.y = Math.min(1, Math.max(0, state.cursor.y + move[1]));
    if (e.shiftKey) paintAtCursor();
  } else if (e.key === ' ' || e.key === 'Enter') paintAtCursor();
  else if (e.key === 'b' || e.key === 'B') setTool('brush');
  else if (e.key === 'e' || e.key === 'E') setTool('eraser');
  else if (e.key === '[' || e.key === ']') {
    const s = $('brush-size');
    s.value = String(Number(s.value) + (e.key === ']' ? 1 : -1));
    $('brush-size-value').textContent = s.value;
  } else return;
  e.preventDefault();
  showCursor();
});
function paintAtCursor() {
  const x = state.cursor.x * maskCanvas.width;
  const y = state.cursor.y * maskCanvas.height;
  paint(x, y, x, y);
}

/** The painted mask at the image's own size: white where at least half of a pixel is painted. */
function maskPng() {
  const { width, height, scale } = state.editor;
  const painted = maskCtx.getImageData(0, 0, maskCanvas.width, maskCanvas.height).data;
  const out = document.createElement('canvas');
  out.width = width;
  out.height = height;
  const ctx = out.getContext('2d');
  const data = ctx.createImageData(width, height);
  let any = 0;
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) {
      let on = 0;
      for (let dy = 0; dy < scale; dy++)
        for (let dx = 0; dx < scale; dx++) if (painted[((y * scale + dy) * maskCanvas.width + x * scale + dx) * 4 + 3] > 127) on++;
      const v = on * 2 >= scale * scale ? 255 : 0;
      any += v ? 1 : 0;
      const i = (y * width + x) * 4;
      data.data[i] = data.data[i + 1] = data.data[i + 2] = v;
      data.data[i + 3] = 255;
    }
  ctx.putImageData(data, 0, 0);
  return any ? out.toDataURL('image/png').split(',')[1] : null;
}

$('inpaint').addEventListener('click', () => {
  if (!state.editor) return;
  const mask = maskPng();
  if (!mask) {
    setStatus('Paint the part to regenerate first.', true);
    maskCanvas.focus();
    return;
  }
  const prompt = $('prompt').value.trim();
  if (!prompt) {
    setStatus('Write a prompt for the painted part first.', true);
    $('prompt').focus();
    return;
  }
  const options = requestOptions();
  delete options.size;
  runJob({ verb: 'inpaint', model: $('model').value, prompt, options, image: state.editor.b64, mask });
});

/** Outpaint, mask-free edit and upscale: the editor's image, the prompt, the form's options. */
function runImageVerb(verb) {
  if (!state.editor) return;
  const prompt = $('prompt').value.trim();
  if (!prompt) {
    setStatus(`Write a prompt to ${verb} toward first.`, true);
    $('prompt').focus();
    return;
  }
  const options = requestOptions();
  delete options.size;
  if (verb === 'outpaint') {
    const px = Number($('extend-px').value) || 0;
    let any = false;
    for (const side of ['left', 'right', 'top', 'bottom'])
      if ($(`side-${side}`).checked) {
        options[side] = px;
        any = px > 0;
      }
    if (!any) {
      setStatus('Choose at least one side and a number of pixels to extend.', true);
      return;
    }
    options.n = 1;
  }
  if (verb === 'edit') options.iterations = Number($('edit-iterations').value) || undefined;
  const m = currentModel();
  if (m && !m.verbs?.includes(verb)) {
    setStatus(`The model ${m.name} cannot ${verb}.`, true);
    return;
  }
  runJob({ verb, model: $('model').value, prompt, options, image: state.editor.b64 });
}
for (const verb of ['outpaint', 'edit', 'upscale']) $(verb).addEventListener('click', () => runImageVerb(verb));

window.addEventListener('resize', showCursor);
loadModels();
