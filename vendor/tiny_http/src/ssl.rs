//! TLS support was removed from this patched copy; see PATCHES.md.
