//! The Kubernetes operator: HostPool CRD, KubeVirt types, inventory, actuation, status.
