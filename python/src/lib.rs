//! `rvc_index._native`: the Python module over the rvc-index library. It
//! only converts arguments and results and calls the library (the public
//! API, defaults and documentation are in `python/rvc_index/__init__.py`).
//! Every call runs off the GIL and can be interrupted (see `run`).

mod backends;
mod errors;
mod index;
mod run;

use std::ffi::OsString;
use std::path::PathBuf;

use clap::Parser;
use numpy::{IntoPyArray, PyArray2, PyReadonlyArray2};
use pyo3::prelude::*;
use rvc_index::cli::{Cli, Command};
use rvc_index::index::Factory;
use rvc_index::index::build::{self as index_build, BuildParams};
use rvc_index::index::{blend as rvc_blend, search::search_index};
use rvc_index::qe::{self, QeParams};
use rvc_index::train::minibatch::{self, MiniBatchParams};
use rvc_index::{Error, Metric};

use backends::{backend, parse_device};
use errors::{clap_error, value_error};
use index::{PyIndex, check_finite, matrix};
use run::run;

/// Neighbours RVC's inference blends (hard-coded there).
const RVC_K: usize = 8;

fn parse_factory(s: &str) -> PyResult<Factory> {
    s.parse::<Factory>().map_err(|e| errors::to_py(&e))
}

#[pyfunction]
fn read_index(py: Python<'_>, path: PathBuf, device: &str) -> PyResult<PyIndex> {
    let device = parse_device(device)?;
    let index = run(py, None, |_| rvc_index::faiss::read_index(&path))?;
    Ok(PyIndex::new(index, device))
}

#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn build(
    py: Python<'_>,
    x: PyReadonlyArray2<'_, f32>,
    factory: &str,
    metric: &str,
    device: &str,
    nprobe: usize,
    niter: usize,
    progress: Option<Bound<'_, PyAny>>,
) -> PyResult<PyIndex> {
    let factory = parse_factory(factory)?;
    let device = parse_device(device)?;
    let (metric, cosine) = match metric {
        "l2" => (Metric::L2, false),
        "ip" => (Metric::InnerProduct, false),
        "cosine" => (Metric::InnerProduct, true),
        m => {
            return Err(value_error(format!(
                "metric must be \"l2\", \"ip\" or \"cosine\", got {m:?}"
            )));
        }
    };
    if nprobe == 0 {
        return Err(value_error("nprobe must be at least 1"));
    }
    rvc_index::limits::check_range("k-means iterations", niter, 1, rvc_index::limits::MAX_NITER)
        .map_err(|e| errors::to_py(&e))?;
    let x = matrix(&x, "x")?;
    check_finite(x, "x")?;
    let built = run(py, progress.as_ref(), |p| {
        let b = backend(device)?;
        let params = BuildParams {
            niter,
            ..BuildParams::new(metric, nprobe)
        };
        if cosine {
            let mut xn = x.to_owned();
            qe::normalize_rows(&mut xn);
            index_build::build_with(b.as_ref(), xn.view(), factory, &params, p)
        } else {
            index_build::build_with(b.as_ref(), x, factory, &params, p)
        }
    })?;
    Ok(PyIndex::new(built.index, device))
}

#[pyfunction]
fn blend<'py>(
    py: Python<'py>,
    index: &PyIndex,
    feats: PyReadonlyArray2<'py, f32>,
    index_rate: f32,
) -> PyResult<Bound<'py, PyArray2<f32>>> {
    let feats = matrix(&feats, "feats")?;
    check_finite(feats, "feats")?;
    if index.read().metric() != Metric::L2 {
        return Err(value_error(
            "RVC's blend needs an L2 index (its weights are 1/distance²)",
        ));
    }
    let out = run(py, None, |_| {
        let b = backend(index.device())?;
        let nn = search_index(b.as_ref(), &index.read(), feats, RVC_K, None)?;
        rvc_blend::blend(
            feats,
            nn.scores.view(),
            nn.ids.view(),
            index.vectors()?,
            index_rate,
        )
    })?;
    Ok(out.into_pyarray(py))
}

#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn expand<'py>(
    py: Python<'py>,
    x: PyReadonlyArray2<'py, f32>,
    alpha: f32,
    num_expand: usize,
    factory: Option<&str>,
    nprobe: Option<usize>,
    device: &str,
    progress: Option<Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyArray2<f32>>> {
    let device = parse_device(device)?;
    let mut params = QeParams {
        alpha,
        num_expand,
        ..QeParams::default()
    };
    if let Some(f) = factory {
        params.factory = Some(parse_factory(f)?);
        params.nprobe = nprobe.unwrap_or(qe::DEFAULT_NPROBE);
    } else if nprobe.is_some() {
        return Err(value_error(
            "nprobe= needs factory= (exact search probes no lists)",
        ));
    }
    params.check().map_err(|e| errors::to_py(&e))?;
    let x = matrix(&x, "x")?;
    check_finite(x, "x")?;
    let y = run(py, progress.as_ref(), |p| {
        let b = backend(device)?;
        qe::expand(b.as_ref(), x.to_owned(), &params, p).map(|(y, _)| y)
    })?;
    Ok(y.into_pyarray(py))
}

#[pyfunction]
fn compress<'py>(
    py: Python<'py>,
    x: PyReadonlyArray2<'py, f32>,
    k: usize,
    seed: u64,
    device: &str,
    progress: Option<Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyArray2<f32>>> {
    let device = parse_device(device)?;
    let x = matrix(&x, "x")?;
    if k == 0 {
        return Err(value_error("k must be at least 1"));
    }
    if x.nrows() < k {
        return Err(value_error(format!(
            "only {} rows, fewer than the {k} centres asked for (k)",
            x.nrows()
        )));
    }
    let params = MiniBatchParams {
        seed,
        ..MiniBatchParams::new(k)
    };
    let c = run(py, progress.as_ref(), |p| {
        let b = backend(device)?;
        minibatch::fit_with_progress(b.as_ref(), x, &params, p).map(|r| r.centroids)
    })?;
    Ok(c.into_pyarray(py))
}

/// `rvc-index train` with these arguments (after the experiment folder),
/// quiet, its `--json` summary returned as text.
#[pyfunction]
fn train(
    py: Python<'_>,
    exp_dir: PathBuf,
    args: Vec<String>,
    progress: Option<Bound<'_, PyAny>>,
) -> PyResult<String> {
    let tmp =
        tempfile::tempdir().map_err(|e| errors::to_py(&Error::io(std::env::temp_dir(), e)))?;
    let summary = tmp.path().join("summary.json");
    let mut argv: Vec<OsString> = vec!["rvc-index".into(), "train".into(), exp_dir.into()];
    argv.extend(args.into_iter().map(OsString::from));
    argv.push("--quiet".into());
    let mut json = OsString::from("--json=");
    json.push(&summary);
    argv.push(json);
    let cli = Cli::try_parse_from(argv).map_err(|e| clap_error(&e))?;
    let Command::Train(a) = cli.command else {
        unreachable!("the arguments start with `train`")
    };
    run(py, progress.as_ref(), |_| {
        rvc_index::cli::execute(Command::Train(a))?;
        std::fs::read_to_string(&summary).map_err(|e| Error::io(&summary, e))
    })
}

/// The `rvc-index` command: the same command line as the binary, on `argv`
/// (the first is the program name); returns the exit code.
#[pyfunction]
fn cli_main(py: Python<'_>, argv: Vec<OsString>) -> i32 {
    py.detach(|| rvc_index::cli::run_from(argv))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<PyIndex>()?;
    m.add_function(wrap_pyfunction!(read_index, m)?)?;
    m.add_function(wrap_pyfunction!(build, m)?)?;
    m.add_function(wrap_pyfunction!(blend, m)?)?;
    m.add_function(wrap_pyfunction!(expand, m)?)?;
    m.add_function(wrap_pyfunction!(compress, m)?)?;
    m.add_function(wrap_pyfunction!(train, m)?)?;
    m.add_function(wrap_pyfunction!(cli_main, m)?)?;
    Ok(())
}
