// Applies display frames to the client's framebuffer exactly as the Rust decoder does
// (protocol/src/codec/decoder.rs and its palette, cache and stream modules): every field
// is checked before it touches memory, and a bad frame throws a DecodeError, after
// which the session must be dropped (the shared zstd stream cannot resynchronise).
//
// The framebuffer is a Uint32Array of 0x00RRGGBB pixels, row-major, as the Rust one.

import { Decompress } from './vendor/fzstd-0.1.1-oriel.mjs';
import './vendor/xxhash3.mjs';
import {
  CAP_COPY_RECT, CAP_PALETTE, CAP_SOLID, CAP_TILE_CACHE, CAP_ZSTD, MAX_DESKTOP_PIXELS, MAX_HELD_TILES,
  MAX_TILE_CACHE_ENTRIES,
} from './wire.js';

/** Edge of the tile grid (protocol/src/tiles.rs). */
export const TILE = 64;
const MAX_VIDEO_REGIONS_ENDED = 256;
/** More dirty rects than this are reported as their bounding box: fewer canvas calls. */
const MAX_DIRTY_RECTS = 32;

// Pixels are hashed and read from the payload as little-endian words, as in Rust.
if (new Uint8Array(new Uint32Array([1]).buffer)[0] !== 1) throw new Error('big-endian hosts are not supported');

/** `kind`: 'Invalid', 'OutOfOrder' or 'Zstd', as the Rust CodecError. */
export class DecodeError extends Error {
  constructor(kind, message) {
    super(message);
    this.name = 'DecodeError';
    this.kind = kind;
  }
}

const invalid = (msg) => new DecodeError('Invalid', `invalid frame: ${msg}`);
const zstdError = (msg) => new DecodeError('Zstd', `zstd: ${msg}`);

const isEmpty = (r) => r.width === 0 || r.height === 0;
const fitsIn = (r, w, h) => r.x + r.width <= w && r.y + r.height <= h;

/** True for rects that are exactly one tile of the grid (codec/cache.rs). */
export function isGridTile(r, width, height) {
  return r.x % TILE === 0 && r.y % TILE === 0
    && r.width === Math.min(TILE, Math.max(0, width - r.x))
    && r.height === Math.min(TILE, Math.max(0, height - r.y))
    && r.width > 0 && r.height > 0;
}

// ---- Tile keys: XXH3-64 of the pixels' bytes, seeded with (width << 32) | height.
//
// hash-wasm binds a hasher's seed when the hasher is created, which is asynchronous,
// but frames are applied synchronously and tile sizes change with the desktop. Its
// save()/load() carry the whole XXH3 state, and a seeded state differs from another
// seed's only in the secret derived from the seed (kSecret + seed and kSecret - seed,
// alternating 64-bit words) and in the seed itself: so one hasher serves every seed
// by loading a state derived from a template. `create` checks the derivation against
// a state hash-wasm made itself, and refuses to run if they differ.
const STATE_PREFIX = 4; // hash-wasm's build id before the state
const SECRET_AT = STATE_PREFIX + 64; // XXH3_state_t.customSecret, after acc[8]
const SECRET_LEN = 192;
const SEED_AT = STATE_PREFIX + 544; // XXH3_state_t.seed on wasm32
const TEMPLATE_SEED = (64n << 32n) | 64n;

const split = (seed) => [Number(seed & 0xffffffffn), Number(seed >> 32n)];

function deriveState(template, seed) {
  const state = template.slice();
  const view = new DataView(state.buffer);
  const delta = seed - TEMPLATE_SEED;
  for (let i = SECRET_AT; i < SECRET_AT + SECRET_LEN; i += 16) {
    view.setBigUint64(i, BigInt.asUintN(64, view.getBigUint64(i, true) + delta), true);
    view.setBigUint64(i + 8, BigInt.asUintN(64, view.getBigUint64(i + 8, true) - delta), true);
  }
  view.setBigUint64(SEED_AT, seed, true);
  return state;
}

class TileHasher {
  static async create() {
    const hashwasm = globalThis.hashwasm;
    if (!hashwasm || typeof hashwasm.createXXHash3 !== 'function') {
      throw new Error('vendor/xxhash3.mjs did not load hash-wasm');
    }
    const hasher = await hashwasm.createXXHash3(...split(TEMPLATE_SEED));
    const template = hasher.save();
    const probe = (3n << 32n) | 61n;
    const expected = (await hashwasm.createXXHash3(...split(probe))).save();
    const derived = deriveState(template, probe);
    if (template.length !== STATE_PREFIX + 576 || !derived.every((b, i) => b === expected[i])) {
      throw new Error('hash-wasm\'s XXH3 state is not laid out as expected: tile keys cannot be computed');
    }
    return new TileHasher(hasher, template);
  }

  constructor(hasher, template) {
    this.hasher = hasher;
    this.template = template;
    this.states = new Map();
  }

  /** The tile key of a `width` x `height` tile (codec/cache.rs tile_key), as a BigInt. */
  key(width, height, pixels) {
    const seed = (BigInt(width) << 32n) | BigInt(height);
    let state = this.states.get(seed);
    if (state === undefined) {
      if (this.states.size >= 64) this.states.clear();
      state = deriveState(this.template, seed);
      this.states.set(seed, state);
    }
    this.hasher.load(state);
    this.hasher.update(new Uint8Array(pixels.buffer, pixels.byteOffset, pixels.length * 4));
    const digest = this.hasher.digest('binary');
    return new DataView(digest.buffer, digest.byteOffset, 8).getBigUint64(0, false);
  }
}

// ---- The tile cache: an LRU with the `lru` crate's semantics (get and put make an
// entry the most recently used; a new entry beyond capacity evicts the least recent).
// A Map iterates in insertion order, so its first key is the least recently used.
class TileCache {
  constructor(capacity) {
    this.capacity = capacity;
    this.map = new Map();
  }

  get(key) {
    const value = this.map.get(key);
    if (value !== undefined) {
      this.map.delete(key);
      this.map.set(key, value);
    }
    return value;
  }

  put(key, value) {
    if (this.capacity === 0) return;
    if (this.map.has(key)) this.map.delete(key);
    else if (this.map.size >= this.capacity) this.map.delete(this.map.keys().next().value);
    this.map.set(key, value);
  }
}

// ---- The connection's persistent zstd stream (codec/stream.rs): each frame's payload
// is one flushed chunk of a single endless zstd frame with an 8 MiB window. One fzstd
// Decompress runs for the whole session. Before a chunk reaches fzstd its block
// headers are walked, so that what fzstd would take on trust is refused here: a window
// over 8 MiB (fzstd would allocate up to 2 GiB), blocks over 128 KiB, a chunk ending
// inside a block, and the end of the frame (the server never ends it; a new frame
// would bring a new window).
const ZSTD_MAGIC = 0xfd2fb528;
const WINDOW_MAX = 1 << 23;
const BLOCK_MAX = 128 * 1024;
/** fzstd keeps a first push shorter than this to itself until more arrives. */
const FZSTD_FIRST_PUSH = 18;

class ZstdStream {
  constructor() {
    this.inner = new Decompress((block) => this.take(block));
    this.blockMax = 0; // 0 until the frame header has been read
    this.out = null;
    this.written = 0;
  }

  take(block) {
    if (this.out === null || block.length > this.out.length - this.written) {
      throw invalid('payload decompresses to more bytes than announced');
    }
    this.out.set(block, this.written);
    this.written += block.length;
  }

  /** Decompresses one chunk into `out`, which must come out exactly full. */
  decompress(chunk, out) {
    if (chunk.length === 0) {
      if (out.length !== 0) throw invalid('payload is empty but updates need pixels');
      return;
    }
    let data = chunk;
    let pos = 0;
    if (this.blockMax === 0) {
      pos = this.frameHeader(chunk);
      // Empty raw blocks after the header lift a tiny first chunk to the length fzstd
      // decodes at once; they add no output.
      if (chunk.length < FZSTD_FIRST_PUSH) {
        const pad = 3 * Math.ceil((FZSTD_FIRST_PUSH - chunk.length) / 3);
        data = new Uint8Array(chunk.length + pad);
        data.set(chunk.subarray(0, pos));
        data.set(chunk.subarray(pos), pos + pad);
      }
    }
    this.checkBlocks(chunk, pos);
    this.out = out;
    this.written = 0;
    try {
      this.inner.push(data);
    } catch (e) {
      if (e instanceof DecodeError) throw e;
      throw zstdError(e && e.message ? e.message : String(e));
    } finally {
      this.out = null;
    }
    if (this.written !== out.length) {
      throw invalid(`payload decompresses to ${this.written} bytes, frame announced ${out.length}`);
    }
  }

  /** Checks the frame header at the start of the first chunk; returns its length. */
  frameHeader(chunk) {
    if (chunk.length < 6) throw zstdError('the first chunk holds no whole frame header');
    const magic = (chunk[0] | (chunk[1] << 8) | (chunk[2] << 16) | (chunk[3] << 24)) >>> 0;
    if (magic !== ZSTD_MAGIC) throw zstdError('the stream does not start a zstd frame');
    const fhd = chunk[4];
    if (fhd & 0x08) throw zstdError('reserved frame header bit set');
    if (fhd & 0x20) throw zstdError('a single-segment frame cannot be an endless stream');
    if (fhd & 0x03) throw zstdError('the frame needs a dictionary');
    const wd = chunk[5];
    const base = 2 ** (10 + (wd >> 3));
    const window = base + (base / 8) * (wd & 7);
    if (window > WINDOW_MAX) throw zstdError(`window of ${window} bytes exceeds ${WINDOW_MAX}`);
    const end = 6 + [0, 2, 4, 8][fhd >> 6];
    if (chunk.length < end) throw zstdError('the first chunk holds no whole frame header');
    this.blockMax = Math.min(window, BLOCK_MAX);
    return end;
  }

  checkBlocks(chunk, pos) {
    while (pos < chunk.length) {
      if (chunk.length - pos < 3) throw zstdError('chunk ends inside a block header');
      const header = chunk[pos] | (chunk[pos + 1] << 8) | (chunk[pos + 2] << 16);
      const type = (header >> 1) & 3;
      const size = header >>> 3;
      if (header & 1) throw zstdError('the stream ends its frame (the display stream never does)');
      if (type === 3) throw zstdError('reserved block type');
      if (size > this.blockMax) throw zstdError(`block of ${size} bytes exceeds ${this.blockMax}`);
      pos += 3 + (type === 1 ? 1 : size);
      if (pos > chunk.length) throw zstdError('chunk ends inside a block');
    }
  }
}

// ---- Palette + RLE (codec/palette.rs decode).

const bitsFor = (n) => (n <= 2 ? 1 : n <= 4 ? 2 : n <= 16 ? 4 : 8);

/** Decodes exactly `out.length` pixels from `data`, which must be consumed entirely. */
export function decodePalette(data, out) {
  if (data.length < 2) throw invalid('palette: header truncated');
  const n = data[0] + 1;
  const mode = data[1];
  if (data.length - 2 < n * 4) throw invalid('palette: colours truncated');
  const colours = new Uint32Array(n);
  for (let i = 0, p = 2; i < n; i += 1, p += 4) {
    colours[i] = (data[p] | (data[p + 1] << 8) | (data[p + 2] << 16) | (data[p + 3] << 24)) >>> 0;
  }
  const body = 2 + n * 4;
  const count = out.length;
  if (mode === 0) {
    const bits = bitsFor(n);
    if (data.length - body !== Math.ceil((count * bits) / 8)) {
      throw invalid('palette: packed indices have the wrong length');
    }
    const mask = 0xff >> (8 - bits);
    for (let i = 0, bit = 0; i < count; i += 1, bit += bits) {
      const idx = (data[body + (bit >> 3)] >> (8 - bits - (bit & 7))) & mask;
      if (idx >= n) throw invalid('palette: index out of range');
      out[i] = colours[idx];
    }
    return;
  }
  if (mode !== 1) throw invalid(`palette: unknown mode ${mode}`);
  let pos = body;
  let written = 0;
  while (pos < data.length) {
    const idx = data[pos];
    pos += 1;
    if (idx >= n) throw invalid('palette: index out of range');
    // run - 1 as LEB128, at most a u32 (read_leb128).
    let run = 0;
    for (let i = 0; ; i += 1) {
      if (i === 5) throw invalid('palette: run length too long');
      if (pos >= data.length) throw invalid('palette: run length truncated');
      const byte = data[pos];
      pos += 1;
      const part = byte & 0x7f;
      if (i === 4 && part > 0x0f) throw invalid('palette: run length overflows');
      run += part * 2 ** (7 * i);
      if ((byte & 0x80) === 0) break;
    }
    const end = written + run + 1;
    if (end > count) throw invalid('palette: runs exceed the rect');
    out.fill(colours[idx], written, end);
    written = end;
  }
  if (written !== count) throw invalid('palette: runs do not cover the rect');
}

/** Largest palette encoding of `pixels` pixels (palette.rs max_encoded_len). */
const maxPaletteLen = (pixels) => 2 + 256 * 4 + 2 * pixels;

const has = (caps, flag) => (caps.flags & flag) !== 0;

/** Writes `pixels` (0x00RRGGBB) of `rect` of `src` into an RGBA Uint32Array view. */
function toCanvas(src, stride, rect, dst, dstStride, dstX, dstY) {
  for (let dy = 0; dy < rect.height; dy += 1) {
    let s = (rect.y + dy) * stride + rect.x;
    let d = (dstY + dy) * dstStride + dstX;
    for (const end = s + rect.width; s < end; s += 1, d += 1) {
      const p = src[s];
      // Little-endian RGBA bytes are the word 0xAABBGGRR.
      dst[d] = 0xff000000 | ((p >>> 16) & 0xff) | (p & 0xff00) | ((p & 0xff) << 16);
    }
  }
}

/**
 * The client's copy of the desktop. `apply(frame)` applies one FrameMsg (as decoded by
 * wire.js) and returns {copies, updates, payloadBytes, dirty: [Rect]}.
 */
export class Decoder {
  /** `caps`: the negotiated {flags, tileCacheEntries} (the Welcome's). */
  static async create(width, height, caps) {
    return new Decoder(width, height, caps, await TileHasher.create());
  }

  constructor(width, height, caps, hasher) {
    if (!Number.isInteger(width) || !Number.isInteger(height) || width < 0 || height < 0
      || width * height > MAX_DESKTOP_PIXELS) {
      throw invalid(`desktop of ${width}x${height} is out of range`);
    }
    this.width = width;
    this.height = height;
    this.pixels = new Uint32Array(width * height);
    this.caps = { flags: caps.flags >>> 0, tileCacheEntries: caps.tileCacheEntries };
    this.cache = new TileCache(has(caps, CAP_TILE_CACHE)
      ? Math.min(caps.tileCacheEntries >>> 0, MAX_TILE_CACHE_ENTRIES) : 0);
    this.hasher = hasher;
    this.stream = new ZstdStream();
    this.lastFrameId = 0;
    this.sourceSeq = 0;
    this.scratch = new Uint32Array(0);
    this.payload = new Uint8Array(0);
    this.tile = new Uint32Array(TILE * TILE);
  }

  /** Applies one frame; throws a DecodeError on anything the Rust decoder refuses. */
  apply(msg) {
    if (!(msg.frameId > this.lastFrameId)) {
      throw new DecodeError('OutOfOrder',
        `frame ${msg.frameId} arrived after frame ${this.lastFrameId}: frames must arrive in order`);
    }
    const resize = msg.resize;
    if (resize) {
      if (resize.width === 0 || resize.height === 0 || resize.width * resize.height > MAX_DESKTOP_PIXELS) {
        throw invalid(`resize to ${resize.width}x${resize.height} is out of range`);
      }
    }
    const width = resize ? resize.width : this.width;
    const height = resize ? resize.height : this.height;
    const payloadLen = this.validate(msg, width, height);
    if (resize) {
      // Cached tiles are kept: they are keyed by content, not position.
      this.width = width;
      this.height = height;
      this.pixels = new Uint32Array(width * height);
    }
    this.applyCopies(msg.copies);

    if (this.payload.length < payloadLen) this.payload = new Uint8Array(Math.max(payloadLen, this.payload.length * 2));
    const payload = this.payload.subarray(0, payloadLen);
    this.stream.decompress(msg.payload, payload);

    let offset = 0;
    for (const update of msg.updates) {
      const { rect } = update;
      switch (update.kind) {
        case 'Solid':
          this.fill(rect, update.colour >>> 0);
          break;
        case 'CacheHit': {
          const pixels = this.cache.get(update.key);
          if (pixels === undefined) throw invalid(`cache miss for tile ${update.key.toString(16).padStart(16, '0')}`);
          if (pixels.length !== rect.width * rect.height) throw invalid('cached tile has another size');
          this.writeRect(rect, pixels);
          break;
        }
        case 'Palette': {
          const tile = this.tileBuffer(rect.width * rect.height);
          decodePalette(payload.subarray(offset, offset + update.len), tile);
          offset += update.len;
          this.storeTile(rect, tile);
          break;
        }
        default: { // Raw, as validate() checked
          const n = rect.width * rect.height;
          const tile = this.tileBuffer(n);
          new Uint8Array(tile.buffer, 0, n * 4).set(payload.subarray(offset, offset + n * 4));
          offset += n * 4;
          this.storeTile(rect, tile);
        }
      }
    }
    this.lastFrameId = msg.frameId;
    this.sourceSeq = msg.sourceSeq;
    return {
      copies: msg.copies.length,
      updates: msg.updates.length,
      payloadBytes: msg.payload.length,
      dirty: this.dirtyRects(msg),
    };
  }

  /** Checks every rect and length (decoder.rs validate); returns the payload's size. */
  validate(msg, width, height) {
    const area = width * height;
    if (msg.copies.length !== 0 && !has(this.caps, CAP_COPY_RECT)) throw invalid('copy-rect was not negotiated');
    let copyArea = 0;
    for (const c of msg.copies) {
      const src = { x: c.srcX, y: c.srcY, width: c.dst.width, height: c.dst.height };
      if (isEmpty(c.dst) || !fitsIn(c.dst, width, height) || !fitsIn(src, width, height)) {
        throw invalid('copy-rect outside the desktop');
      }
      copyArea += c.dst.width * c.dst.height;
    }
    if (copyArea > area * 2) throw invalid('copy-rects cover more than twice the desktop');
    if (msg.videoEnded.length > MAX_VIDEO_REGIONS_ENDED) throw invalid('too many video regions ended in one frame');
    if (msg.updates.length > area) throw invalid('more updates than pixels');
    let payload = 0;
    for (const u of msg.updates) {
      const r = u.rect;
      if (isEmpty(r) || !fitsIn(r, width, height)) {
        throw invalid(`update ${JSON.stringify(r)} outside the desktop`);
      }
      const needs = (flag) => {
        if (!has(this.caps, flag)) throw invalid('update uses a codec that was not negotiated');
      };
      switch (u.kind) {
        case 'Solid': needs(CAP_SOLID); break;
        case 'CacheHit':
          needs(CAP_TILE_CACHE);
          if (!isGridTile(r, width, height)) throw invalid('cache hit for a rect that is not a tile');
          break;
        case 'Palette':
          needs(CAP_PALETTE);
          if (u.len > maxPaletteLen(r.width * r.height)) throw invalid('palette data longer than possible');
          payload += u.len;
          break;
        case 'Raw':
          needs(CAP_ZSTD);
          payload += r.width * r.height * 4;
          break;
        default: throw invalid(`unknown update kind ${u.kind}`);
      }
      if (payload > area * 4 + 1024 * 1024) throw invalid('updates need more payload than the desktop holds');
    }
    return payload;
  }

  /** Moves: every source is read as the framebuffer was before the frame (codec/mod.rs). */
  applyCopies(copies) {
    if (copies.length === 0) return;
    let total = 0;
    for (const c of copies) total += c.dst.width * c.dst.height;
    if (this.scratch.length < total) this.scratch = new Uint32Array(total);
    const scratch = this.scratch;
    const stride = this.width;
    let offset = 0;
    for (const c of copies) {
      const w = c.dst.width;
      for (let dy = 0; dy < c.dst.height; dy += 1) {
        const start = (c.srcY + dy) * stride + c.srcX;
        scratch.set(this.pixels.subarray(start, start + w), offset);
        offset += w;
      }
    }
    offset = 0;
    for (const c of copies) {
      const n = c.dst.width * c.dst.height;
      this.writeRect(c.dst, scratch.subarray(offset, offset + n));
      offset += n;
    }
  }

  tileBuffer(n) {
    if (this.tile.length < n) this.tile = new Uint32Array(n);
    return this.tile.subarray(0, n);
  }

  /** Writes a decoded tile and caches it when it is a grid tile. */
  storeTile(rect, tile) {
    this.writeRect(rect, tile);
    if (this.cache.capacity > 0 && isGridTile(rect, this.width, this.height)) {
      this.cache.put(this.hasher.key(rect.width, rect.height, tile), tile.slice());
    }
  }

  writeRect(rect, src) {
    const { width: w, height: h } = rect;
    if (rect.x === 0 && w === this.width) {
      this.pixels.set(src.subarray(0, w * h), rect.y * w);
      return;
    }
    for (let dy = 0, s = 0, d = rect.y * this.width + rect.x; dy < h; dy += 1, s += w, d += this.width) {
      this.pixels.set(src.subarray(s, s + w), d);
    }
  }

  fill(rect, colour) {
    for (let dy = 0, d = rect.y * this.width + rect.x; dy < rect.height; dy += 1, d += this.width) {
      this.pixels.fill(colour, d, d + rect.width);
    }
  }

  dirtyRects(msg) {
    if (msg.resize) return [{ x: 0, y: 0, width: this.width, height: this.height }];
    const rects = msg.copies.map((c) => c.dst).concat(msg.updates.map((u) => u.rect));
    if (rects.length <= MAX_DIRTY_RECTS) return rects;
    let x0 = Infinity; let y0 = Infinity; let x1 = 0; let y1 = 0;
    for (const r of rects) {
      x0 = Math.min(x0, r.x);
      y0 = Math.min(y0, r.y);
      x1 = Math.max(x1, r.x + r.width);
      y1 = Math.max(y1, r.y + r.height);
    }
    return [{ x: x0, y: y0, width: x1 - x0, height: y1 - y0 }];
  }

  /**
   * Writes a video picture into `rect` (checked against the desktop): `pixels` is a
   * Uint32Array of 0x00RRGGBB words, or RGBA bytes (Uint8Array/Uint8ClampedArray).
   */
  blit(rect, pixels) {
    const n = rect.width * rect.height;
    if (isEmpty(rect) || !fitsIn(rect, this.width, this.height)) throw invalid('video picture outside the desktop');
    let words = pixels;
    if (!(pixels instanceof Uint32Array)) {
      if (pixels.length !== n * 4) throw invalid('video picture outside the desktop');
      words = this.tileBuffer(n);
      for (let i = 0, b = 0; i < n; i += 1, b += 4) {
        words[i] = (pixels[b] << 16) | (pixels[b + 1] << 8) | pixels[b + 2];
      }
    } else if (pixels.length !== n) {
      throw invalid('video picture outside the desktop');
    }
    this.writeRect(rect, words);
  }

  /** The RGBA bytes (alpha 255) of `rect` (default: the whole desktop), for a canvas. */
  toRGBA(rect = { x: 0, y: 0, width: this.width, height: this.height }) {
    if (!fitsIn(rect, this.width, this.height)) throw new RangeError('rect outside the desktop');
    const out = new Uint8ClampedArray(rect.width * rect.height * 4);
    toCanvas(this.pixels, this.width, rect, new Uint32Array(out.buffer), rect.width, 0, 0);
    return out;
  }

  /** Paints `rect` of the desktop into `image`, an ImageData of the desktop's size. */
  paintInto(image, rect = { x: 0, y: 0, width: this.width, height: this.height }) {
    if (image.width !== this.width || image.height !== this.height) {
      throw new RangeError(`image is ${image.width}x${image.height}, the desktop ${this.width}x${this.height}`);
    }
    if (!fitsIn(rect, this.width, this.height)) throw new RangeError('rect outside the desktop');
    const { data } = image;
    const words = new Uint32Array(data.buffer, data.byteOffset, data.byteLength >> 2);
    toCanvas(this.pixels, this.width, rect, words, this.width, rect.x, rect.y);
  }

  /**
   * Starts from `pixels` (0x00RRGGBB, `width` x `height`), the screen shown before,
   * whose keys went out in the hello's `held`; false, and nothing changes, when its
   * size is not the session's or a frame was applied already (Decoder::hold).
   */
  hold(width, height, pixels) {
    if (width !== this.width || height !== this.height || pixels.length !== this.pixels.length
      || this.lastFrameId !== 0) {
      return false;
    }
    this.pixels.set(pixels);
    return true;
  }

  /** The tile key of `rect`'s pixels (codec/cache.rs tile_key), a BigInt. */
  tileKey(rect) {
    const tile = this.tileBuffer(rect.width * rect.height);
    for (let dy = 0; dy < rect.height; dy += 1) {
      const start = (rect.y + dy) * this.width + rect.x;
      tile.set(this.pixels.subarray(start, start + rect.width), dy * rect.width);
    }
    return this.hasher.key(rect.width, rect.height, tile);
  }

  /**
   * The screen this client shows, by tile keys, for a Hello's `held` (HeldScreen::of);
   * null when it has more tiles than a hello may list.
   */
  heldScreen() {
    if (Math.ceil(this.width / TILE) * Math.ceil(this.height / TILE) > MAX_HELD_TILES) return null;
    const tiles = [];
    for (let y = 0; y < this.height; y += TILE) {
      for (let x = 0; x < this.width; x += TILE) {
        const width = Math.min(TILE, this.width - x);
        const height = Math.min(TILE, this.height - y);
        tiles.push(this.tileKey({ x, y, width, height }));
      }
    }
    return { size: { width: this.width, height: this.height }, tiles };
  }
}
