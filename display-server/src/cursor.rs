//! The default arrow cursor, sent until a source provides its own shape.

use oriel_protocol::CursorMsg;

const ARROW_WIDTH: u16 = 12;
const ARROW_HEIGHT: u16 = 19;
const _: () = assert!(ARROW[0].len() == ARROW_WIDTH as usize);
const ARROW: [&str; ARROW_HEIGHT as usize] = [
    "X...........",
    "XX..........",
    "X#X.........",
    "X##X........",
    "X###X.......",
    "X####X......",
    "X#####X.....",
    "X######X....",
    "X#######X...",
    "X########X..",
    "X#########X.",
    "X######XXXXX",
    "X###X##X....",
    "X##X.X##X...",
    "X#X..X##X...",
    "XX....X##X..",
    "X.....X##X..",
    ".......X##X.",
    ".......XXX..",
];

pub fn default_arrow() -> CursorMsg {
    let pixels = ARROW
        .iter()
        .flat_map(|row| {
            row.bytes().map(|b| match b {
                b'X' => 0xff00_0000,
                b'#' => 0xffff_ffff,
                _ => 0,
            })
        })
        .collect();
    CursorMsg::Shape {
        width: ARROW_WIDTH,
        height: ARROW_HEIGHT,
        hot_x: 0,
        hot_y: 0,
        pixels,
    }
}
