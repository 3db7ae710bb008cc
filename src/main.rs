//! `halyard`: parse the command line, resolve settings, and run the chosen command.

use std::process::ExitCode;

use clap::Parser;

mod activation;
mod cli;
mod config;
mod demo;
mod error;
mod fd_limit;
mod notify;
mod serve;
mod supervisor;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Keeps transparent huge pages out of this process. mimalloc commits its arena eagerly, and
/// the kernel backs what the threads touch at start with 2 MiB pages: measured, the RSS after
/// start drops from 19.6 MB to 10.6 MB with no change in throughput (benches/RESULTS.md,
/// "Engine", "Memory").
fn disable_huge_pages() {
    // SAFETY: prctl(PR_SET_THP_DISABLE) takes plain integers and only sets a flag on this
    // process; its result is ignored (an old kernel keeps the default, nothing breaks).
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// Has mimalloc commit its arena page by page as pages are used, not all at once: the RSS
/// after start drops from 10.6 MB to 7.0 MB (benches/RESULTS.md, "Engine", "Memory").
///
/// mimalloc reads its options once, in its own constructor, before `main`; an option set in
/// `main` comes too late. So this runs from `.init_array.00100`, which the loader runs
/// before the constructors without a priority (mimalloc's, built by gcc) and after std's
/// own argument capture (00099). An operator's `MIMALLOC_ARENA_EAGER_COMMIT` still wins.
extern "C" fn lazy_arena_commit() {
    // `mi_option_arena_eager_commit`: 4 in both v2 and v3 of mimalloc's option enum; the
    // Rust binding does not name it.
    const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
    // SAFETY: getenv reads the environment the loader set up, with a NUL-terminated name,
    // and allocates nothing (an allocation here would start mimalloc before the option is
    // set). mi_option_set stores two integers in mimalloc's static option table; no thread
    // exists yet.
    unsafe {
        if libc::getenv(c"MIMALLOC_ARENA_EAGER_COMMIT".as_ptr()).is_null() {
            libmimalloc_sys::mi_option_set(ARENA_EAGER_COMMIT, 0);
        }
    }
}

#[used]
#[link_section = ".init_array.00100"]
static LAZY_ARENA_COMMIT: extern "C" fn() = lazy_arena_commit;

fn main() -> ExitCode {
    disable_huge_pages();
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Serve(args) => config::Settings::resolve(&args)
            .map_err(error::ServeError::from)
            .and_then(|s| serve::run(&s)),
        cli::Command::Tenant { action } => serve::tenant(action),
        cli::Command::Check(args) => serve::check(&args),
        cli::Command::Backup(args) => serve::backup(&args),
        cli::Command::Restore(args) => serve::restore(&args),
        cli::Command::Migrate(args) => serve::migrate(&args),
        cli::Command::ExportStore(args) => serve::export_store(&args),
        cli::Command::ImportStore(args) => serve::import_store(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            halyard_engine::log_error!("{e}");
            ExitCode::FAILURE
        }
    }
}
