//! `rvc_index.Index`: an index in memory, searched as faiss searches it.

use std::path::PathBuf;
use std::sync::{OnceLock, RwLock};

use ndarray::{ArrayView2, s};
use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray2};
use pyo3::exceptions::{PyAttributeError, PyIndexError};
use pyo3::prelude::*;
use rvc_index::compute::DeviceChoice;
use rvc_index::faiss::{self, Index};
use rvc_index::index::search::search_index;
use rvc_index::{Error, Metric};

use crate::backends::{backend, device_name};
use crate::errors::value_error;
use crate::run::run;

#[pyclass(frozen, name = "Index", module = "rvc_index")]
pub struct PyIndex {
    index: RwLock<Index>,
    /// Every vector in id order, made on first use (blend, reconstruct).
    vectors: OnceLock<Vec<f32>>,
    device: DeviceChoice,
}

impl PyIndex {
    pub fn new(index: Index, device: DeviceChoice) -> Self {
        PyIndex {
            index: RwLock::new(index),
            vectors: OnceLock::new(),
            device,
        }
    }

    pub fn read(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn device(&self) -> DeviceChoice {
        self.device
    }

    /// The stored vectors as an `ntotal × d` matrix (by id).
    pub fn vectors(&self) -> rvc_index::Result<ArrayView2<'_, f32>> {
        let index = self.read();
        let (n, d) = (index.ntotal(), index.d());
        let v = self.vectors.get_or_init(|| index.reconstruct_all());
        ArrayView2::from_shape((n, d), v).map_err(|e| Error::Invalid(e.to_string()))
    }
}

/// A C-contiguous view of a Python matrix (the Python layer converts once).
pub fn matrix<'a>(x: &'a PyReadonlyArray2<'_, f32>, what: &str) -> PyResult<ArrayView2<'a, f32>> {
    let v = x.as_array();
    if !v.is_standard_layout() {
        return Err(value_error(format!("{what} must be C-contiguous")));
    }
    Ok(v)
}

/// Every value of `x` finite, as the feature files must be.
pub fn check_finite(x: ArrayView2<f32>, what: &str) -> PyResult<()> {
    match rvc_index::train::minibatch::find_non_finite(x) {
        Some((r, c)) => Err(value_error(format!(
            "{what}: row {r}, column {c} is {} (features must be finite)",
            x[(r, c)]
        ))),
        None => Ok(()),
    }
}

#[pymethods]
impl PyIndex {
    /// Dimension of the vectors.
    #[getter]
    fn d(&self) -> usize {
        self.read().d()
    }

    /// Number of stored vectors.
    #[getter]
    fn ntotal(&self) -> usize {
        self.read().ntotal()
    }

    /// Number of inverted lists (None for a Flat index).
    #[getter]
    fn nlist(&self) -> Option<usize> {
        self.read().list_sizes().map(|s| s.len())
    }

    /// Lists probed by `search` (None for a Flat index); stored by `write`.
    #[getter]
    fn nprobe(&self) -> Option<usize> {
        self.read().ivf().map(|i| i.nprobe)
    }

    #[setter]
    fn set_nprobe(&self, py: Python<'_>, nprobe: i64) -> PyResult<()> {
        if nprobe < 1 {
            return Err(value_error(format!(
                "nprobe must be at least 1, got {nprobe}"
            )));
        }
        // Waits (off the GIL) for searches in other threads to finish.
        let set = py.detach(|| {
            let mut index = self.index.write().unwrap_or_else(|e| e.into_inner());
            ivf_mut(&mut index).map(|ivf| ivf.nprobe = nprobe as usize)
        });
        set.ok_or_else(|| PyAttributeError::new_err("a Flat index has no nprobe"))
    }

    /// "l2" or "ip" (inner product).
    #[getter]
    fn metric(&self) -> &'static str {
        metric_name(self.read().metric())
    }

    /// faiss's metric code: 1 = METRIC_L2, 0 = METRIC_INNER_PRODUCT.
    #[getter]
    fn metric_type(&self) -> i32 {
        self.read().metric().faiss_code()
    }

    #[getter]
    fn is_trained(&self) -> bool {
        self.read().is_trained()
    }

    /// The faiss fourcc of the outermost index: IxF2, IxFI, IwFl, IwPf, IxRF.
    #[getter]
    fn fourcc(&self) -> &'static str {
        self.read().fourcc()
    }

    /// Where searches run: "auto", "gpu" or "cpu".
    #[getter(device)]
    fn device_str(&self) -> &'static str {
        device_name(self.device)
    }

    /// `x` must be C-contiguous float32 (n, d); see `rvc_index.Index.search`.
    fn search<'py>(
        &self,
        py: Python<'py>,
        x: PyReadonlyArray2<'py, f32>,
        k: usize,
    ) -> PyResult<(Bound<'py, PyArray2<f32>>, Bound<'py, PyArray2<i64>>)> {
        let q = matrix(&x, "x")?;
        let nn = run(py, None, |_| {
            let b = backend(self.device)?;
            search_index(b.as_ref(), &self.read(), q, k, None)
        })?;
        Ok((nn.scores.into_pyarray(py), nn.ids.into_pyarray(py)))
    }

    /// Vectors `i0 .. i0 + n` as an (n, d) float32 array.
    fn reconstruct_n<'py>(
        &self,
        py: Python<'py>,
        i0: usize,
        n: usize,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let ntotal = self.read().ntotal();
        if i0.checked_add(n).is_none_or(|end| end > ntotal) {
            return Err(PyIndexError::new_err(format!(
                "reconstruct_n({i0}, {n}): ids must lie within 0..{ntotal}"
            )));
        }
        let v = run(py, None, |_| {
            Ok(self.vectors()?.slice(s![i0..i0 + n, ..]).to_owned())
        })?;
        Ok(v.into_pyarray(py))
    }

    /// Vector `key` as a (d,) float32 array.
    fn reconstruct<'py>(&self, py: Python<'py>, key: usize) -> PyResult<Bound<'py, PyArray1<f32>>> {
        let ntotal = self.read().ntotal();
        if key >= ntotal {
            return Err(PyIndexError::new_err(format!(
                "reconstruct({key}): ids lie within 0..{ntotal}"
            )));
        }
        let v = run(py, None, |_| Ok(self.vectors()?.row(key).to_owned()))?;
        Ok(v.into_pyarray(py))
    }

    /// Write the index to `path` (whole or not at all), as faiss.write_index.
    fn write(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        run(py, None, |_| faiss::write_index(&path, &self.read()))
    }

    fn __repr__(&self) -> String {
        let i = self.read();
        let lists = match (i.list_sizes(), i.ivf()) {
            (Some(s), Some(ivf)) => format!(", nlist={}, nprobe={}", s.len(), ivf.nprobe),
            _ => String::new(),
        };
        format!(
            "<rvc_index.Index {} d={} ntotal={}{lists} metric={}>",
            i.fourcc(),
            i.d(),
            i.ntotal(),
            metric_name(i.metric())
        )
    }
}

pub fn metric_name(m: Metric) -> &'static str {
    match m {
        Metric::L2 => "l2",
        Metric::InnerProduct => "ip",
    }
}

fn ivf_mut(index: &mut Index) -> Option<&mut faiss::Ivf> {
    match index {
        Index::Flat(_) => None,
        Index::IvfFlat(i) => Some(&mut i.ivf),
        Index::IvfPqFastScan(i) => Some(&mut i.ivf),
        Index::Refine(r) => ivf_mut(&mut r.base),
    }
}
