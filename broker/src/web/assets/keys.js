// Physical keys: KeyboardEvent.code to Linux evdev key codes, as the native viewer sends
// them (layout independent: the desktop's keymap decides what a key types).

const letters = 'QWERTYUIOP'.split('').map((c, i) => [`Key${c}`, 16 + i])
  .concat('ASDFGHJKL'.split('').map((c, i) => [`Key${c}`, 30 + i]))
  .concat('ZXCVBNM'.split('').map((c, i) => [`Key${c}`, 44 + i]));
const digits = '1234567890'.split('').map((c, i) => [`Digit${c}`, 2 + i]);
const functions = [59, 60, 61, 62, 63, 64, 65, 66, 67, 68, 87, 88].map((code, i) => [`F${i + 1}`, code]);

const CODES = new Map([
  ...letters, ...digits, ...functions,
  ['Escape', 1], ['Minus', 12], ['Equal', 13], ['Backspace', 14], ['Tab', 15],
  ['BracketLeft', 26], ['BracketRight', 27], ['Enter', 28], ['ControlLeft', 29],
  ['Semicolon', 39], ['Quote', 40], ['Backquote', 41], ['ShiftLeft', 42], ['Backslash', 43],
  ['Comma', 51], ['Period', 52], ['Slash', 53], ['ShiftRight', 54], ['NumpadMultiply', 55],
  ['AltLeft', 56], ['Space', 57], ['CapsLock', 58], ['NumLock', 69], ['ScrollLock', 70],
  ['Numpad7', 71], ['Numpad8', 72], ['Numpad9', 73], ['NumpadSubtract', 74],
  ['Numpad4', 75], ['Numpad5', 76], ['Numpad6', 77], ['NumpadAdd', 78],
  ['Numpad1', 79], ['Numpad2', 80], ['Numpad3', 81], ['Numpad0', 82], ['NumpadDecimal', 83],
  ['IntlBackslash', 86], ['NumpadEnter', 96], ['ControlRight', 97], ['NumpadDivide', 98],
  ['PrintScreen', 99], ['AltRight', 100], ['Home', 102], ['ArrowUp', 103], ['PageUp', 104],
  ['ArrowLeft', 105], ['ArrowRight', 106], ['End', 107], ['ArrowDown', 108], ['PageDown', 109],
  ['Insert', 110], ['Delete', 111], ['Pause', 119], ['MetaLeft', 125], ['MetaRight', 126],
  ['ContextMenu', 127], ['IntlRo', 89], ['IntlYen', 124],
]);

/** The evdev code of a key event's physical key, or undefined for keys we do not send. */
export function evdevCode(code) {
  return CODES.get(code);
}
