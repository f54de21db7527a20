/// Module `DaftInterop` (see docs/architecture.md).
public enum DaftInteropModule { public static let name = "DaftInterop" }
