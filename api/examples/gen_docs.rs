//! Rewrites the generated documentation from the code: `docs/api.md` whole, and the
//! generated tables of `docs/conventions.md` (between their `<!-- generated:NAME -->`
//! markers). Run `cargo run -p halyard-api --example gen_docs` after changing a route, a
//! body declaration, an error, a stream event or a limit; `api/tests/docs.rs` fails until
//! the committed files match.

use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let pages = match halyard_api::docs::pages(&root) {
        Ok(pages) => pages,
        Err(e) => {
            eprintln!("gen_docs: {e}");
            return ExitCode::FAILURE;
        }
    };
    for page in pages {
        let path = root.join(page.path);
        if let Err(e) = std::fs::write(&path, page.content) {
            eprintln!("gen_docs: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        println!("wrote {}", page.path);
    }
    ExitCode::SUCCESS
}
