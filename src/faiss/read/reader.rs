//! The byte reader: offsets, bounded counts, fourccs and the index header.

use super::*;

pub(super) struct Rd<'p, R> {
    pub(super) r: R,
    pub(super) pos: u64,
    pub(super) len: u64,
    pub(super) path: &'p Path,
    pub(super) ctx: Vec<String>,
}

/// The parsed common header of an index, with where its fields are.
pub(super) struct Header {
    pub(super) off: u64,
    pub(super) d: usize,
    pub(super) ntotal: u64,
    pub(super) is_trained: bool,
    pub(super) metric: Metric,
}

impl Header {
    pub(super) fn off_ntotal(&self) -> u64 {
        self.off + 4
    }
    pub(super) fn off_metric(&self) -> u64 {
        self.off + 29
    }
}

pub(super) fn fourcc_str(f: &[u8; 4]) -> String {
    f.iter()
        .map(|&b| {
            if b.is_ascii_graphic() {
                (b as char).to_string()
            } else {
                format!("\\x{b:02x}")
            }
        })
        .collect()
}

/// What a fourcc this crate does not handle stands for, if it is a known one.
pub(super) fn known_fourcc(f: &[u8; 4]) -> Option<&'static str> {
    Some(match f {
        b"IxFl" => "IndexFlat with a metric other than L2 or inner product",
        b"IxFP" | b"IxFp" => "IndexFlatPanorama",
        b"IxPQ" | b"IxPq" => "IndexPQ",
        b"IxPo" => "IndexPQ (old layout)",
        b"IxRQ" | b"IxRq" => "IndexResidualQuantizer",
        b"IxLS" => "IndexLocalSearchQuantizer",
        b"IxSQ" | b"IxSq" => "IndexScalarQuantizer",
        b"IxLa" | b"IxLb" => "IndexLattice",
        b"IxHE" | b"IxHe" => "IndexLSH",
        b"IxMp" | b"IxM2" => "IndexIDMap",
        b"IxPT" => "IndexPreTransform",
        b"IxRF" => "IndexRefineFlat",
        b"IxRP" => "IndexRefinePanorama",
        b"IxSh" => "IndexShards",
        b"IxFa" | b"IxF1" => "IndexFlat1D",
        b"IHNf" | b"IHNp" | b"IHNs" | b"IHN2" | b"IHNc" | b"IHc2" => "IndexHNSW",
        b"INSf" => "IndexNSG",
        b"INNf" => "IndexNNDescent",
        b"IwPQ" | b"IvPQ" | b"IvFP" => "IndexIVFPQ",
        b"IwQR" | b"IvQR" => "IndexIVFPQR",
        b"IwSQ" | b"IwSq" | b"IvSQ" => "IndexIVFScalarQuantizer",
        b"IwSh" => "IndexIVFSpectralHash",
        b"IwRQ" | b"IwLS" | b"IwPR" | b"IwPL" => "IndexIVF additive quantizer",
        b"IwFs" => "IndexIVFFlatDedup",
        b"IwFd" => "IndexIVFFlatDedup",
        b"IwP2" => "IndexIVFPQFastScan (newer layout)",
        b"IwPn" => "IndexIVFFlatPanorama",
        b"IwRb" | b"IwRB" | b"Ixrq" | b"IxRb" => "RaBitQ index",
        b"ImRQ" | b"ImPQ" => "index with IVF residual coarse quantizer",
        b"IPfs" | b"IPRf" => "IndexPQFastScan",
        b"IRfs" | b"ILfs" => "IndexAdditiveQuantizerFastScan",
        b"IwRf" | b"IwLf" => "IndexIVF additive quantizer fast-scan",
        b"IwPf" => "IndexIVFPQFastScan",
        b"IwFl" => "IndexIVFFlat",
        b"IxF2" => "IndexFlatL2",
        b"IxFI" => "IndexFlatIP",
        b"il00" => "no inverted lists stored (il00)",
        b"ilar" => "ArrayInvertedLists",
        b"ilbl" => "BlockInvertedLists",
        b"ilod" => "OnDiskInvertedLists",
        b"ilpn" | b"ilp2" => "Panorama inverted lists",
        b"null" => "no index (null)",
        _ => return None,
    })
}

impl<'p, R: Read> Rd<'p, R> {
    pub(super) fn new(r: R, len: u64, path: &'p Path) -> Self {
        Rd {
            r,
            pos: 0,
            len,
            path,
            ctx: Vec::new(),
        }
    }

    pub(super) fn field(&self, name: &str) -> String {
        let mut s = self.ctx.join(".");
        if !name.is_empty() {
            if !s.is_empty() {
                s.push('.');
            }
            s.push_str(name);
        }
        s
    }

    pub(super) fn fail(&self, offset: u64, field: &str, msg: impl Into<String>) -> Error {
        Error::Format {
            path: self.path.to_path_buf(),
            offset,
            field: self.field(field),
            msg: msg.into(),
        }
    }

    pub(super) fn unsupported(&self, offset: u64, f: &[u8; 4], what: &str) -> Error {
        let name = match known_fourcc(f) {
            Some(n) => format!(" ({n})"),
            None => String::new(),
        };
        let place = if self.ctx.is_empty() {
            String::new()
        } else {
            format!(" in {}", self.ctx.join("."))
        };
        Error::Unsupported(format!(
            "{}{name}{what}{place}, at byte {offset} of {}",
            fourcc_str(f),
            self.path.display()
        ))
    }

    pub(super) fn remaining(&self) -> u64 {
        self.len - self.pos
    }

    /// Fill `buf` from the file; `field` names it in errors.
    pub(super) fn fill(&mut self, buf: &mut [u8], field: &str) -> Result<()> {
        let need = buf.len() as u64;
        if need > self.remaining() {
            return Err(self.fail(
                self.pos,
                field,
                format!(
                    "needs {need} bytes but the file ends {} bytes later, at byte {}",
                    self.remaining(),
                    self.len
                ),
            ));
        }
        match self.r.read_exact(buf) {
            Ok(()) => {
                self.pos += need;
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => Err(self.fail(
                self.pos,
                field,
                "unexpected end of file (the file shrank while it was being read)",
            )),
            Err(e) => Err(Error::io(self.path, e)),
        }
    }

    pub(super) fn scalar<const N: usize>(&mut self, field: &str) -> Result<[u8; N]> {
        let mut b = [0u8; N];
        self.fill(&mut b, field)?;
        Ok(b)
    }

    pub(super) fn u8(&mut self, field: &str) -> Result<u8> {
        Ok(self.scalar::<1>(field)?[0])
    }
    pub(super) fn i32(&mut self, field: &str) -> Result<i32> {
        Ok(i32::from_le_bytes(self.scalar(field)?))
    }
    pub(super) fn i64(&mut self, field: &str) -> Result<i64> {
        Ok(i64::from_le_bytes(self.scalar(field)?))
    }
    pub(super) fn u64(&mut self, field: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.scalar(field)?))
    }
    pub(super) fn f32(&mut self, field: &str) -> Result<f32> {
        Ok(f32::from_le_bytes(self.scalar(field)?))
    }
    pub(super) fn fourcc(&mut self, field: &str) -> Result<[u8; 4]> {
        self.scalar(field)
    }

    /// A strict bool byte (faiss >= 1.14 rejects anything but 0 and 1).
    pub(super) fn bool(&mut self, field: &str) -> Result<bool> {
        let off = self.pos;
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(self.fail(off, field, format!("boolean byte is {b}, not 0 or 1"))),
        }
    }

    /// `count` elements of `T`, checked against the remaining bytes before
    /// allocating; `count_off` is where the count was read (for errors).
    pub(super) fn array<T: Pod + Zeroable>(
        &mut self,
        count: u64,
        count_off: u64,
        field: &str,
    ) -> Result<Vec<T>> {
        let size = std::mem::size_of::<T>() as u64;
        let fits = count
            .checked_mul(size)
            .is_some_and(|b| b <= self.remaining());
        if !fits {
            let bytes = if size == 1 {
                String::new()
            } else {
                format!(" × {size} = {} bytes", count as u128 * size as u128)
            };
            return Err(self.fail(
                count_off,
                field,
                format!(
                    "count {count}{bytes} exceeds the {} bytes left in the file",
                    self.remaining()
                ),
            ));
        }
        let mut v = vec![T::zeroed(); count as usize];
        self.fill(bytemuck::cast_slice_mut(&mut v), field)?;
        Ok(v)
    }

    /// A `std::vector<T>`: u64 element count, then the elements.
    pub(super) fn vector<T: Pod + Zeroable>(&mut self, field: &str) -> Result<(u64, Vec<T>)> {
        let off = self.pos;
        let count = self.u64(&format!("{field} count"))?;
        Ok((off, self.array(count, off, field)?))
    }

    pub(super) fn header(&mut self) -> Result<Header> {
        let off = self.pos;
        let d = self.i32("d")?;
        if d <= 0 || d as usize > MAX_D {
            return Err(self.fail(off, "d", format!("d = {d} outside 1..={MAX_D}")));
        }
        let ntotal = self.i64("ntotal")?;
        if ntotal < 0 {
            return Err(self.fail(off + 4, "ntotal", format!("ntotal = {ntotal} is negative")));
        }
        self.i64("dummy")?;
        self.i64("dummy")?;
        let is_trained = self.bool("is_trained")?;
        let moff = self.pos;
        let code = self.i32("metric_type")?;
        let metric = match Metric::from_faiss_code(code) {
            Some(m) => m,
            None => {
                let name = match code {
                    2 => "L1",
                    3 => "Linf",
                    4 => "Lp",
                    20 => "Canberra",
                    21 => "BrayCurtis",
                    22 => "JensenShannon",
                    23 => "Jaccard",
                    24 => "NaNEuclidean",
                    25 => "GOWER",
                    _ => {
                        return Err(self.fail(
                            moff,
                            "metric_type",
                            format!("unknown metric type {code}"),
                        ));
                    }
                };
                return Err(Error::Unsupported(format!(
                    "metric {name} ({code}) in {} (only L2 and inner product are supported), at byte {moff} of {}",
                    self.ctx.join("."),
                    self.path.display()
                )));
            }
        };
        Ok(Header {
            off,
            d: d as usize,
            ntotal: ntotal as u64,
            is_trained,
            metric,
        })
    }
}
