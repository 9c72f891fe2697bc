// One display session over WebTransport, as the native client runs it: the control
// stream (hello, then acks and requests up, pacing and closing reasons down), the
// server's streams (display frames, cursor, one per video region), and our input
// stream. Frames are decoded in order and acknowledged once painted.

import * as wire from './wire.js';
import { Decoder } from './decoder.js';
import { VideoRegion } from './video.js';

/** Capabilities the page offers. */
export const CAPABILITIES = {
  flags: wire.CAP_SOLID | wire.CAP_PALETTE | wire.CAP_ZSTD | wire.CAP_COPY_RECT
    | wire.CAP_TILE_CACHE | (typeof VideoDecoder === 'function' ? wire.CAP_H264 : 0),
  tileCacheEntries: 2048,
};

const hexBytes = (hex) => new Uint8Array(hex.match(/../g).map((b) => parseInt(b, 16)));

/**
 * One session with the desktop `contact` names (the broker's /connect answer). `view`
 * is told what happens: `welcome(welcome, decoder)`, `frame(decoder, report, frame)`,
 * `video(decoder, rect, sourceSeq)`, `cursor(msg)`, `pacing(msg)`, `moved(msg)`.
 */

/** Decode times kept per kind (the first ones: enough for percentiles, bounded). */
const MAX_DECODE_SAMPLES = 20000;

export class Session {
  constructor(contact, view, desiredSize) {
    this.contact = contact;
    this.view = view;
    this.desiredSize = desiredSize;
    this.closedReason = null;
    this.inputQueue = Promise.resolve();
    this.figures = {
      frames: 0, bytes: 0, decodeMs: 0, started: performance.now(),
      // Per display frame (decode and paint) and per video picture (decode to paint), ms.
      frameDecodeMs: [], videoDecodeMs: [],
    };
    this.regions = new Map();
  }

  /** Runs the session; resolves with why it ended, throws if it could not start. */
  async run() {
    await this.start();
    return this.ended;
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
      capabilities: CAPABILITIES,
      desktop,
      ticket: hexBytes(ticket),
      desiredSize: this.desiredSize,
      clientName: `oriel-web ${navigator.userAgent.slice(0, 200)}`,
      held: null,
    }));
    const welcome = await this.readControl(control.readable);
    this.decoder = await Decoder.create(welcome.desktopSize.width, welcome.desktopSize.height,
      welcome.capabilities);
    this.view.welcome(welcome, this.decoder);
    const input = await this.transport.createUnidirectionalStream();
    this.input = input.getWriter();
    await this.input.write(new Uint8Array([wire.Channel.Input]));
    this.acceptStreams();
    this.ended = this.transport.closed.then(
      () => this.closedReason || 'the session ended',
      (e) => this.closedReason || `the connection was lost (${e.message || e})`,
    );
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
      // The transport closed; `run` reports why.
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

  /** Sends one input event; events go out in order. */
  sendInput(event) {
    if (!this.input) return;
    const bytes = wire.encodeInputEvent(event);
    this.inputQueue = this.inputQueue.then(() => this.input.write(bytes)).catch(() => {});
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
