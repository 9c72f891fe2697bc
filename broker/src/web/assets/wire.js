// The display protocol's messages (protocol/src/wire.rs, messages.rs, clipboard.rs,
// audio.rs): each message is a little-endian u32 length, then a bincode 2 body in its
// `standard()` configuration (bincode.js reads and writes those; it is re-exported
// here). Every read is checked: bad input throws a WireError.
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

import { decodeBody, Writer, WireError } from './bincode.js';

export { decodeBody, MessageReader, Reader, Writer, WireError } from './bincode.js';

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

