//! The nvlist decoder never panics on any bytes (NATIVE or XDR), and whatever it decodes encodes to XDR that decodes to the same list.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rollback::zfs::nvlist::{EncodeError, NvList};

fuzz_target!(|data: &[u8]| {
    let Ok(list) = NvList::unpack(data) else { return };
    let xdr = match list.pack_xdr() {
        Ok(x) => x,
        // Invalid UTF-8 is decoded lossily, and U+FFFD takes three bytes: a long name can
        // outgrow the limit. Nothing else may stop a decoded list from encoding.
        Err(EncodeError::Name { .. } | EncodeError::TooLarge { .. }) => return,
        Err(e) => panic!("a decoded list does not encode: {e}"),
    };
    let again = NvList::unpack(&xdr).expect("our own XDR decodes");
    // Bytes, not lists: a NaN double is not equal to itself.
    assert_eq!(again.pack_xdr().expect("encodes again"), xdr);
    assert_eq!(again.pairs.len(), list.pairs.len());
});
