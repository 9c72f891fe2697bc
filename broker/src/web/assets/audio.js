// The page's sound: the desktop's Opus datagrams through a playout buffer (a port of
// protocol/src/audio.rs's JitterBuffer) and WebCodecs' AudioDecoder to an AudioWorklet
// speaker, and the microphone through an AudioWorklet and AudioEncoder to datagrams,
// silence left out as the native client leaves it out. The playout buffer runs on the
// sound card's clock (the AudioContext's time), so the speaker neither fills up nor
// runs dry as the two clocks drift.

import * as wire from './wire.js';

const RATE = 48000;
const FRAME_MS = 20;
const FRAME_SAMPLES = 960;
/** Playout delay bounds (ms): at least two frames, at most what lip sync tolerates. */
const MIN_DELAY_MS = 40;
const MAX_DELAY_MS = 200;
/** Packets kept ahead of playout at most (a burst after a stall is cut to this). */
const MAX_QUEUED = 25;
/** Missing frames concealed in a row, with nothing queued, before the sound is taken
 *  to have stopped. */
const MAX_BLIND_CONCEALMENT = 3;
/** A sample this small (of 32768) is inaudible: media/src/opus.rs's INAUDIBLE. */
const INAUDIBLE = 8 / 32768;
/** The microphone's Opus bitrate, as the native client's. */
const MIC_BITRATE = 64000;
const VOLUME_STEP = 0.1;
/** A sound card clock that has not moved for this long (ms) is taken to have stopped. */
const CLOCK_STALL_MS = 200;

/**
 * Frame `seq` plays at `base + seq × 20 ms + delay`; `delay` follows the path's jitter
 * (RFC 3550's estimate, times four). Times are ms on one clock. `pop` answers null when
 * nothing is due, else {kind: 'Waiting' | 'Packet' | 'Conceal' | 'Silence', packet}.
 *
 * Unlike the Rust one, the schedule changes only between sounds: the delay is taken up
 * and `base` set again (following the drift between the desktop's clock and ours) when
 * a sound starts, and kept while it plays, so frames leave at an even pace and the
 * speaker's small queue after them never runs dry as the jitter estimate moves.
 */
export class JitterBuffer {
  constructor() {
    this.queue = new Map();
    this.base = null;
    this.playDelay = MIN_DELAY_MS;
    this.next = null;
    this.jitter = 0;
    this.lastTransit = null;
    this.blind = 0;
    this.sounding = false;
    this.concealed = 0;
    this.late = 0;
  }

  push(packet, now) {
    const seq = Number(packet.seq);
    if (this.base === null || (packet.afterSilence && !this.sounding && this.queue.size === 0)) {
      // A new sound: scheduled afresh from its first packet.
      this.base = now - seq * FRAME_MS;
      this.lastTransit = null;
      this.next = seq;
      this.playDelay = this.delay();
    }
    const transit = now - this.base - seq * FRAME_MS;
    if (this.lastTransit !== null) this.jitter += (Math.abs(transit - this.lastTransit) - this.jitter) / 16;
    this.lastTransit = transit;
    if (this.next !== null && seq < this.next) {
      this.late += 1;
      return;
    }
    this.next ??= seq;
    this.queue.set(seq, packet);
    while (this.queue.size > MAX_QUEUED) {
      // Far behind (the path stalled): skip ahead rather than lag for good.
      const first = this.firstQueued();
      this.queue.delete(first);
      this.next = first + 1;
    }
  }

  /** The lowest frame number queued (the queue is not empty). */
  firstQueued() {
    return Math.min(...this.queue.keys());
  }

  delay() {
    return Math.min(MIN_DELAY_MS + Math.min(this.jitter * 4, 1000), MAX_DELAY_MS);
  }

  pop(now) {
    if (this.base === null) return { kind: 'Waiting' };
    if (now < this.base + this.next * FRAME_MS + this.playDelay) return null;
    const seq = this.next;
    this.next += 1;
    const packet = this.queue.get(seq);
    if (packet) {
      this.queue.delete(seq);
      this.blind = 0;
      this.sounding = packet.opus.length > 0;
      return this.sounding ? { kind: 'Packet', packet } : { kind: 'Silence' };
    }
    // Missing: silence if the next packet that came says so; lost if one came without
    // saying so, or if the sound was playing and nothing came yet, for a few frames.
    let silent;
    if (this.queue.size > 0) {
      silent = this.queue.get(this.firstQueued()).afterSilence;
    } else {
      this.blind += 1;
      silent = !this.sounding || this.blind > MAX_BLIND_CONCEALMENT;
    }
    if (silent) {
      this.sounding = false;
      return { kind: 'Silence' };
    }
    this.concealed += 1;
    return { kind: 'Conceal' };
  }
}

/**
 * The page's sound card: one AudioContext for the page's life (reconnects keep it), the
 * worklet module loaded, and the volume. Browsers start it suspended until the user
 * clicks or types in the page (`resume` on those).
 */
export class SoundCard {
  constructor() {
    this.context = new AudioContext({ sampleRate: RATE, latencyHint: 'interactive' });
    this.gain = this.context.createGain();
    this.gain.connect(this.context.destination);
    this.volume = 1;
    this.muted = false;
    this.ready = this.context.audioWorklet.addModule('/web/audio-worklet.js');
  }

  static supported() {
    return typeof AudioContext === 'function' && typeof AudioWorkletNode === 'function'
      && typeof AudioDecoder === 'function';
  }

  resume() {
    if (this.context.state !== 'running') this.context.resume().catch(() => {});
  }

  /**
   * Whether the sound card plays now: its context runs and its clock moved lately. A
   * browser may say "running" while its device has not started yet or stalls (seconds,
   * on a busy machine): its clock then stands still, and sound given to it is not heard.
   */
  playing() {
    const now = performance.now();
    const time = this.context.currentTime;
    if (time !== this.clockSeen) {
      this.clockSeen = time;
      this.clockMovedAt = now;
    }
    return this.context.state === 'running' && now - (this.clockMovedAt ?? -Infinity) < CLOCK_STALL_MS;
  }

  /** Resolves once the sound card plays. */
  async whenPlaying() {
    while (!this.playing()) await new Promise((resolve) => { setTimeout(resolve, 50); });
  }

  /** The sound card's clock, in ms. */
  now() {
    return this.context.currentTime * 1000;
  }

  toggleMute() {
    this.muted = !this.muted;
    this.applyVolume();
  }

  /** Turns the volume up (+1) or down (-1) a step, between silent and full. */
  step(direction) {
    this.volume = Math.max(0, Math.min(1, this.volume + direction * VOLUME_STEP));
    this.applyVolume();
  }

  applyVolume() {
    this.gain.gain.setTargetAtTime(this.muted ? 0 : this.volume, this.context.currentTime, 0.01);
  }
}

/** One session's speaker: datagrams in, 20 ms frames out to the worklet in order. */
export class Speaker {
  static async create(card) {
    await card.ready;
    return new Speaker(card);
  }

  constructor(card) {
    this.card = card;
    this.node = new AudioWorkletNode(card.context, 'oriel-speaker', {
      numberOfInputs: 0, outputChannelCount: [2],
    });
    this.node.connect(card.gain);
    this.buffer = new JitterBuffer();
    // Frames in play order: {pcm: [left, right] | null, conceal}; a decoded one waits
    // here for its samples (the decoder answers asynchronously, in order).
    this.slots = [];
    this.last = null;
    this.decoder = null;
    this.figures = {
      packets: 0, bytes: 0, concealed: 0, late: 0, queuedMs: 0, underruns: 0, dropped: 0,
      // Packets that came while the page could not play (the user has not clicked yet),
      // and frames lost to the decoder's errors.
      unheard: 0, decodeErrors: 0,
    };
    this.node.port.onmessage = ({ data }) => {
      Object.assign(this.figures, data);
      this.pump();
    };
    this.wasRunning = false;
  }

  /** One datagram from the server. */
  push(datagram) {
    const packet = wire.decodeAudioPacket(datagram);
    if (packet === null) return;
    this.figures.packets += 1;
    this.figures.bytes += datagram.length;
    if (!this.card.playing()) {
      this.wasRunning = false;
      this.figures.unheard += 1;
      return; // not heard (the user has not clicked or typed in the page yet, or the
      // browser's sound device stands still)
    }
    if (!this.wasRunning) {
      // Started or resumed: the old schedule is stale.
      this.buffer = new JitterBuffer();
      this.wasRunning = true;
    }
    this.buffer.push(packet, this.card.now());
    this.pump();
  }

  /** Plays what is due. */
  pump() {
    for (;;) {
      const playout = this.buffer.pop(this.card.now());
      if (playout === null || playout.kind === 'Waiting') break;
      if (playout.kind === 'Packet') this.decode(playout.packet);
      else if (playout.kind === 'Silence') this.slots.push({ pcm: silence() });
      else this.slots.push({ pcm: null, conceal: true });
    }
    this.figures.concealed = this.buffer.concealed;
    this.figures.late = this.buffer.late;
    this.flush();
  }

  decode(packet) {
    if (this.decoder === null || this.decoder.state === 'closed') this.openDecoder();
    this.slots.push({ pcm: null });
    this.decoder.decode(new EncodedAudioChunk({
      type: 'key', timestamp: Number(packet.seq) * FRAME_MS * 1000, data: packet.opus,
    }));
  }

  openDecoder() {
    this.decoder = new AudioDecoder({
      output: (data) => {
        const pcm = [0, 1].map((ch) => {
          const plane = new Float32Array(data.numberOfFrames);
          data.copyTo(plane, { planeIndex: Math.min(ch, data.numberOfChannels - 1), format: 'f32-planar' });
          return plane;
        });
        data.close();
        const slot = this.slots.find((s) => s.pcm === null && !s.conceal);
        if (slot) slot.pcm = pcm;
        this.flush();
      },
      error: (e) => {
        // A packet it could not decode: what waited for it is played as silence.
        this.figures.decodeErrors += 1;
        this.figures.lastDecodeError = String(e);
        for (const slot of this.slots) if (slot.pcm === null && !slot.conceal) slot.pcm = silence();
        this.flush();
      },
    });
    this.decoder.configure({ codec: 'opus', sampleRate: RATE, numberOfChannels: 2 });
  }

  /** Hands the worklet every frame whose turn has come. */
  flush() {
    while (this.slots.length > 0) {
      const slot = this.slots[0];
      if (slot.conceal) slot.pcm = fadeOut(this.last);
      if (slot.pcm === null) return;
      this.slots.shift();
      if (!slot.conceal) this.last = slot.pcm.map((plane) => plane.slice());
      this.node.port.postMessage(slot.pcm, slot.pcm.map((plane) => plane.buffer));
    }
  }

  close() {
    this.node.disconnect();
    this.node.port.onmessage = null;
    if (this.decoder && this.decoder.state !== 'closed') this.decoder.close();
  }
}

function silence() {
  return [new Float32Array(FRAME_SAMPLES), new Float32Array(FRAME_SAMPLES)];
}

/** A lost frame: the one before it again, fading to silence (WebCodecs has no Opus
 *  packet-loss concealment to call). */
function fadeOut(last) {
  if (!last) return silence();
  return last.map((plane) => plane.map((v, i) => v * 0.5 * (1 - i / plane.length)));
}

/** The microphone: the default input, 20 ms frames, Opus, one datagram each. */
export class Microphone {
  static supported() {
    return typeof AudioEncoder === 'function' && typeof AudioWorkletNode === 'function'
      && !!navigator.mediaDevices?.getUserMedia;
  }

  /** Asks for the microphone (the browser may ask the user) and starts sending. */
  static async start(card, send) {
    await card.ready;
    // Capture runs on the sound card's clock: what comes while it stands still is lost.
    await card.whenPlaying();
    const stream = await navigator.mediaDevices.getUserMedia({
      // Raw, as the native client sends it: the desktop's own programs process it.
      audio: {
        channelCount: 2, echoCancellation: false, noiseSuppression: false, autoGainControl: false,
      },
    });
    return new Microphone(card, stream, send);
  }

  constructor(card, stream, send) {
    this.stream = stream;
    this.send = send;
    this.seq = 0;
    this.silent = true;
    // Packets in order, waiting for their Opus: {seq, captureUnixUs, afterSilence, opus}.
    this.pending = [];
    this.figures = { packets: 0, bytes: 0 };
    this.encoder = new AudioEncoder({
      output: (chunk) => {
        const opus = new Uint8Array(chunk.byteLength);
        chunk.copyTo(opus);
        const packet = this.pending.find((p) => p.opus === null);
        if (packet) packet.opus = opus;
        this.drain();
      },
      error: () => this.close(),
    });
    this.encoder.configure({
      codec: 'opus', sampleRate: RATE, numberOfChannels: 2, bitrate: MIC_BITRATE,
      opus: { frameDuration: FRAME_MS * 1000 },
    });
    this.source = card.context.createMediaStreamSource(stream);
    this.node = new AudioWorkletNode(card.context, 'oriel-microphone', {
      numberOfOutputs: 0, channelCount: 2, channelCountMode: 'explicit',
    });
    this.node.port.onmessage = ({ data }) => this.frame(data);
    this.source.connect(this.node);
  }

  /** One 20 ms frame of interleaved stereo samples. */
  frame(samples) {
    if (this.encoder.state !== 'configured') return;
    let peak = 0;
    for (const v of samples) peak = Math.max(peak, Math.abs(v));
    const afterSilence = this.silent;
    this.silent = peak <= INAUDIBLE;
    const seq = this.seq;
    this.seq += 1;
    if (this.silent && afterSilence) return;
    // The frame's first sample came 20 ms before its last.
    const captureUnixUs = Math.round((performance.timeOrigin + performance.now()) * 1000) - FRAME_MS * 1000;
    const packet = {
      seq, captureUnixUs, afterSilence: afterSilence && !this.silent, opus: this.silent ? new Uint8Array(0) : null,
    };
    this.pending.push(packet);
    if (!this.silent) {
      this.encoder.encode(new AudioData({
        format: 'f32', sampleRate: RATE, numberOfFrames: FRAME_SAMPLES, numberOfChannels: 2,
        timestamp: seq * FRAME_MS * 1000, data: samples,
      }));
    }
    this.drain();
  }

  /** Sends the packets that are ready, in order. */
  drain() {
    while (this.pending.length > 0 && this.pending[0].opus !== null) {
      const bytes = wire.encodeAudioPacket(this.pending.shift());
      this.figures.packets += 1;
      this.figures.bytes += bytes.length;
      this.send(bytes);
    }
  }

  close() {
    this.source.disconnect();
    this.node.port.onmessage = null;
    for (const track of this.stream.getTracks()) track.stop();
    if (this.encoder.state !== 'closed') this.encoder.close();
  }
}
