//! `rvc-index info FILE.index`: what an index file holds.

use std::path::{Path, PathBuf};

use clap::Args;

use super::{JsonArgs, print_stdout};
use crate::Result;
use crate::faiss::{IndexInfo, read_index};

#[derive(Args, Debug)]
#[command(mut_arg("json", |a| a.help(
    "Print a JSON object on stdout instead of the text (`--json`), or write it to the file OUT \
     (`--json=OUT`) and print the text"
)))]
pub struct InfoArgs {
    /// The faiss index file to inspect.
    pub file: PathBuf,
    #[command(flatten)]
    pub json: JsonArgs,
}

/// Read `path` and summarise it.
pub fn inspect(path: &Path) -> Result<IndexInfo> {
    let index = read_index(path)?;
    let size = std::fs::metadata(path)
        .map_err(|e| crate::Error::io(path, e))?
        .len();
    Ok(IndexInfo::new(&index, Some(size)))
}

#[derive(serde::Serialize)]
struct Out<'a> {
    file: String,
    #[serde(flatten)]
    info: &'a IndexInfo,
}

/// Run the subcommand: the text on stdout, and/or the JSON where `--json` says.
pub fn run(args: &InfoArgs) -> Result<()> {
    args.json.check()?;
    let info = inspect(&args.file)?;
    if !args.json.to_stdout() {
        print_stdout(&format!("{:<13}{}\n{info}", "file", args.file.display()))?;
    }
    args.json.emit(&Out {
        file: args.file.display().to_string(),
        info: &info,
    })
}
