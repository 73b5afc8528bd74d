//! The safe overlay: lays a payload tar over a root directory, all or nothing.
