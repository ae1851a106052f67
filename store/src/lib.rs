//! rbuild-store is the local, content-addressed image store: an OCI image layout on disk plus
//! the references, layer unpacking and archive formats around it.
