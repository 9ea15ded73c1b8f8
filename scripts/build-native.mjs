#!/usr/bin/env node
// Builds the optional native BLAS addon (native/ -> native/build/Release/muse_native.node).
//
// Runs as the package's `install` script. It must never make an install fail:
// on any problem it prints a single line saying the native path was not built
// and exits 0, and muse-ts uses its wasm kernels instead.
//
// Environment:
//   MUSE_NATIVE=0              skip the build
//   MUSE_NATIVE_TIMEOUT_MS     build time limit (default 300000 = 5 min)
//   MUSE_NATIVE_MARCH          -march for the addon's own code (default x86-64-v2; see native/binding.gyp)
//   MUSE_NATIVE_DNNL=0         build without oneDNN even when its headers exist (by default oneDNN, for
//                              bf16 matrix units, is linked when oneapi/dnnl/dnnl.hpp is found; if that
//                              build or its smoke test fails, the addon is rebuilt without it)
//   CXX                        C++ compiler to check for / build with (default g++)
//   npm_config_node_gyp        node-gyp.js to run (npm sets this for install scripts)
//   npm_config_nodedir         Node headers directory (else the running node's own, or node-gyp's cache)

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const nativeDir = path.join(packageRoot, 'native');
const addonPath = path.join(nativeDir, 'build', 'Release', 'muse_native.node');
const logPath = path.join(nativeDir, 'build', 'build-native.log');
const DEFAULT_TIMEOUT_MS = 5 * 60 * 1000;

class Skip extends Error {}

function notBuilt(reason) {
  const oneLine = String(reason).replace(/\s+/g, ' ').trim();
  console.log(`muse-ts: native BLAS path not built (${oneLine}); the wasm kernels will be used`);
  process.exit(0);
}

/** Runs `cmd args` briefly; true if it started and exited 0. */
function runs(cmd, args, env = process.env) {
  try {
    const r = spawnSync(cmd, args, { stdio: 'ignore', timeout: 15_000, env });
    return r.error === undefined && r.status === 0;
  } catch {
    return false;
  }
}

function findOnPath(name) {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, name);
    if (existsSync(candidate)) return candidate;
  }
  return undefined;
}

function checkBlasHeader() {
  const headers = [
    '/usr/include/cblas.h',
    '/usr/include/x86_64-linux-gnu/cblas.h',
    '/usr/include/aarch64-linux-gnu/cblas.h',
    '/usr/include/openblas/cblas.h',
    '/usr/local/include/cblas.h',
  ];
  if (headers.some((h) => existsSync(h))) return;
  if (runs('pkg-config', ['--exists', 'openblas'])) return;
  throw new Skip('no cblas.h found and pkg-config knows no openblas; install libopenblas-dev');
}

/** Whether oneDNN's C++ headers (Debian's libdnnl-dev) are installed. */
function hasDnnl() {
  if (process.env.MUSE_NATIVE_DNNL === '0') return false;
  return ['/usr/include/oneapi/dnnl/dnnl.hpp', '/usr/local/include/oneapi/dnnl/dnnl.hpp'].some((h) => existsSync(h));
}

function checkCompiler() {
  const cxx = process.env.CXX || 'g++';
  if (!runs(cxx, ['--version'])) throw new Skip(`C++ compiler "${cxx}" not found`);
}

/** The node-gyp.js to run, as [executable, ...args]. */
function findNodeGyp() {
  const candidates = [];
  if (process.env.npm_config_node_gyp) candidates.push(process.env.npm_config_node_gyp);
  const fromNpmCli = (npmCli) =>
    path.join(path.dirname(npmCli), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
  if (process.env.npm_execpath) candidates.push(fromNpmCli(process.env.npm_execpath));
  const npmOnPath = findOnPath('npm');
  if (npmOnPath) {
    try {
      candidates.push(fromNpmCli(realpathSync(npmOnPath)));
    } catch {
      // ignore
    }
  }
  // npm installed next to node (official tarballs, Debian, nodesource).
  candidates.push(
    path.join(
      path.dirname(process.execPath),
      '..',
      'lib',
      'node_modules',
      'npm',
      'node_modules',
      'node-gyp',
      'bin',
      'node-gyp.js',
    ),
  );
  for (const c of candidates) {
    if (c.endsWith('.js') && existsSync(c)) return [process.execPath, c];
  }
  const onPath = findOnPath('node-gyp');
  if (onPath) return [onPath];
  throw new Skip('node-gyp not found (looked next to npm and on PATH)');
}

/**
 * Node's headers: prefer the ones installed with the running node (official
 * tarballs and distro packages ship <prefix>/include/node), so no download is
 * needed; otherwise leave it to node-gyp (its cache, or a download).
 */
function nodedirArgs() {
  if (process.env.npm_config_nodedir) return [];
  const prefix = path.resolve(path.dirname(process.execPath), '..');
  const include = path.join(prefix, 'include', 'node');
  try {
    if (!existsSync(path.join(include, 'node_api.h')) || !existsSync(path.join(include, 'common.gypi'))) return [];
    const versionH = readFileSync(path.join(include, 'node_version.h'), 'utf8');
    const part = (name) => versionH.match(new RegExp(`#define NODE_${name}_VERSION (\\d+)`))?.[1];
    const headerVersion = `${part('MAJOR')}.${part('MINOR')}.${part('PATCH')}`;
    return headerVersion === process.versions.node ? [`--nodedir=${prefix}`] : [];
  } catch {
    return [];
  }
}

function lastErrorLine(log) {
  const lines = log
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  const interesting = lines.filter(
    (l) =>
      /error|not found|cannot find|undefined reference/i.test(l) &&
      !/^gyp ERR! (stack|System|command|cwd|node -v|node-gyp -v|not ok)/.test(l),
  );
  const line = interesting[0] ?? lines.at(-1) ?? '';
  return line.length > 200 ? `${line.slice(0, 200)}...` : line;
}

function saveLog(log) {
  try {
    mkdirSync(path.dirname(logPath), { recursive: true });
    writeFileSync(logPath, log);
    return path.relative(packageRoot, logPath);
  } catch {
    return undefined;
  }
}

function buildWithNodeGyp(nodeGyp, timeoutMs, dnnl) {
  return new Promise((resolve) => {
    const [cmd, ...pre] = nodeGyp;
    const args = [...pre, 'rebuild', ...nodedirArgs()];
    let log = `$ ${cmd} ${args.join(' ')}\n`;
    const maxLog = 4 * 1024 * 1024;
    const append = (chunk) => {
      if (log.length < maxLog) log += chunk.toString();
    };
    let child;
    try {
      // detached: own process group, so a timeout kills make and the compilers too.
      child = spawn(cmd, args, {
        cwd: nativeDir,
        env: { ...process.env, MUSE_NATIVE_DNNL: dnnl ? '1' : '0' },
        stdio: ['ignore', 'pipe', 'pipe'],
        detached: process.platform !== 'win32',
      });
    } catch (err) {
      resolve({ ok: false, reason: `could not start node-gyp: ${err.message}`, log });
      return;
    }
    child.stdout.on('data', append);
    child.stderr.on('data', append);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        if (process.platform !== 'win32') process.kill(-child.pid, 'SIGKILL');
        else child.kill('SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
    }, timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      resolve({ ok: false, reason: `could not run node-gyp: ${err.message}`, log });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (timedOut) resolve({ ok: false, reason: `build timed out after ${Math.round(timeoutMs / 1000)} s`, log });
      else if (code !== 0)
        resolve({
          ok: false,
          reason: `node-gyp ${signal ? `killed by ${signal}` : `exited with ${code}`}: ${lastErrorLine(log)}`,
          log,
        });
      else resolve({ ok: true, log });
    });
  });
}

/** Loads the fresh addon in a separate process and checks a tiny product. */
function smokeTest() {
  const script = `
    const m = require(${JSON.stringify(addonPath)});
    const a = new Float32Array([1, 2, 3, 4]), b = new Float32Array([5, 6, 7, 8]), c = new Float32Array(4);
    m.sgemmBatched(false, false, 1, 2, 2, 2, a, 0, b, 0, c, 1, 0);
    if (c.join() !== '19,22,43,50') throw new Error('wrong result ' + c.join());
    if (typeof m.info().blas !== 'string') throw new Error('bad info()');
    if (typeof m.matmulBatched === 'function') {
      for (const mode of [0, 1, 3]) {
        c.fill(0);
        m.matmulBatched(false, false, 1, 2, 2, 2, a, 0, b, 0, c, 1, 0, mode, false);
        if (c.join() !== '19,22,43,50') throw new Error('wrong result of mode ' + mode + ': ' + c.join());
      }
    }
  `;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 60_000 });
  if (r.error) return `smoke test could not run: ${r.error.message}`;
  if (r.status !== 0) {
    const msg = (r.stderr || '').split('\n').find((l) => /Error/.test(l)) ?? `exit ${r.status ?? r.signal}`;
    return `built addon failed to load: ${msg.trim()}`;
  }
  return undefined;
}

async function main() {
  if (process.env.MUSE_NATIVE === '0') throw new Skip('MUSE_NATIVE=0');
  if (!existsSync(path.join(nativeDir, 'binding.gyp'))) throw new Skip('native/binding.gyp missing');
  checkBlasHeader();
  checkCompiler();
  const nodeGyp = findNodeGyp();
  const timeoutMs =
    Number(process.env.MUSE_NATIVE_TIMEOUT_MS) > 0 ? Number(process.env.MUSE_NATIVE_TIMEOUT_MS) : DEFAULT_TIMEOUT_MS;
  let dnnl = hasDnnl();
  for (;;) {
    const result = await buildWithNodeGyp(nodeGyp, timeoutMs, dnnl);
    const logFile = saveLog(result.log);
    let problem;
    if (!result.ok) {
      rmSync(addonPath, { force: true }); // a build killed mid-link may leave a partial file
      problem = `${result.reason}${logFile ? `; log: ${logFile}` : ''}`;
    } else if (!existsSync(addonPath)) {
      problem = `node-gyp succeeded but ${path.relative(packageRoot, addonPath)} is missing`;
    } else {
      problem = smokeTest();
      // Do not leave an addon behind that loads but misbehaves.
      if (problem) rmSync(addonPath, { force: true });
    }
    if (!problem) break;
    if (!dnnl) throw new Skip(problem);
    console.log(`muse-ts: native build with oneDNN failed (${problem}); building without it`);
    dnnl = false;
  }
  console.log(
    `muse-ts: native BLAS path built${dnnl ? ' (with oneDNN: bf16 matrix units where the CPU has them)' : ''}`,
  );
}

try {
  await main();
} catch (err) {
  notBuilt(err instanceof Skip ? err.message : `unexpected error: ${err?.message ?? err}`);
}
process.exit(0);
