//! A client's typed input at the SSH unlock prompt, in any chunks, pty or not: never panics, never yields more than MAX_PASSPHRASE bytes or more than MAX_QUEUED lines, and chunking does not change the lines.
#![no_main]

use initrd_tool::ssh::prompt::{Line, MAX_QUEUED, Prompt};
use libfuzzer_sys::fuzz_target;
use luks::secret::MAX_PASSPHRASE;

fn lines(p: &mut Prompt) -> Vec<Option<Vec<u8>>> {
    std::iter::from_fn(|| p.next_line())
        .map(|l| match l {
            Line::Answer(s) => {
                assert!(s.len() <= MAX_PASSPHRASE);
                Some(s.as_bytes().to_vec())
            }
            Line::TooLong => None,
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, input)) = data.split_first() else { return };
    let pty = mode & 1 == 1;
    let chunk = usize::from(mode >> 1).max(1);
    let mut whole = Prompt::new(pty);
    whole.feed(input);
    whole.end();
    let mut pieces = Prompt::new(pty);
    for c in input.chunks(chunk) {
        pieces.feed(c);
    }
    pieces.end();
    let (a, b) = (lines(&mut whole), lines(&mut pieces));
    assert!(a.len() <= MAX_QUEUED);
    assert_eq!(a, b, "chunking changed the lines");
});
