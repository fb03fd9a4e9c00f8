//! One SSH client's typed input turned into answers: no echo, line editing on a pty, one answer per line on plain stdin, answers typed ahead kept (bounded).
//!
//! Pure (bytes in, events out), so the rules are tested without a connection. With a pty the
//! client's terminal is raw, so the keys arrive as bytes: backspace and DEL remove a character
//! (a whole UTF-8 sequence), Ctrl-U the line, Ctrl-C cancels, Ctrl-D on an empty line ends
//! input, other control characters are ignored. Without a pty (`ssh host < passfile`) every
//! byte but the line ends is part of the passphrase. In both, CR, LF and CR LF end a line, and
//! a line longer than [`MAX_PASSPHRASE`](luks::secret::MAX_PASSPHRASE) is reported as too long, never cut short.

use std::collections::VecDeque;

use luks::secret::Secret;

use crate::askpass::line::{Key, LineEditor};

/// Lines kept while nothing is asked (stdin mode); more are dropped.
pub const MAX_QUEUED: usize = 8;

/// A complete line.
#[derive(Debug)]
pub enum Line {
    Answer(Secret),
    /// More than [`MAX_PASSPHRASE`](luks::secret::MAX_PASSPHRASE) bytes.
    TooLong,
}

/// What the input amounted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A line ended (Enter): with a pty, the client needs a new line on screen.
    LineEnded,
    /// Ctrl-C on a pty: the client gives up.
    Interrupted,
    /// Ctrl-D on an empty line, or the channel's end of input.
    Ended,
}

/// A client's input state.
pub struct Prompt {
    pty: bool,
    line: LineEditor,
    /// Lines complete and not yet taken, oldest first.
    lines: VecDeque<Line>,
    ended: bool,
    /// Lines dropped because [`MAX_QUEUED`] were waiting.
    dropped: usize,
}

impl Prompt {
    pub fn new(pty: bool) -> Prompt {
        Prompt { pty, line: LineEditor::new(), lines: VecDeque::new(), ended: false, dropped: 0 }
    }

    pub fn pty(&self) -> bool {
        self.pty
    }

    /// Input is over: no more lines will come (those queued remain).
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Takes the bytes the client sent; complete lines are queued for [`Prompt::next_line`].
    pub fn feed(&mut self, data: &[u8]) -> Vec<Event> {
        let mut events = Vec::new();
        for &b in data {
            if self.ended {
                break;
            }
            if let Some(e) = self.take(b) {
                events.push(e);
            }
        }
        events
    }

    /// The channel's end of input: a last line without its newline still counts.
    pub fn end(&mut self) {
        if !self.ended && !self.line.is_empty() {
            self.finish_line();
        }
        self.ended = true;
        self.line.clear();
    }

    /// The oldest complete line not yet taken.
    pub fn next_line(&mut self) -> Option<Line> {
        self.lines.pop_front()
    }

    pub fn has_line(&self) -> bool {
        !self.lines.is_empty()
    }

    /// Forgets what is typed and queued (another answer was taken meanwhile, or a pty line
    /// typed before the question).
    pub fn clear(&mut self) {
        self.line.clear();
        self.lines.clear();
    }

    /// How many lines were dropped so far because too many were waiting.
    pub fn dropped(&self) -> usize {
        self.dropped
    }

    fn finish_line(&mut self) {
        let line = self.line.take_line();
        self.queue(line);
    }

    /// Queues a complete line (`None`: too long), unless [`MAX_QUEUED`] wait already.
    fn queue(&mut self, line: Option<Secret>) {
        if self.lines.len() >= MAX_QUEUED {
            self.dropped += 1;
        } else {
            self.lines.push_back(line.map_or(Line::TooLong, Line::Answer));
        }
    }

    fn take(&mut self, b: u8) -> Option<Event> {
        match self.line.key(b, self.pty) {
            Key::Nothing | Key::Typed => None,
            Key::Line(line) => {
                self.queue(line);
                Some(Event::LineEnded)
            }
            Key::Interrupt => {
                self.ended = true;
                Some(Event::Interrupted)
            }
            Key::EndOfInput => {
                self.ended = true;
                Some(Event::Ended)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use luks::secret::MAX_PASSPHRASE;

    use super::*;

    fn answers(p: &mut Prompt) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| p.next_line())
            .map(|l| match l {
                Line::Answer(s) => s.as_bytes().to_vec(),
                Line::TooLong => b"<too long>".to_vec(),
            })
            .collect()
    }

    #[test]
    fn cr_lf_and_crlf_each_end_one_line() {
        let mut p = Prompt::new(true);
        assert_eq!(p.feed(b"one\rtwo\nthree\r\nfour"), [Event::LineEnded; 3]);
        assert_eq!(answers(&mut p), [b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]);
        p.end();
        assert_eq!(answers(&mut p), [b"four".to_vec()], "the last line counts without its newline");
    }

    #[test]
    fn backspace_removes_a_whole_character_on_a_pty() {
        let mut p = Prompt::new(true);
        p.feed("abé\x7f\x7fc\x08d\r".as_bytes());
        assert_eq!(answers(&mut p), [b"ad".to_vec()]);
        p.feed(b"junk\x15ok\r");
        assert_eq!(answers(&mut p), [b"ok".to_vec()], "Ctrl-U clears the line");
    }

    #[test]
    fn control_keys_on_a_pty() {
        let mut p = Prompt::new(true);
        assert_eq!(p.feed(b"a\x01\tb\r"), [Event::LineEnded]);
        assert_eq!(answers(&mut p), [b"a\tb".to_vec()], "control characters but tab are ignored");
        assert_eq!(p.feed(b"x\x04"), [], "Ctrl-D ends input only on an empty line");
        assert_eq!(p.feed(b"\x15\x04more"), [Event::Ended]);
        assert!(p.ended());
        assert_eq!(answers(&mut p), Vec::<Vec<u8>>::new());
        let mut p = Prompt::new(true);
        assert_eq!(p.feed(b"secr\x03et\r"), [Event::Interrupted]);
        assert!(p.ended() && !p.has_line(), "Ctrl-C drops the half-typed line");
    }

    #[test]
    fn stdin_mode_takes_every_byte_but_line_ends() {
        let mut p = Prompt::new(false);
        assert_eq!(p.feed(b"a\x7fb\x03\x04\r\n"), [Event::LineEnded]);
        assert_eq!(answers(&mut p), [b"a\x7fb\x03\x04".to_vec()]);
        assert!(!p.ended());
    }

    #[test]
    fn an_overlong_line_is_too_long_not_cut() {
        let mut p = Prompt::new(false);
        p.feed(&vec![b'x'; MAX_PASSPHRASE]);
        p.feed(b"\n");
        p.feed(&vec![b'x'; MAX_PASSPHRASE + 1]);
        p.feed(b"\nshort\n");
        assert_eq!(answers(&mut p), [vec![b'x'; MAX_PASSPHRASE], b"<too long>".to_vec(), b"short".to_vec()]);
        let mut p = Prompt::new(true);
        p.feed(&vec![b'x'; MAX_PASSPHRASE + 2]);
        p.feed(b"\x7f\x7f\r");
        assert_eq!(answers(&mut p), [vec![b'x'; MAX_PASSPHRASE]], "backspace takes back the excess first");
    }

    #[test]
    fn lines_typed_ahead_are_kept_up_to_a_bound() {
        let mut p = Prompt::new(false);
        for i in 0..MAX_QUEUED + 3 {
            p.feed(format!("{i}\n").as_bytes());
        }
        assert_eq!(p.dropped(), 3);
        let got = answers(&mut p);
        assert_eq!(got.len(), MAX_QUEUED);
        assert_eq!(got[0], b"0");
        p.feed(b"again\n");
        p.clear();
        assert!(!p.has_line());
    }

    #[test]
    fn end_of_input_ends_once() {
        let mut p = Prompt::new(false);
        p.end();
        assert!(p.ended());
        assert_eq!(p.feed(b"late\n"), []);
        p.end();
        assert!(!p.has_line());
    }
}
