// The clipboard in the page: the desktop's clipboard and the browser's, through the
// async Clipboard API, within the policy the server sends first. A browser cannot
// serve its clipboard lazily, so what the desktop offers is fetched at once and put in
// the browser's clipboard (when the tab has focus: a browser refuses otherwise). The
// browser says nothing when its clipboard changes, so the page reads it when the tab
// gains focus and before a paste chord goes to the desktop, and offers it when it
// changed; the desktop fetches it when something there pastes.

const utf8 = new TextDecoder();
const utf8Out = new TextEncoder();
/** Browser clipboard types and the channel's formats, in order of preference. */
const TYPES = [['text/plain', 'Text'], ['image/png', 'Png']];

const sameBytes = (a, b) => a.length === b.length && a.every((v, i) => v === b[i]);

export class ClipboardBridge {
  static supported() {
    return !!navigator.clipboard?.read && typeof ClipboardItem === 'function';
  }

  /** `send(msg)` sends a ClipboardMsg to the desktop (resolving once written);
   *  `notice(text)` tells the user. */
  constructor(send, notice) {
    this.send = send;
    this.notice = notice;
    this.policy = null;
    this.serial = 0;
    // What we last offered: {serial, data: Map(format → Uint8Array)}.
    this.offered = null;
    // The desktop's latest offer, and data of it waiting for the tab's focus.
    this.desktopOffer = null;
    this.unwritten = null;
    // The browser clipboard's content as last seen or written: {format, data}.
    this.seen = null;
    this.checking = null;
    this.figures = { toDesktop: 0, toClient: 0 };
  }

  fromServer(msg) {
    switch (msg.type) {
      case 'Policy':
        this.policy = msg;
        this.check();
        break;
      case 'Offer': this.desktopOffered(msg); break;
      case 'Data': this.desktopData(msg); break;
      case 'Request': this.desktopRequests(msg); break;
      default: this.notice(`Clipboard: ${msg.reason}`); break;
    }
  }

  desktopOffered(offer) {
    if (!this.policy?.toClient || offer.selection !== 'Clipboard') return;
    this.desktopOffer = offer;
    const format = TYPES.map(([, f]) => f).find((f) => offer.formats.includes(f));
    if (format) this.send({ type: 'Request', serial: offer.serial, format });
  }

  desktopData(msg) {
    if (msg.serial !== this.desktopOffer?.serial) return; // an older offer's
    this.unwritten = { format: msg.format, data: msg.data };
    this.writeLocal();
  }

  /** Puts the desktop's data in the browser's clipboard, now or when the tab has focus. */
  async writeLocal() {
    const pending = this.unwritten;
    if (!pending || !document.hasFocus()) return;
    try {
      if (pending.format === 'Text') await navigator.clipboard.writeText(utf8.decode(pending.data));
      else {
        const blob = new Blob([pending.data], { type: 'image/png' });
        await navigator.clipboard.write([new ClipboardItem({ 'image/png': blob })]);
      }
      if (this.unwritten === pending) this.unwritten = null;
      // What the browser holds now (it re-encodes pictures): not to be offered back.
      this.seen = (await this.readClipboard().catch(() => null))?.content ?? pending;
      this.figures.toClient += 1;
    } catch (e) {
      // Not focused after all, or refused: tried again on the next focus.
      if (e.name !== 'NotAllowedError') this.notice(`Clipboard: ${e.message}`);
    }
  }

  desktopRequests({ serial, format }) {
    const data = serial === this.offered?.serial ? this.offered.data.get(format) : undefined;
    let reason = null;
    if (!this.policy?.toDesktop) reason = 'the clipboard may not go to the desktop';
    else if (data === undefined) reason = 'that clipboard content is gone';
    else if (data.length > this.policy.maxBytes) {
      reason = `the clipboard holds ${data.length} bytes, more than the ${this.policy.maxBytes} allowed`;
    }
    if (reason) {
      this.send({ type: 'Refused', serial, format, reason });
      this.notice(`Clipboard: ${reason}`);
      return;
    }
    this.send({ type: 'Data', serial, format, data });
    this.figures.toDesktop += 1;
  }

  /**
   * Reads the browser's clipboard and offers it to the desktop if it changed since it
   * was last seen; resolves once the offer is sent (so a paste chord can follow it).
   */
  check() {
    this.checking ??= this.readLocal().finally(() => { this.checking = null; });
    return this.checking;
  }

  async readLocal() {
    this.writeLocal();
    if (!this.policy?.toDesktop || !document.hasFocus()) return;
    let clipboard;
    try {
      clipboard = await this.readClipboard();
    } catch {
      return; // not allowed (the user said no) or not focused
    }
    if (!clipboard) return;
    const { data, content } = clipboard;
    if (this.seen && this.seen.format === content.format && sameBytes(this.seen.data, content.data)) return;
    this.seen = content;
    this.serial += 1;
    this.offered = { serial: this.serial, data };
    await this.send({ type: 'Offer', selection: 'Clipboard', serial: this.serial, formats: [...data.keys()] });
  }

  /** The browser's clipboard in the channel's formats: {data: Map(format → bytes),
   *  content: the preferred one as {format, data}}, or null when it holds none. */
  async readClipboard() {
    const data = new Map();
    for (const item of await navigator.clipboard.read()) {
      for (const [type, format] of TYPES) {
        if (!item.types.includes(type) || data.has(format)) continue;
        const blob = await item.getType(type);
        data.set(format, type === 'text/plain'
          ? utf8Out.encode(await blob.text())
          : new Uint8Array(await blob.arrayBuffer()));
      }
    }
    const first = TYPES.map(([, f]) => f).find((f) => data.has(f));
    return first ? { data, content: { format: first, data: data.get(first) } } : null;
  }
}
