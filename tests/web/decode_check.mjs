// Decodes what the Rust encoder produced with the browser client's own modules
// (broker/src/web/assets/wire.js and decoder.js), for tests/tests/web_codecs.rs.
//
//   node tests/web/decode_check.mjs DIR
//
// DIR/cases.json lists the streams (length-prefixed FrameMsg messages, as the display
// stream carries them) with their desktop size and capabilities, and server messages
// to decode. The script writes DIR/result.json: per stream the final pixels (a file),
// the tile keys of the final screen, the first pixel that differs from the Rust
// decoder's and timings; then the checks that corrupted input throws; and DIR/client.bin,
// client messages encoded by wire.js for Rust to decode. Exit status 1: a check failed.

import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadAssets } from './assets.mjs';

const dir = process.argv[2];
if (!dir) {
  console.error('usage: node decode_check.mjs DIR');
  process.exit(2);
}

const load = loadAssets(join(dir, 'assets'), [
  'wire.js', 'bincode.js', 'decoder.js', 'vendor/fzstd-0.1.1-oriel.mjs', 'vendor/xxhash3.mjs',
]);
const wire = await load('wire.js');
const { Decoder, DecodeError } = await load('decoder.js');

const spec = JSON.parse(readFileSync(join(dir, 'cases.json'), 'utf8'));
const result = { cases: [], wire: [], checks: [], fuzz: null };
let failed = false;
const fail = (what) => {
  failed = true;
  console.error(`FAIL ${what}`);
};

/** A deterministic generator, so a failure can be replayed. */
function rng(seed) {
  let s = seed >>> 0 || 1;
  return (n) => {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    return s % n;
  };
}

/**
 * A file's bytes as a plain Uint8Array, as a browser has them (a node Buffer's `slice`
 * is a view, not a copy).
 */
const readBytes = (file) => new Uint8Array(readFileSync(join(dir, file)));

/** The length-prefixed messages of a stream, as bodies. */
function bodies(stream) {
  const out = [];
  const view = new DataView(stream.buffer, stream.byteOffset, stream.byteLength);
  for (let pos = 0; pos < stream.length;) {
    const len = view.getUint32(pos, true);
    out.push(stream.subarray(pos + 4, pos + 4 + len));
    pos += 4 + len;
  }
  return out;
}

const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? 0;
const round = (ms) => Math.round(ms * 1000) / 1000;

// ---- Each stream, decoded as a session would: pieces of varying size through a
// MessageReader, every frame applied.
for (const c of spec.cases) {
  const stream = readBytes(c.stream);
  const entry = { name: c.name, ok: false, frames: 0, bytes: stream.length };
  result.cases.push(entry);
  try {
    const decoder = await Decoder.create(c.width, c.height, c.caps);
    const reader = new wire.MessageReader(wire.maxMessageLen(wire.Channel.Display));
    const next = rng(c.name.length * 7919);
    const pieces = [1, 7, 100, 1500, 16384, 65536];
    const frameMs = [];
    let wireMs = 0;
    let applyMs = 0;
    let dirtyOutside = 0;
    for (let pos = 0; pos < stream.length;) {
      const n = Math.min(pieces[next(pieces.length)], stream.length - pos);
      reader.push(stream.subarray(pos, pos + n));
      pos += n;
      for (;;) {
        const t0 = performance.now();
        const frame = reader.next(wire.decodeFrameMsg);
        const t1 = performance.now();
        if (frame === null) break;
        const report = decoder.apply(frame);
        const t2 = performance.now();
        wireMs += t1 - t0;
        applyMs += t2 - t1;
        frameMs.push(t2 - t0);
        entry.frames += 1;
        for (const r of report.dirty) {
          if (r.x + r.width > decoder.width || r.y + r.height > decoder.height) dirtyOutside += 1;
        }
      }
    }
    reader.finish();
    if (dirtyOutside) throw new Error(`${dirtyOutside} dirty rects outside the desktop`);
    const want = readFileSync(join(dir, c.expect));
    const got = Buffer.from(decoder.pixels.buffer, decoder.pixels.byteOffset, decoder.pixels.byteLength);
    writeFileSync(join(dir, `${c.name}.js.pixels`), got);
    entry.pixels = `${c.name}.js.pixels`;
    entry.width = decoder.width;
    entry.height = decoder.height;
    entry.lastFrameId = Number(decoder.lastFrameId);
    entry.sourceSeq = Number(decoder.sourceSeq);
    const held = decoder.heldScreen();
    entry.held = held ? held.tiles.map((k) => k.toString()) : null;
    if (got.length !== want.length) {
      entry.firstMismatch = { reason: `${got.length} bytes of pixels, expected ${want.length}` };
    } else {
      const a = decoder.pixels;
      const b = new Uint32Array(want.buffer.slice(want.byteOffset, want.byteOffset + want.length));
      const i = a.findIndex((p, k) => p !== b[k]);
      if (i >= 0) {
        entry.firstMismatch = { x: i % decoder.width, y: Math.floor(i / decoder.width), got: a[i], want: b[i] };
      }
    }
    // The canvas conversion: RGBA bytes, alpha 255, for a whole image and a rect.
    const image = { width: decoder.width, height: decoder.height, data: new Uint8ClampedArray(decoder.pixels.length * 4) };
    decoder.paintInto(image);
    const rect = { x: 1, y: Math.min(3, decoder.height - 1), width: Math.min(70, decoder.width - 1), height: 1 };
    const rgba = decoder.toRGBA(rect);
    for (let k = 0; k < decoder.pixels.length; k += 97) {
      const p = decoder.pixels[k];
      const px = image.data.subarray(k * 4, k * 4 + 4);
      if (px[0] !== ((p >>> 16) & 255) || px[1] !== ((p >>> 8) & 255) || px[2] !== (p & 255) || px[3] !== 255) {
        throw new Error(`paintInto wrote ${px} for pixel ${k} (${p.toString(16)})`);
      }
    }
    for (let k = 0; k < rect.width; k += 1) {
      if (rgba[k * 4 + 3] !== 255 || rgba[k * 4] !== image.data[((rect.y * decoder.width) + rect.x + k) * 4]) {
        throw new Error('toRGBA differs from paintInto');
      }
    }
    frameMs.sort((x, y) => x - y);
    Object.assign(entry, {
      ok: entry.firstMismatch === undefined,
      wireMs: round(wireMs),
      applyMs: round(applyMs),
      p50FrameMs: round(percentile(frameMs, 0.5)),
      p90FrameMs: round(percentile(frameMs, 0.9)),
      maxFrameMs: round(frameMs[frameMs.length - 1] ?? 0),
    });
    if (!entry.ok) fail(`${c.name}: ${JSON.stringify(entry.firstMismatch)}`);
  } catch (e) {
    entry.error = `${e.name}: ${e.message}`;
    fail(`${c.name}: ${entry.error}\n${e.stack}`);
  }
}

// ---- Server messages: decoded by wire.js, compared with what Rust says they hold.
/** JSON-comparable form: BigInts as decimal strings, typed arrays as arrays, keys sorted. */
function plain(v) {
  if (typeof v === 'bigint') return v.toString();
  if (ArrayBuffer.isView(v)) return Array.from(v);
  if (Array.isArray(v)) return v.map(plain);
  if (v && typeof v === 'object') {
    return Object.fromEntries(Object.keys(v).sort().map((k) => [k, plain(v[k])]));
  }
  return v;
}
for (const m of spec.wire) {
  const body = Buffer.from(m.body, 'hex');
  let got;
  try {
    got = JSON.stringify(plain(wire[m.decode](new Uint8Array(body))));
  } catch (e) {
    got = `${e.name}: ${e.message}`;
  }
  const ok = got === JSON.stringify(plain(m.expect));
  result.wire.push({ decode: m.decode, ok, got });
  if (!ok) fail(`${m.decode}: got ${got}, expected ${JSON.stringify(plain(m.expect))}`);
}

// ---- Client messages, for Rust to decode (tests/tests/web_codecs.rs lists the same).
const client = [
  wire.encodeHello({
    version: wire.PROTOCOL_VERSION,
    capabilities: { flags: 0x1f, tileCacheEntries: 2048 },
    desktop: 'desk-ü',
    ticket: new Uint8Array([1, 2, 250, 251, 252, 253, 254, 255]),
    desiredSize: { width: 1920, height: 1080 },
    clientName: 'oriel-web test',
    held: { size: { width: 65, height: 1 }, tiles: [0n, 0xfedcba9876543210n] },
  }),
  wire.encodeHello({
    version: 4, capabilities: { flags: 0, tileCacheEntries: 0 }, desktop: '', ticket: new Uint8Array(0),
    desiredSize: null, clientName: '', held: null,
  }),
  wire.encodeClientControl({ type: 'Ack', frameId: 2 ** 40, decodeUs: 70000 }),
  wire.encodeClientControl({ type: 'RefreshRequest' }),
  wire.encodeClientControl({ type: 'VideoAck', regionId: 0xffffffffffffffffn, frameNo: 250, decodeUs: 251 }),
  wire.encodeClientControl({ type: 'KeyframeRequest', regionId: 65536 }),
  wire.encodeClientControl({ type: 'ResizeRequest', width: 4294967295, height: 0 }),
  wire.encodeInputEvent({ type: 'Key', code: 30, down: true }),
  wire.encodeInputEvent({ type: 'PointerMove', x: 1919, y: 1079 }),
  wire.encodeInputEvent({ type: 'PointerButton', button: 'Forward', down: false }),
  wire.encodeInputEvent({ type: 'Wheel', dx: -32768, dy: 32767 }),
  wire.encodeClipboardMsg({ type: 'Offer', selection: 'Primary', serial: 7, formats: ['Text', 'Png'] }),
  wire.encodeClipboardMsg({ type: 'Data', serial: 8, format: 'Png', data: new Uint8Array([0, 255]) }),
];
writeFileSync(join(dir, 'client.bin'), Buffer.concat(client));

// ---- Corrupted input must throw our own errors (never a TypeError or RangeError from
// an unchecked read), and never hang.
const ours = (e) => e instanceof wire.WireError || e instanceof DecodeError;
function check(name, run) {
  let ok = false;
  let detail = 'no error';
  try {
    run();
  } catch (e) {
    ok = ours(e);
    detail = `${e.name}: ${e.message}`;
  }
  result.checks.push({ name, ok, detail });
  if (!ok) fail(`${name}: ${detail}`);
}

const corrupt = spec.cases.find((c) => c.name === spec.corrupt);
const frames = bodies(readBytes(corrupt.stream));
const decodeAll = (decoder, list) => list.forEach((b) => decoder.apply(wire.decodeFrameMsg(b)));
const fresh = () => new Decoder(corrupt.width, corrupt.height, corrupt.caps, decoderHasher);
const decoderHasher = (await Decoder.create(1, 1, corrupt.caps)).hasher;
const first = frames[0];
const tweak = (edit) => () => {
  const decoder = fresh();
  const frame = wire.decodeFrameMsg(first);
  edit(frame);
  decoder.apply(frame);
};

check('length prefix over the display limit', () => new wire.MessageReader(wire.maxMessageLen(wire.Channel.Display)).push(new Uint8Array([255, 255, 255, 255])));
check('length prefix over the control limit', () => {
  const reader = new wire.MessageReader(wire.maxMessageLen(wire.Channel.Control));
  reader.push(new Uint8Array([1, 0, 1]));
  reader.push(new Uint8Array([0, 9]));
});
check('stream ending inside a message', () => {
  const reader = new wire.MessageReader(1024);
  reader.push(new Uint8Array([9, 0, 0]));
  if (reader.next(wire.decodeFrameMsg) !== null) throw new Error('a message from 3 bytes');
  reader.finish();
});
check('trailing byte', () => wire.decodeFrameMsg(new Uint8Array([...first, 0])));
const cuts = [0, 1, 2, 3, 10, 20, first.length >> 1, first.length - 2, first.length - 1];
for (const cut of cuts) check(`body truncated to ${cut} bytes`, () => wire.decodeFrameMsg(first.subarray(0, cut)));
check('string that is not UTF-8', () => wire.decodeServerControl(new Uint8Array([0, 2, 0xc3, 0x28])));
check('bool that is 2', () => wire.decodeCursorMsg(new Uint8Array([1, 1, 1, 2])));
check('enum variant out of range', () => wire.decodeHelloReply(new Uint8Array([2])));
check('varint tag too wide', () => wire.decodeCursorMsg(new Uint8Array([1, 253, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])));
check('vector longer than the message', () => wire.decodeServerControl(new Uint8Array([0, 252, 255, 255, 255, 255])));
check('frame replayed', () => {
  const decoder = fresh();
  decoder.apply(wire.decodeFrameMsg(first));
  decoder.apply(wire.decodeFrameMsg(first));
});
check('update outside the desktop', tweak((f) => f.updates.push({ rect: { x: corrupt.width, y: 0, width: 1, height: 1 }, kind: 'Solid', colour: 0 })));
check('cache hit for an unknown tile', tweak((f) => f.updates.push({ rect: { x: 0, y: 0, width: 64, height: 64 }, kind: 'CacheHit', key: 12345n })));
check('resize to nothing', tweak((f) => { f.resize = { width: 0, height: 5 }; }));
check('copy outside the desktop', tweak((f) => f.copies.push({ dst: { x: 0, y: 0, width: 8, height: 8 }, srcX: corrupt.width - 4, srcY: 0 })));
const palette = (delta) => tweak((f) => {
  const u = f.updates.filter((x) => x.kind === 'Palette').pop();
  if (!u) throw new Error('the first frame has no palette update');
  u.len += delta;
});
check('payload shorter than announced', palette(1));
check('payload longer than announced', palette(-1));
check('payload missing', tweak((f) => { f.payload = new Uint8Array(0); }));
check('zstd window over 8 MiB', tweak((f) => { f.payload = new Uint8Array([0x28, 0xb5, 0x2f, 0xfd, 0, 14 << 3, 8, 0, 0, 1]); }));
check('zstd frame that ends', tweak((f) => {
  f.payload = f.payload.slice();
  f.payload[6] |= 1; // last-block bit of the first block (4 magic, 1 FHD, 1 window descriptor)
}));
check('zstd chunk cut inside a block', tweak((f) => { f.payload = f.payload.subarray(0, f.payload.length - 1); }));
check('not zstd at all', tweak((f) => { f.payload = new Uint8Array(20).fill(7); }));

// Random bodies through every server-side decoder: our errors or a message, nothing else.
const gen = rng(12345);
const decoders = ['decodeHelloReply', 'decodeServerControl', 'decodeFrameMsg', 'decodeVideoMsg', 'decodeCursorMsg', 'decodeClipboardMsg'];
let garbage = 0;
for (let i = 0; i < 3000; i += 1) {
  const body = new Uint8Array(gen(64));
  for (let k = 0; k < body.length; k += 1) body[k] = gen(4) === 0 ? 250 + gen(6) : gen(256);
  try {
    wire[decoders[i % decoders.length]](body);
  } catch (e) {
    if (!ours(e)) {
      fail(`random body ${Buffer.from(body).toString('hex')}: ${e.name}: ${e.message}`);
      break;
    }
    garbage += 1;
  }
}

// Flipped bytes in whole frames: decoding either throws our error or completes; it
// must never hang or throw anything else.
const fuzz = {
  runs: 0, threw: 0, completed: 0, maxMs: 0, garbageRefused: garbage, errors: {},
};
for (let i = 0; i < 60; i += 1) {
  const k = gen(Math.min(frames.length, 12));
  const body = Uint8Array.from(frames[k]);
  for (let flips = 1 + gen(3); flips > 0; flips -= 1) body[gen(body.length)] ^= 1 << gen(8);
  const t0 = performance.now();
  try {
    const decoder = fresh();
    decodeAll(decoder, frames.slice(0, k));
    decodeAll(decoder, [body, ...frames.slice(k + 1, k + 3)]);
    fuzz.completed += 1;
  } catch (e) {
    if (!ours(e)) fail(`flipped bytes in frame ${k}: ${e.name}: ${e.message}`);
    fuzz.threw += 1;
    fuzz.errors[e.message.slice(0, 60)] = (fuzz.errors[e.message.slice(0, 60)] || 0) + 1;
  }
  fuzz.runs += 1;
  fuzz.maxMs = Math.max(fuzz.maxMs, round(performance.now() - t0));
}
result.fuzz = fuzz;

writeFileSync(join(dir, 'result.json'), JSON.stringify(result, null, 1));
process.exit(failed ? 1 : 0);
