//! The version-independent view of a LUKS header: what unlock, dump and dm-crypt work on.

/// The on-disk format version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Version {
    Luks1,
    Luks2,
}

/// Which of LUKS2's two header copies the header was read from (LUKS1 has one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HeaderCopy {
    Primary,
    Secondary,
}

/// A hash named by a header (PBKDF2's PRF, the AF diffuser, ESSIV).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashAlg {
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
    Ripemd160,
    Whirlpool,
    /// A name this build does not implement; unlock names it in its error.
    Unsupported(String),
}

impl HashAlg {
    /// Parses the names cryptsetup writes (`sha256`, `ripemd160`, ...), case-insensitively.
    pub fn from_name(name: &str) -> HashAlg {
        match name.to_ascii_lowercase().as_str() {
            "sha1" => HashAlg::Sha1,
            "sha224" => HashAlg::Sha224,
            "sha256" => HashAlg::Sha256,
            "sha384" => HashAlg::Sha384,
            "sha512" => HashAlg::Sha512,
            "ripemd160" => HashAlg::Ripemd160,
            "whirlpool" => HashAlg::Whirlpool,
            _ => HashAlg::Unsupported(name.to_owned()),
        }
    }

    pub fn name(&self) -> &str {
        match self {
            HashAlg::Sha1 => "sha1",
            HashAlg::Sha224 => "sha224",
            HashAlg::Sha256 => "sha256",
            HashAlg::Sha384 => "sha384",
            HashAlg::Sha512 => "sha512",
            HashAlg::Ripemd160 => "ripemd160",
            HashAlg::Whirlpool => "whirlpool",
            HashAlg::Unsupported(n) => n,
        }
    }

    /// Digest length in bytes; `None` for an unsupported hash.
    pub fn output_len(&self) -> Option<usize> {
        Some(match self {
            HashAlg::Sha1 | HashAlg::Ripemd160 => 20,
            HashAlg::Sha224 => 28,
            HashAlg::Sha256 => 32,
            HashAlg::Sha384 => 48,
            HashAlg::Sha512 | HashAlg::Whirlpool => 64,
            HashAlg::Unsupported(_) => return None,
        })
    }
}

impl serde::Serialize for HashAlg {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// A cipher specification as dm-crypt and cryptsetup write it: `aes-xts-plain64`,
/// `aes-cbc-essiv:sha256`, `serpent-xts-plain64`. Kept verbatim: the data segment's spec goes
/// into the dm-crypt table as it is; keyslot areas are decrypted only for the specs `area`
/// implements, anything else is an error naming the spec.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct CipherSpec(pub String);

/// A key derivation function with its parameters.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Kdf {
    Pbkdf2 {
        hash: HashAlg,
        iterations: u32,
        #[serde(skip)]
        salt: Vec<u8>,
    },
    Argon2i {
        time: u32,
        memory_kib: u32,
        cpus: u32,
        #[serde(skip)]
        salt: Vec<u8>,
    },
    Argon2id {
        time: u32,
        memory_kib: u32,
        cpus: u32,
        #[serde(skip)]
        salt: Vec<u8>,
    },
    /// A KDF type the header names that this build does not implement (for example the
    /// placeholder `argon2` in cryptsetup's parsing-only test headers).
    Unsupported { name: String },
}

/// A keyslot's priority (LUKS2 `priority`; LUKS1 keyslots are all `Normal`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Tried only when named explicitly; never in a plain unlock.
    Ignore,
    Normal,
    /// Tried before every `Normal` keyslot.
    Prefer,
}

/// The anti-forensic splitter's parameters.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AfParams {
    /// As the header says (dumps show it); unlock always merges [`crate::af::STRIPES`], as
    /// cryptsetup does.
    pub stripes: u32,
    pub hash: HashAlg,
}

/// Where a keyslot's split key material lies, and how it is encrypted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Area {
    /// Byte offset from the start of the header device.
    pub offset: u64,
    /// Byte length of the area.
    pub size: u64,
    pub encryption: CipherSpec,
    /// Bytes of the key that encrypts the area (equal to the volume key's size in LUKS1).
    pub key_size: usize,
}

/// What kind of keyslot: only `Luks2` keyslots (and every LUKS1 keyslot) hold a volume key
/// that unlock may use.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyslotKind {
    Luks2,
    /// Reencryption metadata; never unlocked.
    Reencrypt,
    Unknown(String),
}

/// One active keyslot.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Keyslot {
    pub id: u32,
    pub kind: KeyslotKind,
    /// Bytes of the key the slot stores (the volume key, if the slot is bound to a segment).
    pub key_size: usize,
    pub priority: Priority,
    pub kdf: Kdf,
    pub af: AfParams,
    pub area: Area,
}

/// How a segment's size is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SegmentSize {
    /// To the end of the device.
    Dynamic,
    Bytes(u64),
}

/// What kind of data segment.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SegmentKind {
    Crypt,
    Linear,
    Unknown(String),
}

/// A data segment: the encrypted payload (LUKS1 has exactly one).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Segment {
    pub id: u32,
    pub kind: SegmentKind,
    /// Byte offset of the payload on the data device.
    pub offset: u64,
    pub size: SegmentSize,
    /// The IV offset in sectors (`iv_tweak`; 0 in LUKS1).
    pub iv_tweak: u64,
    /// Empty for a non-crypt segment.
    pub encryption: CipherSpec,
    /// Encryption sector size in bytes (512 in LUKS1).
    pub sector_size: u32,
    pub flags: Vec<String>,
}

/// A volume-key digest: what tells a right key from a wrong one.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Digest {
    pub id: u32,
    /// Keyslots whose keys this digest verifies.
    pub keyslots: Vec<u32>,
    /// Segments this digest's key decrypts; a keyslot reachable only through digests with no
    /// segment is unbound and never activates anything.
    pub segments: Vec<u32>,
    /// PBKDF2 parameters of the digest (LUKS1: the header's hash, mkDigestIterations, salt).
    pub hash: HashAlg,
    pub iterations: u32,
    #[serde(skip)]
    pub salt: Vec<u8>,
    /// The stored digest (LUKS1: 20 bytes).
    #[serde(skip)]
    pub digest: Vec<u8>,
}

/// A token (LUKS2): only listed, never run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Token {
    pub id: u32,
    pub kind: String,
    pub keyslots: Vec<u32>,
}

/// A parsed and validated header.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Header {
    pub version: Version,
    /// The UUID as written in the header (with dashes).
    pub uuid: String,
    /// LUKS2 label; `None` in LUKS1 or when empty.
    pub label: Option<String>,
    pub subsystem: Option<String>,
    /// LUKS2 sequence id of the copy used (0 in LUKS1).
    pub seqid: u64,
    pub copy: HeaderCopy,
    /// Bytes of metadata at the start of the header device (LUKS2: both copies and the JSON
    /// areas, i.e. `hdr_size * 2`; LUKS1: up to the end of the last keyslot area).
    pub metadata_size: u64,
    /// LUKS2 `config.keyslots_size` (LUKS1: the span of the keyslot areas).
    pub keyslots_size: u64,
    pub keyslots: Vec<Keyslot>,
    pub segments: Vec<Segment>,
    pub digests: Vec<Digest>,
    pub tokens: Vec<Token>,
    /// LUKS2 `config.flags` (persistent activation flags such as `allow-discards`).
    pub flags: Vec<String>,
    /// LUKS2 `config.requirements.mandatory`; any name here that this build does not know
    /// refuses activation (the header still loads and dumps).
    pub mandatory_requirements: Vec<String>,
}

impl Header {
    /// The dm UUID cryptsetup gives an active mapping of this header: `CRYPT-LUKS2-<uuid
    /// without dashes>-<name>` (LUKS1 likewise).
    pub fn dm_uuid(&self, name: &str) -> String {
        let v = match self.version {
            Version::Luks1 => "LUKS1",
            Version::Luks2 => "LUKS2",
        };
        let uuid: String = self.uuid.chars().filter(|c| *c != '-').collect();
        format!("CRYPT-{v}-{uuid}-{name}")
    }

    pub fn keyslot(&self, id: u32) -> Option<&Keyslot> {
        self.keyslots.iter().find(|k| k.id == id)
    }

    pub fn segment(&self, id: u32) -> Option<&Segment> {
        self.segments.iter().find(|s| s.id == id)
    }
}
