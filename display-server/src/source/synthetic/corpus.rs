//! Deterministic text for the editor, the viewer and static windows: prose paragraphs
//! (word-wrapped) and code snippets (truncated), picked by a seeded PRNG.

use std::collections::VecDeque;

use super::rng::SplitMix64;

const PROSE: &[&str] = &[
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor \
     incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud \
     exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat.",
    "The display server captures each desktop at its own frame rate, hashes the damaged \
     tiles and sends only what changed. Scrolled regions are detected as moves, so a long \
     log scrolling past costs a few bytes per frame instead of a full repaint.",
    "Duis aute irure dolor in reprehenderit in voluptate velit esse cillum dolore eu fugiat \
     nulla pariatur. Excepteur sint occaecat cupidatat non proident, sunt in culpa qui \
     officia deserunt mollit anim id est laborum.",
    "Meeting notes, Tuesday: latency budget is 16 ms end to end on the LAN and 40 ms over \
     the WAN link. Action items: measure encoder cost per tile, profile the QUIC send \
     path, and check cursor updates stay below 2 ms.",
    "Sed ut perspiciatis unde omnis iste natus error sit voluptatem accusantium doloremque \
     laudantium, totam rem aperiam, eaque ipsa quae ab illo inventore veritatis et quasi \
     architecto beatae vitae dicta sunt explicabo.",
    "Café résumé: naïve façades, Ærø and Øresund — the renderer caches every glyph it \
     meets, so accented text costs one rasterization per character, then a copy.",
    "At vero eos et accusamus et iusto odio dignissimos ducimus qui blanditiis praesentium \
     voluptatum deleniti atque corrupti quos dolores et quas molestias excepturi sint \
     occaecati cupiditate non provident, similique sunt in culpa.",
];

const CODE: &[&str] = &[
    "fn encode_tile(tile: &[u32], out: &mut Vec<u8>) -> Result<usize, EncodeError> {\n\
     \x20   let start = out.len();\n\
     \x20   for chunk in tile.chunks_exact(64) {\n\
     \x20       let hash = xxh3_64(bytemuck::cast_slice(chunk));\n\
     \x20       if cache.contains(hash) {\n\
     \x20           out.push(TAG_CACHED);\n\
     \x20           continue;\n\
     \x20       }\n\
     \x20       out.extend_from_slice(&zstd::encode_all(chunk, 3)?);\n\
     \x20   }\n\
     \x20   Ok(out.len() - start)\n\
     }",
    "#[derive(Debug, Clone, Copy, PartialEq, Eq)]\n\
     pub struct Rect {\n\
     \x20   pub x: u32,\n\
     \x20   pub y: u32,\n\
     \x20   pub width: u32,\n\
     \x20   pub height: u32,\n\
     }",
    "async fn serve(endpoint: Endpoint, desktops: Arc<Registry>) -> anyhow::Result<()> {\n\
     \x20   while let Some(conn) = endpoint.accept().await {\n\
     \x20       let desktops = Arc::clone(&desktops);\n\
     \x20       tokio::spawn(async move {\n\
     \x20           if let Err(e) = handle(conn.await?, &desktops).await {\n\
     \x20               tracing::warn!(error = %e, \"session ended\");\n\
     \x20           }\n\
     \x20           anyhow::Ok(())\n\
     \x20       });\n\
     \x20   }\n\
     \x20   Ok(())\n\
     }",
    "[server]\n\
     listen = \"0.0.0.0:4433\"\n\
     max_fps = 60\n\
     tile_size = 64\n\
     \n\
     [[desktop]]\n\
     name = \"build-01\"\n\
     source = \"synthetic\"\n\
     workload = \"mixed\"",
    "$ cargo test -p oriel-display-server\n\
     \x20  Compiling oriel-protocol v0.1.0\n\
     \x20  Compiling oriel-display-server v0.1.0\n\
     \x20   Finished test profile [optimized + debuginfo] target(s) in 41.2s\n\
     \x20    Running unittests src/lib.rs\n\
     test result: ok. 42 passed; 0 failed; 0 ignored",
];

/// An endless, reproducible supply of text lines at most `width` characters long.
pub(crate) struct Corpus {
    rng: SplitMix64,
    width: usize,
    last_block: Option<usize>,
    queue: VecDeque<String>,
}

impl Corpus {
    pub(crate) fn new(seed: u64, width: usize) -> Self {
        Self {
            rng: SplitMix64::new(seed),
            width: width.max(1),
            last_block: None,
            queue: VecDeque::new(),
        }
    }

    pub(crate) fn next_line(&mut self) -> String {
        loop {
            if let Some(line) = self.queue.pop_front() {
                return line;
            }
            self.refill();
        }
    }

    /// Queues the next block (never the same one twice in a row) and a blank line.
    fn refill(&mut self) {
        let blocks = PROSE.len() + CODE.len();
        let mut pick = self.rng.below_usize(blocks);
        if Some(pick) == self.last_block {
            pick = (pick + 1) % blocks;
        }
        self.last_block = Some(pick);
        match PROSE.get(pick) {
            Some(paragraph) => self.queue.extend(wrap(paragraph, self.width)),
            None => {
                let code = CODE[pick - PROSE.len()];
                let truncated = code.lines().map(|l| l.chars().take(self.width).collect());
                self.queue.extend(truncated);
            }
        }
        self.queue.push_back(String::new());
    }
}

/// Greedy word wrap; words longer than `width` are split.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    let mut line_len = 0;
    for word in text.split_whitespace() {
        let mut word: Vec<char> = word.chars().collect();
        while word.len() > width {
            if line_len > 0 {
                lines.push(std::mem::take(&mut line));
                line_len = 0;
            }
            lines.push(word.drain(..width).collect());
        }
        if line_len > 0 && line_len + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
            line_len = 0;
        }
        if line_len > 0 {
            line.push(' ');
            line_len += 1;
        }
        line.extend(word.iter());
        line_len += word.len();
    }
    if line_len > 0 {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_fit_and_repeat_per_seed() {
        let mut a = Corpus::new(7, 30);
        let mut b = Corpus::new(7, 30);
        for _ in 0..500 {
            let line = a.next_line();
            assert!(line.chars().count() <= 30, "{line:?}");
            assert_eq!(line, b.next_line());
        }
    }

    #[test]
    fn wrap_splits_long_words() {
        assert_eq!(wrap("abcdefgh ij", 3), vec!["abc", "def", "gh", "ij"]);
        assert_eq!(wrap("a b c", 3), vec!["a b", "c"]);
    }
}
