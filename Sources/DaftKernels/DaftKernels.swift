/// Module `DaftKernels` (see docs/architecture.md).
public enum DaftKernelsModule { public static let name = "DaftKernels" }
