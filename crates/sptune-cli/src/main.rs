//! `sptune`: the command-line interface. `main` is thin: parse, run, print the whole error
//! chain on one line, exit non-zero on failure.

mod args;
mod commands;
#[cfg(test)]
mod docs_tests;
mod report;

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;

fn main() -> ExitCode {
    // like other Unix tools, end quietly when the reader of stdout goes away (`| head`)
    // instead of panicking in println!
    #[cfg(unix)]
    // SAFETY: called first, before any thread exists; SIG_DFL is a valid handler
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    sptune::runtime::tune_allocator();
    let cli = match args::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    match commands::run(cli) {
        Ok(code) => code,
        Err(err) => {
            let chain: Vec<String> = err.chain().map(|e| e.to_string()).collect();
            eprintln!("error: {}", chain.join(": "));
            ExitCode::from(2)
        }
    }
}

/// Help and version go out as clap prints them; a usage error becomes one line (clap's lines
/// joined, its "For more information" hint dropped), exit 2.
fn usage_error(e: clap::Error) -> ExitCode {
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        e.exit();
    }
    let text = e.to_string();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("For more information"))
        .collect();
    eprintln!("{}", lines.join(" "));
    ExitCode::from(2)
}
