//! Probing what this kernel allows. (Being written.)
