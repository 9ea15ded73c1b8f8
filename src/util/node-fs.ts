// The file-system entry points of modules that also run in browsers (safetensors): Node's here,
// a browser build gets node-fs.browser.ts instead (the bundler swaps it; package.json "browser").
export { writeFileDurably } from './files.js';
export { readRegularFile } from './untrusted.js';
