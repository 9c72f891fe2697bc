// The audio thread's side of the page's sound (an AudioWorklet module): the speaker
// plays the 20 ms frames the page hands it and tells the page each time it has played
// some, which is the clock the playout buffer runs on; the microphone cuts its input
// into 20 ms frames for the page to encode.

/** Samples per channel in one 20 ms frame at 48 kHz. */
const FRAME = 960;
/** Most sound queued here (ms): past it, the oldest is dropped (the device stalled). */
const MAX_QUEUED_MS = 250;
/** Sound queued before the speaker starts (and again after it ran dry), in ms: frames
 *  come from the main thread when due, and the decoder and a busy main thread may
 *  deliver one late by this much without a gap. */
const PREBUFFER_MS = 30;
/** What the speaker plays when it has nothing: not quite zero (−144 dBFS, zero once it
 *  is 16 or 24 bits), because a browser that sees an output stay exactly silent for a
 *  while stops its sound device, and restarting it cuts the start of the next sound. */
const KEEP_AWAKE = 2 ** -24;
/** The page hears from the speaker about this often (render quanta of 128 samples). */
const REPORT_EVERY = 4;

class Speaker extends AudioWorkletProcessor {
  constructor() {
    super();
    // Planar stereo frames: [left, right] Float32Arrays of FRAME samples each.
    this.frames = [];
    this.offset = 0;
    this.queued = 0;
    this.quanta = 0;
    this.underruns = 0;
    this.dropped = 0;
    this.playing = false;
    this.port.onmessage = ({ data }) => {
      this.frames.push(data);
      this.queued += data[0].length;
      const max = (sampleRate * MAX_QUEUED_MS) / 1000;
      while (this.queued - this.offset > max && this.frames.length > 1) {
        this.queued -= this.frames.shift()[0].length;
        this.offset = 0;
        this.dropped += 1;
      }
    };
  }

  process(_inputs, outputs) {
    const [left, right] = outputs[0];
    let written = 0;
    this.playing ||= this.queued - this.offset >= (sampleRate * PREBUFFER_MS) / 1000;
    while (this.playing && written < left.length && this.frames.length > 0) {
      const [l, r] = this.frames[0];
      const n = Math.min(left.length - written, l.length - this.offset);
      left.set(l.subarray(this.offset, this.offset + n), written);
      right?.set(r.subarray(this.offset, this.offset + n), written);
      written += n;
      this.offset += n;
      if (this.offset === l.length) {
        this.frames.shift();
        this.queued -= l.length;
        this.offset = 0;
      }
    }
    if (written < left.length) {
      left.fill(KEEP_AWAKE, written);
      right?.fill(KEEP_AWAKE, written);
      if (this.playing) {
        // Ran dry while playing: gather the prebuffer again.
        this.underruns += 1;
        this.playing = false;
      }
    }
    this.quanta += 1;
    if (this.quanta % REPORT_EVERY === 0) {
      this.port.postMessage({
        queuedMs: ((this.queued - this.offset) * 1000) / sampleRate,
        underruns: this.underruns,
        dropped: this.dropped,
      });
    }
    return true;
  }
}

class Microphone extends AudioWorkletProcessor {
  constructor() {
    super();
    this.frame = new Float32Array(FRAME * 2);
    this.filled = 0;
    this.silence = new Float32Array(128);
  }

  process(inputs) {
    // No input channels (the track ended or is muted) is silence.
    const input = inputs[0];
    const left = input?.[0] ?? this.silence;
    const right = input?.[1] ?? left;
    for (let i = 0; i < left.length; i += 1) {
      this.frame[this.filled * 2] = left[i];
      this.frame[this.filled * 2 + 1] = right[i];
      this.filled += 1;
      if (this.filled === FRAME) {
        this.port.postMessage(this.frame, [this.frame.buffer]);
        this.frame = new Float32Array(FRAME * 2);
        this.filled = 0;
      }
    }
    return true;
  }
}

registerProcessor('oriel-speaker', Speaker);
registerProcessor('oriel-microphone', Microphone);
