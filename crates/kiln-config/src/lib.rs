//! kiln.toml: text → spanned syntax tree → checked [`Config`].
//!
//! Everything here is pure except reading the file. Every user mistake becomes a
//! [`Diagnostic`] that knows its file, byte span and hint, and renders like a compiler error.

mod address;
mod config;
mod diagnostic;
mod dotenv;
mod duration;
mod loader;
mod profile;
mod reader;
mod service;
mod sink_url;
mod size;
mod source_text;
mod suggest;
mod target;
mod validate;

pub use config::{Config, EngineChoice, Settings};
pub use diagnostic::{Diagnostic, Diagnostics, MAX_SHOWN};
pub use dotenv::{DotenvError, parse_dotenv};
pub use duration::{format_duration, parse_duration};
pub use loader::{CONFIG_FILE, LoadError, find_config, load, parse_bytes, parse_str};
pub use service::{Network, Probe, ProbeCheck, RestartPolicy, Service, ServiceKind, SyncAction, SyncRule};
pub use sink_url::{SinkUrl, SinkUrlError};
pub use size::{format_size, parse_size};
pub use source_text::SourceText;
pub use suggest::did_you_mean;
pub use target::{ImageSpec, Target, TargetKind};
