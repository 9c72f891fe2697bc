// The browser client's playout buffer (broker/src/web/assets/audio.js's JitterBuffer)
// on arrival traces, for tests/tests/web_codecs.rs:
//
//   node tests/web/playout_check.mjs DIR
//
// Each scenario feeds packets at given times and pops every millisecond, as the page's
// speaker does on the sound card's clock; what comes out is checked. Exit status 1: a
// check failed (each failure is printed).

import { join } from 'node:path';
import { loadAssets } from './assets.mjs';

const dir = process.argv[2];
if (!dir) {
  console.error('usage: node playout_check.mjs DIR');
  process.exit(2);
}
const load = loadAssets(join(dir, 'playout-assets'), ['wire.js', 'bincode.js', 'audio.js']);
const { JitterBuffer } = await load('audio.js');
const wire = await load('wire.js');

let failed = false;
const check = (ok, what) => {
  if (!ok) {
    failed = true;
    console.error(`FAIL ${what}`);
  }
};

const sound = (seq, afterSilence = false) => ({
  seq, captureUnixUs: 0, afterSilence, opus: new Uint8Array([1, 2, 3]),
});
const endMark = (seq) => ({ seq, captureUnixUs: 0, afterSilence: false, opus: new Uint8Array(0) });

/** Runs `arrivals` ([time ms, packet]) through a buffer until `until` ms; returns
 *  [{at, kind, seq}] of every frame played, and the buffer. */
function run(arrivals, until) {
  const buffer = new JitterBuffer();
  const played = [];
  const pending = [...arrivals].sort((a, b) => a[0] - b[0]);
  for (let now = 0; now <= until; now += 1) {
    while (pending.length > 0 && pending[0][0] <= now) buffer.push(pending.shift()[1], now);
    for (;;) {
      const out = buffer.pop(now);
      if (out === null || out.kind === 'Waiting') break;
      played.push({ at: now, kind: out.kind, seq: out.packet ? out.packet.seq : null });
    }
  }
  return { played, buffer };
}

// A steady sound: every packet plays, in order, 20 ms apart, the minimum delay after it came.
{
  const arrivals = [
    ...Array.from({ length: 50 }, (_, i) => [100 + i * 20, sound(i, i === 0)]),
    [1100, endMark(50)],
  ];
  const { played, buffer } = run(arrivals, 1300);
  const packets = played.filter((p) => p.kind === 'Packet');
  check(packets.length === 50, `steady: ${packets.length} of 50 packets played`);
  check(packets.every((p, i) => p.seq === i), 'steady: in order');
  check(packets[0].at === 140, `steady: the first plays at ${packets[0].at}, 40 ms after it came`);
  check(packets.every((p, i) => i === 0 || p.at - packets[i - 1].at === 20), 'steady: 20 ms apart');
  check(buffer.concealed === 0 && buffer.late === 0, 'steady: nothing concealed or late');
}

// A lost packet is concealed in its slot; the sound goes on.
{
  const arrivals = [...Array.from({ length: 30 }, (_, i) => [i * 20, sound(i, i === 0)]), [600, endMark(30)]]
    .filter(([, p]) => p.seq !== 10);
  const { played, buffer } = run(arrivals, 800);
  const at10 = played.find((p) => p.kind !== 'Packet' || p.seq === 10);
  check(at10 && at10.kind === 'Conceal', `loss: slot 10 is ${JSON.stringify(at10)}`);
  check(buffer.concealed === 1, `loss: ${buffer.concealed} concealed`);
  check(played.filter((p) => p.kind === 'Packet').length === 29, 'loss: the rest played');
}

// The end of a sound is silence, never concealment, however long the pause.
{
  const arrivals = [
    ...Array.from({ length: 10 }, (_, i) => [i * 20, sound(i, i === 0)]),
    [200, endMark(10)],
  ];
  const { played, buffer } = run(arrivals, 1000);
  check(buffer.concealed === 0, `pause: ${buffer.concealed} concealed`);
  check(played.slice(10).every((p) => p.kind === 'Silence'), 'pause: silence after the end mark');
}

// A new sound is scheduled afresh from its first packet, whatever its number (the
// desktop's clock drifted from ours during the pause), and nothing of it is late.
{
  const arrivals = [
    ...Array.from({ length: 10 }, (_, i) => [i * 20, sound(i, i === 0)]),
    [200, endMark(10)],
    // 1 s later by our clock, but numbered as if 60 ms passed fewer: the desktop's clock.
    ...Array.from({ length: 10 }, (_, i) => [1200 + i * 20, sound(57 + i, i === 0)]),
    [1400, endMark(67)],
  ];
  const { played, buffer } = run(arrivals, 1800);
  const second = played.filter((p) => p.kind === 'Packet' && p.seq >= 57);
  check(second.length === 10, `new sound: ${second.length} of 10 played`);
  check(second[0]?.at === 1240, `new sound: its first plays at ${second[0]?.at}, 40 ms after it came`);
  check(buffer.late === 0 && buffer.concealed === 0, `new sound: late ${buffer.late}, concealed ${buffer.concealed}`);
}

// Within a sound, jitter moves the estimate but not the pace: frames leave 20 ms apart.
{
  const jitter = [0, 15, 3, 18, 1, 12, 0, 17, 5, 9];
  const arrivals = Array.from({ length: 100 }, (_, i) => [i * 20 + jitter[i % 10], sound(i, i === 0)]);
  const { played, buffer } = run(arrivals, 2400);
  const packets = played.filter((p) => p.kind === 'Packet');
  check(packets.every((p, i) => i === 0 || p.at - packets[i - 1].at === 20), 'jitter: an even pace');
  check(buffer.delay() > 40, `jitter: the next sound gets a longer delay (${buffer.delay()} ms)`);
}

// A stall within a sound: what comes too late is dropped (after a few concealed frames,
// silence), and the sound goes on where it is due.
{
  const arrivals = [
    ...Array.from({ length: 100 }, (_, i) => [i >= 20 && i < 70 ? 1400 : i * 20, sound(i, i === 0)]),
    [2000, endMark(100)],
  ];
  const { played, buffer } = run(arrivals, 2200);
  const after = played.filter((p) => p.kind === 'Packet' && p.seq >= 70);
  check(buffer.late > 0, `stall: ${buffer.late} late`);
  check(after.length === 30 && after.every((p, i) => i === 0 || p.at - after[i - 1].at === 20),
    `stall: the sound goes on evenly (${after.length} of 30)`);
  check(buffer.concealed <= 3, `stall: ${buffer.concealed} concealed`);
}

// Datagrams: what the Rust side sends decodes; junk does not.
{
  const packet = { seq: 7, captureUnixUs: 1_700_000_000_000_000n, afterSilence: true, opus: new Uint8Array([9, 8]) };
  const back = wire.decodeAudioPacket(wire.encodeAudioPacket(packet));
  check(back && back.seq === 7 && back.afterSilence && back.opus.length === 2, 'datagram round trip');
  check(wire.decodeAudioPacket(new Uint8Array(40).fill(0xff)) === null, 'junk datagram refused');
  check(wire.decodeAudioPacket(new Uint8Array(5000)) === null, 'oversized datagram refused');
}

process.exit(failed ? 1 : 0);
