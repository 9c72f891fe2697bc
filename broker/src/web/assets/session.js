// One display session over WebTransport, as the native client runs it: the control
// stream (hello, then acks and requests up, pacing and closing reasons down), the
// server's streams (display frames, cursor, one per video region, clipboard), our input
// and clipboard streams, and sound both ways as datagrams. Frames are decoded in order
// and acknowledged once painted.

import * as wire from './wire.js';
import { Decoder } from './decoder.js';
import { VideoRegion } from './video.js';
import { Microphone, Speaker } from './audio.js';
import { ClipboardBridge } from './clipboard.js';

/** Capabilities the page offers, with `sound` a SoundCard (or null: no sound). */
export function capabilities(sound) {
  const has = (yes, flag) => (yes ? flag : 0);
  return {
    flags: wire.CAP_SOLID | wire.CAP_PALETTE | wire.CAP_ZSTD | wire.CAP_COPY_RECT | wire.CAP_TILE_CACHE
      | has(typeof VideoDecoder === 'function', wire.CAP_H264)
      | has(ClipboardBridge.supported(), wire.CAP_CLIPBOARD)
      | has(sound !== null, wire.CAP_AUDIO)
      | has(sound !== null && Microphone.supported(), wire.CAP_MICROPHONE),
    tileCacheEntries: 2048,
  };
}

const hexBytes = (hex) => new Uint8Array(hex.match(/../g).map((b) => parseInt(b, 16)));

/**
 * One session with the desktop `contact` names (the broker's /connect answer). `view`
 * is told what happens: `welcome(welcome, decoder)`, `frame(decoder, report, frame)`,
 * `video(decoder, rect, sourceSeq)`, `cursor(msg)`, `pacing(msg)`, `moved(msg)`,
 * `notice(text)`. `sound` is the page's SoundCard, or null.
 */

/** Decode times kept per kind (the first ones: enough for percentiles, bounded). */
const MAX_DECODE_SAMPLES = 20000;

export class Session {
  constructor(contact, view, desiredSize, sound = null) {
    this.contact = contact;
    this.view = view;
    this.desiredSize = desiredSize;
    this.sound = sound;
    this.speaker = null;
    this.microphone = null;
    this.clipboard = null;
    this.clipboardOut = null;
    this.clipboardQueue = Promise.resolve();
    this.closedReason = null;
    this.inputQueue = Promise.resolve();
    this.figures = {
      frames: 0, bytes: 0, decodeMs: 0, started: performance.now(),
      // Per display frame (decode and paint) and per video picture (decode to paint), ms.
      frameDecodeMs: [], videoDecodeMs: [],
    };
    this.regions = new Map();
  }

  /** Connects and shakes hands; `ended` then resolves with why the session ended. */
  async start() {
    const { web, ticket, desktop } = this.contact;
    if (!web) throw new Error('this desktop\'s host does not take browsers');
    this.transport = new WebTransport(`https://${web.address}/oriel`, {
      serverCertificateHashes: web.fingerprints.map((h) => ({ algorithm: 'sha-256', value: hexBytes(h) })),
    });
    await this.transport.ready;
    const control = await this.transport.createBidirectionalStream();
    this.control = control.writable.getWriter();
    await this.control.write(wire.encodeHello({
      version: wire.PROTOCOL_VERSION,
      capabilities: capabilities(this.sound),
      desktop,
      ticket: hexBytes(ticket),
      desiredSize: this.desiredSize,
      clientName: `oriel-web ${navigator.userAgent.slice(0, 200)}`,
      held: null,
    }));
    const welcome = await this.readControl(control.readable);
    this.welcome = welcome;
    this.decoder = await Decoder.create(welcome.desktopSize.width, welcome.desktopSize.height,
      welcome.capabilities);
    this.view.welcome(welcome, this.decoder);
    const input = await this.transport.createUnidirectionalStream();
    this.input = input.getWriter();
    await this.input.write(new Uint8Array([wire.Channel.Input]));
    const flags = welcome.capabilities.flags;
    if (flags & wire.CAP_CLIPBOARD) {
      this.clipboard = new ClipboardBridge((msg) => this.sendClipboard(msg), (t) => this.view.notice?.(t));
    }
    if (flags & wire.CAP_AUDIO && this.sound) {
      this.speaker = await Speaker.create(this.sound);
      this.readDatagrams();
    }
    this.acceptStreams();
    this.ended = this.transport.closed.then(
      () => this.closedReason || 'the session ended',
      (e) => this.closedReason || `the connection was lost (${e.message || e})`,
    ).finally(() => {
      this.over = true;
      this.speaker?.close();
      this.setMicrophone(false);
    });
  }

  /** Sends the microphone (asking the user, the first time) or stops sending it;
   *  resolves with whether it is on. */
  async setMicrophone(on) {
    if (!on || !this.welcome || !(this.welcome.capabilities.flags & wire.CAP_MICROPHONE)) {
      this.microphone?.close();
      this.microphone = null;
      return false;
    }
    if (!this.microphoneStart) {
      this.datagrams ??= this.transport.datagrams.writable.getWriter();
      const send = (bytes) => this.datagrams.write(bytes).catch(() => {});
      this.microphoneStart = Microphone.start(this.sound, send).then((microphone) => {
        // The session may have ended, or the user turned it off, while it started.
        if (this.over || this.microphone) microphone.close();
        else this.microphone = microphone;
      }).finally(() => { this.microphoneStart = null; });
    }
    await this.microphoneStart;
    return this.microphone !== null;
  }

  /** The desktop's sound: one packet per datagram. */
  async readDatagrams() {
    const reader = this.transport.datagrams.readable.getReader();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        this.speaker.push(value);
      }
    } catch {
      // The transport closed; `ended` says why.
    }
  }

  /** Reads the handshake's answer, then keeps reading control messages. */
  async readControl(readable) {
    const reader = readable.getReader();
    const messages = new wire.MessageReader(wire.maxMessageLen(wire.Channel.Control));
    let welcome = null;
    while (welcome === null) {
      const { value, done } = await reader.read();
      if (done) throw new Error('the server closed the control stream before answering');
      messages.push(value);
      const reply = messages.next(wire.decodeHelloReply);
      if (reply === null) continue;
      if (reply.type === 'Reject') {
        this.fail(reply.message);
        throw new Error(reply.message);
      }
      welcome = reply;
    }
    (async () => {
      try {
        for (;;) {
          let msg;
          while ((msg = messages.next(wire.decodeServerControl)) !== null) this.onControl(msg);
          const { value, done } = await reader.read();
          if (done) return;
          messages.push(value);
        }
      } catch (e) {
        this.fail(`control stream: ${e.message}`);
      }
    })();
    return welcome;
  }

  onControl(msg) {
    if (msg.type === 'Closing') {
      this.closedReason = msg.message;
      this.closedByServer = true;
    }
    else if (msg.type === 'Flow') this.view.pacing?.(msg);
    else if (msg.type === 'Moved') {
      this.closedReason = 'the desktop moved to another host';
      this.view.moved?.(msg);
    }
  }

  async acceptStreams() {
    const streams = this.transport.incomingUnidirectionalStreams.getReader();
    try {
      for (;;) {
        const { value, done } = await streams.read();
        if (done) return;
        this.readStream(value);
      }
    } catch {
      // The transport closed; `ended` says why.
    }
  }

  async readStream(stream) {
    const reader = stream.getReader();
    let channel = null;
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        let bytes = value;
        if (channel === null) {
          if (bytes.length === 0) continue;
          channel = this.channelOf(bytes[0]);
          bytes = bytes.subarray(1);
        }
        // Display and video streams: what the overlay's Mbit/s and the benchmark count.
        if (channel.display || channel.video) this.figures.bytes += bytes.length;
        channel.messages.push(bytes);
        let msg;
        while ((msg = channel.messages.next(channel.decode)) !== null) await channel.handle(msg);
      }
    } catch (e) {
      this.fail(e.message);
    }
  }

  /** How a server stream is read, by its tag byte. */
  channelOf(tag) {
    const messages = (channel) => new wire.MessageReader(wire.maxMessageLen(channel));
    switch (tag) {
      case wire.Channel.Display:
        return {
          messages: messages(tag), decode: wire.decodeFrameMsg, handle: (m) => this.onFrame(m), display: true,
        };
      case wire.Channel.Cursor:
        return { messages: messages(tag), decode: wire.decodeCursorMsg, handle: (m) => this.view.cursor?.(m) };
      case wire.Channel.Video: {
        const stream = { region: null };
        return {
          messages: messages(tag), decode: wire.decodeVideoMsg, handle: (m) => this.onVideo(stream, m), video: true,
        };
      }
      case wire.Channel.Clipboard:
        return {
          messages: messages(tag), decode: wire.decodeClipboardMsg, handle: (m) => this.clipboard?.fromServer(m),
        };
      default:
        throw new Error(`the server opened an unexpected stream (tag ${tag})`);
    }
  }

  async onFrame(frame) {
    const started = performance.now();
    const report = this.decoder.apply(frame);
    for (const id of frame.videoEnded) this.endRegion(id);
    this.view.frame(this.decoder, report, frame);
    const decodeMs = performance.now() - started;
    this.figures.frames += 1;
    this.figures.decodeMs += decodeMs;
    this.sampleDecode(this.figures.frameDecodeMs, decodeMs);
    this.sendControl({ type: 'Ack', frameId: frame.frameId, decodeUs: Math.round(decodeMs * 1000) });
    for (const region of this.regions.values()) region.release();
  }

  /** Records one decode time (ms) in `samples`, while there is room. */
  sampleDecode(samples, ms) {
    if (samples.length < MAX_DECODE_SAMPLES) samples.push(ms);
  }

  onVideo(stream, msg) {
    if (msg.type === 'Start') {
      if (stream.region || typeof VideoDecoder !== 'function') {
        throw new Error('a video stream started twice, or without H.264 negotiated');
      }
      stream.region = new VideoRegion(this, msg);
      this.regions.set(stream.region.id, stream.region);
      return;
    }
    if (!stream.region) throw new Error('a video stream sent a picture before its start');
    stream.region.push(msg);
  }

  endRegion(id) {
    this.regions.get(id)?.close();
    this.regions.delete(id);
  }

  sendControl(msg) {
    this.control?.write(wire.encodeClientControl(msg)).catch(() => {});
  }

  /** Sends one input event, after `before` (a promise) settles if given; events go
   *  out in order. */
  sendInput(event, before = null) {
    if (!this.input) return;
    const bytes = wire.encodeInputEvent(event);
    const write = () => this.input.write(bytes);
    this.inputQueue = before
      ? this.inputQueue.then(() => before).catch(() => {}).then(write).catch(() => {})
      : this.inputQueue.then(write).catch(() => {});
  }

  /** Sends one clipboard message on our clipboard stream (opened with the first);
   *  resolves once it is written. */
  sendClipboard(msg) {
    const bytes = wire.encodeClipboardMsg(msg);
    this.clipboardQueue = this.clipboardQueue.then(async () => {
      if (!this.clipboardOut) {
        const stream = await this.transport.createUnidirectionalStream();
        this.clipboardOut = stream.getWriter();
        await this.clipboardOut.write(new Uint8Array([wire.Channel.Clipboard]));
      }
      await this.clipboardOut.write(bytes);
    }).catch(() => {});
    return this.clipboardQueue;
  }

  requestSize(width, height) {
    this.sendControl({ type: 'ResizeRequest', width, height });
  }

  fail(reason) {
    if (!this.closedReason) this.closedReason = reason;
    try {
      this.transport?.close({ closeCode: 1, reason: reason.slice(0, 100) });
    } catch {
      // Already closed.
    }
  }

  close() {
    this.fail('you disconnected');
  }
}
