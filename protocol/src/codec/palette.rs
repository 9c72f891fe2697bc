//! Palette + RLE: for rects with at most 256 colours (text, UI, icons).
//!
//! Layout: `n-1` (u8), mode (u8: 0 packed indices, 1 runs), `n` colours as u32 LE,
//! then either the indices packed MSB-first at 1/2/4/8 bits each, or runs of
//! (index u8, run-1 as LEB128). The encoder keeps whichever is smaller.

use super::{invalid, CodecError};

const MODE_PACKED: u8 = 0;
const MODE_RUNS: u8 = 1;
const SLOTS: usize = 1024;

/// Colours of `pixels`, sorted, or `None` when there are more than `max` (at most 256).
/// Sorting keeps indices stable across tiles with the same colours, which helps the
/// general compressor that runs over the result.
pub fn collect_palette(pixels: &[u32], max: usize) -> Option<Vec<u32>> {
    let max = max.min(256);
    let mut table = ColourTable::new();
    let mut colours = Vec::new();
    let mut last = None;
    for &p in pixels {
        if last == Some(p) {
            continue;
        }
        last = Some(p);
        // Only membership matters here; `encode` assigns the indices.
        if table.insert(p, 0) {
            colours.push(p);
            if colours.len() > max {
                return None;
            }
        }
    }
    colours.sort_unstable();
    Some(colours)
}

/// Open-addressing map from colour to palette index.
struct ColourTable {
    keys: [u32; SLOTS],
    values: [u8; SLOTS],
    used: [bool; SLOTS],
}

impl ColourTable {
    fn new() -> Self {
        Self {
            keys: [0; SLOTS],
            values: [0; SLOTS],
            used: [false; SLOTS],
        }
    }

    fn slot(&self, colour: u32) -> usize {
        let mut i = (colour.wrapping_mul(0x9E37_79B1) >> 22) as usize;
        while self.used[i] && self.keys[i] != colour {
            i = (i + 1) % SLOTS;
        }
        i
    }

    /// Inserts if absent; returns true when the colour is new.
    fn insert(&mut self, colour: u32, value: u8) -> bool {
        let i = self.slot(colour);
        if self.used[i] {
            return false;
        }
        self.used[i] = true;
        self.keys[i] = colour;
        self.values[i] = value;
        true
    }

    fn get(&self, colour: u32) -> u8 {
        self.values[self.slot(colour)]
    }
}

fn bits_for(colours: usize) -> u32 {
    match colours {
        0..=2 => 1,
        3..=4 => 2,
        5..=16 => 4,
        _ => 8,
    }
}

/// Encodes `pixels` with `palette` (from [`collect_palette`]) and appends to `out`.
pub fn encode(pixels: &[u32], palette: &[u32], out: &mut Vec<u8>) {
    debug_assert!(!palette.is_empty() && palette.len() <= 256);
    let mut table = ColourTable::new();
    let mut last_index = 0u8;
    for (i, &c) in (0..=u8::MAX).zip(palette) {
        table.insert(c, i);
        last_index = i;
    }
    let indices: Vec<u8> = pixels.iter().map(|&p| table.get(p)).collect();

    let mut runs = Vec::new();
    let mut i = 0;
    while i < indices.len() {
        let idx = indices[i];
        let mut run = 1;
        while i + run < indices.len() && indices[i + run] == idx {
            run += 1;
        }
        runs.push(idx);
        write_leb128(&mut runs, run as u64 - 1);
        i += run;
    }

    let bits = bits_for(palette.len());
    let packed_len = (indices.len() * bits as usize).div_ceil(8);
    // `n - 1`: the last index of the (non-empty) palette.
    out.push(last_index);
    if runs.len() < packed_len {
        out.push(MODE_RUNS);
        out.extend(palette.iter().flat_map(|c| c.to_le_bytes()));
        out.extend_from_slice(&runs);
    } else {
        out.push(MODE_PACKED);
        out.extend(palette.iter().flat_map(|c| c.to_le_bytes()));
        let mut acc = 0u32;
        let mut nbits = 0;
        for &idx in &indices {
            acc = (acc << bits) | u32::from(idx);
            nbits += bits;
            if nbits >= 8 {
                nbits -= 8;
                out.push(((acc >> nbits) & 0xff) as u8);
            }
        }
        if nbits > 0 {
            out.push(((acc << (8 - nbits)) & 0xff) as u8);
        }
    }
}

/// Largest encoding of `pixels` pixels (runs of one pixel: index plus one LEB byte).
pub fn max_encoded_len(pixels: u64) -> u64 {
    2 + 256 * 4 + 2 * pixels
}

/// Decodes exactly `out.len()` pixels from `data`, which must be consumed entirely.
pub fn decode(data: &[u8], out: &mut [u32]) -> Result<(), CodecError> {
    let [n_minus_one, mode, rest @ ..] = data else {
        return Err(invalid("palette: header truncated"));
    };
    let n = usize::from(*n_minus_one) + 1;
    if rest.len() < n * 4 {
        return Err(invalid("palette: colours truncated"));
    }
    let (colour_bytes, body) = rest.split_at(n * 4);
    let palette: Vec<u32> = colour_bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let colour = |idx: u8| {
        palette
            .get(usize::from(idx))
            .copied()
            .ok_or_else(|| invalid("palette: index out of range"))
    };
    match *mode {
        MODE_PACKED => {
            let bits = bits_for(n) as usize;
            if body.len() != (out.len() * bits).div_ceil(8) {
                return Err(invalid("palette: packed indices have the wrong length"));
            }
            let mask = u8::MAX >> (8 - bits);
            for (i, px) in out.iter_mut().enumerate() {
                let bit = i * bits;
                let shift = 8 - bits - (bit % 8);
                let idx = (body[bit / 8] >> shift) & mask;
                *px = colour(idx)?;
            }
            Ok(())
        }
        MODE_RUNS => {
            let mut pos = 0;
            let mut written = 0;
            while pos < body.len() {
                let c = colour(body[pos])?;
                pos += 1;
                let run = read_leb128(body, &mut pos)? as usize + 1;
                let end = written + run;
                if end > out.len() {
                    return Err(invalid("palette: runs exceed the rect"));
                }
                out[written..end].fill(c);
                written = end;
            }
            if written != out.len() {
                return Err(invalid("palette: runs do not cover the rect"));
            }
            Ok(())
        }
        other => Err(invalid(format!("palette: unknown mode {other}"))),
    }
}

fn write_leb128(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn read_leb128(data: &[u8], pos: &mut usize) -> Result<u32, CodecError> {
    let mut v: u32 = 0;
    for i in 0..5 {
        let byte = *data
            .get(*pos)
            .ok_or_else(|| invalid("palette: run length truncated"))?;
        *pos += 1;
        let part = u32::from(byte & 0x7f);
        if i == 4 && part > 0x0f {
            return Err(invalid("palette: run length overflows"));
        }
        v |= part << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(invalid("palette: run length too long"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(pixels: &[u32]) -> usize {
        let pal = collect_palette(pixels, 256).expect("few colours");
        let mut bytes = Vec::new();
        encode(pixels, &pal, &mut bytes);
        assert!(bytes.len() as u64 <= max_encoded_len(pixels.len() as u64));
        let mut out = vec![0; pixels.len()];
        decode(&bytes, &mut out).unwrap();
        assert_eq!(out, pixels);
        bytes.len()
    }

    #[test]
    fn flat_tile_is_tiny() {
        assert!(round_trip(&[0x00ff_ffff; 4096]) < 16);
    }

    #[test]
    fn too_many_colours_is_none() {
        let pixels: Vec<u32> = (0..300).collect();
        assert!(collect_palette(&pixels, 256).is_none());
        assert!(collect_palette(&pixels[..20], 16).is_none());
        assert_eq!(
            collect_palette(&pixels[..16], 16).map(|p| p.len()),
            Some(16)
        );
    }

    #[test]
    fn rejects_bad_index_and_short_runs() {
        // 2 colours, runs mode, index 5 is out of range.
        let mut bad = vec![1, MODE_RUNS];
        bad.extend([0u8; 8]);
        bad.extend([5, 0]);
        assert!(decode(&bad, &mut [0; 1]).is_err());
        // Runs cover only 1 of 2 pixels.
        let mut short = vec![0, MODE_RUNS, 0, 0, 0, 0, 0, 0];
        assert!(decode(&short, &mut [0; 2]).is_err());
        short.truncate(3);
        assert!(decode(&short, &mut [0; 2]).is_err());
    }

    proptest! {
        #[test]
        fn any_small_palette_round_trips(
            colours in proptest::collection::vec(any::<u32>(), 1..256),
            picks in proptest::collection::vec(any::<u8>(), 1..5000),
        ) {
            let pixels: Vec<u32> = picks.iter().map(|p| colours[*p as usize % colours.len()]).collect();
            round_trip(&pixels);
        }

        #[test]
        fn decode_never_panics(data in proptest::collection::vec(any::<u8>(), 0..2000), n in 0usize..5000) {
            let mut out = vec![0; n];
            let _ = decode(&data, &mut out);
        }
    }
}
