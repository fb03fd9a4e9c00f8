//! The planner's [`Pool`] over /dev/zfs: each request one ioctl, arguments packed as XDR nvlists, answers decoded from NATIVE ones.

use std::os::fd::OwnedFd;

use super::ioctl::{self, DDS_CREATION_TXG, DDS_INCONSISTENT, DDS_IS_SNAPSHOT, DDS_NUM_CLONES, DDS_TYPE};
use super::ioctl::{Errno, Request, ZfsCmd};
use super::nvlist::{NvList, Value};
use super::plan::{Bookmark, Fault, ObjsetStats, Pool, Snapshot, SnapshotProps};

/// The answer buffer first offered; a larger answer is asked for again at the size the kernel names.
const ANSWER: usize = 128 * 1024;
/// Largest answer accepted.
const MAX_ANSWER: usize = 64 << 20;
/// More snapshots than any dataset holds; the listing stops there rather than loop forever.
const MAX_SNAPSHOTS: usize = 1 << 20;

/// An open /dev/zfs.
pub struct Kernel {
    fd: OwnedFd,
}

impl Kernel {
    pub fn open() -> Result<Kernel, Errno> {
        Ok(Kernel { fd: ioctl::open()? })
    }

    fn call(&self, request: Request, cmd: &mut ZfsCmd, name: &str) -> Result<(), Errno> {
        let r = ioctl::call(&self.fd, request, cmd);
        match &r {
            Ok(()) => log::debug!("zfs ioctl {request:?} {name}: ok"),
            Err(e) => log::debug!("zfs ioctl {request:?} {name}: {e}"),
        }
        r
    }

    /// A request that only reads, with its answer nvlist; ENOMEM (the answer did not fit) is
    /// asked again with the size the kernel reported.
    fn read(&self, request: Request, name: &str, args: Option<&NvList>) -> Result<NvList, Fault> {
        let src = args.map(NvList::pack_xdr).transpose()?;
        let mut capacity = ANSWER;
        for _ in 0..4 {
            let mut cmd = ZfsCmd::new(name)?;
            if let Some(src) = &src {
                cmd.set_src(src.clone());
            }
            cmd.set_dst(capacity);
            match self.call(request, &mut cmd, name) {
                Ok(()) => {
                    let answer = cmd.dst().ok_or_else(|| Fault::Answer("no nvlist in the answer".into()))?;
                    return Ok(NvList::unpack(answer)?);
                }
                Err(Errno::ENOMEM) => {
                    let need = usize::try_from(cmd.dst_size()).unwrap_or(usize::MAX);
                    if need <= capacity || need > MAX_ANSWER {
                        return Err(Errno::ENOMEM.into());
                    }
                    capacity = need;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(Errno::ENOMEM.into())
    }

    /// A new-style request that changes something. It gets an answer buffer (without one the
    /// kernel reports ENOMEM for any answer, after doing the work), and on failure the answer
    /// names the errno of each name that failed.
    fn change(&self, request: Request, name: &str, args: &NvList) -> Result<(), Fault> {
        let mut cmd = ZfsCmd::new(name)?;
        cmd.set_src(args.pack_xdr()?);
        cmd.set_dst(ANSWER);
        let Err(errno) = self.call(request, &mut cmd, name) else { return Ok(()) };
        let failed: Vec<(String, Errno)> = cmd
            .dst()
            .and_then(|b| NvList::unpack(b).ok())
            .map(|l| {
                l.pairs
                    .into_iter()
                    .filter_map(|(n, v)| match v {
                        Value::Int32(e) => Some((n, Errno(e))),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        Err(if failed.is_empty() { Fault::Errno(errno) } else { Fault::Failed { errno, failed } })
    }

    /// Whether `pool` is imported: ZFS_IOC_POOL_STATS finds its config. Without an answer buffer
    /// a found config is ENOMEM, which answers the question just as well.
    pub fn pool_imported(&self, pool: &str) -> Result<bool, Errno> {
        let mut cmd = ZfsCmd::new(pool)?;
        match self.call(Request::PoolStats, &mut cmd, pool) {
            Ok(()) | Err(Errno::ENOMEM) => Ok(true),
            Err(Errno::ENOENT) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

fn stats_of(cmd: &ZfsCmd) -> ObjsetStats {
    ObjsetStats {
        kind: cmd.stats_u32(DDS_TYPE),
        is_snapshot: cmd.stats_u8(DDS_IS_SNAPSHOT) != 0,
        inconsistent: cmd.stats_u8(DDS_INCONSISTENT) != 0,
        createtxg: cmd.stats_u64(DDS_CREATION_TXG),
        num_clones: cmd.stats_u64(DDS_NUM_CLONES),
    }
}

/// A property in an objset or bookmark answer: `{name: {"value": v, "source": …}}`.
fn prop<'a>(props: &'a NvList, name: &str) -> Option<&'a Value> {
    props.get_list(name)?.get("value")
}

/// The clones (`{"clones": {"value": {name: boolean…}}}`) and holds of a snapshot's properties.
fn snapshot_props_of(props: &NvList) -> SnapshotProps {
    let clones = match prop(props, "clones") {
        Some(Value::NvList(l)) => l.pairs.iter().map(|(n, _)| n.clone()).collect(),
        _ => Vec::new(),
    };
    let userrefs = match prop(props, "userrefs") {
        Some(Value::Uint64(n)) => *n,
        _ => 0,
    };
    SnapshotProps { clones, userrefs }
}

/// GET_BOOKMARKS' answer: `{short name: {"createtxg": {"value": txg}}…}`.
fn bookmarks_of(dataset: &str, answer: &NvList) -> Result<Vec<Bookmark>, Fault> {
    let mut out = Vec::with_capacity(answer.len());
    for (name, props) in &answer.pairs {
        let createtxg = match props {
            Value::NvList(p) => match prop(p, "createtxg") {
                Some(Value::Uint64(t)) => Some(*t),
                _ => None,
            },
            _ => None,
        }
        .ok_or_else(|| Fault::Answer(format!("the bookmark {dataset}#{name} comes without createtxg")))?;
        out.push(Bookmark { name: format!("{dataset}#{name}"), createtxg });
    }
    Ok(out)
}

impl Pool for Kernel {
    fn objset_stats(&mut self, name: &str) -> Result<ObjsetStats, Fault> {
        // No answer buffer: the kernel then fills zc_objset_stats only, without properties.
        let mut cmd = ZfsCmd::new(name)?;
        self.call(Request::ObjsetStats, &mut cmd, name)?;
        Ok(stats_of(&cmd))
    }

    fn snapshots(&mut self, dataset: &str) -> Result<Vec<Snapshot>, Fault> {
        let prefix = format!("{dataset}@");
        let mut out = Vec::new();
        let mut cookie = 0;
        while out.len() < MAX_SNAPSHOTS {
            // zc_name comes back as ds@snap; each call starts again from the dataset and the cookie.
            let mut cmd = ZfsCmd::new(dataset)?;
            cmd.set_cookie(cookie);
            match self.call(Request::SnapshotListNext, &mut cmd, dataset) {
                Ok(()) => {}
                Err(Errno::ESRCH) => return Ok(out),
                Err(e) => return Err(e.into()),
            }
            let name = cmd.name().filter(|n| n.starts_with(&prefix)).ok_or_else(|| {
                Fault::Answer(format!("the snapshot after cookie {cookie} is named {:?}", cmd.name()))
            })?;
            let stats = stats_of(&cmd);
            out.push(Snapshot { name, createtxg: stats.createtxg, num_clones: stats.num_clones });
            if cmd.cookie() == cookie {
                return Err(Fault::Answer(format!("the snapshot listing of {dataset} does not advance")));
            }
            cookie = cmd.cookie();
        }
        Err(Fault::Answer(format!("{dataset} has more than {MAX_SNAPSHOTS} snapshots")))
    }

    fn snapshot_props(&mut self, snapshot: &str) -> Result<SnapshotProps, Fault> {
        Ok(snapshot_props_of(&self.read(Request::ObjsetStats, snapshot, None)?))
    }

    fn bookmarks(&mut self, dataset: &str) -> Result<Vec<Bookmark>, Fault> {
        let args = NvList::new().with("createtxg", Value::Boolean);
        bookmarks_of(dataset, &self.read(Request::GetBookmarks, dataset, Some(&args))?)
    }

    fn destroy_snapshots(&mut self, pool: &str, snapshots: &[String]) -> Result<(), Fault> {
        let mut snaps = NvList::new();
        for s in snapshots {
            snaps.insert(s.clone(), Value::Boolean);
        }
        self.change(Request::DestroySnaps, pool, &NvList::new().with("snaps", Value::NvList(snaps)))
    }

    fn destroy_bookmarks(&mut self, pool: &str, bookmarks: &[String]) -> Result<(), Fault> {
        let mut args = NvList::new();
        for b in bookmarks {
            args.insert(b.clone(), Value::Boolean);
        }
        self.change(Request::DestroyBookmarks, pool, &args)
    }

    fn rollback(&mut self, dataset: &str, target: &str) -> Result<(), Fault> {
        let args = NvList::new().with("target", Value::String(target.to_owned()));
        self.change(Request::Rollback, dataset, &args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(v: Value) -> Value {
        Value::NvList(NvList::new().with("value", v).with("source", Value::String(String::new())))
    }

    #[test]
    fn answers_are_read_as_the_kernel_writes_them() {
        let props = NvList::new()
            .with("createtxg", value(Value::Uint64(42)))
            .with("clones", value(Value::NvList(NvList::new().with("rpool/other", Value::Boolean))))
            .with("userrefs", value(Value::Uint64(1)));
        assert_eq!(
            snapshot_props_of(&props),
            SnapshotProps { clones: vec!["rpool/other".into()], userrefs: 1 }
        );
        assert_eq!(snapshot_props_of(&NvList::new()), SnapshotProps::default());

        let answer = NvList::new()
            .with("mark", Value::NvList(NvList::new().with("createtxg", value(Value::Uint64(7)))));
        assert_eq!(
            bookmarks_of("rpool/ds", &answer).unwrap(),
            [Bookmark { name: "rpool/ds#mark".into(), createtxg: 7 }]
        );
        let answer = NvList::new().with("mark", Value::NvList(NvList::new()));
        assert!(matches!(bookmarks_of("rpool/ds", &answer), Err(Fault::Answer(_))));
    }
}
