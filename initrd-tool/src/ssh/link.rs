//! The messages between the unlocking process and the SSH server: one per SOCK_SEQPACKET datagram, encoded and decoded strictly.
//!
//! The server faces the network and runs unprivileged, so the unlocking process trusts nothing
//! it sends: every datagram is decoded completely (tag, fixed-width integers, length-prefixed
//! UTF-8 strings, nothing left over) or refused. Integers are big-endian `u32`; an optional
//! one is a presence byte (0 or 1) then the value; a string is a `u16` length then the bytes.
//! A passphrase is the rest of its datagram and is decoded straight into a [`Secret`].

use luks::secret::{MAX_PASSPHRASE, Secret};

/// Largest datagram either side sends (a passphrase of [`MAX_PASSPHRASE`] bytes and its header
/// fit with room to spare; prompts and reasons are cut to fit).
pub const MAX_MESSAGE: usize = 2048;
/// Longest text field: room for the tag and the other fields of any message.
const MAX_TEXT: usize = 1024;

/// From the unlocking process to the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToServer {
    /// A device waits: `message` is the question (`Please enter passphrase for disk cryptroot
    /// (/dev/vda2)`), `device` its short name (`cryptroot`).
    Request { seq: u32, device: String, message: String },
    /// The answer to request `seq` (from SSH client `client`, or from the console when `None`)
    /// was rejected for `reason`; `left` tries remain (`None`: no limit).
    Rejected { seq: u32, client: Option<u32>, reason: String, left: Option<u32> },
    /// Request `seq` is over.
    Finished { seq: u32, outcome: Outcome },
    /// Everything is unlocked: say so, close every connection and exit.
    Stop,
}

/// How a request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Unlocked,
    Failed(String),
    /// Over without a word (the unlocking process gave up on it or went on).
    Over,
}

/// From the server to the unlocking process.
#[derive(Debug, PartialEq, Eq)]
pub enum ToParent {
    /// Listening, privileges dropped: the server is ready for clients.
    Ready,
    /// The server could not start: why (names the path, the port, ...).
    Failed(String),
    /// Client `client` answered request `seq`.
    Answer { seq: u32, client: u32, passphrase: Secret },
    /// Client `client` typed more than [`MAX_PASSPHRASE`] bytes for request `seq`.
    TooLong { seq: u32, client: u32 },
}

/// A datagram that is no message of the protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("empty message")]
    Empty,
    #[error("unknown message tag {0}")]
    UnknownTag(u8),
    #[error("message cut short")]
    Short,
    #[error("{0} bytes left over after the message")]
    Trailing(usize),
    #[error("a text field is not UTF-8")]
    NotUtf8,
    #[error("a text field of {0} bytes, more than {MAX_TEXT}")]
    TextTooLong(usize),
    #[error("a presence byte is {0}, not 0 or 1")]
    BadFlag(u8),
    #[error("a passphrase longer than {MAX_PASSPHRASE} bytes")]
    PassphraseTooLong,
    #[error("message of {0} bytes, more than {MAX_MESSAGE}")]
    TooLarge(usize),
}

mod tag {
    pub const REQUEST: u8 = 1;
    pub const REJECTED: u8 = 2;
    pub const FINISHED: u8 = 3;
    pub const STOP: u8 = 4;
    pub const READY: u8 = 0x81;
    pub const FAILED: u8 = 0x82;
    pub const ANSWER: u8 = 0x83;
    pub const TOO_LONG: u8 = 0x84;
    pub const UNLOCKED: u8 = 0;
    pub const FAILED_OUTCOME: u8 = 1;
    pub const OVER: u8 = 2;
}

struct Writer(Vec<u8>);

impl Writer {
    fn new(tag: u8) -> Writer {
        Writer(vec![tag])
    }

    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    fn opt(&mut self, v: Option<u32>) -> &mut Self {
        match v {
            None => self.0.push(0),
            Some(v) => {
                self.0.push(1);
                self.u32(v);
            }
        }
        self
    }

    /// Text longer than [`MAX_TEXT`] is cut at a character boundary: it is for people.
    fn text(&mut self, s: &str) -> &mut Self {
        let mut end = s.len().min(MAX_TEXT);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        let len = u16::try_from(end).unwrap_or(0);
        self.0.extend_from_slice(&len.to_be_bytes());
        self.0.extend_from_slice(&s.as_bytes()[..usize::from(len)]);
        self
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError::Short);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn opt(&mut self) -> Result<Option<u32>, DecodeError> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.u32()?)),
            f => Err(DecodeError::BadFlag(f)),
        }
    }

    fn text(&mut self) -> Result<String, DecodeError> {
        let b = self.take(2)?;
        let len = usize::from(u16::from_be_bytes([b[0], b[1]]));
        if len > MAX_TEXT {
            return Err(DecodeError::TextTooLong(len));
        }
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::NotUtf8)
    }

    fn end(&self) -> Result<(), DecodeError> {
        if self.0.is_empty() { Ok(()) } else { Err(DecodeError::Trailing(self.0.len())) }
    }
}

/// The tag and the reader over the rest, after the size checks both directions share.
fn open(bytes: &[u8]) -> Result<(u8, Reader<'_>), DecodeError> {
    if bytes.len() > MAX_MESSAGE {
        return Err(DecodeError::TooLarge(bytes.len()));
    }
    let (&tag, rest) = bytes.split_first().ok_or(DecodeError::Empty)?;
    Ok((tag, Reader(rest)))
}

impl ToServer {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            ToServer::Request { seq, device, message } => {
                Writer::new(tag::REQUEST).u32(*seq).text(device).text(message).0.clone()
            }
            ToServer::Rejected { seq, client, reason, left } => {
                Writer::new(tag::REJECTED).u32(*seq).opt(*client).text(reason).opt(*left).0.clone()
            }
            ToServer::Finished { seq, outcome } => {
                let mut w = Writer::new(tag::FINISHED);
                w.u32(*seq);
                match outcome {
                    Outcome::Unlocked => w.0.push(tag::UNLOCKED),
                    Outcome::Failed(why) => {
                        w.0.push(tag::FAILED_OUTCOME);
                        w.text(why);
                    }
                    Outcome::Over => w.0.push(tag::OVER),
                }
                w.0
            }
            ToServer::Stop => vec![tag::STOP],
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<ToServer, DecodeError> {
        let (t, mut r) = open(bytes)?;
        let m = match t {
            tag::REQUEST => ToServer::Request { seq: r.u32()?, device: r.text()?, message: r.text()? },
            tag::REJECTED => {
                ToServer::Rejected { seq: r.u32()?, client: r.opt()?, reason: r.text()?, left: r.opt()? }
            }
            tag::FINISHED => {
                let seq = r.u32()?;
                let outcome = match r.u8()? {
                    tag::UNLOCKED => Outcome::Unlocked,
                    tag::FAILED_OUTCOME => Outcome::Failed(r.text()?),
                    tag::OVER => Outcome::Over,
                    f => return Err(DecodeError::BadFlag(f)),
                };
                ToServer::Finished { seq, outcome }
            }
            tag::STOP => ToServer::Stop,
            t => return Err(DecodeError::UnknownTag(t)),
        };
        r.end()?;
        Ok(m)
    }
}

impl ToParent {
    /// The encoded message; an answer's bytes are a copy the caller must wipe (it is sent at
    /// once and dropped: see [`ToParent::encode_into`]).
    pub fn encode_into(&self, out: &mut Secret) -> Result<(), luks::secret::CapacityError> {
        out.clear();
        match self {
            ToParent::Ready => out.push(tag::READY),
            ToParent::Failed(why) => out.extend_from_slice(&Writer::new(tag::FAILED).text(why).0),
            ToParent::Answer { seq, client, passphrase } => {
                out.extend_from_slice(&Writer::new(tag::ANSWER).u32(*seq).u32(*client).0)?;
                out.extend_from_slice(passphrase.as_bytes())
            }
            ToParent::TooLong { seq, client } => {
                out.extend_from_slice(&Writer::new(tag::TOO_LONG).u32(*seq).u32(*client).0)
            }
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<ToParent, DecodeError> {
        let (t, mut r) = open(bytes)?;
        let m = match t {
            tag::READY => ToParent::Ready,
            tag::FAILED => ToParent::Failed(r.text()?),
            tag::ANSWER => {
                let (seq, client) = (r.u32()?, r.u32()?);
                let rest = r.take(r.0.len())?;
                if rest.len() > MAX_PASSPHRASE {
                    return Err(DecodeError::PassphraseTooLong);
                }
                let mut passphrase = Secret::with_capacity(MAX_PASSPHRASE);
                passphrase.extend_from_slice(rest).map_err(|_| DecodeError::PassphraseTooLong)?;
                ToParent::Answer { seq, client, passphrase }
            }
            tag::TOO_LONG => ToParent::TooLong { seq: r.u32()?, client: r.u32()? },
            t => return Err(DecodeError::UnknownTag(t)),
        };
        r.end()?;
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip_server(m: ToServer) {
        assert_eq!(ToServer::decode(&m.encode()), Ok(m));
    }

    #[test]
    fn every_message_to_the_server_decodes_to_itself() {
        round_trip_server(ToServer::Request {
            seq: 7,
            device: "cryptroot".into(),
            message: "Please enter passphrase for disk cryptroot (/dev/vda2)".into(),
        });
        round_trip_server(ToServer::Rejected {
            seq: 7,
            client: Some(3),
            reason: "wrong passphrase".into(),
            left: Some(2),
        });
        round_trip_server(ToServer::Rejected { seq: 0, client: None, reason: String::new(), left: None });
        round_trip_server(ToServer::Finished { seq: 1, outcome: Outcome::Unlocked });
        round_trip_server(ToServer::Finished { seq: 1, outcome: Outcome::Failed("no keyslot".into()) });
        round_trip_server(ToServer::Finished { seq: u32::MAX, outcome: Outcome::Over });
        round_trip_server(ToServer::Stop);
    }

    #[test]
    fn an_answer_decodes_into_a_secret() {
        let mut buf = Secret::with_capacity(MAX_MESSAGE);
        let answer = ToParent::Answer { seq: 4, client: 9, passphrase: Secret::from_slice(b"pass phrase\n") };
        answer.encode_into(&mut buf).unwrap();
        match ToParent::decode(buf.as_bytes()).unwrap() {
            ToParent::Answer { seq: 4, client: 9, passphrase } => {
                assert_eq!(passphrase.as_bytes(), b"pass phrase\n")
            }
            other => panic!("{other:?}"),
        }
        for m in [
            ToParent::Ready,
            ToParent::Failed("port 22 in use".into()),
            ToParent::TooLong { seq: 1, client: 2 },
        ] {
            m.encode_into(&mut buf).unwrap();
            assert_eq!(ToParent::decode(buf.as_bytes()).unwrap(), m);
        }
    }

    #[test]
    fn a_passphrase_longer_than_the_limit_is_refused() {
        let mut bytes = vec![tag::ANSWER, 0, 0, 0, 1, 0, 0, 0, 2];
        bytes.extend(std::iter::repeat_n(b'x', MAX_PASSPHRASE));
        assert!(matches!(ToParent::decode(&bytes), Ok(ToParent::Answer { .. })));
        bytes.push(b'x');
        assert_eq!(ToParent::decode(&bytes), Err(DecodeError::PassphraseTooLong));
    }

    #[test]
    fn malformed_messages_are_refused() {
        assert_eq!(ToServer::decode(&[]), Err(DecodeError::Empty));
        assert_eq!(ToServer::decode(&[99]), Err(DecodeError::UnknownTag(99)));
        assert_eq!(ToServer::decode(&[tag::STOP, 0]), Err(DecodeError::Trailing(1)));
        assert_eq!(ToServer::decode(&[tag::REQUEST, 0, 0]), Err(DecodeError::Short));
        assert_eq!(ToServer::decode(&[tag::REQUEST, 0, 0, 0, 1, 0, 5, b'a']), Err(DecodeError::Short));
        assert_eq!(
            ToServer::decode(&[tag::REQUEST, 0, 0, 0, 1, 0, 1, 0xff, 0, 0]),
            Err(DecodeError::NotUtf8)
        );
        assert_eq!(ToServer::decode(&[tag::REJECTED, 0, 0, 0, 1, 2, 0, 0, 0]), Err(DecodeError::BadFlag(2)));
        assert_eq!(ToServer::decode(&[tag::FINISHED, 0, 0, 0, 1, 9]), Err(DecodeError::BadFlag(9)));
        assert_eq!(ToParent::decode(&[tag::READY, 1]), Err(DecodeError::Trailing(1)));
        let mut long = vec![tag::FAILED, 0x04, 0x01];
        long.extend([b'a'; 1025]);
        assert_eq!(ToParent::decode(&long), Err(DecodeError::TextTooLong(1025)));
        assert_eq!(ToParent::decode(&[tag::TOO_LONG, 0, 0, 0, 1]), Err(DecodeError::Short));
        assert_eq!(ToParent::decode(&vec![tag::READY; MAX_MESSAGE + 1]), Err(DecodeError::TooLarge(2049)));
        // The server's tags are not the parent's and the other way round.
        assert_eq!(ToParent::decode(&[tag::STOP]), Err(DecodeError::UnknownTag(tag::STOP)));
        assert_eq!(ToServer::decode(&[tag::READY]), Err(DecodeError::UnknownTag(tag::READY)));
    }

    #[test]
    fn long_text_is_cut_at_a_character_boundary() {
        let long = "é".repeat(MAX_TEXT);
        let m = ToServer::Finished { seq: 1, outcome: Outcome::Failed(long) };
        let ToServer::Finished { outcome: Outcome::Failed(back), .. } =
            ToServer::decode(&m.encode()).unwrap()
        else {
            panic!()
        };
        assert_eq!(back.len(), MAX_TEXT);
        assert!(m.encode().len() <= MAX_MESSAGE);
    }
}
