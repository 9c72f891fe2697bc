// The desktop page: asks the broker for the pool's desktop (a fresh ticket on every
// connect), runs the session into the canvas, sends keys, pointer and wheel, plays the
// desktop's sound and sends the microphone when asked, shares the clipboard, follows
// the tab's size, goes full screen, shows the overlay figures and reconnects through
// the broker after an outage. `window.oriel` exposes the state for tests and scripts.

import { Session } from './session.js';
import { evdevCode } from './keys.js';
import { SoundCard } from './audio.js';

const TOKEN = 'oriel.token';
/** localStorage key: 'on' when the user chose to send the microphone. */
export const MICROPHONE = 'oriel.microphone';
const canvas = document.getElementById('screen');
const status = document.getElementById('status');
const overlay = document.getElementById('overlay');
const context = canvas.getContext('2d', { alpha: false });
const pool = new URLSearchParams(location.hash.slice(1)).get('pool');

const state = {
  phase: 'connecting', // connecting | running | reconnecting | ended
  reason: '',
  connects: 0,
  framesShown: 0,
  picturesShown: 0,
  // performance.now() of the first and the latest paint (frames presented per second).
  firstPaintAt: null,
  lastPaintAt: null,
  sourceSeq: 0,
  // Observers (benchmarks, tests): onFrame(report) after a display frame is painted,
  // onPicture(rect, sourceSeq) after a video picture is.
  onFrame: null,
  onPicture: null,
  desktop: null,
  session: null,
  // The page's sound card (null: the browser cannot play the desktop's sound).
  sound: SoundCard.supported() ? new SoundCard() : null,
  microphone: localStorage.getItem(MICROPHONE) === 'on',
};
window.oriel = state;

let image = null;
let pendingResize = null;

function say(text) {
  status.textContent = text;
}

async function ticket() {
  const token = sessionStorage.getItem(TOKEN);
  if (!token) {
    location.href = '/';
    throw new Error('not signed in');
  }
  const response = await fetch('/api/v1/connect', {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify({ pool }),
  });
  const json = await response.json().catch(() => ({}));
  if (response.status === 401) {
    sessionStorage.removeItem(TOKEN);
    location.href = '/';
  }
  if (!response.ok) {
    const error = new Error(json.error || `${response.status} ${response.statusText}`);
    error.retry = response.status >= 500 || response.status === 429;
    throw error;
  }
  return json;
}

function tabSize() {
  return {
    width: Math.max(64, Math.min(8192, Math.floor(window.innerWidth))),
    height: Math.max(64, Math.min(8192, Math.floor(window.innerHeight))),
  };
}

/** What the session tells the page. */
const view = {
  welcome(welcome, decoder) {
    state.phase = 'running';
    state.desktop = welcome;
    resizeCanvas(decoder.width, decoder.height);
    say('');
  },
  frame(decoder, report, frame) {
    if (frame.resize) resizeCanvas(decoder.width, decoder.height);
    for (const rect of report.dirty) paint(decoder, rect);
    state.framesShown += 1;
    state.sourceSeq = decoder.sourceSeq;
    painted();
    state.onFrame?.(report);
  },
  video(decoder, rect, sourceSeq) {
    paint(decoder, rect);
    state.picturesShown += 1;
    painted();
    state.onPicture?.(rect, sourceSeq);
  },
  cursor(msg) {
    if (msg.type === 'Shape') showCursorShape(msg);
    else if (msg.type === 'Position' && !msg.visible) canvas.style.cursor = 'none';
  },
  pacing(msg) {
    state.pacing = msg;
  },
  notice(text) {
    say(text);
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => { if (status.textContent === text) say(''); }, 5000);
  },
};
let noticeTimer = null;

function painted() {
  const now = performance.now();
  state.firstPaintAt ??= now;
  state.lastPaintAt = now;
}

function resizeCanvas(width, height) {
  canvas.width = width;
  canvas.height = height;
  image = context.createImageData(width, height);
}

function paint(decoder, rect) {
  decoder.paintInto(image, rect);
  context.putImageData(image, 0, 0, rect.x, rect.y, rect.width, rect.height);
}

function showCursorShape({ width, height, hotX, hotY, pixels }) {
  if (width === 0 || height === 0) {
    canvas.style.cursor = 'none';
    return;
  }
  const shape = document.createElement('canvas');
  shape.width = width;
  shape.height = height;
  const data = new ImageData(width, height);
  for (let i = 0; i < pixels.length; i += 1) {
    const argb = pixels[i];
    data.data[i * 4] = (argb >>> 16) & 0xff;
    data.data[i * 4 + 1] = (argb >>> 8) & 0xff;
    data.data[i * 4 + 2] = argb & 0xff;
    data.data[i * 4 + 3] = argb >>> 24;
  }
  shape.getContext('2d').putImageData(data, 0, 0);
  canvas.style.cursor = `url(${shape.toDataURL()}) ${hotX} ${hotY}, default`;
}

/** Desktop coordinates of a pointer event (the canvas is scaled to fit the tab). */
function desktopPoint(event) {
  const box = canvas.getBoundingClientRect();
  const scale = Math.min(box.width / canvas.width, box.height / canvas.height);
  const left = box.left + (box.width - canvas.width * scale) / 2;
  const top = box.top + (box.height - canvas.height * scale) / 2;
  const clamp = (v, max) => Math.max(0, Math.min(max - 1, Math.floor(v)));
  return {
    x: clamp((event.clientX - left) / scale, canvas.width),
    y: clamp((event.clientY - top) / scale, canvas.height),
  };
}

const BUTTONS = ['Left', 'Middle', 'Right', 'Back', 'Forward'];

function send(event) {
  state.session?.sendInput(event);
}

/** The page's own chords (Ctrl+Alt+…): they do not go to the desktop. */
const CHORDS = {
  KeyF: () => toggleFullscreen(),
  KeyO: () => { overlay.hidden = !overlay.hidden; },
  KeyM: () => state.sound?.toggleMute(),
  ArrowUp: () => state.sound?.step(1),
  ArrowDown: () => state.sound?.step(-1),
  KeyI: () => setMicrophone(!state.microphone),
};

function onKey(event, down) {
  state.sound?.resume(); // a key press lets a page play sound
  const chord = event.ctrlKey && event.altKey && CHORDS[event.code];
  if (chord) {
    event.preventDefault();
    if (down) chord();
    return;
  }
  const code = evdevCode(event.code);
  if (code === undefined) return;
  event.preventDefault();
  // A paste chord waits for the browser's clipboard to be offered to the desktop.
  const paste = down && ((event.ctrlKey && event.code === 'KeyV') || (event.shiftKey && event.code === 'Insert'));
  const clipboard = state.session?.clipboard;
  state.session?.sendInput({ type: 'Key', code, down }, paste && clipboard ? clipboard.check() : null);
}

/** Starts or stops sending the microphone, and remembers the choice. */
async function setMicrophone(on) {
  state.microphone = on;
  localStorage.setItem(MICROPHONE, on ? 'on' : 'off');
  try {
    const sending = await state.session?.setMicrophone(on);
    if (on && sending === false) view.notice('This desktop takes no microphone.');
    else view.notice(on ? 'Microphone on (Ctrl+Alt+I turns it off)' : 'Microphone off');
  } catch (e) {
    view.notice(`No microphone: ${e.message}`);
  }
}

function toggleFullscreen() {
  if (document.fullscreenElement) document.exitFullscreen();
  else document.documentElement.requestFullscreen().catch(() => {});
}

canvas.addEventListener('keydown', (e) => onKey(e, true));
canvas.addEventListener('keyup', (e) => onKey(e, false));
canvas.addEventListener('pointermove', (e) => send({ type: 'PointerMove', ...desktopPoint(e) }));
canvas.addEventListener('pointerdown', (e) => {
  state.sound?.resume();
  canvas.focus();
  canvas.setPointerCapture(e.pointerId);
  send({ type: 'PointerMove', ...desktopPoint(e) });
  if (BUTTONS[e.button]) send({ type: 'PointerButton', button: BUTTONS[e.button], down: true });
  e.preventDefault();
});
canvas.addEventListener('pointerup', (e) => {
  if (BUTTONS[e.button]) send({ type: 'PointerButton', button: BUTTONS[e.button], down: false });
  e.preventDefault();
});
canvas.addEventListener('contextmenu', (e) => e.preventDefault());
canvas.addEventListener('wheel', (e) => {
  e.preventDefault();
  // Pixels (about 100 a notch), lines (3 a notch) or pages, to wheel clicks; down is positive.
  const per = e.deltaMode === 0 ? 100 : e.deltaMode === 1 ? 3 : 1;
  const clicks = (d) => Math.max(-32768, Math.min(32767, Math.round(d / per)));
  const dx = clicks(e.deltaX);
  const dy = clicks(e.deltaY);
  if (dx || dy) send({ type: 'Wheel', dx, dy });
}, { passive: false });
// The browser's clipboard may have changed while the tab was elsewhere.
window.addEventListener('focus', () => state.session?.clipboard?.check());
document.addEventListener('visibilitychange', () => {
  if (document.visibilityState === 'visible') state.session?.clipboard?.check();
});
window.addEventListener('resize', () => {
  clearTimeout(pendingResize);
  pendingResize = setTimeout(() => {
    const { width, height } = tabSize();
    state.session?.requestSize(width, height);
  }, 250);
});

async function updateOverlay() {
  const session = state.session;
  if (overlay.hidden || !session?.figures) return;
  const f = session.figures;
  const seconds = (performance.now() - f.started) / 1000;
  let rtt = '';
  try {
    const stats = await session.transport.getStats();
    if (stats.smoothedRtt !== undefined) rtt = `${stats.smoothedRtt.toFixed(1)} ms`;
  } catch {
    // No figures from this browser.
  }
  const lines = [
    `${(f.frames / seconds).toFixed(1)} fps`,
    `${((f.bytes * 8) / seconds / 1e6).toFixed(2)} Mbit/s`,
    `RTT ${rtt || '?'}`,
    `decode ${(f.decodeMs / Math.max(1, f.frames)).toFixed(2)} ms/frame`,
  ];
  const speaker = session.speaker?.figures;
  if (speaker) {
    const sound = state.sound;
    const heard = sound.context.state === 'running' ? `${speaker.queuedMs.toFixed(0)} ms queued` : 'click for sound';
    lines.push(`sound ${((speaker.bytes * 8) / seconds / 1000).toFixed(0)} kbit/s, ${heard}`
      + `${sound.muted ? ', muted' : ''}, ${speaker.concealed} concealed`);
  }
  if (session.microphone) lines.push(`microphone ${((session.microphone.figures.bytes * 8) / seconds / 1000).toFixed(0)} kbit/s`);
  overlay.textContent = lines.join('\n');
}
setInterval(updateOverlay, 1000);

/** Browsers keep a page silent until the user clicks or types in it: say so once the
 *  desktop makes a sound. */
function soundHint() {
  const packets = state.session?.speaker?.figures.packets ?? 0;
  const waiting = packets > 0 && state.sound.context.state !== 'running';
  if (waiting && status.textContent === '') view.notice('Click or press a key to hear the desktop.');
}
if (state.sound) setInterval(soundHint, 1000);

/** Connects, and again after an outage, until the server says the session is over. */
async function main() {
  if (!pool) {
    location.href = '/';
    return;
  }
  let backoff = 1000;
  for (;;) {
    let reason;
    let retry = true;
    try {
      const contact = await ticket();
      state.connects += 1;
      const session = new Session(contact, view, tabSize(), state.sound);
      state.session = session;
      canvas.focus();
      await session.start();
      if (state.microphone) setMicrophone(true);
      reason = await session.ended;
      backoff = 1000;
      // The server closed the session and said why (logged off, desktop gone): stop.
      retry = session.closedByServer !== true;
    } catch (e) {
      reason = e.message;
      retry = e.retry !== false;
    }
    state.reason = reason;
    if (!retry) {
      state.phase = 'ended';
      say(`Disconnected: ${reason}`);
      return;
    }
    state.phase = 'reconnecting';
    say(`Reconnecting… (${reason})`);
    await new Promise((resolve) => { setTimeout(resolve, backoff); });
    backoff = Math.min(backoff * 2, 15000);
  }
}

main();
