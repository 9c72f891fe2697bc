// The display protocol's wire format (protocol/src/wire.rs, messages.rs, clipboard.rs,
// audio.rs): each message is a little-endian u32 length, then a bincode 2 body in its
// `standard()` configuration. Integers wider than a byte are varints (below 251: one
// byte; 251 + u16, 252 + u32, 253 + u64, all little-endian), signed ones zigzagged
// first; an enum is its variant index (a varint) then its fields; an Option is a 0/1
// byte then the value; a Vec or String is a varint length then its items; structs are
// their fields in order. Every read is checked: bad input throws a WireError, and no
// length is believed beyond the bytes that are there.
//
// Messages are plain objects. u64 values are Numbers up to Number.MAX_SAFE_INTEGER and
// BigInts above (encoders take either), except tile cache keys and held tiles, which are
// always BigInts. Byte vectors are Uint8Arrays (views into the received bytes: do not
// modify what you push into a MessageReader).
//
//   Size            {width, height}
//   Rect            {x, y, width, height}
//   Capabilities    {flags, tileCacheEntries}
//   Hello           {version, capabilities, desktop, ticket: Uint8Array,
//                    desiredSize: Size|null, clientName,
//                    held: {size: Size, tiles: BigInt[]}|null}
//   HelloReply      {type: 'Welcome', version, sessionId, desktopSize: Size, capabilities}
//                 | {type: 'Reject', code: RejectCode name, message}
//   ClientControl   {type: 'Ack', frameId, decodeUs} | {type: 'RefreshRequest'}
//                 | {type: 'VideoAck', regionId, frameNo, decodeUs}
//                 | {type: 'KeyframeRequest', regionId} | {type: 'ResizeRequest', width, height}
//   ServerControl   {type: 'Closing', message}
//                 | {type: 'Flow', framesInFlight, frameWindow, videoBitrate}
//                 | {type: 'Moved', address, fingerprint: Uint8Array(32), ticket: Uint8Array, inputTaken}
//   FrameMsg        {frameId, sourceSeq, captureUnixUs, resize: Size|null,
//                    copies: [{dst: Rect, srcX, srcY}], videoEnded: [id],
//                    updates: [RectUpdate], payload: Uint8Array}
//   RectUpdate      {rect, kind: 'Solid', colour} | {rect, kind: 'Palette', len}
//                 | {rect, kind: 'Raw'} | {rect, kind: 'CacheHit', key: BigInt}
//   VideoMsg        {type: 'Start', regionId, rect, afterFrame}
//                 | {type: 'Frame', frameNo, sourceSeq, captureUnixUs, keyframe, data: Uint8Array}
//   CursorMsg       {type: 'Shape', width, height, hotX, hotY, pixels: Uint32Array (0xAARRGGBB)}
//                 | {type: 'Position', x, y, visible}
//   InputEvent      {type: 'Key', code, down} | {type: 'PointerMove', x, y}
//                 | {type: 'PointerButton', button: 'Left'|'Middle'|'Right'|'Back'|'Forward', down}
//                 | {type: 'Wheel', dx, dy}
//   ClipboardMsg    {type: 'Policy', toDesktop, toClient, maxBytes}
//                 | {type: 'Offer', selection: 'Clipboard'|'Primary', serial, formats: ('Text'|'Png')[]}
//                 | {type: 'Request', serial, format} | {type: 'Data', serial, format, data: Uint8Array}
//                 | {type: 'Refused', serial, format, reason}
//   AudioPacket     {seq, captureUnixUs, afterSilence, opus: Uint8Array}  (a datagram, no prefix)

export const PROTOCOL_VERSION = 4;

/** Tag byte of each stream's channel. */
export const Channel = Object.freeze({ Control: 0, Display: 1, Input: 2, Cursor: 3, Video: 4, Clipboard: 5 });

export const CAP_SOLID = 1 << 0;
export const CAP_PALETTE = 1 << 1;
export const CAP_ZSTD = 1 << 2;
export const CAP_COPY_RECT = 1 << 3;
export const CAP_TILE_CACHE = 1 << 4;
export const CAP_H264 = 1 << 5;
export const CAP_CLIPBOARD = 1 << 6;
export const CAP_AUDIO = 1 << 7;
export const CAP_MICROPHONE = 1 << 8;

export const MAX_TILE_CACHE_ENTRIES = 4096;
export const MAX_DESKTOP_EDGE = 8192;
export const MAX_DESKTOP_PIXELS = 16 * 1024 * 1024;
export const MAX_HELD_TILES = 6144;
export const MAX_CLIPBOARD_BYTES = 64 * 1024 * 1024;
export const MAX_AUDIO_DATAGRAM = 1400;

export const REJECT_CODES = ['UnsupportedVersion', 'UnknownDesktop', 'BadTicket', 'ServerFull', 'Malformed'];
export const POINTER_BUTTONS = ['Left', 'Middle', 'Right', 'Back', 'Forward'];
export const CLIP_FORMATS = ['Text', 'Png'];
export const SELECTIONS = ['Clipboard', 'Primary'];

/** Largest message a channel accepts (Channel::max_message_len). */
export function maxMessageLen(channel) {
  switch (channel) {
    case Channel.Control: return 64 * 1024;
    case Channel.Input: return 4 * 1024;
    case Channel.Cursor: return 1024 * 1024;
    case Channel.Display: return 96 * 1024 * 1024;
    case Channel.Video: return 16 * 1024 * 1024;
    case Channel.Clipboard: return MAX_CLIPBOARD_BYTES + 4096;
    default: throw new WireError('Malformed', `unknown channel ${channel}`);
  }
}

/** `kind`: 'TooLarge', 'Malformed', 'Truncated' or 'Encode', as the Rust WireError. */
export class WireError extends Error {
  constructor(kind, message) {
    super(message);
    this.name = 'WireError';
    this.kind = kind;
  }
}

const malformed = (msg) => new WireError('Malformed', msg);
const SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const utf8Out = new TextEncoder();

/** Reads one bincode body; every read checks that its bytes are there. */
export class Reader {
  constructor(bytes) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.pos = 0;
  }

  need(n) {
    if (n > this.bytes.length - this.pos) {
      throw malformed(`message ends early: ${n} more bytes needed at byte ${this.pos}`);
    }
  }

  u8() {
    this.need(1);
    return this.bytes[this.pos++];
  }

  bool() {
    const b = this.u8();
    if (b > 1) throw malformed(`invalid bool ${b}`);
    return b === 1;
  }

  /** A varint of at most `max` bits, as a BigInt only when it needs more than 53. */
  varint(bits) {
    const b = this.u8();
    if (b < 251) return b;
    let v;
    if (b === 251) {
      this.need(2);
      v = this.view.getUint16(this.pos, true);
      this.pos += 2;
    } else if (b === 252 && bits >= 32) {
      this.need(4);
      v = this.view.getUint32(this.pos, true);
      this.pos += 4;
    } else if (b === 253 && bits >= 64) {
      this.need(8);
      const big = this.view.getBigUint64(this.pos, true);
      this.pos += 8;
      v = big <= SAFE ? Number(big) : big;
    } else {
      throw malformed(`invalid varint tag ${b} for a ${bits}-bit integer`);
    }
    return v;
  }

  u16() { return this.varint(16); }

  u32() { return this.varint(32); }

  /** A u64: a Number when it is safe, a BigInt above 2^53 - 1. */
  u64() { return this.varint(64); }

  /** A u64 always as a BigInt (hashes, whose every bit matters). */
  u64Big() { return BigInt(this.varint(64)); }

  i16() {
    const z = this.u16();
    return (z >>> 1) ^ -(z & 1);
  }

  /** A Vec/String length, checked against the bytes left (each item takes at least one). */
  len() {
    const n = this.u64();
    if (typeof n !== 'number' || n > this.bytes.length - this.pos) {
      throw malformed(`length ${n} exceeds the ${this.bytes.length - this.pos} bytes left`);
    }
    return n;
  }

  fixed(n) {
    this.need(n);
    const out = this.bytes.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  bytesVec() { return this.fixed(this.len()); }

  string() {
    try {
      return utf8.decode(this.bytesVec());
    } catch (e) {
      if (e instanceof WireError) throw e;
      throw malformed('string is not UTF-8');
    }
  }

  option(read) {
    const tag = this.u8();
    if (tag === 0) return null;
    if (tag === 1) return read(this);
    throw malformed(`invalid Option tag ${tag}`);
  }

  vec(read) {
    const n = this.len();
    const out = new Array(n);
    for (let i = 0; i < n; i += 1) out[i] = read(this);
    return out;
  }

  /** An enum's variant index, checked against `names`; returns the name. */
  variant(names, what) {
    const i = this.u32();
    if (i >= names.length) throw malformed(`${what}: no variant ${i}`);
    return names[i];
  }

  /** The whole body must be used. */
  finish() {
    if (this.pos !== this.bytes.length) {
      throw malformed(`${this.bytes.length - this.pos} trailing bytes after message`);
    }
  }
}

function checkInt(v, max, what) {
  if (!Number.isInteger(v) || v < 0 || v > max) throw new WireError('Encode', `${what} ${v} is out of range`);
  return v;
}

/** Builds one bincode body after a 4-byte length prefix. */
export class Writer {
  constructor() {
    this.buf = new Uint8Array(64);
    this.view = new DataView(this.buf.buffer);
    this.pos = 4;
  }

  room(n) {
    if (this.pos + n <= this.buf.length) return;
    const bigger = new Uint8Array(Math.max(this.buf.length * 2, this.pos + n));
    bigger.set(this.buf.subarray(0, this.pos));
    this.buf = bigger;
    this.view = new DataView(bigger.buffer);
  }

  u8(v) {
    checkInt(v, 0xff, 'u8');
    this.room(1);
    this.buf[this.pos++] = v;
  }

  bool(v) {
    if (typeof v !== 'boolean') throw new WireError('Encode', `${v} is not a boolean`);
    this.u8(v ? 1 : 0);
  }

  varint(v, bits) {
    let big;
    if (typeof v === 'bigint') big = v;
    else if (Number.isSafeInteger(v)) big = BigInt(v);
    else throw new WireError('Encode', `${v} is not an integer`);
    if (big < 0n || big > (1n << BigInt(bits)) - 1n) throw new WireError('Encode', `${v} does not fit u${bits}`);
    const n = Number(big);
    this.room(9);
    if (n < 251) {
      this.buf[this.pos++] = n;
    } else if (n <= 0xffff) {
      this.buf[this.pos++] = 251;
      this.view.setUint16(this.pos, n, true);
      this.pos += 2;
    } else if (n <= 0xffffffff) {
      this.buf[this.pos++] = 252;
      this.view.setUint32(this.pos, n, true);
      this.pos += 4;
    } else {
      this.buf[this.pos++] = 253;
      this.view.setBigUint64(this.pos, big, true);
      this.pos += 8;
    }
  }

  u16(v) { this.varint(v, 16); }

  u32(v) { this.varint(v, 32); }

  u64(v) { this.varint(v, 64); }

  i16(v) {
    if (!Number.isInteger(v) || v < -32768 || v > 32767) throw new WireError('Encode', `i16 ${v} is out of range`);
    this.u16(v < 0 ? -2 * v - 1 : 2 * v);
  }

  bytesVec(bytes) {
    if (!(bytes instanceof Uint8Array)) throw new WireError('Encode', 'bytes must be a Uint8Array');
    this.u64(bytes.length);
    this.room(bytes.length);
    this.buf.set(bytes, this.pos);
    this.pos += bytes.length;
  }

  string(s) {
    if (typeof s !== 'string') throw new WireError('Encode', `${s} is not a string`);
    this.bytesVec(utf8Out.encode(s));
  }

  option(v, write) {
    if (v === null || v === undefined) {
      this.u8(0);
    } else {
      this.u8(1);
      write(this, v);
    }
  }

  vec(items, write) {
    this.u64(items.length);
    for (const item of items) write(this, item);
  }

  variant(names, name, what) {
    const i = names.indexOf(name);
    if (i < 0) throw new WireError('Encode', `${what}: unknown variant ${name}`);
    this.u32(i);
  }

  /** The message with its length prefix; refuses one over `limit` bytes. */
  message(limit) {
    const len = this.pos - 4;
    if (len > limit) throw new WireError('TooLarge', `message of ${len} bytes exceeds the limit of ${limit} bytes`);
    this.view.setUint32(0, len, true);
    return this.buf.slice(0, this.pos);
  }
}

/** Decodes a whole body (without its prefix) with `read(reader)`. */
export function decodeBody(body, read) {
  const r = new Reader(body);
  const msg = read(r);
  r.finish();
  return msg;
}

// Pieces shared by several messages.
const readSize = (r) => ({ width: r.u32(), height: r.u32() });
const readRect = (r) => ({ x: r.u32(), y: r.u32(), width: r.u32(), height: r.u32() });
const readCaps = (r) => ({ flags: r.u32(), tileCacheEntries: r.u32() });
const writeSize = (w, s) => { w.u32(s.width); w.u32(s.height); };
const writeCaps = (w, c) => { w.u32(c.flags); w.u32(c.tileCacheEntries); };

// Control channel.

export function encodeHello(h) {
  const w = new Writer();
  w.u16(h.version);
  writeCaps(w, h.capabilities);
  w.string(h.desktop);
  w.bytesVec(h.ticket);
  w.option(h.desiredSize, writeSize);
  w.string(h.clientName);
  w.option(h.held, (ww, held) => {
    writeSize(ww, held.size);
    ww.vec(held.tiles, (www, t) => www.u64(t));
  });
  return w.message(maxMessageLen(Channel.Control));
}

export const readHelloReply = (r) => {
  const type = r.variant(['Welcome', 'Reject'], 'HelloReply');
  if (type === 'Welcome') {
    return { type, version: r.u16(), sessionId: r.u64(), desktopSize: readSize(r), capabilities: readCaps(r) };
  }
  return { type, code: r.variant(REJECT_CODES, 'RejectCode'), message: r.string() };
};
export const decodeHelloReply = (body) => decodeBody(body, readHelloReply);

const CLIENT_CONTROL = ['Ack', 'RefreshRequest', 'VideoAck', 'KeyframeRequest', 'ResizeRequest'];

export function encodeClientControl(c) {
  const w = new Writer();
  w.variant(CLIENT_CONTROL, c.type, 'ClientControl');
  switch (c.type) {
    case 'Ack': w.u64(c.frameId); w.u32(c.decodeUs); break;
    case 'VideoAck': w.u64(c.regionId); w.u64(c.frameNo); w.u32(c.decodeUs); break;
    case 'KeyframeRequest': w.u64(c.regionId); break;
    case 'ResizeRequest': w.u32(c.width); w.u32(c.height); break;
    default: break;
  }
  return w.message(maxMessageLen(Channel.Control));
}

export const readServerControl = (r) => {
  const type = r.variant(['Closing', 'Flow', 'Moved'], 'ServerControl');
  switch (type) {
    case 'Closing': return { type, message: r.string() };
    case 'Flow': return { type, framesInFlight: r.u32(), frameWindow: r.u32(), videoBitrate: r.u32() };
    default: return { type, address: r.string(), fingerprint: r.fixed(32), ticket: r.bytesVec(), inputTaken: r.u64() };
  }
};
export const decodeServerControl = (body) => decodeBody(body, readServerControl);

// Display channel.

const UPDATE_KINDS = ['Solid', 'Palette', 'Raw', 'CacheHit'];

const readUpdate = (r) => {
  const rect = readRect(r);
  const kind = r.variant(UPDATE_KINDS, 'UpdateKind');
  switch (kind) {
    case 'Solid': return { rect, kind, colour: r.u32() };
    case 'Palette': return { rect, kind, len: r.u32() };
    case 'Raw': return { rect, kind };
    default: return { rect, kind, key: r.u64Big() };
  }
};

export const readFrameMsg = (r) => ({
  frameId: r.u64(),
  sourceSeq: r.u64(),
  captureUnixUs: r.u64(),
  resize: r.option(readSize),
  copies: r.vec((rr) => ({ dst: readRect(rr), srcX: rr.u32(), srcY: rr.u32() })),
  videoEnded: r.vec((rr) => rr.u64()),
  updates: r.vec(readUpdate),
  payload: r.bytesVec(),
});
export const decodeFrameMsg = (body) => decodeBody(body, readFrameMsg);

// Video channel.

export const readVideoMsg = (r) => {
  const type = r.variant(['Start', 'Frame'], 'VideoMsg');
  if (type === 'Start') return { type, regionId: r.u64(), rect: readRect(r), afterFrame: r.u64() };
  return {
    type, frameNo: r.u64(), sourceSeq: r.u64(), captureUnixUs: r.u64(), keyframe: r.bool(), data: r.bytesVec(),
  };
};
export const decodeVideoMsg = (body) => decodeBody(body, readVideoMsg);

// Cursor channel.

export const readCursorMsg = (r) => {
  const type = r.variant(['Shape', 'Position'], 'CursorMsg');
  if (type === 'Position') return { type, x: r.u32(), y: r.u32(), visible: r.bool() };
  const shape = { type, width: r.u16(), height: r.u16(), hotX: r.u16(), hotY: r.u16() };
  const n = r.len();
  const pixels = new Uint32Array(n);
  for (let i = 0; i < n; i += 1) pixels[i] = r.u32();
  shape.pixels = pixels;
  return shape;
};
export const decodeCursorMsg = (body) => decodeBody(body, readCursorMsg);

// Input channel.

const INPUT_EVENTS = ['Key', 'PointerMove', 'PointerButton', 'Wheel'];

export function encodeInputEvent(e) {
  const w = new Writer();
  w.variant(INPUT_EVENTS, e.type, 'InputEvent');
  switch (e.type) {
    case 'Key': w.u16(e.code); w.bool(e.down); break;
    case 'PointerMove': w.u32(e.x); w.u32(e.y); break;
    case 'PointerButton': w.variant(POINTER_BUTTONS, e.button, 'PointerButton'); w.bool(e.down); break;
    default: w.i16(e.dx); w.i16(e.dy); break;
  }
  return w.message(maxMessageLen(Channel.Input));
}

export const readInputEvent = (r) => {
  const type = r.variant(INPUT_EVENTS, 'InputEvent');
  switch (type) {
    case 'Key': return { type, code: r.u16(), down: r.bool() };
    case 'PointerMove': return { type, x: r.u32(), y: r.u32() };
    case 'PointerButton': return { type, button: r.variant(POINTER_BUTTONS, 'PointerButton'), down: r.bool() };
    default: return { type, dx: r.i16(), dy: r.i16() };
  }
};
export const decodeInputEvent = (body) => decodeBody(body, readInputEvent);

// Clipboard channel (both directions).

const CLIPBOARD = ['Policy', 'Offer', 'Request', 'Data', 'Refused'];

export function encodeClipboardMsg(m) {
  const w = new Writer();
  w.variant(CLIPBOARD, m.type, 'ClipboardMsg');
  const format = () => w.variant(CLIP_FORMATS, m.format, 'ClipFormat');
  switch (m.type) {
    case 'Policy': w.bool(m.toDesktop); w.bool(m.toClient); w.u32(m.maxBytes); break;
    case 'Offer':
      w.variant(SELECTIONS, m.selection, 'Selection');
      w.u64(m.serial);
      w.vec(m.formats, (ww, f) => ww.variant(CLIP_FORMATS, f, 'ClipFormat'));
      break;
    case 'Request': w.u64(m.serial); format(); break;
    case 'Data': w.u64(m.serial); format(); w.bytesVec(m.data); break;
    default: w.u64(m.serial); format(); w.string(m.reason); break;
  }
  return w.message(maxMessageLen(Channel.Clipboard));
}

export const readClipboardMsg = (r) => {
  const type = r.variant(CLIPBOARD, 'ClipboardMsg');
  const format = () => r.variant(CLIP_FORMATS, 'ClipFormat');
  switch (type) {
    case 'Policy': return { type, toDesktop: r.bool(), toClient: r.bool(), maxBytes: r.u32() };
    case 'Offer':
      return {
        type, selection: r.variant(SELECTIONS, 'Selection'), serial: r.u64(), formats: r.vec(format),
      };
    case 'Request': return { type, serial: r.u64(), format: format() };
    case 'Data': return { type, serial: r.u64(), format: format(), data: r.bytesVec() };
    default: return { type, serial: r.u64(), format: format(), reason: r.string() };
  }
};
export const decodeClipboardMsg = (body) => decodeBody(body, readClipboardMsg);

// Audio datagrams: one bincode AudioPacket each, no length prefix.

export function encodeAudioPacket(p) {
  const w = new Writer();
  w.u64(p.seq);
  w.u64(p.captureUnixUs);
  w.bool(p.afterSilence);
  w.bytesVec(p.opus);
  const out = w.message(MAX_AUDIO_DATAGRAM);
  return out.subarray(4);
}

/** A datagram's packet, or null when it is not exactly one (as AudioPacket::from_datagram). */
export function decodeAudioPacket(datagram) {
  if (datagram.length > MAX_AUDIO_DATAGRAM) return null;
  try {
    return decodeBody(datagram, (r) => ({
      seq: r.u64(), captureUnixUs: r.u64(), afterSilence: r.bool(), opus: r.bytesVec(),
    }));
  } catch (e) {
    if (e instanceof WireError) return null;
    throw e;
  }
}

/**
 * Incremental reader of one stream's messages, as the Rust MessageReader: push what
 * arrives, take whole messages with `next(decode)`. A length prefix over `limit` throws
 * before anything of that message is kept; pushed arrays are kept as they are, not
 * copied, so a body within one chunk costs no copy.
 */
export class MessageReader {
  constructor(limit) {
    this.limit = limit;
    this.chunks = [];
    this.first = 0; // bytes of chunks[0] already taken
    this.avail = 0;
    this.failed = null;
  }

  push(bytes) {
    if (this.failed) throw this.failed;
    if (!(bytes instanceof Uint8Array)) throw new WireError('Malformed', 'push takes a Uint8Array');
    if (bytes.length === 0) return;
    this.chunks.push(bytes);
    this.avail += bytes.length;
    if (this.avail >= 4) this.announced();
  }

  /** The next message's announced length (the prefix must be there); checks the limit. */
  announced() {
    const prefix = this.peek(4);
    const len = (prefix[0] | (prefix[1] << 8) | (prefix[2] << 16) | (prefix[3] << 24)) >>> 0;
    if (len > this.limit) {
      this.failed = new WireError('TooLarge', `message of ${len} bytes exceeds the limit of ${this.limit} bytes`);
      throw this.failed;
    }
    return len;
  }

  /** The first `n` unread bytes (n <= avail), copied only when they span chunks. */
  peek(n) {
    const head = this.chunks[0];
    if (head.length - this.first >= n) return head.subarray(this.first, this.first + n);
    const out = new Uint8Array(n);
    let got = 0;
    for (let i = 0; got < n; i += 1) {
      const c = i === 0 ? head.subarray(this.first) : this.chunks[i];
      const take = Math.min(c.length, n - got);
      out.set(c.subarray(0, take), got);
      got += take;
    }
    return out;
  }

  skip(n) {
    this.avail -= n;
    while (n > 0) {
      const left = this.chunks[0].length - this.first;
      if (n < left) {
        this.first += n;
        return;
      }
      n -= left;
      this.chunks.shift();
      this.first = 0;
    }
  }

  /** Bytes still needed before the next message can be decoded. */
  wanted() {
    if (this.failed) throw this.failed;
    if (this.avail < 4) return 4 - this.avail;
    return Math.max(0, 4 + this.announced() - this.avail);
  }

  /** The next whole message decoded by `decode(body)`, or null if more bytes are needed. */
  next(decode) {
    if (this.failed) throw this.failed;
    if (this.avail < 4) return null;
    const len = this.announced();
    if (this.avail < 4 + len) return null;
    const body = this.peek(4 + len).subarray(4);
    let msg;
    try {
      msg = decode(body);
    } catch (e) {
      this.failed = e;
      throw e;
    }
    this.skip(4 + len);
    return msg;
  }

  /** At the end of the stream: throws if part of a message is left. */
  finish() {
    if (this.avail !== 0) throw new WireError('Truncated', `stream ended inside a message (${this.avail} bytes left over)`);
  }
}
