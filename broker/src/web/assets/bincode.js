// bincode 2's `standard()` encoding, as the display protocol uses it (protocol/src/wire.rs):
// integers wider than a byte are varints (below 251: one byte; 251 + u16, 252 + u32,
// 253 + u64, all little-endian), signed ones zigzagged first; an enum is its variant
// index (a varint) then its fields; an Option is a 0/1 byte then the value; a Vec or
// String is a varint length then its items; structs are their fields in order. Each
// message on a stream is a little-endian u32 length, then its body. Every read is
// checked: bad input throws a WireError, and no length is believed beyond the bytes
// that are there. wire.js builds the protocol's messages from these pieces.

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
