/// Module `DaftEngine` (see docs/architecture.md).
public enum DaftEngineModule { public static let name = "DaftEngine" }
