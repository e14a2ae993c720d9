//! `rvc-index info FILE.index`: what an index file holds.

use std::path::{Path, PathBuf};

use clap::Args;

use crate::Result;
use crate::faiss::{IndexInfo, read_index};

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// The faiss index file to inspect.
    pub file: PathBuf,
    /// Print a JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Read `path` and summarise it.
pub fn inspect(path: &Path) -> Result<IndexInfo> {
    let index = read_index(path)?;
    let size = std::fs::metadata(path)
        .map_err(|e| crate::Error::io(path, e))?
        .len();
    Ok(IndexInfo::new(&index, Some(size)))
}

fn render(args: &InfoArgs) -> Result<String> {
    let info = inspect(&args.file)?;
    if args.json {
        #[derive(serde::Serialize)]
        struct Out<'a> {
            file: String,
            #[serde(flatten)]
            info: &'a IndexInfo,
        }
        let out = Out {
            file: args.file.display().to_string(),
            info: &info,
        };
        let mut s =
            serde_json::to_string_pretty(&out).map_err(|e| crate::Error::Invalid(e.to_string()))?;
        s.push('\n');
        Ok(s)
    } else {
        Ok(format!("{:<13}{}\n{info}", "file", args.file.display()))
    }
}

/// Run the subcommand; prints the result, or one error line, and returns the exit code.
pub fn run(args: InfoArgs) -> i32 {
    match render(&args) {
        Ok(out) => {
            use std::io::Write;
            let mut stdout = std::io::stdout().lock();
            // A closed pipe (`| head`) is not an error worth reporting.
            let _ = stdout
                .write_all(out.as_bytes())
                .and_then(|_| stdout.flush());
            0
        }
        Err(e) => {
            eprintln!("rvc-index: error: {e}");
            1
        }
    }
}
