"""The real node: containerd + runc + bridge CNI + kubelet on this machine (see ``realnode``)."""
