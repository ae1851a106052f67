//! rbuild-executor runs the steps the solver plans: RUN in a Linux sandbox over overlay
//! snapshots, COPY/ADD, and the conversion of filesystem changes into OCI layers.

pub mod fetch;
