//! Experiments in Chaos Toolkit's format: a steady-state hypothesis checked around a method
//! that injects faults, with rollbacks and a journal.
//!
//! Seams: [`document`] reads YAML/JSON with node locations, [`substitution`] resolves
//! `configuration`/`secrets` and `${...}`, [`format`] validates the document into an
//! [`Experiment`], [`tolerance`] judges probe outputs, [`providers`] runs http/process/python
//! activities (as [`credentials`] says, for the daemon), [`fault`] starts and stops this project's faults, [`runner`] runs it all,
//! [`journal`] records it and [`live`] shows it.
pub mod credentials;
pub mod document;
pub mod fault;
pub mod format;
pub mod journal;
pub mod live;
pub mod providers;
pub mod runner;
pub mod substitution;
pub mod tolerance;

pub use document::Invalid;
pub use format::Experiment;
