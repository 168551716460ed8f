//! The reference NHS Directory service: a SCIM 2.0 server over SQLite that enforces the
//! NHS Directory rules. (Being built: see issue 3.)

use std::path::Path;

/// Run the service with the given configuration file until interrupted.
pub async fn serve(config: &Path) -> anyhow::Result<()> {
    anyhow::bail!(
        "the reference directory is not built yet (config {})",
        config.display()
    )
}
