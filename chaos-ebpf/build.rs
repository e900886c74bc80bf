fn main() {
    // Rebuild when bpf-linker changes: cargo cannot see this undeclared build tool otherwise.
    if let Ok(bpf_linker) = which::which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", bpf_linker.display());
    }
}
