//! The passphrase prompt on a terminal: no echo, lines edited by hand (backspace, Ctrl-U), Ctrl-C or Ctrl-D to stop, and the terminal restored afterwards.
//!
//! The terminal is put in raw mode rather than left to the kernel's line editing, so that
//! Ctrl-C arrives as a byte (it ends console input instead of signalling PID 1) and the line
//! buffer is ours: a fixed-capacity [`Secret`]. Carriage return, line feed and CR LF all end a
//! line. Other control characters are ignored.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use luks::secret::Secret;
use rustix::fs::{Mode, OFlags};
use rustix::termios::{self, InputModes, LocalModes, OptionalActions, SpecialCodeIndex, Termios};

use super::line::{Key, LineEditor};
use super::{Input, Source, too_long, tries_left};

/// Bytes read from the terminal per call, kept in a wiped buffer until handed out.
const CHUNK: usize = 256;

/// A terminal asked on.
pub struct Console {
    path: PathBuf,
    prompt: String,
    /// `None` once input has ended.
    file: Option<File>,
    /// The settings to put back; `None` when it is no terminal or they are back already.
    saved: Option<Termios>,
    /// The line being typed.
    line: LineEditor,
    /// Read but not yet handed out: `chunk[next..end]`.
    chunk: Secret,
    next: usize,
    end: usize,
    /// Something was typed since the prompt, so a message must start on a new line.
    mid_line: bool,
}

impl Console {
    /// Opens `path`, turns echo off and shows the prompt.
    pub fn open(path: &Path, message: &str) -> io::Result<Console> {
        let flags = OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC | OFlags::NONBLOCK;
        let file = File::from(rustix::fs::open(path, flags, Mode::empty())?);
        // Opened without blocking (a serial line waiting for carrier), then blocking again: poll
        // says when to read, and a slow serial console must not cut messages short.
        rustix::io::ioctl_fionbio(&file, false)?;
        let saved = match termios::tcgetattr(&file) {
            Ok(t) => Some(t),
            // Not a terminal (a serial line without a tty layer, a pipe in tests): nothing echoes.
            Err(rustix::io::Errno::NOTTY) => None,
            Err(e) => return Err(e.into()),
        };
        if let Some(t) = &saved {
            let mut raw = t.clone();
            raw.local_modes
                .remove(LocalModes::ECHO | LocalModes::ICANON | LocalModes::ISIG | LocalModes::IEXTEN);
            raw.input_modes.remove(InputModes::ICRNL | InputModes::INLCR | InputModes::IGNCR);
            raw.special_codes[SpecialCodeIndex::VMIN] = 1;
            raw.special_codes[SpecialCodeIndex::VTIME] = 0;
            // FLUSH: anything typed before the prompt was echoed; it must not become the answer.
            termios::tcsetattr(&file, OptionalActions::Flush, &raw)?;
        }
        let mut c = Console {
            path: path.to_owned(),
            prompt: format!("{}: ", single_line(message)),
            file: Some(file),
            saved,
            line: LineEditor::new(),
            chunk: Secret::zeroed(CHUNK),
            next: 0,
            end: 0,
            mid_line: false,
        };
        c.say(&c.prompt.clone());
        Ok(c)
    }

    /// Writes to the terminal; a console that cannot be written to is not worth failing for.
    fn say(&mut self, text: &str) {
        if let Some(f) = &mut self.file {
            let _ = f.write_all(text.as_bytes());
        } else {
            // Input has ended, but messages still help; never as a controlling terminal.
            let flags = OFlags::WRONLY | OFlags::NOCTTY | OFlags::CLOEXEC | OFlags::NONBLOCK;
            if let Ok(fd) = rustix::fs::open(&self.path, flags, Mode::empty()) {
                let _ = File::from(fd).write_all(text.as_bytes());
            }
        }
    }

    /// Puts the terminal's settings back.
    fn restore(&mut self) {
        if let (Some(t), Some(f)) = (self.saved.take(), &self.file) {
            let _ = termios::tcsetattr(f, OptionalActions::Now, &t);
        }
    }

    /// Stops reading: wipes the line, restores the terminal, closes it.
    fn end(&mut self, why: &str) -> Input {
        self.line.clear();
        self.next = self.end;
        self.chunk.as_mut_bytes().fill(0);
        self.say(&format!("\n{why}; an ask-password agent can still answer\n"));
        self.restore();
        self.file = None;
        Input::Ended
    }

    /// Takes the byte `b`; an input when it completes or ends a line.
    fn take(&mut self, b: u8) -> Option<Input> {
        match self.line.key(b, true) {
            Key::Nothing => None,
            Key::Typed => {
                self.mid_line = true;
                None
            }
            Key::Line(line) => {
                self.say("\n");
                self.mid_line = false;
                Some(line.map_or_else(|| Input::Invalid(too_long()), Input::Answer))
            }
            Key::Interrupt => Some(self.end("console input stopped (Ctrl-C)")),
            Key::EndOfInput => Some(self.end("console input stopped (Ctrl-D)")),
        }
    }
}

impl Source for Console {
    fn name(&self) -> String {
        format!("console {}", self.path.display())
    }

    fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.file.as_ref().map(|f| f.as_fd())
    }

    fn has_buffered(&self) -> bool {
        self.file.is_some() && self.next < self.end
    }

    fn read(&mut self) -> io::Result<Input> {
        if self.next >= self.end {
            let Some(file) = &self.file else { return Ok(Input::Ended) };
            match rustix::io::read(file, self.chunk.as_mut_bytes()) {
                Ok(0) => return Ok(self.end("end of console input")),
                Ok(n) => (self.next, self.end) = (0, n.min(CHUNK)),
                Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => return Ok(Input::Nothing),
                // A pty whose other end is gone, a serial line hung up.
                Err(rustix::io::Errno::IO) => return Ok(self.end("the console hung up")),
                Err(e) => return Err(e.into()),
            }
        }
        while self.next < self.end {
            let b = self.chunk.as_bytes().get(self.next).copied().unwrap_or(0);
            self.next += 1;
            if let Some(input) = self.take(b) {
                if self.next >= self.end {
                    self.chunk.as_mut_bytes().fill(0);
                }
                return Ok(input);
            }
        }
        self.chunk.as_mut_bytes().fill(0);
        Ok(Input::Nothing)
    }

    fn rejected(&mut self, reason: &str, left: Option<u32>) {
        let mut text = String::new();
        if self.mid_line {
            // Another source's answer came while a line was half typed: it is dropped.
            text.push('\n');
            self.line.clear();
            self.mid_line = false;
        }
        text.push_str(&single_line(reason));
        match left {
            None => text.push_str(", try again\n"),
            Some(n) => text.push_str(&format!(", {}\n", tries_left(Some(n)))),
        }
        if self.file.is_some() && left != Some(0) {
            text.push_str(&self.prompt);
        }
        self.say(&text);
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        self.restore();
    }
}

/// Messages are shown on one line: control characters become spaces.
fn single_line(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}
