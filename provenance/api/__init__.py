"""The HTTP service: the domain's commands and reads for authenticated people and platform clients, the
verification report, and the C2PA Soft Binding Resolution API (`provenance api`)."""
