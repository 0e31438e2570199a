//! `claudemesh serve --install-service` / `--uninstall-service`.

use crate::exit::{self, Failure, Outcome};
use crate::global::Global;
use crate::serve::ServeArgs;

pub fn install(_g: &Global, _a: &ServeArgs) -> Outcome {
    Err(Failure::new(exit::FAILURE, "not written yet"))
}

pub fn uninstall(_g: &Global) -> Outcome {
    Err(Failure::new(exit::FAILURE, "not written yet"))
}
