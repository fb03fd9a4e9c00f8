//! Kernel modules without modprobe: modules.dep/alias/builtin, dependency closure, finit_module, coldplug.
