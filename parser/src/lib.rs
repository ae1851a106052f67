//! rbuild-parser turns Dockerfile text into typed instructions with source spans, and owns the
//! shell-word expansion (`$V`, `${V:-x}`, ...) the solver calls. It does no I/O.
