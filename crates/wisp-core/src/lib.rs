//! Domain types of wisp: names, runtimes, function specifications, limits, invocation
//! records and the errors the API reports. This crate does no I/O, so every other crate
//! (and a simulator) can use it freely.

pub mod error;
pub mod function;
pub mod limits;
pub mod name;
pub mod record;
pub mod runtime;
pub mod time;

pub use error::{Error, ErrorKind};
pub use function::{FunctionSpec, FunctionState};
pub use name::{parse_function_ref, FunctionRef, Qualifier};
pub use record::{InvocationRecord, InvocationStatus, InvocationType};
pub use runtime::RuntimeKind;
