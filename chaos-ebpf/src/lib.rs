#![no_std]
// Exists so that the workspace can depend on this package; the programs are in the binary.
