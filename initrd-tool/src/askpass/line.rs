//! Typed bytes turned into passphrase lines, shared by the console and the SSH prompt: CR, LF and CR LF end a line, and with editing on, backspace takes a whole UTF-8 character, Ctrl-U the line, Ctrl-C and Ctrl-D (on an empty line) stop.
//!
//! The line is a fixed-capacity [`Secret`]: bytes beyond [`MAX_PASSPHRASE`] are only counted,
//! so that a line too long is reported as such, never cut short into a wrong passphrase.

use luks::secret::{MAX_PASSPHRASE, Secret};

const CTRL_C: u8 = 0x03;
const CTRL_D: u8 = 0x04;
const BACKSPACE: u8 = 0x08;
const TAB: u8 = b'\t';
const CTRL_U: u8 = 0x15;
const DEL: u8 = 0x7f;

/// What one byte did.
#[derive(Debug)]
pub enum Key {
    /// Nothing to tell (a control character, an edit, the LF of a CR LF).
    Nothing,
    /// A byte was added to the line.
    Typed,
    /// The line ended: the passphrase, or `None` when it was longer than [`MAX_PASSPHRASE`].
    Line(Option<Secret>),
    /// Ctrl-C (editing only): the line is wiped.
    Interrupt,
    /// Ctrl-D on an empty line (editing only).
    EndOfInput,
}

/// The line being typed.
pub struct LineEditor {
    line: Secret,
    /// Bytes typed beyond the line's capacity.
    excess: usize,
    /// The last byte was a CR: an LF right after it ends the same line.
    after_cr: bool,
}

impl Default for LineEditor {
    fn default() -> LineEditor {
        LineEditor::new()
    }
}

impl LineEditor {
    pub fn new() -> LineEditor {
        LineEditor { line: Secret::with_capacity(MAX_PASSPHRASE), excess: 0, after_cr: false }
    }

    /// Takes byte `b`. With `editing` off (input from a file, not a person at a terminal) every
    /// byte but the line ends is part of the passphrase.
    pub fn key(&mut self, b: u8, editing: bool) -> Key {
        let after_cr = std::mem::replace(&mut self.after_cr, b == b'\r');
        match b {
            b'\n' if after_cr => Key::Nothing,
            b'\r' | b'\n' => Key::Line(self.take_line()),
            BACKSPACE | DEL if editing => {
                if self.excess > 0 {
                    self.excess -= 1;
                } else {
                    // One character, as the terminal showed it: a UTF-8 lead byte and its
                    // continuation bytes.
                    while let Some(&last) = self.line.as_bytes().last() {
                        self.line.pop();
                        if last & 0xC0 != 0x80 {
                            break;
                        }
                    }
                }
                Key::Nothing
            }
            CTRL_U if editing => {
                self.clear();
                Key::Nothing
            }
            CTRL_C if editing => {
                self.clear();
                Key::Interrupt
            }
            CTRL_D if editing && self.is_empty() => Key::EndOfInput,
            b if editing && b < 0x20 && b != TAB => Key::Nothing,
            b => {
                if self.line.push(b).is_err() {
                    self.excess = self.excess.saturating_add(1);
                }
                Key::Typed
            }
        }
    }

    /// The line so far, ended here: `None` when too long. The editor starts a new line.
    pub fn take_line(&mut self) -> Option<Secret> {
        let excess = std::mem::take(&mut self.excess);
        let line = std::mem::replace(&mut self.line, Secret::with_capacity(MAX_PASSPHRASE));
        (excess == 0).then_some(line)
    }

    /// Nothing typed on this line.
    pub fn is_empty(&self) -> bool {
        self.line.is_empty() && self.excess == 0
    }

    /// Wipes the line.
    pub fn clear(&mut self) {
        self.line.clear();
        self.excess = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(e: &mut LineEditor, input: &[u8], editing: bool) -> Vec<Option<Vec<u8>>> {
        input
            .iter()
            .filter_map(|&b| match e.key(b, editing) {
                Key::Line(l) => Some(l.map(|s| s.as_bytes().to_vec())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn backspace_takes_a_whole_character_only_when_editing() {
        let mut e = LineEditor::new();
        assert_eq!(lines(&mut e, "aé\x7f\x7fb\r\n".as_bytes(), true), [Some(b"b".to_vec())]);
        assert_eq!(lines(&mut e, b"a\x7fb\n", false), [Some(b"a\x7fb".to_vec())]);
    }

    #[test]
    fn a_line_too_long_is_reported_not_cut_and_backspace_undoes_the_excess() {
        let mut e = LineEditor::new();
        let long = vec![b'x'; MAX_PASSPHRASE + 2];
        assert_eq!(lines(&mut e, &[&long[..], b"\n"].concat(), true), [None]);
        assert_eq!(
            lines(&mut e, &[&long[..], b"\x08\x08\n"].concat(), true),
            [Some(vec![b'x'; MAX_PASSPHRASE])]
        );
    }

    #[test]
    fn ctrl_c_wipes_and_ctrl_d_ends_only_an_empty_line() {
        let mut e = LineEditor::new();
        assert!(matches!(e.key(b'a', true), Key::Typed));
        assert!(matches!(e.key(0x04, true), Key::Nothing));
        assert!(matches!(e.key(0x03, true), Key::Interrupt));
        assert!(e.is_empty());
        assert!(matches!(e.key(0x04, true), Key::EndOfInput));
        assert!(matches!(e.key(0x04, false), Key::Typed));
    }
}
