//! A summary of what an index file holds (`rvc-index info`).

use std::fmt;

use serde::Serialize;

use super::model::{DirectMap, Index, Ivf, SizeTable};
use crate::Metric;

/// What `rvc-index info` reports; serialised as is by `--json`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct IndexInfo {
    /// Size of the file in bytes, when the summary came from a file.
    pub file_size: Option<u64>,
    /// Fourccs from the outside in, e.g. `["IxRF", "IwPf", "IxF2"]` (the last
    /// of an IVF chain is its quantizer).
    pub type_chain: Vec<String>,
    /// faiss class names matching `type_chain`.
    pub classes: Vec<String>,
    /// In words, e.g. "IVF-PQ fast-scan (4-bit) inside RFlat".
    pub description: String,
    /// The `index_factory` string that builds this structure.
    pub factory: String,
    pub d: usize,
    pub ntotal: usize,
    pub metric: Metric,
    pub is_trained: bool,
    pub ivf: Option<IvfInfo>,
    pub pq: Option<PqInfo>,
    pub refine: Option<RefineInfo>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct IvfInfo {
    pub nlist: usize,
    pub nprobe: usize,
    /// "NoMap" or "Array".
    pub direct_map: String,
    /// Bytes per stored entry in the lists (IVF-Flat: 4·d; fast-scan: M2/2).
    pub code_size: usize,
    /// "ilar" or "ilbl".
    pub invlists: String,
    /// `ilar` only: "full" or "sprs".
    pub size_table: Option<String>,
    pub lists: ListStats,
}

/// Inverted-list size statistics.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ListStats {
    pub min: usize,
    /// Middle value of the sorted sizes (mean of the two middle ones for an
    /// even count).
    pub median: f64,
    pub max: usize,
    pub mean: f64,
    pub empty: usize,
    /// faiss' `imbalance_factor`: `k · Σ n_i² / (Σ n_i)²` over the k lists;
    /// 1 is perfectly balanced. `None` when every list is empty.
    pub imbalance_factor: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PqInfo {
    pub m: usize,
    pub nbits: usize,
    pub dsub: usize,
    pub m2: usize,
    pub bbs: usize,
    pub by_residual: bool,
    pub implem: i32,
    pub qbs2: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RefineInfo {
    pub k_factor: f32,
    /// Fourcc of the refine index (`IxF2` / `IxFI`).
    pub refine_index: String,
}

/// faiss' `imbalance_factor(k, hist)`: `k · Σ n² / (Σ n)²`; `None` if all empty.
pub fn imbalance_factor(sizes: &[usize]) -> Option<f64> {
    let (mut tot, mut uf) = (0f64, 0f64);
    for &n in sizes {
        tot += n as f64;
        uf += n as f64 * n as f64;
    }
    (tot > 0.0).then(|| uf * sizes.len() as f64 / (tot * tot))
}

impl ListStats {
    pub fn from_sizes(sizes: &[usize]) -> ListStats {
        let mut sorted = sizes.to_vec();
        sorted.sort_unstable();
        let k = sorted.len();
        let median = match k {
            0 => 0.0,
            _ if k % 2 == 1 => sorted[k / 2] as f64,
            _ => (sorted[k / 2 - 1] as f64 + sorted[k / 2] as f64) / 2.0,
        };
        let total: usize = sorted.iter().sum();
        ListStats {
            min: sorted.first().copied().unwrap_or(0),
            median,
            max: sorted.last().copied().unwrap_or(0),
            mean: if k == 0 { 0.0 } else { total as f64 / k as f64 },
            empty: sorted.iter().take_while(|&&n| n == 0).count(),
            imbalance_factor: imbalance_factor(sizes),
        }
    }
}

fn class_name(fourcc: &str) -> &'static str {
    match fourcc {
        "IxF2" => "IndexFlatL2",
        "IxFI" => "IndexFlatIP",
        "IwFl" => "IndexIVFFlat",
        "IwPf" => "IndexIVFPQFastScan",
        "IxRF" => "IndexRefineFlat",
        _ => "?",
    }
}

fn ivf_info(
    ivf: &Ivf,
    sizes: &[usize],
    code_size: usize,
    invlists: &str,
    table: Option<SizeTable>,
) -> IvfInfo {
    IvfInfo {
        nlist: sizes.len(),
        nprobe: ivf.nprobe,
        direct_map: match ivf.direct_map {
            DirectMap::NoMap => "NoMap",
            DirectMap::Array(_) => "Array",
        }
        .into(),
        code_size,
        invlists: invlists.into(),
        size_table: table.map(|t| {
            match t {
                SizeTable::Full => "full",
                SizeTable::Sparse => "sprs",
                SizeTable::Auto => match SizeTable::faiss_choice(sizes.iter().copied()) {
                    SizeTable::Full => "full",
                    _ => "sprs",
                },
            }
            .to_string()
        }),
        lists: ListStats::from_sizes(sizes),
    }
}

impl IndexInfo {
    /// Summarise `index`; `file_size` is the size of the file it came from.
    pub fn new(index: &Index, file_size: Option<u64>) -> IndexInfo {
        let mut info = IndexInfo {
            file_size,
            type_chain: Vec::new(),
            classes: Vec::new(),
            description: String::new(),
            factory: String::new(),
            d: index.d(),
            ntotal: index.ntotal(),
            metric: index.metric(),
            is_trained: index.is_trained(),
            ivf: None,
            pq: None,
            refine: None,
        };
        let mut node = index;
        if let Index::Refine(r) = index {
            info.type_chain.push("IxRF".into());
            info.refine = Some(RefineInfo {
                k_factor: r.k_factor,
                refine_index: String::from_utf8_lossy(super::flat_fourcc(r.refine.metric)).into(),
            });
            node = &r.base;
        }
        info.type_chain.push(node.fourcc().into());
        let (desc, factory) = match node {
            Index::Flat(_) => ("flat (exact search)".to_string(), "Flat".to_string()),
            Index::IvfFlat(ivf) => {
                let sizes: Vec<usize> = ivf.lists.iter().map(|l| l.ids.len()).collect();
                info.ivf = Some(ivf_info(
                    &ivf.ivf,
                    &sizes,
                    4 * ivf.ivf.d,
                    "ilar",
                    Some(ivf.size_table),
                ));
                info.type_chain.push(node_quantizer(&ivf.ivf));
                ("IVF-Flat".to_string(), format!("IVF{},Flat", sizes.len()))
            }
            Index::IvfPqFastScan(ivf) => {
                let sizes: Vec<usize> = ivf.lists.iter().map(|l| l.ids.len()).collect();
                info.ivf = Some(ivf_info(&ivf.ivf, &sizes, ivf.m2() / 2, "ilbl", None));
                info.type_chain.push(node_quantizer(&ivf.ivf));
                info.pq = Some(PqInfo {
                    m: ivf.pq.m,
                    nbits: ivf.pq.nbits,
                    dsub: ivf.pq.dsub(),
                    m2: ivf.m2(),
                    bbs: ivf.bbs,
                    by_residual: ivf.by_residual,
                    implem: ivf.implem,
                    qbs2: ivf.qbs2,
                });
                let mut f = format!("IVF{},PQ{}x4fs", sizes.len(), ivf.pq.m);
                if ivf.by_residual {
                    f.push('r');
                }
                if ivf.bbs != 32 {
                    f.push_str(&format!("_{}", ivf.bbs));
                }
                ("IVF-PQ fast-scan (4-bit)".to_string(), f)
            }
            Index::Refine(_) => unreachable!("a refine index never wraps another"),
        };
        info.classes = info
            .type_chain
            .iter()
            .map(|f| class_name(f).to_string())
            .collect();
        if info.refine.is_some() {
            info.description = format!("{desc} inside RFlat");
            info.factory = format!("{factory},RFlat");
        } else {
            info.description = desc;
            info.factory = factory;
        }
        info
    }
}

fn node_quantizer(ivf: &Ivf) -> String {
    String::from_utf8_lossy(super::flat_fourcc(ivf.quantizer.metric)).into()
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn trim_float(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

impl fmt::Display for IndexInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let row = |f: &mut fmt::Formatter<'_>, k: &str, v: String| writeln!(f, "{k:<13}{v}");
        row(
            f,
            "type",
            format!(
                "{}  ({})",
                self.type_chain.join(" > "),
                self.classes.join(" > ")
            ),
        )?;
        row(
            f,
            "",
            format!("{}; factory \"{}\"", self.description, self.factory),
        )?;
        row(f, "d", self.d.to_string())?;
        row(f, "ntotal", thousands(self.ntotal as u64))?;
        row(
            f,
            "metric",
            match self.metric {
                Metric::L2 => "L2 (squared)".into(),
                Metric::InnerProduct => "inner product".into(),
            },
        )?;
        row(
            f,
            "trained",
            if self.is_trained { "yes" } else { "no" }.into(),
        )?;
        if let Some(ivf) = &self.ivf {
            row(f, "nlist", thousands(ivf.nlist as u64))?;
            row(f, "nprobe", ivf.nprobe.to_string())?;
            let l = &ivf.lists;
            row(
                f,
                "list sizes",
                format!(
                    "min {} / median {} / max {}; mean {:.1}; {} empty",
                    l.min,
                    trim_float(l.median),
                    l.max,
                    l.mean,
                    l.empty
                ),
            )?;
            row(
                f,
                "imbalance",
                match l.imbalance_factor {
                    Some(x) => format!("{x:.4}"),
                    None => "n/a (no vectors)".into(),
                },
            )?;
            let mut lists = format!("{}, {} bytes per entry", ivf.invlists, ivf.code_size);
            if let Some(t) = &ivf.size_table {
                lists.push_str(&format!(", {t} size table"));
            }
            row(f, "lists", lists)?;
            row(f, "direct map", ivf.direct_map.clone())?;
        }
        if let Some(pq) = &self.pq {
            row(
                f,
                "PQ",
                format!(
                    "M {}, nbits {} (dsub {}, M2 {}), bbs {}, by_residual {}",
                    pq.m,
                    pq.nbits,
                    pq.dsub,
                    pq.m2,
                    pq.bbs,
                    if pq.by_residual { "yes" } else { "no" }
                ),
            )?;
        }
        if let Some(r) = &self.refine {
            row(f, "k_factor", format!("{}", r.k_factor))?;
            row(f, "refine", format!("{} (exact vectors)", r.refine_index))?;
        }
        if let Some(sz) = self.file_size {
            row(f, "file size", format!("{} bytes", thousands(sz)))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imbalance_matches_faiss_definition() {
        assert_eq!(imbalance_factor(&[5, 5, 5, 5]), Some(1.0));
        assert_eq!(imbalance_factor(&[10, 0]), Some(2.0));
        assert_eq!(imbalance_factor(&[0, 0]), None);
        let s = ListStats::from_sizes(&[3, 0, 9, 4]);
        assert_eq!((s.min, s.median, s.max, s.empty), (0, 3.5, 9, 1));
    }

    #[test]
    fn thousands_sep() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(89780182), "89,780,182");
    }
}
