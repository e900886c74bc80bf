//! chaos's kernel programs, one module per hook family. Each program decodes its context,
//! asks [`rule::apply`] whether a rule for the current task wants this call failed, and
//! returns accordingly.
#![no_std]
#![no_main]
#![feature(asm_experimental_arch)]

mod block;
mod dns;
mod event;
mod file;
mod log;
mod lsm;
mod maps;
mod opaque;
mod packet;
mod probe;
mod rule;
mod socket;
mod syscall_enter;
mod task;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

// LSM and several helpers are GPL-only; the kernel refuses them without this.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
