// One video region's pictures through WebCodecs: H.264 (Annex B, as the server sends
// it) decoded by the browser, written into the session's framebuffer (copy-rects read
// it later) and painted, then acknowledged as the native client does.

/** The codec string of an Annex B stream, from its first SPS (profile, flags, level). */
function codecOf(data) {
  for (let i = 0; i + 7 < data.length; i += 1) {
    const startCode = data[i] === 0 && data[i + 1] === 0 && data[i + 2] === 1;
    if (startCode && (data[i + 3] & 0x1f) === 7) {
      const hex = (b) => b.toString(16).padStart(2, '0');
      return `avc1.${hex(data[i + 4])}${hex(data[i + 5])}${hex(data[i + 6])}`;
    }
  }
  return null;
}

export class VideoRegion {
  /** `start`: the region's Start message; `session`: where pictures go and acks leave. */
  constructor(session, start) {
    this.session = session;
    this.id = start.regionId;
    this.rect = start.rect;
    this.afterFrame = start.afterFrame;
    this.waiting = [];
    this.closed = false;
    this.configured = false;
    this.started = new Map();
    this.pixels = new Uint32Array(this.rect.width * this.rect.height);
    this.decoder = new VideoDecoder({
      output: (frame) => this.show(frame),
      error: (e) => this.broken(e),
    });
  }

  /** Takes a picture; it is decoded once the display frame it waits for is applied. */
  push(picture) {
    if (this.closed) return;
    this.waiting.push(picture);
    this.release();
  }

  /** Decodes what may be shown now. */
  release() {
    while (!this.closed && this.waiting.length
      && this.session.decoder.lastFrameId >= this.afterFrame) {
      this.decode(this.waiting.shift());
    }
  }

  decode(picture) {
    if (!this.configured) {
      const codec = picture.keyframe ? codecOf(picture.data) : null;
      if (!codec) {
        // Nothing to decode it against: acknowledged (the server's window moves on),
        // and a keyframe asked for once.
        this.ack(picture.frameNo, 0);
        if (!this.askedKeyframe) this.session.sendControl({ type: 'KeyframeRequest', regionId: this.id });
        this.askedKeyframe = true;
        return;
      }
      this.askedKeyframe = false;
      this.decoder.configure({ codec, optimizeForLatency: true, hardwareAcceleration: 'no-preference' });
      this.configured = true;
    }
    this.started.set(picture.frameNo, { at: performance.now(), sourceSeq: picture.sourceSeq });
    this.decoder.decode(new EncodedVideoChunk({
      type: picture.keyframe ? 'key' : 'delta',
      timestamp: picture.frameNo,
      data: picture.data,
    }));
  }

  async show(frame) {
    try {
      if (this.closed) return;
      const { width, height } = this.rect;
      // BGRX bytes read as little-endian words are 0xXXRRGGBB: the framebuffer's pixels.
      await frame.copyTo(this.pixels, { rect: { x: 0, y: 0, width, height }, format: 'BGRX' });
      if (this.closed) return;
      for (let i = 0; i < this.pixels.length; i += 1) this.pixels[i] &= 0xffffff;
      this.session.decoder.blit(this.rect, this.pixels);
      const frameNo = frame.timestamp;
      const started = this.started.get(frameNo) ?? { at: performance.now(), sourceSeq: null };
      this.started.delete(frameNo);
      this.session.view.video?.(this.session.decoder, this.rect, started.sourceSeq);
      const decodeMs = performance.now() - started.at;
      this.ack(frameNo, Math.round(decodeMs * 1000));
      const figures = this.session.figures;
      figures.videoFrames = (figures.videoFrames || 0) + 1;
      this.session.sampleDecode(figures.videoDecodeMs, decodeMs);
    } finally {
      frame.close();
    }
  }

  ack(frameNo, decodeUs) {
    this.session.sendControl({ type: 'VideoAck', regionId: this.id, frameNo, decodeUs });
  }

  broken(error) {
    if (this.closed) return;
    console.warn(`video region ${this.id}: ${error.message}; asking for a keyframe`);
    this.configured = false;
    this.decoder = new VideoDecoder({ output: (f) => this.show(f), error: (e) => this.broken(e) });
    this.session.sendControl({ type: 'KeyframeRequest', regionId: this.id });
  }

  close() {
    this.closed = true;
    this.waiting = [];
    if (this.decoder.state !== 'closed') this.decoder.close();
  }
}
